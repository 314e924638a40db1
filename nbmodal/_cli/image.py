"""Images on a host: ``image list|ls``, ``image build FILE`` (a file of ``%%image`` lines), ``image rm NAME``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nbmodal._cli.common import plain_sink, reachable, table
from nbmodal._runtime.connection import connection
from nbmodal.hosts import LOCAL
from nbmodal.output import OutputSink
from nbmodal_wire import pb
from nbmodal_wire.states import image_state_word

if TYPE_CHECKING:
    from nbmodal._cli import Console


def register(commands: argparse._SubParsersAction) -> None:
    image = commands.add_parser("image", help="images on a host: ls, build FILE (in the %%image language), rm NAME")
    image.add_argument("verb", choices=["ls", "list", "build", "rm"], help="list is ls, as Modal spells it")
    image.add_argument("name", nargs="?", help="build: a file of %%%%image lines; rm: an image's name or id")
    image.add_argument("--host", help="the host (default: the local agent; ls: every host)")
    image.add_argument("--force", action="store_true", help="build: rebuild every step, ignoring the cache")
    image.set_defaults(handler=_run)


def _run(args: argparse.Namespace, console: Console) -> None:
    verb = "ls" if args.verb == "list" else args.verb
    console.echo(image_command(verb, args.name, args.host, console.sink, force=args.force))


def image_command(verb: str, name: str | None = None, host: str | None = None, sink: OutputSink | None = None,
                  force: bool = False) -> str:
    """``image ls|build|rm``.

    ``build`` takes a file in the ``%%image`` language (its name is the file's stem); cached steps are
    reused unless ``force``.
    """
    from nbmodal._runtime.images import ensure_built

    if verb == "ls":
        rows = [("HOST", "NAME", "IMAGE", "STATE", "PYTHON", "SIZE", "LAST USED")]
        for host_name, client in reachable(host):
            for image in client.image_call(pb.ImageRequest(op=pb.IMAGE_LIST)).images:
                used = time.strftime("%Y-%m-%d %H:%M", time.localtime(image.last_used)) if image.last_used else "-"
                state = image_state_word(image.state) + (f": {image.error[:60]}" if image.error else "")
                rows.append((host_name, image.name or "-", image.image_id[:12], state, image.python or "-",
                             f"{image.size_bytes / 2**20:.1f} MiB" if image.size_bytes else "-", used))
        return table(rows) if len(rows) > 1 else "no images"
    if not name:
        raise ValueError(f"image {verb} needs a name")
    if verb == "rm":
        target = connection(host or LOCAL)
        reply = target.client().image_call(pb.ImageRequest(op=pb.IMAGE_REMOVE, name_or_id=name))
        return f"removed {len(reply.images)} image(s) named {name!r} from {target.name}"
    if verb == "build":
        from nbmodal.image import parse_image_cell

        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"no image definition at {path} (a file of %%image lines)")
        image = parse_image_cell(path.stem, path.read_text(), path.parent.resolve())
        image.name = path.stem
        target = connection(host or LOCAL)
        image_id = ensure_built(image, target, sink or plain_sink(), force=force)
        return f"image {image.name} built on {target.name}: {image_id[:12]}"
    raise ValueError(f"unknown image verb {verb!r} (ls, build, rm)")
