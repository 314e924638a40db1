"""The ``%%image NAME`` cell: an image defined one step a line.

    %%image train
    python 3.11
    pip torch==2.5 numpy --index-url https://download.pytorch.org/whl/cu124
    requirements requirements.txt
    env HF_HOME=/cache TOKENIZERS_PARALLELISM=false
    workdir /app
    add data /app/data          # copy=False: put in place at container start
    add setup.sh /app/setup.sh --copy
    run bash /app/setup.sh
    preload torch

``#`` starts a comment (except in ``run`` lines, which go to the shell
verbatim); arguments are split as a shell would (quotes work). Relative local
paths are relative to the notebook's directory (``base_dir``). Line numbers
count from the first line after ``%%image NAME``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nbmodal.exceptions import ImageDefinitionError
from nbmodal.image import Image

_PIP_OPTIONS = "[--index-url URL] [--extra-index-url URL] [--find-links DIR] [--no-index] [--pre]"

# keyword -> the form it expects, for error messages.
USAGE = {
    "python": "python VERSION (the first step)",
    "pip": f"pip PACKAGE... {_PIP_OPTIONS}",
    "requirements": f"requirements FILE {_PIP_OPTIONS}",
    "pyproject": f"pyproject FILE [GROUP...] {_PIP_OPTIONS}",
    "run": "run COMMAND",
    "env": "env NAME=VALUE...",
    "workdir": "workdir /ABSOLUTE/PATH",
    "add": "add LOCAL REMOTE [--copy] [--ignore PATTERN]...",
    "apt": "apt PACKAGE...",
    "preload": "preload MODULE...",
}


class _LineError(Exception):
    """What's wrong with one line; parse_image_cell adds which line."""


def parse_image_cell(name: str, text: str, base_dir: Path) -> Image:
    """The ``Image`` a ``%%image NAME`` cell defines; each step's text is ``"line N: ..."``.

    Raises ``ImageDefinitionError`` starting ``"%%image NAME, line N: 'the line': "``.

    Example::

        image = parse_image_cell("web", "python 3.11\\npip fastapi uvicorn", Path.cwd())
    """
    image: Image | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, rest = (line.split(None, 1) + [""])[:2]
        label = f"line {number}: {line}"
        try:
            if keyword == "python":
                if image is not None:
                    raise _LineError("python must be the first step (the image starts from it)")
                image = Image.debian_slim(_one(_split(rest), "VERSION", keyword))._relabeled(None, label)
                continue
            handler = _HANDLERS.get(keyword)
            if handler is None:
                raise _LineError(f"unknown keyword {keyword!r}; expected one of: {', '.join(USAGE)}")
            if image is None:
                image = Image.debian_slim()  # the agent's own Python
            image = handler(image, rest.strip(), base_dir)._relabeled(image, label)
        except (_LineError, ImageDefinitionError) as exc:
            raise ImageDefinitionError(f"%%image {name}, line {number}: {line!r}: {exc}") from None
    image = image or Image.debian_slim()
    image.name = name
    return image


# -- one handler per keyword: (image, rest of the line, base_dir) -> image ------------


def _split(rest: str) -> list[str]:
    try:
        return shlex.split(rest, comments=True)
    except ValueError as exc:  # an unclosed quote
        raise _LineError(f"can't split the arguments: {exc}") from None


def _one(args: list[str], what: str, keyword: str) -> str:
    if len(args) != 1:
        raise _LineError(f"expected one {what}: {USAGE[keyword]}")
    return args[0]


