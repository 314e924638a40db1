"""``nbmodal.gpu``: Modal's deprecated GPU objects, accepted and turned into the string form.

Modal deprecated ``gpu=modal.gpu.A100(size="80GB", count=2)`` in favour of
``gpu="A100-80GB:2"``; code that still uses the objects runs here with a
``DeprecationError`` warning (a ``DeprecationWarning``) that shows the string to
write instead::

    @app.function(gpu=nbmodal.gpu.H100(count=2))     # warns; the same as gpu="H100:2"
    def train(): ...

``to_gpu_string`` is what ``gpu=`` uses to accept strings, these objects and
lists of either.
"""

from __future__ import annotations

import typing
import warnings

from nbmodal.exceptions import DeprecationError, InvalidError


class _GPUConfig:
    """One deprecated GPU object: a type name and a count, as ``str()`` spells it (``"A100-80GB:2"``)."""

    _type = ""

    def __init__(self, *, count: int = 1) -> None:
        self._init(self._type, count)

    def _init(self, type_name: str, count: int) -> None:
        if not isinstance(count, int) or count < 1:
            raise InvalidError(f"gpu.{type(self).__name__}(count={count!r}): count must be a whole number of "
                               f"at least 1")
        self.type_name = type_name
        self.count = count
        warnings.warn(f"nbmodal.gpu.{type(self).__name__}(...) is deprecated, as in Modal: "
                      f"write gpu={str(self)!r} instead", DeprecationError, stacklevel=3)

    def __str__(self) -> str:
        return self.type_name if self.count == 1 else f"{self.type_name}:{self.count}"

    def __repr__(self) -> str:
        return f"nbmodal.gpu.{type(self).__name__}({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _GPUConfig) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


class T4(_GPUConfig):
    """NVIDIA T4 (16 GB)."""

    _type = "T4"


class L4(_GPUConfig):
    """NVIDIA L4 (24 GB)."""

    _type = "L4"


class A10G(_GPUConfig):
    """NVIDIA A10G (24 GB)."""

    _type = "A10G"


class L40S(_GPUConfig):
    """NVIDIA L40S (48 GB)."""

    _type = "L40S"


class H100(_GPUConfig):
    """NVIDIA H100 (80 GB)."""

    _type = "H100"


class H200(_GPUConfig):
    """NVIDIA H200 (141 GB)."""

    _type = "H200"


class B200(_GPUConfig):
    """NVIDIA B200 (180 GB)."""

    _type = "B200"


class Any(_GPUConfig):
    """Any GPU the host has."""

    _type = "any"


class A100(_GPUConfig):
    """NVIDIA A100; ``size="40GB"`` (the default) or ``"80GB"``."""

    def __init__(self, *, size: str | None = None, count: int = 1) -> None:
        if size not in (None, "40GB", "80GB"):
            raise InvalidError(f"gpu.A100(size={size!r}): size is '40GB' or '80GB'")
        self._init(f"A100-{size}" if size else "A100", count)


def to_gpu_string(gpu: typing.Any) -> str:
    """``gpu=`` as the agent reads it: a string, a deprecated GPU object, or a list of either (fallbacks
    in order of preference) → ``"H100,A100-80GB:2"``; ``None`` → ``""``.

    Example::

        to_gpu_string(["H100", "A100-80GB"])   # "H100,A100-80GB"
    """
    if gpu is None:
        return ""
    if isinstance(gpu, (list, tuple)):
        return ",".join(to_gpu_string(option) for option in gpu)
    if isinstance(gpu, (str, _GPUConfig)):
        return str(gpu)
    raise InvalidError(f"gpu={gpu!r}: expected a GPU type name like 'H100' or 'A100-80GB:2' "
                       f"(or a list of them, in order of preference)")


__all__ = ["A10G", "A100", "Any", "B200", "H100", "H200", "L4", "L40S", "T4", "to_gpu_string"]
