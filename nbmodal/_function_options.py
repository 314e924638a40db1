"""The keywords of ``@app.function`` and ``@app.cls``, declared once, with Modal's names and defaults.

``FUNCTION_OPTIONS`` lists every keyword Modal's ``App.function`` and
``App.cls`` take (and nbmodal's own ``host``), each with its status here:

- ``HONOURED``: it does on one's own hosts what it does on Modal; it is passed
  to ``Function`` (every honoured keyword is a parameter of ``Function.__init__``).
- ``NO_EFFECT``: it can't mean anything on one's own hosts (``region=``,
  ``cloud=``…); accepted, with one ``NoEffectWarning`` per process and keyword
  when it is set to anything but Modal's default.
- ``SAME_HERE``: what it asks for is how nbmodal always works
  (``include_source=``…); accepted silently.
- ``RENAMED``: Modal's deprecated spelling of another keyword
  (``keep_warm`` → ``min_containers``); honoured as the new one, with Modal's
  ``DeprecationError`` warning.
- ``NOT_AVAILABLE``: a feature nbmodal has not built yet
  (``network_file_systems=``); its default is accepted, any other value raises
  ``NotAvailableError`` at decoration.

``function_keywords`` checks a decorator's keywords against the table and
returns those ``Function`` takes; ``App.function``, ``App.cls`` and
``Cls.with_options`` all go through it, so a keyword is added here once::

    function_keywords({"gpu": "H100", "region": "us-east"}, where="App.function")
    # {"gpu": "H100"}, and one warning: region= has no effect on your own hosts
"""

from __future__ import annotations

import enum
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbmodal.exceptions import DeprecationError, NoEffectWarning, not_available


class Status(enum.Enum):
    HONOURED = "honoured"
    NO_EFFECT = "accepted without effect"
    SAME_HERE = "accepted: always so here"
    RENAMED = "deprecated spelling, honoured"
    NOT_AVAILABLE = "not available yet"


@dataclass(frozen=True)
class FunctionOption:
    """One keyword of ``@app.function`` / ``@app.cls``."""

    name: str
    status: Status
    modal_default: Any
    note: str                      # one line: what it does here (or why it doesn't)
    on_function: bool = True       # App.function takes it
    on_cls: bool = True            # App.cls takes it
    replaced_by: str = ""          # RENAMED: the keyword it is now

    def is_default(self, value: Any) -> bool:
        """Whether ``value`` asks for nothing beyond Modal's default (``None``, empty, or the default)."""
        if value is None or value is self.modal_default:
            return True
        if isinstance(value, (list, tuple, dict, set)) and not value:
            return True
        try:
            return bool(value == self.modal_default)
        except Exception:  # a value whose == raises or isn't a bool (an array) is not the default
            return False


H, NO, SAME, RENAMED, NA = Status.HONOURED, Status.NO_EFFECT, Status.SAME_HERE, Status.RENAMED, Status.NOT_AVAILABLE

FUNCTION_OPTIONS: tuple[FunctionOption, ...] = (
    FunctionOption("image", H, None, "the image its containers run in, built on the host at first use"),
    FunctionOption("gpu", H, None, "whole GPUs: a type, TYPE:COUNT, or a list of fallbacks; nbmodal.gpu objects too"),
    FunctionOption("cpu", H, None, "cores reserved (pinned), or (request, limit) with the limit enforced"),
    FunctionOption("memory", H, None, "MiB reserved, or (request, limit) with the limit enforced"),
    FunctionOption("volumes", H, {}, "{path: Volume or volume name} mounted in its containers"),
    FunctionOption("timeout", H, 300, "seconds an input may run (Modal's default, 300)"),
    FunctionOption("retries", H, None, "an int or nbmodal.Retries: failed inputs are retried with backoff"),
    FunctionOption("name", H, None, "its name in listings (default: the function's qualified name)",
                   on_cls=False),
    FunctionOption("min_containers", H, None, "containers kept up once it has run"),
    FunctionOption("max_containers", H, None, "containers a map uses at most at once"),
    FunctionOption("buffer_containers", H, None, "idle containers kept ready while it is in use"),
    FunctionOption("scaledown_window", H, None, "seconds an idle container stays warm"),
    FunctionOption("host", H, None, "nbmodal's own: the configured host to run on (`nbmodal host add`)"),
    FunctionOption("serialized", NO, False, "functions always travel by value, with cloudpickle, here"),
    FunctionOption("cloud", NO, None, "there is no cloud provider to choose: runs go to your hosts"),
    FunctionOption("region", NO, None, "there are no regions: runs go to your hosts, and host= picks one"),
    FunctionOption("proxy", NO, None, "containers use their host's own network"),
    FunctionOption("i6pn", NO, None, "containers use their host's own network", on_cls=False),
    FunctionOption("block_network", NO, False, "containers keep their host's network (not blocked)"),
    FunctionOption("restrict_modal_access", NO, False, "containers reach only their own agent's stores anyway"),
    FunctionOption("enable_memory_snapshot", NO, False,
                   "no snapshots; containers of an image fork from a pre-started interpreter instead"),
    FunctionOption("ephemeral_disk", NO, None, "containers write to their host's disk; no separate disk size"),
    FunctionOption("max_inputs", NO, None, "containers serve inputs until idle; single-use containers aren't built"),
    FunctionOption("experimental_options", NO, None, "Modal's experimental scheduler options"),
    FunctionOption("_experimental_scheduler_placement", NO, None, "Modal's scheduler placement"),
    FunctionOption("_experimental_proxy_ip", NO, None, "containers use their host's own network"),
    FunctionOption("_experimental_custom_scaling_factor", NO, None, "Modal's autoscaler factor"),
    FunctionOption("_experimental_enable_gpu_snapshot", NO, False, "no GPU memory snapshots"),
    FunctionOption("include_source", SAME, None, "a function's code and what it uses travel with each call"),
    FunctionOption("is_generator", SAME, None, "a generator is run with .remote_gen(), whatever returns it",
                   on_cls=False),
    FunctionOption("allow_cross_region_volumes", SAME, None, "volumes live on their host; no regions"),
    FunctionOption("keep_warm", RENAMED, None, "Modal's old name of min_containers", replaced_by="min_containers"),
    FunctionOption("concurrency_limit", RENAMED, None, "Modal's old name of max_containers",
                   replaced_by="max_containers"),
    FunctionOption("container_idle_timeout", RENAMED, None, "Modal's old name of scaledown_window",
                   replaced_by="scaledown_window"),
    FunctionOption("_experimental_buffer_containers", RENAMED, None, "Modal's old name of buffer_containers",
                   replaced_by="buffer_containers"),
    FunctionOption("allow_concurrent_inputs", RENAMED, None, "Modal's old spelling of @nbmodal.concurrent",
                   replaced_by="@nbmodal.concurrent(max_inputs=N)"),
    FunctionOption("schedule", H, None, "`nbmodal.Period` or `nbmodal.Cron`: run by the host's agent once the app "
                   "is deployed (a function not deployed only warns)", on_cls=False),
    FunctionOption("secrets", H, (), "nbmodal.Secret objects: environment variables of its containers"),
    FunctionOption("network_file_systems", NA, {}, "NetworkFileSystem is not available: use volumes="),
)

