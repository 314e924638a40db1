"""``nbmodal.call_graph``: Modal's ``FunctionCall.get_call_graph()`` types; not available yet.

Naming ``InputInfo`` or ``InputStatus`` works; building a call graph raises ``NotAvailableError``.
"""

from __future__ import annotations

import enum

from nbmodal._unavailable import _Unavailable


class InputStatus(enum.IntEnum):
    """The status of an input in a call graph, with Modal's values."""

    PENDING = 0
    SUCCESS = 1
    FAILURE = 2
    INIT_FAILURE = 3
    TERMINATED = 4
    TIMEOUT = 5


class InputInfo(_Unavailable):
    """One input of a call graph; call graphs are not available on nbmodal yet."""


__all__ = ["InputInfo", "InputStatus"]
