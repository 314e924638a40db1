"""``cpu=`` and ``memory=`` as Modal takes them: a request, or ``(request, limit)``.

The request is what the agent reserves for the container (its cores pinned, its
memory counted against the host's); the limit is what the container may use at
most, enforced on the host (remote_agent/limits.py). A plain number is a
request without a limit, as before.

Example::

    split_cpu((1, 4))         # (1.0, 4.0): one core reserved, four at most
    split_memory(4096)        # (4096, 0): 4 GiB reserved, no limit
"""

from __future__ import annotations

import numbers

# Modal's types: ``cpu: Union[float, tuple[float, float]]``, ``memory: Union[int, tuple[int, int]]`` (MiB).
CpuRequest = float | tuple[float, float] | None
MemoryRequest = int | tuple[int, int] | None


def split_cpu(cpu: CpuRequest) -> tuple[float, float]:
    """``cpu=`` as (cores reserved, cores at most; 0 for no limit)."""
    request, limit = _split("cpu", cpu, "CPU cores", whole=False)
    return float(request), float(limit)


def split_memory(memory: MemoryRequest) -> tuple[int, int]:
    """``memory=`` as (MiB reserved, MiB at most; 0 for no limit)."""
    request, limit = _split("memory", memory, "MiB", whole=True)
    return int(request), int(limit)


def _split(keyword: str, value: object, unit: str, whole: bool) -> tuple[float, float]:
    if value is None:
        return 0, 0
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{keyword}= takes a number of {unit} or a (request, limit) pair, got {value!r}")
        request = _number(keyword, value[0], unit, whole)
        limit = _number(keyword, value[1], unit, whole)
        if limit <= 0:
            raise ValueError(f"{keyword}={value!r}: the limit must be more than 0 {unit}")
        if limit < request:
            raise ValueError(f"{keyword}={value!r}: the limit ({limit:g} {unit}) is below the request "
                             f"({request:g} {unit}); pass (request, limit) with limit >= request")
        return request, limit
    return _number(keyword, value, unit, whole), 0


def _number(keyword: str, value: object, unit: str, whole: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{keyword}= takes a number of {unit} or a (request, limit) pair of them, "
                        f"got {value!r} ({type(value).__name__})")
    number = float(value)
    if number < 0:
        raise ValueError(f"{keyword}= must not be negative, got {value!r}")
    if whole and not number.is_integer():
        raise ValueError(f"{keyword}= takes whole {unit}, got {value!r}")
    return number