_BY_NAME = {option.name: option for option in FUNCTION_OPTIONS}

# The keyword Function takes for @concurrent's max_inputs, set from allow_concurrent_inputs.
CONCURRENT_INPUTS = "_concurrent_inputs"

_warned: set[str] = set()
_warned_lock = threading.Lock()


def option_names(*, on: str = "function") -> list[str]:
    """The keywords ``App.function`` (``on="function"``) or ``App.cls`` (``on="cls"``) takes."""
    return [o.name for o in FUNCTION_OPTIONS if (o.on_function if on == "function" else o.on_cls)]


def function_keywords(options: Mapping[str, Any], *, where: str, on: str = "function") -> dict[str, Any]:
    """``options`` as ``Function`` takes them: honoured keywords as given, deprecated spellings under their
    new names; keywords without effect warn once; an unavailable feature raises ``NotAvailableError``, and a
    keyword Modal doesn't take is a ``TypeError`` naming those it does.

    Example::

        function_keywords({"keep_warm": 1}, where="App.function")   # {"min_containers": 1}, a DeprecationError
    """
    keywords: dict[str, Any] = {}
    for key, value in options.items():
        option = _BY_NAME.get(key)
        if option is None or not (option.on_function if on == "function" else option.on_cls):
            raise TypeError(f"{where}() got an unexpected keyword argument {key!r}; it takes "
                            f"{', '.join(option_names(on=on))}")
        if option.status is H:
            if value is not None:  # Modal's None: Function's own default
                keywords[key] = value
        elif option.status is NO:
            if not option.is_default(value):
                warn_no_effect(key, option.note)
        elif option.status is RENAMED:
            if value is None:
                continue
            warnings.warn(f"{where}({key}=...) is deprecated, as in Modal: use {option.replaced_by} instead",
                          DeprecationError, stacklevel=3)
            if key == "allow_concurrent_inputs":
                keywords[CONCURRENT_INPUTS] = value
            else:
                keywords.setdefault(option.replaced_by, value)
        elif option.status is NA and not option.is_default(value):
            raise not_available(f"{where}({key}=...)", option.note)
    return keywords


def warn_no_effect(keyword: str, why: str) -> None:
    """One ``NoEffectWarning`` per process for ``keyword``: it has no effect on one's own hosts, and why."""
    with _warned_lock:
        if keyword in _warned:
            return
        _warned.add(keyword)
    spelled = keyword if keyword.endswith(")") else f"{keyword}="
    warnings.warn(f"{spelled} has no effect on your own hosts ({why}); accepted for Modal code",
                  NoEffectWarning, stacklevel=4)


def markdown_table() -> str:
    """The table as README markdown (a test checks the README's copy is current)."""
    rows = ["| Keyword | Modal default | Here | Note |", "|---|---|---|---|"]
    for option in FUNCTION_OPTIONS:
        where = "" if option.on_function and option.on_cls else (" (functions only)" if option.on_function
                                                                   else " (classes only)")
        note = option.note + (f"; now `{option.replaced_by}`" if option.replaced_by else "")
        rows.append(f"| `{option.name}`{where} | `{option.modal_default!r}` | {option.status.value} | {note} |")
    return "\n".join(rows)
