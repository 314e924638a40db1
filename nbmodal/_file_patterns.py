"""``FilePatternMatcher``: Modal's dockerignore-style matcher for ``ignore=`` of ``Image.add_local_*``.

Patterns are matched against a file's path relative to the directory being
added: ``*`` and ``?`` within one path segment, ``**`` across any number of
them, ``[abc]`` classes; a pattern that matches a directory matches
everything under it; ``!pattern`` re-includes what an earlier pattern
excluded (the last matching pattern wins, as in ``.dockerignore``)::

    image.add_local_dir("src", "/root/src", ignore=FilePatternMatcher("**/*.pyc", "!keep.pyc"))
    image.add_local_dir("data", "/data", ignore=~FilePatternMatcher("**/*.csv"))    # only the CSVs
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath


def _translate(pattern: str) -> re.Pattern[str]:
    """One dockerignore pattern as a regex over posix relative paths."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    return re.compile("".join(out))


class FilePatternMatcher:
    """Whether a path matches dockerignore-style patterns; ``~matcher`` matches the opposite.

    Example::

        matcher = FilePatternMatcher("*.pyc", "**/__pycache__")
        matcher(Path("pkg/__pycache__/m.cpython-311.pyc"))    # True
    """

    def __init__(self, *pattern: str) -> None:
        self.patterns: list[tuple[bool, re.Pattern[str]]] = []  # (excludes?, regex)
        for raw in pattern:
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            negated = text.startswith("!")
            text = os.path.normpath(text.removeprefix("!").strip()).replace(os.sep, "/").strip("/")
            self.patterns.append((not negated, _translate(text)))
        self._inverted = False

    @classmethod
    def from_file(cls, file_path: str | os.PathLike) -> FilePatternMatcher:
        """The patterns of a ``.dockerignore``-style file, one a line (``#`` comments).

        Example::

            FilePatternMatcher.from_file(".dockerignore")
        """
        return cls(*Path(file_path).read_text().splitlines())

    def _matches(self, path: PurePosixPath) -> bool:
        text = path.as_posix().strip("/")
        # A path matches where it, or a directory above it, matches: the last pattern to match wins.
        prefixes = ["/".join(path.parts[:n]) for n in range(1, len(path.parts))] + [text]
        matched = False
        for excludes, regex in self.patterns:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                matched = excludes
        return matched

    def __call__(self, file_path: str | os.PathLike) -> bool:
        matched = self._matches(PurePosixPath(Path(file_path).as_posix()))
        return not matched if self._inverted else matched

    def __invert__(self) -> FilePatternMatcher:
        inverted = FilePatternMatcher()
        inverted.patterns = list(self.patterns)
        inverted._inverted = not self._inverted
        return inverted

    def can_prune_directories(self) -> bool:
        """Whether a matched directory can be skipped whole: not when inverted or with ``!`` exceptions,
        where a file under it may still be wanted."""
        return not self._inverted and all(excludes for excludes, _ in self.patterns)

    def __repr__(self) -> str:
        return f"{'~' if self._inverted else ''}FilePatternMatcher({len(self.patterns)} patterns)"
