"""A local entrypoint whose parameters are command-line options (`nbmodal run local_entrypoint_args.py
--n 4 --label sweep --scale 0.5 --verbose`), and a function run directly with `::square --x 7`."""

import nbmodal as modal

app = modal.App("example-entrypoint-args")


@app.function()
def square(x: int) -> int:
    assert isinstance(x, int), type(x)
    print(f"square({x}) = {x * x}")
    return x * x


@app.local_entrypoint()
def main(n: int, label: str = "run", scale: float = 1.0, verbose: bool = False):
    assert isinstance(n, int) and isinstance(scale, float) and isinstance(verbose, bool)
    squares = list(square.map(range(n)))
    assert squares == [i * i for i in range(n)], squares
    total = sum(squares) * scale
    print(f"{label}: n={n} total={total} verbose={verbose}")
