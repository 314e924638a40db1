"""IPython magics: thin sugar over the Python API.

``%%remote [--detach] [key=value …]`` runs the cell on the agent; its options are declared once, in
``nbmodal._remote_options``. ``%nbmodal VERB …`` (and ``%volume …``) run the verbs of the ``nbmodal``
command, parsed by the same parser (``nbmodal._cli``); only where their output goes differs.
"""

from __future__ import annotations

import argparse
import functools
import shlex
from pathlib import Path
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from nbmodal._remote_options import DETACH_HELP, cell_options, options_help
from nbmodal.cell_transforms import keep_remote_transforms
from nbmodal.output import default_sink
from nbmodal.remote_cell import run_cell

__all__ = ["RemoteMagics", "run_magic_verb"]


class _HelpShown(Exception):
    """``-h`` printed a parser's help: the magic is done."""


class _MagicArgumentParser(argparse.ArgumentParser):
    """argparse for a line magic: a mistake is a UsageError, ``-h`` prints the help into the cell.

    A plain ArgumentParser calls sys.exit, which a kernel would show as a SystemExit traceback.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().rstrip()}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise UsageError(message.strip())
        raise _HelpShown


@functools.cache
def _verb_parser() -> argparse.ArgumentParser:
    from nbmodal._cli import build_parser

    return build_parser("%nbmodal", parser_class=_MagicArgumentParser)


def run_magic_verb(words: list[str], shell: Any) -> Any:
    """Parse ``words`` as the ``nbmodal`` command would and run the verb, its output going to the cell.

    Returns the verb's result (``attach``: a function run's return value, or a cell's display).
    """
    from nbmodal._cli import Console, run_verb

    try:
        args = _verb_parser().parse_args(words)
    except _HelpShown:
        return None
    return run_verb(args, Console(sink=default_sink(), shell=shell))


def _split(magic: str, line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{magic}: {exc}") from None


@magics_class
class RemoteMagics(Magics):
    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        if shell is not None:
            keep_remote_transforms(shell)  # IPython's rewrite of a %%remote cell, once per source

    @magic_arguments()
    @argument("--detach", action="store_true", help=DETACH_HELP)
    @argument("options", nargs="*", help=options_help().replace("%", "%%"))  # argparse %-formats help
    @no_var_expand  # expanded below, only when the line has something to expand
    @cell_magic
    def remote(self, line: str, cell: str):
        """Run this cell on the nbmodal agent, with the notebook variables it reads.

        Example::

            %%remote session=train timeout=600
            model = fit(data)
        """
        if "$" in line or "{" in line or "}" in line:
            # $name and {expr} as IPython expands a magic's line (it copies the whole namespace to do it:
            # a cost every warm cell would pay for nothing); depth 3 looks where run_cell_magic's 2 does.
            assert self.shell is not None
            line = self.shell.var_expand(line, 3)
        tokens, detach = self._remote_line(line)
        options = cell_options(tokens, detach)
        if options.image:
            options.image = self._image_named(options.image, "%%remote")
        if options.map:
            source = options.map[1]
            if source not in self._user_ns:
                raise UsageError(f"%%remote: map={options.map[0]}:{source}: the notebook has no {source!r}")
            try:
                iter(self._user_ns[source])
            except TypeError:
                raise UsageError(f"%%remote: map=...:{source}: {source} is a "
                                 f"{type(self._user_ns[source]).__name__}, not a list of values") from None
            if options.session or options.detach:
                raise UsageError("%%remote: map= runs many containers at once: it can't use session= or --detach")
        return run_cell(self.shell, cell, options)

    @functools.lru_cache(maxsize=64)  # noqa: B019  (one magics object per shell; a few distinct lines)
    def _remote_line(self, line: str) -> tuple[tuple[str, ...], bool]:
        # The same line parsed once: argparse costs a warm empty cell a fair share of its local overhead.
        args = parse_argstring(self.remote, line)
        return tuple(args.options), args.detach

    @property
    def _user_ns(self) -> dict[str, Any]:
        """The notebook's namespace (a registered magic always has its shell)."""
        assert self.shell is not None
        return self.shell.user_ns

    def _image_named(self, name: str, magic: str):
        from nbmodal._runtime.images import named_images
        from nbmodal.image import Image

        value = self._user_ns.get(name)
        if isinstance(value, Image):
            return value
        if name in named_images:
            return named_images[name]
        known = sorted(set(named_images) | {k for k, v in self._user_ns.items()
                                             if isinstance(v, Image) and not k.startswith("_")})
        raise UsageError(f"{magic}: image={name!r} is neither an image defined with %%image nor a notebook variable "
                         f"holding an nbmodal.Image" + (f" (images here: {', '.join(known)})" if known else
                                                         "; define one with a %%image cell first"))

    @magic_arguments()
    @argument("name", help="the image's name (also a notebook variable holding it)")
    @argument("options", nargs="*", help="host=NAME: build it on this host now (default: the local agent), "
                                         "build=no: only define it")
    @cell_magic
    def image(self, line: str, cell: str):
        """Define an image, one step per line, and build it now with its log shown live.

        Example::

            %%image torch
            python 3.11
            pip torch==2.5 numpy
            env HF_HOME=/root/.cache/hf
            preload torch
        """
        from nbmodal._runtime.images import named_images
        from nbmodal.exceptions import ImageDefinitionError
        from nbmodal.image import parse_image_cell

        args = parse_argstring(self.image, line)
        if not args.name.isidentifier():
            raise UsageError(f"%%image: the name {args.name!r} must be a Python identifier, like torch_env")
        host, build = "", True
        for token in args.options:
            key, _, value = token.partition("=")
            if key == "host" and value:
                host = value
            elif key == "build" and value in ("no", "yes"):
                build = value == "yes"
            else:
                raise UsageError(f"%%image: unknown option {token!r} (host=NAME, build=no)")
        try:
            image = parse_image_cell(args.name, cell, Path.cwd())
        except ImageDefinitionError as exc:
            raise UsageError(str(exc)) from None
        image.name = args.name
        named_images[args.name] = image
        self._user_ns[args.name] = image
        if build:
            from nbmodal._runtime.connection import place
            from nbmodal._runtime.images import ensure_built

            target = place(host, spec=None)
            ensure_built(image, target, default_sink())
        return None

    @line_magic("image")  # type: ignore[arg-type]  # IPython's stubs don't type a named line_magic
    def image_line(self, line: str):
        """%image NAME: the image's steps and its build state on each host."""
        words = shlex.split(line)
        if len(words) != 1:
            raise UsageError("%image NAME (see %nbmodal image ls for every image)")
        image = self._image_named(words[0], "%image")
        from nbmodal._runtime.images import built_on

        print(repr(image))
        states = built_on(image)
        print("\n".join(f"built on {host}: {image_id[:12]}" for host, image_id in states) or
              "not built from this kernel yet (it builds on first use, or run its %%image cell)")

    @line_magic
    def volume(self, line: str):
        """%volume create|list|ls|put|get|rm|delete NAME …  (as `nbmodal volume`; `%volume -h` for help)."""
        return run_magic_verb(["volume", *_split("%volume", line)], self.shell)

    @line_magic
    def nbmodal(self, line: str):
        """Manage runs, sessions, containers, GPUs, hosts, the agent, Dicts, Queues and images.

        The verbs and options of the `nbmodal` command, e.g. `%nbmodal runs --host gpu1 -n 5`,
        `%nbmodal logs RUN_ID -f`, `%nbmodal attach RUN_ID` (loads the run's results here),
        `%nbmodal stop RUN_ID_OR_SESSION`. `%nbmodal -h` lists them all; `%nbmodal VERB -h` explains one.
        """
        return run_magic_verb(_split("%nbmodal", line), self.shell)
