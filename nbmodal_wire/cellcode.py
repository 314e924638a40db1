"""Static analysis of a cell's source: which names it reads and assigns.

Shared by the notebook client (which captures the names a cell reads) and the
container (which sends back the names a cell assigns). Pure ``ast``, no
imports of IPython, so it runs on bare hosts.
"""

from __future__ import annotations

import ast
import symtable
from collections import deque
from collections.abc import Iterable


def parse_cell(code: str, filename: str = "<cell>", first_line: int = 1) -> ast.Module:
    """Parse cell source, numbering lines as they appear in the notebook cell."""
    tree = ast.parse(code, filename=filename)
    if first_line != 1:
        ast.increment_lineno(tree, first_line - 1)
    return tree


def names_read(code: str) -> list[str]:
    """Free names the cell reads from the notebook, in order of first use.

    At the top level a name counts when a statement reads it before any
    earlier statement bound it. Inside functions, lambdas, classes and
    comprehensions, a name counts when it resolves to a global that the cell
    itself doesn't bind (their parameters and locals never count).
    """
    tree = ast.parse(code)
    bound: set[str] = set()
    read: dict[str, None] = {}
    for stmt in tree.body:
        for name in _names_loaded_in_scope(stmt):
            if name not in bound:
                read.setdefault(name, None)
        bound.update(_bound_names(stmt))
    for name in _globals_read_by_nested_scopes(symtable.symtable(code, "<cell>", "exec")):
        if name not in bound:
            read.setdefault(name, None)
    return list(read)


def names_assigned(tree: ast.Module) -> list[str]:
    """Names bound at the top level of the cell, in order of first binding."""
    out: dict[str, None] = {}
    for stmt in tree.body:
        for name in _bound_names(stmt):
            out.setdefault(name, None)
    return list(out)


def split_last_expression(tree: ast.Module) -> tuple[ast.Module, ast.Expression | None]:
    """Separate a trailing expression statement, whose value a cell displays."""
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        body = ast.Module(body=tree.body[:-1], type_ignores=tree.type_ignores)
        return body, ast.Expression(body=last.value)
    return tree, None


_NESTED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                  ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _names_loaded_in_scope(node: ast.AST) -> Iterable[str]:
    """Names loaded by code that runs in the cell's own (module) scope, in source order."""
    queue = deque([node])
    while queue:
        child = queue.popleft()
        if isinstance(child, ast.Name):
            if isinstance(child.ctx, (ast.Load, ast.Del)):
                yield child.id
        elif isinstance(child, ast.AugAssign) and isinstance(child.target, ast.Name):
            yield child.target.id  # x += 1 reads x first
        if isinstance(child, _NESTED_SCOPES):
            # Only the parts evaluated where the scope is defined run here.
            queue.extend(_parts_evaluated_outside(child))
            continue
        queue.extend(ast.iter_child_nodes(child))


def _parts_evaluated_outside(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        return [*node.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d)]
    if isinstance(node, ast.Lambda):
        return [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *node.keywords]
    return [node.generators[0].iter]  # type: ignore[attr-defined]  # a comprehension's first iterable


def _globals_read_by_nested_scopes(table: symtable.SymbolTable) -> Iterable[str]:
    for child in table.get_children():
        for symbol in child.get_symbols():
            if symbol.is_referenced() and symbol.is_global():
                yield symbol.get_name()
        yield from _globals_read_by_nested_scopes(child)


def _bound_names(stmt: ast.stmt) -> Iterable[str]:
    """Names a top-level statement binds in the module namespace."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield stmt.name
        return
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        for alias in stmt.names:
            if alias.name != "*":
                yield alias.asname or alias.name.split(".")[0]
        return
    # Walk the statement but not into nested scopes, whose bindings are local.
    queue = deque([stmt])
    while queue:
        node = queue.popleft()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            yield node.id
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
            continue
        elif isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            continue
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            yield from _bound_names(node)
            continue
        elif isinstance(node, ast.ExceptHandler) and node.name:
            yield node.name
        elif isinstance(node, ast.MatchAs) and node.name:
            yield node.name
        elif isinstance(node, ast.MatchStar) and node.name:
            yield node.name
        elif isinstance(node, ast.MatchMapping) and node.rest:
            yield node.rest
        elif isinstance(node, ast.Global):
            yield from node.names
        queue.extend(ast.iter_child_nodes(node))  # type: ignore[arg-type]
