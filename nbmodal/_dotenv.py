"""Reading ``.env`` files, as python-dotenv reads them, with errors that name the line.

``KEY=VALUE`` per line; ``export KEY=VALUE`` too; values may be quoted ('single': taken as is,
"double": with ``\\n``, ``\\t``, ``\\"`` and ``\\\\`` escapes); ``#`` starts a comment on its own line or, after
whitespace, after an unquoted value; blank lines are skipped; a bare ``KEY`` has no value and is left out.

    >>> parse_dotenv('A=1\\nexport B="two words"  # note\\n')
    {'A': '1', 'B': 'two words'}
"""

from __future__ import annotations

import re
from pathlib import Path

from nbmodal.exceptions import InvalidError

_LINE = re.compile(r"^\s*(?:export\s+)?(?P<key>[^=\s]+)\s*(?:=\s*(?P<value>.*?))?\s*$")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


class DotenvError(InvalidError, ValueError):
    """A ``.env`` line that can't be read; the message names the file and line."""


def parse_dotenv(text: str, source: str = ".env") -> dict[str, str]:
    """The variables ``text`` (a ``.env`` file's content) sets; ``source`` names it in errors."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None or not _KEY.fullmatch(match.group("key")):
            raise DotenvError(f"{source}, line {number}: can't read {line.strip()!r}; expected KEY=VALUE "
                              f"(a KEY of letters, digits and '_', not starting with a digit)")
        key, raw = match.group("key"), match.group("value")
        if raw is None:
            continue  # a bare KEY: no value, left out as python-dotenv leaves it out of the environment
        start = number
        if raw[:1] in ("'", '"'):
            quote = raw[0]
            # A quoted value may go on over several lines, until its closing quote.
            while not _closed(raw, quote):
                if number >= len(lines):
                    raise DotenvError(f"{source}, line {start}: the {quote} quote of {key} is never closed")
                raw += "\n" + lines[number]
                number += 1
            values[key] = _quoted(raw, quote, source, start, key)
        else:
            values[key] = re.split(r"\s+#", raw, maxsplit=1)[0].strip()
    return values


def _closed(raw: str, quote: str) -> bool:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return True
        index += 1
    return False


def _quoted(raw: str, quote: str, source: str, number: int, key: str) -> str:
    out: list[str] = []
    index = 1
    while index < len(raw):
        char = raw[index]
        if char == "\\" and quote == '"' and index + 1 < len(raw):
            nxt = raw[index + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            index += 2
            continue
        if char == quote:
            rest = raw[index + 1:].strip()
            if rest and not rest.startswith("#"):
                raise DotenvError(f"{source}, line {number}: unexpected {rest!r} after the quoted value of {key}")
            return "".join(out)
        out.append(char)
        index += 1
    raise DotenvError(f"{source}, line {number}: the {quote} quote of {key} is never closed")


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables of the ``.env`` file at ``path``; a missing file is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DotenvError(f"can't read the .env file {str(path)!r}: {exc.strerror or exc}") from None
    return parse_dotenv(text, str(path))


def find_dotenv(start: Path, filename: str = ".env") -> Path | None:
    """The first ``filename`` in ``start`` (a directory, or a file's directory) or a directory above it."""
    directory = start if start.is_dir() else start.parent
    for candidate in (directory, *directory.parents):
        if (candidate / filename).is_file():
            return candidate / filename
    return None
