"""Shell lines of ``%%remote`` cells, the parts both sides need: fields of a command line, ``SList``.

``command_fields`` splits a command line into its text and its ``{expr}``/``$name`` fields, as
IPython's formatter does: the notebook reads it for the names to send with the cell
(``nbmodal/shell_escapes.py``), the container to fill the fields in (``remote_agent/worker/shell_lines.py``).
``SList`` is the list of lines that ``files = !ls`` gives, as IPython's: made in the container and
pickled back to the notebook, which unpickles it without importing the agent's code.

    >>> files = SList(["a.txt", "b.csv"])
    >>> files.s, files.grep("csv")
    ('a.txt b.csv', ['b.csv'])
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Callable, Iterator
from string import Formatter
from typing import Any

# IPython's DollarFormatter: $name or $obj.attr (not inside single quotes); $$ is a literal $.
_DOLLAR = re.compile(r"(.*?)\$(\$?[\w\.]+)(?=([^']*'[^']*')*[^']*$)")


def command_fields(command: str) -> Iterator[tuple[str, str | None, str, str | None]]:
    """(literal text, field expression or None, format spec, conversion) for each piece of ``command``.

    Raises ValueError where ``command`` isn't a format string (an unmatched brace): it is then run as written.
    """
    for literal, field, spec, conversion in Formatter().parse(command):
        carried, end = "", 0
        for match in _DOLLAR.finditer(literal):
            text, name = match.group(1, 2)
            if name.startswith("$"):
                carried += text + name
            else:
                yield carried + text, name, "", None
                carried = ""
            end = match.end()
        yield carried + literal[end:], field, spec or "", conversion


class SList(list):
    """A list of strings with IPython's shortcuts: ``.s``, ``.n``, ``.p``, ``.l``, ``grep``, ``fields``."""

    @property
    def l(self) -> list:  # noqa: E743  (IPython's name)
        """A plain list."""
        return list(self)

    list = l

    @property
    def s(self) -> str:
        """The lines joined by spaces (for the next command line)."""
        return " ".join(self)

    spstr = s

    @property
    def n(self) -> str:
        """The lines joined by newlines."""
        return "\n".join(self)

    nlstr = n

    @property
    def p(self) -> builtins.list[str]:
        """The lines that name existing paths."""
        return [line for line in self if os.path.exists(line)]

    paths = p

    def grep(self, pattern: str | Callable[[str], Any], prune: bool = False, field: int | None = None) -> SList:
        """Lines matching ``pattern`` (a regex or a predicate), or, with ``prune``, those not matching;
        ``field`` matches against that whitespace-separated field only."""
        match = pattern if callable(pattern) else re.compile(pattern, re.IGNORECASE).search

        def matches(line: str) -> bool:
            if field is not None:
                parts = line.split()
                if not -len(parts) <= field < len(parts):
                    return False
                line = parts[field]
            return bool(match(line))

        return SList(line for line in self if matches(line) != prune)

    def fields(self, *fields: int) -> SList:
        """Whitespace-separated fields of each line: one field alone, several joined by a space."""
        if not fields:
            return SList(line.split() for line in self)
        picked = SList()
        for line in self:
            parts = line.split()
            chosen = [parts[f] for f in fields if -len(parts) <= f < len(parts)]
            if chosen:
                picked.append(" ".join(chosen))
        return picked
