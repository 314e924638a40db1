"""Getting an image built on the agent that runs a container, before the run.

The agent builds (remote_agent/images.py); here the client sends the local
files the image needs that the agent doesn't have yet (by content), streams
the build's log and progress into the cell, and puts the built image's id in
the run's ContainerSpec.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING

from nbmodal.exceptions import ImageBuildError
from nbmodal.output import OutputSink
from nbmodal_wire import pb

if TYPE_CHECKING:
    from nbmodal.image import Image

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# (host, image definition) -> image id: a built image is asked for once per kernel and host.
_built: dict[tuple[str, str], str] = {}
_building = threading.Lock()
# Images defined by %%image cells in this kernel, by name.
named_images: dict[str, Image] = {}


def built_on(image: Image) -> list[tuple[str, str]]:
    """(host, image id) where this kernel has built or found ``image``."""
    key = definition_key(image)
    return [(host, image_id) for (host, definition), image_id in _built.items() if definition == key]


def definition_key(image: Image) -> str:
    spec = image.to_spec()
    digest = hashlib.sha256(spec.SerializeToString(deterministic=True))
    for mount in image.local_mounts():
        digest.update(mount.SerializeToString(deterministic=True))
    return digest.hexdigest()


def spec_with_image(spec: pb.ContainerSpec, image: Image | None, connection, sink: OutputSink) -> pb.ContainerSpec:
    """``spec`` for a run on ``connection`` in ``image``: built there first if it must be."""
    if image is None:
        return spec
    resolved = pb.ContainerSpec()
    resolved.CopyFrom(spec)
    resolved.image = ensure_built(image, connection, sink)
    resolved.local_mounts.extend(image.local_mounts())
    return resolved


def ensure_built(image: Image, connection, sink: OutputSink | None = None, force: bool = False) -> str:
    """Build ``image`` on the connection's agent, or find it built there; returns its id.

    The build's log streams into ``sink``; a failed build raises ImageBuildError
    with the failing step and its last lines of output.
    """
    key = (connection.name, definition_key(image))
    if not force and key in _built:
        return _built[key]
    with _building:  # threads of one map share one build request
        if not force and key in _built:
            return _built[key]
        client = connection.client()
        upload_missing_files(image, client)
        spec = image.to_spec()
        spec.force_build = spec.force_build or force
        info = follow_build(client.build_image(spec), image.name or "image", connection.name, sink)
        _built[key] = info.image_id
        return info.image_id


def upload_missing_files(image: Image, client) -> None:
    files = image.local_files()
    if not files:
        return
    missing = client.image_call(pb.ImageRequest(op=pb.IMAGE_MISSING_FILES, sha256s=sorted(files))).missing
    for sha256 in missing:
        path = files[sha256]
        stored = client.put_image_file(_chunks(path))
        if stored.sha256 != sha256:  # it changed since the image was defined
            raise ImageBuildError(f"{path} changed while it was being sent; define the image again")
    if missing:
        log.info("sent %d local file(s) for image %s", len(missing), image.name)


def follow_build(events, name: str, host: str, sink: OutputSink | None) -> pb.ImageInfo:
    """Show a build's events in the cell; the ImageInfo of the built image, or ImageBuildError."""
    for event in events:
        kind = event.WhichOneof("event")
        if kind == "progress" and sink is not None:
            step = event.progress
            if not step.cached:
                sink.notice(f"image {name} on {host}: step {step.step}/{step.steps}: {step.text}")
        elif kind == "log" and sink is not None:
            sink.output(1, event.log)
        elif kind == "built":
            built = event.built
            if sink is not None and built.built_steps:
                cached = "; the rest were cached" if built.built_steps < built.steps else ""
                sink.notice(f"image {name} built on {host} in {built.build_s:.1f} s "
                            f"({built.built_steps} of {built.steps} steps{cached})")
            return built
        elif kind == "failed":
            failure = event.failed
            tail = failure.log_tail.rstrip()
            raise ImageBuildError(
                f"image {name} failed to build on {host}, step {failure.step} ({failure.text}): {failure.message}"
                + (f"\n--- last lines of its output ---\n{tail}" if tail else "")
                + "\nThe image's cache is as it was before this step.")
    raise ImageBuildError(f"the build of image {name} on {host} ended without a result; see `nbmodal image ls`")


def _chunks(path):
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk
