"""``nbmodal shell`` without a container id: a new container of a given spec, for as long as the shell runs.

The container is a session's (named ``shell-…``): a session container takes no other runs and lives
until its session is stopped, which is done when the shell exits (or fails to start). Its spec is a
``%%remote`` cell's: ``--image`` (an image built on the host, by name or id), ``--gpu``, ``--volume``,
``--secret``, ``--host``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import sys
from collections.abc import Iterator

from nbmodal._runtime.client import CLIENT_PYTHON, AgentClient
from nbmodal._runtime.connection import place
from nbmodal._runtime.invocation import container_spec
from nbmodal.exceptions import ExecutionError, NotFoundError
from nbmodal_wire import pb
from nbmodal_wire.gpu_request import GpuRequestError, parse_gpu_request
from nbmodal_wire.names import check_mount_path, check_name

log = logging.getLogger(__name__)

_SPEC_OPTIONS = ("image", "gpu", "volume", "secret")


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the new container (Modal's ``modal shell`` takes the same)."""
    parser.add_argument("--image", default="", help="an image built on the host (`nbmodal image ls`), by name or id")
    parser.add_argument("--gpu", default="", help="GPUs, as gpu= takes them: H100, A100:2, any")
    parser.add_argument("--volume", action="append", default=[], metavar="NAME:/path", help="mount a volume")
    parser.add_argument("--secret", action="append", default=[], metavar="NAME", help="a named secret's variables")


def refuse_spec_options(args: argparse.Namespace) -> None:
    """A running container has its spec already: options for a new one are a mistake, said so."""
    given = [f"--{name}" for name in _SPEC_OPTIONS if getattr(args, name)]
    if given:
        raise ValueError(f"{', '.join(given)} describe a new container; a running one ({args.container_id}) "
                         f"has its own spec. Drop them, or drop the container id for a new container")


def spec_of(args: argparse.Namespace) -> pb.ContainerSpec:
    """The ContainerSpec the options ask for (image resolved later, on the chosen host)."""
    if args.gpu:
        try:
            parse_gpu_request(args.gpu)
        except GpuRequestError as exc:
            raise ValueError(f"--gpu {args.gpu!r}: {exc}") from None
    volumes: dict[str, str] = {}
    for mount in args.volume:
        name, sep, path = mount.partition(":")
        if not sep or not name or not path:
            raise ValueError(f"--volume {mount!r}: give NAME:/path, like ckpt:/ckpt")
        check_name("volume", name)
        volumes[check_mount_path(name, path)] = name
    return container_spec(args.gpu, volumes)


def _image_id(client: AgentClient, name_or_id: str, host: str) -> str:
    images = client.image_call(pb.ImageRequest(op=pb.IMAGE_LIST)).images
    for image in images:
        if name_or_id in (image.name, image.image_id) or (len(name_or_id) >= 8
                                                          and image.image_id.startswith(name_or_id)):
            if image.state != pb.IMAGE_READY:
                raise ValueError(f"image {name_or_id!r} on {host} is not built (state "
                                 f"{pb.ImageState.Name(image.state)}); build it first: `nbmodal image build`")
            return image.image_id
    names = ", ".join(sorted({image.name for image in images if image.name})) or "none"
    raise NotFoundError(f"no image {name_or_id!r} on {host} (named images there: {names}); build it from a "
                        f"notebook with a %%image cell, or `nbmodal image build`")


@contextlib.contextmanager
def new_container(args: argparse.Namespace) -> Iterator[tuple[AgentClient, str]]:
    """A container started for ``args``'s spec: (client, container id); stopped on the way out."""
    spec = spec_of(args)
    session = f"shell-{secrets.token_hex(4)}"
    connection = place(args.host, session, spec)
    client = connection.client()
    if args.image:
        spec.image = _image_id(client, args.image, args.host or "this host")
    request = pb.RunRequest(kind=pb.CELL, label="nbmodal shell", code="pass", filename="<nbmodal shell>",
                            spec=spec, session=session, client_python=CLIENT_PYTHON,
                            secrets=[pb.SecretSource(name=name) for name in args.secret])
    try:
        finished = None
        for event in client.run(request):
            if event.HasField("notice"):
                print(f"nbmodal shell: {event.notice.text}", file=sys.stderr)  # why it waits (GPUs, image)
            elif event.HasField("finished"):
                finished = event.finished
        if finished is None or finished.state != pb.SUCCEEDED:
            why = finished.error.message if finished is not None and finished.error.message else "it did not start"
            raise ExecutionError(f"the shell's container could not start: {why}")
        container = next((c for c in client.list_containers() if c.session == session), None)
        if container is None:
            raise ExecutionError("the shell's container ended before the shell could start")
        yield client, container.container_id
    finally:
        with contextlib.suppress(Exception):
            client.stop_session(session)
