"""Shell lines in a ``%%remote`` cell: ``!cmd``, ``x = !cmd``, ``!!cmd`` and a leading ``%%bash``.

IPython rewrites these into calls of its own shell before running a cell; a ``%%remote`` cell is
rewritten here, in the notebook, into calls that the container runs (the builtin ``_nbmodal_shell``,
``remote_agent/worker/shell_lines.py``), one line for one line so that tracebacks keep the cell's
line numbers. The variables a command line mentions (``!ls {path}``, ``!echo $name``) are named in
the rewritten call, so the notebook sends them with the cell like any other name the cell reads.

    >>> transform_cell("files = !ls {data_dir}")
    "files = _nbmodal_shell.getoutput('ls {data_dir}', lambda: (data_dir,))"

Lines inside strings and bracketed continuations are left alone. A line magic (``%cd``) or another
cell magic has no meaning in a container and is refused with what to write instead.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize

from nbmodal.exceptions import InvalidError
from nbmodal_wire.shell_lines import command_fields

SHELL = "_nbmodal_shell"  # the builtin the container gives cells

# `%%bash` and its kin as the first line of the cell: the interpreter each runs the body with.
_CELL_MAGICS = {"bash": "bash", "sh": "sh"}
_ESCAPE = re.compile(r"^(?P<indent>\s*)(?P<bang>!!?)(?P<command>.*)$")
_ASSIGN = re.compile(r"^(?P<indent>\s*)(?P<lhs>[\w.]+(?:\s*,\s*[\w.]+)*)\s*=\s*!(?P<command>.*)$")
_MAGIC = re.compile(r"^\s*%(?P<name>\w+)")


def transform_cell(cell: str) -> str:
    """``cell`` with its shell lines as Python calls (unchanged when it has none), same line count."""
    lines = cell.split("\n")
    first = lines[0].strip()
    if first.startswith("%%"):
        return _cell_magic(first, lines)
    if not any(_ESCAPE.match(line) or _ASSIGN.match(line) or _MAGIC.match(line) for line in lines):
        return cell
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        escape, assign = _ESCAPE.match(line), _ASSIGN.match(line)
        magic = _MAGIC.match(line)
        if not (escape or assign or magic) or not _at_statement_start(out):
            out.append(line)
            continue
        if magic and not (escape or assign):
            raise InvalidError(
                f"line {index} of the %%remote cell is the line magic %{magic.group('name')}, which runs in "
                f"the notebook, not in a container. Write it in Python (os.chdir, os.environ, time.perf_counter…) "
                f"or as a shell line (!cmd), or run it in a cell of its own.")
        match = assign or escape
        assert match is not None
        command, used = match.group("command"), 1
        while command.rstrip().endswith("\\") and index < len(lines):  # `!cmd \` continues, as in IPython
            command = command.rstrip()[:-1].rstrip() + " " + lines[index].strip()
            index += 1
            used += 1
        call = _call(command.strip(), "system" if escape and match.group("bang") == "!" else "getoutput")
        out.append(f"{match.group('indent')}{match.group('lhs')} = {call}" if assign else match.group("indent") + call)
        out.extend([""] * (used - 1))  # continuation lines become blank: later lines keep their numbers
    return "\n".join(out)


def _cell_magic(first: str, lines: list[str]) -> str:
    name, _, args = first[2:].partition(" ")
    if name == "script" and args.strip():
        interpreter = args.strip()
    elif name in _CELL_MAGICS and not args.strip():
        interpreter = _CELL_MAGICS[name]
    else:
        raise InvalidError(
            f"%%remote can run a %%bash, %%sh or %%script COMMAND body in the container, not {first!r}: "
            f"write it as Python or as !cmd lines.")
    body = "\n".join(lines[1:])
    if body and not body.endswith("\n"):
        body += "\n"
    # One line for the call, then blank lines, so that the cell keeps its line count.
    return f"{SHELL}.cell({interpreter!r}, {body!r})" + "\n" * (len(lines) - 1)


def _call(command: str, method: str) -> str:
    names = referenced_names(command)
    references = f", lambda: ({', '.join(names)},)" if names else ""
    return f"{SHELL}.{method}({command!r}{references})"


def referenced_names(command: str) -> list[str]:
    """The variables ``{expr}`` and ``$name`` fields of ``command`` read, in order (none if it isn't
    a format string: then it runs as written)."""
    names: dict[str, None] = {}
    try:
        fields = [field for _, field, _, _ in command_fields(command) if field is not None]
    except ValueError:
        return []
    for field in fields:
        try:
            tree = ast.parse(field.strip(), mode="eval")
        except SyntaxError:
            continue  # shell syntax, not a field ({print $1}): it stays as written
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                names.setdefault(node.id, None)
    return list(names)


def _at_statement_start(previous_lines: list[str]) -> bool:
    """Whether the next line starts a statement: not inside a string or brackets opened above it."""
    if not previous_lines:
        return True
    source = "\n".join(previous_lines) + "\n"
    try:
        for _ in tokenize.generate_tokens(io.StringIO(source).readline):
            pass
    except (tokenize.TokenError, SyntaxError):
        return False  # an unterminated string or bracket: the line continues it
    return not source.rstrip("\n").endswith("\\")