def _local(base_dir: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(base_dir) / path


def _pip_args(keyword: str, rest: str, base_dir: Path) -> tuple[list[str], dict]:
    """Positional arguments and pip_install's keyword options from a pip-like line."""
    args: list[str] = []
    options: dict[str, Any] = {}
    tokens = _split(rest)
    flags = {"--index-url": "index_url", "--extra-index-url": "extra_index_url", "--find-links": "find_links"}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, eq, value = token.partition("=")
        if token == "--pre":
            options["pre"] = True
        elif token == "--no-index":  # only find-links (an offline wheelhouse)
            options["extra_options"] = (options.get("extra_options", "") + " --no-index").strip()
        elif flag in flags:
            if not eq:
                if i + 1 >= len(tokens):
                    raise _LineError(f"{flag} needs a value: {USAGE[keyword]}")
                i += 1
                value = tokens[i]
            if flag == "--find-links" and "://" not in value:
                value = str(_local(base_dir, value))
            options[flags[flag]] = value
        elif token.startswith("-"):
            raise _LineError(f"unknown option {token!r}; expected: {USAGE[keyword]}")
        else:
            args.append(token)
        i += 1
    return args, options


def _pip(image: Image, rest: str, base_dir: Path) -> Image:
    packages, options = _pip_args("pip", rest, base_dir)
    if not packages:
        raise _LineError(f"expected at least one package: {USAGE['pip']}")
    return image.pip_install(*packages, **options)


def _existing_file(base_dir: Path, value: str) -> Path:
    path = _local(base_dir, value)
    if not path.is_file():
        raise _LineError(f"no file {str(path)!r} (relative paths are relative to {str(base_dir)!r})")
    return path


def _requirements(image: Image, rest: str, base_dir: Path) -> Image:
    args, options = _pip_args("requirements", rest, base_dir)
    path = _existing_file(base_dir, _one(args, "FILE", "requirements"))
    return image.pip_install_from_requirements(path, **options)


def _pyproject(image: Image, rest: str, base_dir: Path) -> Image:
    args, options = _pip_args("pyproject", rest, base_dir)
    if not args:
        raise _LineError(f"expected a file: {USAGE['pyproject']}")
    path = _existing_file(base_dir, args[0])
    return image.pip_install_from_pyproject(path, args[1:], **options)


def _run(image: Image, rest: str, base_dir: Path) -> Image:
    if not rest:
        raise _LineError(f"expected a command: {USAGE['run']}")
    return image.run_commands(rest)  # verbatim: the shell splits it


def _env(image: Image, rest: str, base_dir: Path) -> Image:
    variables = {}
    for token in _split(rest):
        key, eq, value = token.partition("=")
        if not eq or not key:
            raise _LineError(f"{token!r} is not NAME=VALUE: {USAGE['env']}")
        variables[key] = value
    if not variables:
        raise _LineError(f"expected at least one variable: {USAGE['env']}")
    return image.env(variables)


def _workdir(image: Image, rest: str, base_dir: Path) -> Image:
    path = _one(_split(rest), "path", "workdir")
    if not path.startswith("/"):
        raise _LineError(f"{path!r} is relative; expected an absolute path: {USAGE['workdir']}")
    return image.workdir(path)


def _add(image: Image, rest: str, base_dir: Path) -> Image:
    tokens, paths, ignore, copy = _split(rest), [], [], False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--copy":
            copy = True
        elif token == "--ignore" or token.startswith("--ignore="):
            if "=" in token:
                ignore.append(token.partition("=")[2])
            elif i + 1 < len(tokens):
                i += 1
                ignore.append(tokens[i])
            else:
                raise _LineError(f"--ignore needs a pattern: {USAGE['add']}")
        elif token.startswith("--"):
            raise _LineError(f"unknown option {token!r}; expected: {USAGE['add']}")
        else:
            paths.append(token)
        i += 1
    if len(paths) != 2:
        raise _LineError(f"expected LOCAL and REMOTE: {USAGE['add']}")
    local, remote = _local(base_dir, paths[0]), paths[1]
    if local.is_dir():
        return image.add_local_dir(local, remote, copy=copy, ignore=ignore)
    if local.is_file():
        if ignore:
            raise _LineError(f"--ignore applies to directories; {str(local)!r} is a file")
        return image.add_local_file(local, remote, copy=copy)
    raise _LineError(f"no file or directory {str(local)!r} (relative paths are relative to {str(base_dir)!r})")


def _apt(image: Image, rest: str, base_dir: Path) -> Image:
    packages = _split(rest)
    if not packages:
        raise _LineError(f"expected at least one package: {USAGE['apt']}")
    return image.apt_install(*packages)


def _preload(image: Image, rest: str, base_dir: Path) -> Image:
    modules = _split(rest)
    if not modules:
        raise _LineError(f"expected at least one module: {USAGE['preload']}")
    return image.preload(*modules)


_HANDLERS: dict[str, Callable[[Image, str, Path], Image]] = {
    "pip": _pip, "requirements": _requirements, "pyproject": _pyproject, "run": _run, "env": _env,
    "workdir": _workdir, "add": _add, "apt": _apt, "preload": _preload,
}
