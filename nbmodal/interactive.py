"""``nbmodal.interact()``: Modal's way to let remote code read the user's input.

In nbmodal a container's stdin always reaches the notebook (or the terminal of ``nbmodal attach``):
``input()``, ``breakpoint()`` and ``pdb.set_trace()`` in remote code are answered there, so
``interact()`` has nothing to switch on. It exists so that Modal code runs unchanged, and it says
where the answers will come from.

Example::

    @app.function()
    def ask():
        nbmodal.interact()
        return input("your number: ")   # answered in the notebook's input box
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def interact() -> None:
    """Make this container's stdin interactive (it already is: answers come from the notebook).

    Outside a container it does nothing: local code reads this process's own stdin.

    Example::

        nbmodal.interact()
        name = input("name? ")
    """
    from nbmodal._runtime.context import is_local

    if not is_local():
        log.debug("interact(): this container's stdin is answered from the notebook or `nbmodal attach`")
