"""Keywords that only mean something in Modal's cloud are accepted (and have no effect on own hosts)."""

import nbmodal as modal

app = modal.App("example-cloud-keywords", include_source=True)


@app.function(
    region="us-east",
    cloud="aws",
    enable_memory_snapshot=True,
    serialized=True,
    allow_cross_region_volumes=True,
    restrict_modal_access=False,
    i6pn=False,
    ephemeral_disk=10240,
    block_network=False,
)
def anywhere(x: int) -> int:
    return x + 1


@app.cls(region=["us-east", "us-west"], cloud="gcp", enable_memory_snapshot=True)
class Service:
    @modal.enter(snap=True)
    def load(self):
        self.offset = 100

    @modal.method()
    def compute(self, x: int) -> int:
        return x + self.offset


@app.local_entrypoint()
def main():
    assert anywhere.remote(1) == 2
    assert Service().compute.remote(1) == 101
    print("cloud keywords ok")
