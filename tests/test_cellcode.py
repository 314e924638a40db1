"""Which names a cell reads and assigns (pure logic)."""

import pytest

from nbmodal_wire.cellcode import names_assigned, names_read, parse_cell, split_last_expression

pytestmark = pytest.mark.unit


def test_reads_free_names_in_order_and_skips_names_bound_earlier():
    assert names_read("y = f(x)\nz = y + w\nprint(z)") == ["f", "x", "w", "print"]


def test_reads_names_used_inside_functions_and_comprehensions():
    code = ("@deco(level)\ndef g(a, b=default):\n    return a + offset + helper(b)\n"
            "def helper(x):\n    return x\nvals = [scale * v for v in data]\nfn = lambda q: q * factor\n"
            "class K(Base):\n    attr = size\n    def m(self):\n        return self.attr + other")
    read = names_read(code)
    assert set(read) == {"deco", "level", "default", "offset", "scale", "data", "factor", "Base", "size", "other"}


def test_augmented_assignment_reads_its_target():
    assert names_read("total += 1") == ["total"]


def test_assigned_names_include_every_kind_of_top_level_binding():
    code = ("import numpy as np\nimport os.path\nfrom math import pi as PI\nx, (y, *z) = 1, (2, 3)\n"
            "def f(): inner = 1\nclass C: attr = 2\nfor i in range(2): pass\nwith open('f') as fh: pass\n"
            "try:\n    pass\nexcept Exception as err:\n    pass\n[k for k in range(3)]\n(w := 5)")
    assert names_assigned(parse_cell(code)) == [
        "np", "os", "PI", "x", "y", "z", "f", "C", "i", "fh", "err", "w"]


def test_line_numbers_follow_the_cell():
    tree = parse_cell("a = 1\nb = 2", first_line=2)
    assert [stmt.lineno for stmt in tree.body] == [2, 3]


def test_split_last_expression():
    body, last = split_last_expression(parse_cell("a = 1\na + 1"))
    assert len(body.body) == 1 and last is not None
    body, last = split_last_expression(parse_cell("a = 1"))
    assert last is None
