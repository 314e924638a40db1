"""Nested calls: a remote function calls other functions of its app with `.remote`, `.map` and `.spawn`."""

import nbmodal as modal

app = modal.App("example-nested-calls")


@app.function()
def evaluate(lr: float) -> float:
    return (lr - 0.3) ** 2


@app.function()
def preprocess(text: str) -> str:
    return text.strip().lower()


@app.function()
def sweep(lrs: list) -> tuple:
    # a driver running remotely fans out to another function, and stops early on a good enough loss
    losses = list(evaluate.map(lrs))
    best = min(zip(losses, lrs))
    confirm = evaluate.remote(best[1])
    return best[1], confirm


@app.function()
def pipeline(texts: list) -> list:
    cleaned = [call.get() for call in [preprocess.spawn(t) for t in texts]]
    return [c.upper() for c in cleaned]


@app.local_entrypoint()
def main():
    best_lr, loss = sweep.remote([0.1, 0.2, 0.3, 0.4])
    assert best_lr == 0.3 and loss == 0.0, (best_lr, loss)
    assert pipeline.remote(["  Hello ", "World  "]) == ["HELLO", "WORLD"]
    print("nested calls ok")
