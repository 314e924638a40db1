"""``retries=`` for single calls (``.remote()``, a spawned call's ``.get()``), with a map's backoff.

A failed attempt is run again after ``Retries.delay(n)`` seconds while retries
remain: the user's exception, a timeout, and a run whose container died (the
host killed it: preemption, out of memory) are retried. What no retry can
change is raised at once: an interrupt or cancel, a request the agent refuses
(no such GPU, a bad image, a refused launch), a value that can't be sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from nbmodal.exceptions import (
    AgentError,
    CaptureError,
    ImageBuildError,
    ImageDefinitionError,
    ResourcesUnavailableError,
    SlurmJobError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures that say the request itself can't be met: running it again changes nothing.
NOT_RETRIED: tuple[type[BaseException], ...] = (
    CaptureError, ResourcesUnavailableError, ImageBuildError, ImageDefinitionError, SlurmJobError, AgentError)


def retryable(exc: BaseException) -> bool:
    """Whether a failed attempt may succeed when run again."""
    return isinstance(exc, Exception) and not isinstance(exc, NOT_RETRIED)


def call_with_retries(attempt: Callable[[], T], retries, label: str,
                      on_retry: Callable[[str], None] | None = None) -> T:
    """``attempt()``, run again after each backoff of ``retries`` (an ``nbmodal.Retries``) while it fails
    with a retryable error; the last failure is raised. ``on_retry`` hears why (the caller's sink)."""
    tries = 0
    while True:
        try:
            return attempt()
        except Exception as exc:
            tries += 1
            if tries > retries.max_retries or not retryable(exc):
                raise
            delay = retries.delay(tries)
            message = (f"{label} failed ({type(exc).__name__}: {exc}); retry {tries} of {retries.max_retries}"
                       f"{f' in {delay:g} s' if delay else ''}")
            log.info("%s", message)
            if on_retry is not None:
                on_retry(message)
            time.sleep(delay)
