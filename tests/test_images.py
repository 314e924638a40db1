"""Images built on the agent: layers cached by content, shared builds, bad input, local files,
image.imports(), the sandbox and the zygote start. Packages come from a local wheelhouse, offline."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

import nbmodal
from nbmodal._runtime.client import AgentClient
from nbmodal._runtime.connection import connection
from nbmodal._runtime.images import follow_build, upload_missing_files
from notebooks import run_cells
from nbmodal_wire import pb
from wheelhouse import build_wheel

pytestmark = pytest.mark.agent

app = nbmodal.App("images")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(house, "tinylib", "1.0", {"tinylib": "VALUE = 'one'"})
    build_wheel(house, "tinylib", "2.0", {"tinylib": "VALUE = 'two'"})
    build_wheel(house, "needs-old-tiny", "1.0", {"needs_old_tiny": "X = 1"}, requires=["tinylib==1.0"])
    build_wheel(house, "slowmod", "1.0", {"slowmod": "import time\nIMPORTED_AT = time.time()"}, import_sleep_s=2)
    return house


def base(wheels: Path, *packages: str) -> nbmodal.Image:
    # A unique env step keeps each test's image apart from the others' cache.
    return nbmodal.Image.debian_slim().env({"TEST_IMAGE": uuid.uuid4().hex}).pip_install(
        *packages, find_links=str(wheels), extra_options="--no-index")


def build(image: nbmodal.Image, name: str = "test") -> pb.ImageInfo:
    client = connection("local").client()
    upload_missing_files(image, client)
    return follow_build(client.build_image(image.to_spec(name)), name, "local", None)


def test_layers_are_cached_and_a_changed_last_step_rebuilds_only_itself(wheels, agent_address):
    prefix = base(wheels, "tinylib==1.0")
    image = prefix.run_commands("echo first > marker.txt")
    first = build(image)
    # Every step after the shared base venv is new (that layer may come from an earlier test's image).
    assert first.steps == 4 and first.built_steps >= 3
    again = build(image)
    assert again.image_id == first.image_id and again.built_steps == 0
    changed = build(prefix.run_commands("echo second > marker.txt"))
    assert changed.image_id != first.image_id
    assert changed.built_steps == 1  # only the changed last step


def test_two_requests_for_one_image_share_one_build(wheels, agent_address, tmp_path):
    counter = tmp_path / "builds.txt"
    image = base(wheels).run_commands(f"echo built >> {counter}; sleep 1")
    results: list[pb.ImageInfo] = []
    threads = [threading.Thread(target=lambda: results.append(build(image))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0].image_id == results[1].image_id
    assert counter.read_text().count("built") == 1


@pytest.mark.parametrize("make, message", [
    (lambda w: base(w, "no-such-package-xyz"), "no-such-package-xyz"),
    (lambda w: base(w, "tinylib==2.0", "needs-old-tiny"), "tinylib"),
    (lambda w: base(w).run_commands("echo about to fail; exit 3"), "exit code 3"),
])
def test_a_bad_step_fails_the_build_with_its_message_and_caches_nothing_of_it(wheels, agent_address, make,
                                                                              message):
    image = make(wheels)
    with pytest.raises(nbmodal.ImageBuildError) as info:
        build(image, "broken")
    text = str(info.value)
    assert "step 3" in text and message in text
    assert "cache is as it was" in text
    images = AgentClient(agent_address).image_call(pb.ImageRequest(op=pb.IMAGE_LIST)).images
    assert any(i.state == pb.IMAGE_FAILED and i.name == "broken" for i in images)
    # Nothing half-built: the same image fails again the same way, it isn't found built.
    with pytest.raises(nbmodal.ImageBuildError):
        build(image, "broken")


def test_functions_run_in_their_image_and_local_files_sync_without_rebuilds(wheels, agent_address, tmp_path):
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "a.txt").write_text("alpha")
    (source / "pkg" / "b.txt").write_text("beta")
    environment = base(wheels, "tinylib==2.0")
    image = environment.add_local_dir(source, "/root/src")

    @app.function(image=image)
    def read_back() -> tuple[str, str, str]:
        import sys

        import tinylib

        files = sorted(str(p.relative_to("/root/src")) for p in __import__("pathlib").Path("/root/src").rglob("*.txt"))
        return tinylib.VALUE, ",".join(files), sys.prefix

    value, files, prefix = read_back.remote()
    assert value == "two" and files == "pkg/a.txt,pkg/b.txt"
    assert "/images/layers/" in prefix  # the image's own environment

    (source / "pkg" / "b.txt").write_text("beta, edited")
    edited = environment.add_local_dir(source, "/root/src")
    client = AgentClient(agent_address)
    missing = client.image_call(pb.ImageRequest(op=pb.IMAGE_MISSING_FILES, sha256s=sorted(edited.local_files())))
    assert len(missing.missing) == 1  # only the changed file travels
    before = build(edited).built_steps

    @app.function(image=edited)
    def read_b() -> str:
        return open("/root/src/pkg/b.txt").read()

    assert read_b.remote() == "beta, edited"
    assert before == 0  # files synced at container start: no rebuild


def test_the_sandbox_keeps_the_host_system_read_only_and_tmp_private(wheels, agent_address, tmp_path):
    from remote_agent.sandbox import sandbox_available

    if not sandbox_available():
        pytest.fail("bubblewrap must work on the test machine (scripts/install-system-deps.sh installs it)")
    marker = Path("/tmp") / f"nbmodal-host-{uuid.uuid4().hex}"
    marker.write_text("on the host")

    @app.function(image=base(wheels))
    def probe(marker: str) -> dict:
        import os

        result = {"tmp_sees_host_file": os.path.exists(marker)}
        try:
            open("/usr/nbmodal-probe", "w")
            result["usr"] = "writable"
        except OSError as exc:
            result["usr"] = type(exc).__name__ + str(exc.errno)
        open("/tmp/from-container", "w").write("x")
        result["agent_json_visible"] = any(os.path.exists(os.path.join(p, "agent.json"))
                                           for p in [os.environ.get("NBMODAL_BLOB_DIR", "") + "/.."])
        return result

    try:
        result = probe.remote(str(marker))
    finally:
        marker.unlink()
    assert result["usr"] in ("OSError30", "PermissionError13", "OSError13")  # EROFS or EACCES
    assert result["tmp_sees_host_file"] is False
    assert not Path("/tmp/from-container").exists()
    assert result["agent_json_visible"] is False


def test_workdir_holds_what_run_steps_left_and_is_the_containers_own(wheels, agent_address):
    image = base(wheels).workdir("/root/work").run_commands("echo from-the-build > built.txt")

    @app.function(image=image)
    def look() -> tuple[str, str]:
        import os

        open("written.txt", "w").write("mine")
        return os.getcwd(), open("built.txt").read().strip()

    assert look.remote() == ("/root/work", "from-the-build")
    assert not Path("/root/work/written.txt").exists()  # the container's copy, not the host's


def test_a_preloaded_module_is_already_imported_in_a_forked_container(wheels, agent_address):
    image = base(wheels, "slowmod").preload("slowmod")

    @app.function(image=image)
    def check(_: int = 0) -> tuple[bool, float]:
        import sys
        import time

        return "slowmod" in sys.modules, time.time()

    preloaded, _ = check.remote()
    assert preloaded
    # A second container (the first is busy) forks from the same zygote: no 2-second import.
    import time

    started = time.monotonic()
    results = list(check.map(range(2)))
    assert all(p for p, _ in results)
    assert time.monotonic() - started < 4


def test_image_cell_magic_imports_and_bad_lines(wheels, tmp_path):
    nb = run_cells([
        f"%%image tiny\nenv TEST_IMAGE={uuid.uuid4().hex}\npip tinylib==1.0 --find-links {wheels} --no-index",
        "%image tiny",
        "with tiny.imports():\n    import tinylib",
        "%%remote image=tiny\nvalue = tinylib.VALUE",
        "print(value, 'tinylib' in dir())",
        "%%image broken\npip tinylib\nfrobnicate everything",
        "%%remote image=nothing_here\nx = 1",
    ], cwd=tmp_path, allow_errors=True, timeout=240)
    build_output = nb.stream(0) + nb.stream(0, "stderr")
    assert "tinylib" in build_output and "step" in build_output  # the build log, live in the cell
    assert "pip" in nb.stream(1)
    assert nb.error_text(2) == ""  # the package isn't here, and that's fine inside imports()
    assert nb.error_text(3) == ""
    assert nb.stream(4).strip() == "one False"  # the value came back; the module exists only remotely
    bad_line, bad_name = (nb.error_text(i) + nb.stream(i, "stderr") for i in (5, 6))
    assert "%%image broken, line 2: 'frobnicate everything': unknown keyword" in bad_line
    assert "image='nothing_here'" in bad_name and "%%image" in bad_name


def test_apt_install_without_root_says_what_to_do(monkeypatch, tmp_path):
    import asyncio

    from remote_agent import images

    monkeypatch.setattr(images.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(images.shutil, "which", lambda name: None)
    monkeypatch.setattr(images, "_user", lambda: "researcher")
    store = images.ImageStore(tmp_path / "images", images.runtime_sources())
    step = pb.ImageStep(kind="apt", args=["ffmpeg"])
    with pytest.raises(images.ImageError, match="root or passwordless sudo.*researcher.*ffmpeg"):
        asyncio.run(store._step_apt(step, tmp_path, None, None))


def test_image_cli_lists_and_removes(wheels, agent_address, tmp_path):
    from nbmodal import commands

    definition = tmp_path / "cli_image.image"
    definition.write_text(f"env TEST_IMAGE={uuid.uuid4().hex}\npip tinylib==1.0 --find-links {wheels} --no-index\n")
    assert "built" in commands.image_command("build", str(definition), "local")
    listing = commands.image_command("ls", host="local")
    assert "cli_image" in listing and "ready" in listing
    assert "removed 1" in commands.image_command("rm", "cli_image", "local")
    assert "cli_image" not in commands.image_command("ls", host="local")
