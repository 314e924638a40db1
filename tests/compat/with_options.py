"""`Cls.with_options`, `with_concurrency` and `with_batching`: the same class, configured at call time."""

import nbmodal as modal

app = modal.App("example-with-options")


@app.cls(cpu=1, timeout=60)
class Worker:
    tag: str = modal.parameter(default="base")

    @modal.method()
    def run(self, x: int) -> dict:
        import os

        return {"tag": self.tag, "x": x, "env": os.environ.get("WORKER_MODE", "")}


@app.local_entrypoint()
def main():
    assert Worker().run.remote(1) == {"tag": "base", "x": 1, "env": ""}

    Fast = Worker.with_options(cpu=2, timeout=30, retries=1)
    assert Fast(tag="fast").run.remote(2)["tag"] == "fast"

    Concurrent = Worker.with_options(max_containers=2).with_concurrency(max_inputs=4)
    assert [r["x"] for r in Concurrent().run.map(range(6))] == list(range(6))

    # options merge across calls, as in Modal
    Merged = Worker.with_options(cpu=1).with_options(timeout=20)
    assert Merged(tag="merged").run.remote(3)["tag"] == "merged"
    print("with_options ok")
