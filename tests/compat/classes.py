"""Classes: parameters, `@enter` once per container, `@method`s called remotely and mapped, `@exit`."""

import nbmodal as modal

app = modal.App("example-classes")


@app.cls()
class Model:
    size: int = modal.parameter(default=2)
    prefix: str = modal.parameter(default="model")

    @modal.enter()
    def load(self):
        import os

        self.weights = list(range(self.size))
        self.loaded_in = os.getpid()
        self.calls = 0

    @modal.method()
    def predict(self, x: int) -> int:
        self.calls += 1
        return sum(w * x for w in self.weights)

    @modal.method()
    def describe(self) -> dict:
        import os

        return {"prefix": self.prefix, "size": self.size, "loaded_in": self.loaded_in, "pid": os.getpid()}

    @modal.exit()
    def unload(self):
        self.weights = None


@app.local_entrypoint()
def main():
    small = Model()
    assert small.predict.remote(10) == 10  # weights 0, 1
    big = Model(size=4, prefix="big")
    assert big.predict.remote(1) == 6
    assert list(big.predict.map([1, 2, 3])) == [6, 12, 18]
    info = big.describe.remote()
    assert info["prefix"] == "big" and info["size"] == 4, info
    assert info["loaded_in"] == info["pid"], info  # @enter ran in the container serving the call
    assert Model(size=3).predict.local(2) == 6
    print("classes ok:", info["prefix"], info["size"])
