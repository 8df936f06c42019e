"""mmsim.defs: the one home of the machine constants and page arithmetic."""

import ast
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmsim import binfmt_elf, defs, kernel
from mmsim.defs import (ELF_ET_DYN_BASE, TASK_SIZE, TASK_UNMAPPED_BASE, align_down, align_up,
                        offset_in_page, page_align, page_align_down, pfn_up)

PACKAGE = pathlib.Path(defs.__file__).parent


def test_x86_64_layout_values():
    """The kernel's values for 4-level paging (DEFAULT_MAP_WINDOW = 2**47 - 4096)."""
    assert TASK_SIZE == 0x7FFFFFFFF000
    assert ELF_ET_DYN_BASE == 0x555555554AAA
    assert TASK_UNMAPPED_BASE == 0x2AAAAAAAB000


def test_one_elf_et_dyn_base():
    """exec and the synthetic image of a spawned process start from the same value."""
    assert binfmt_elf.ELF_ET_DYN_BASE is ELF_ET_DYN_BASE
    proc = kernel.Kernel(randomize=False).spawn()
    assert proc.mm.start_code == 0x555555554000


@pytest.mark.parametrize("n, up, down, off, pages", [
    (0, 0, 0, 0, 0), (1, 0x1000, 0, 1, 1), (0xFFF, 0x1000, 0, 0xFFF, 1),
    (0x1000, 0x1000, 0x1000, 0, 1), (0x1001, 0x2000, 0x1000, 1, 2),
    (0x555555554AAA, 0x555555555000, 0x555555554000, 0xAAA, 0x555555555)])
def test_page_helpers(n, up, down, off, pages):
    assert (page_align(n), page_align_down(n), offset_in_page(n), pfn_up(n)) == (
        up, down, off, pages)


@given(st.integers(0, 1 << 64), st.integers(0, 30))
def test_align_to_any_power_of_two(n, shift):
    size = 1 << shift
    up, down = align_up(n, size), align_down(n, size)
    assert up % size == 0 and down % size == 0
    assert down <= n <= up and up - down in (0, size)


def test_defs_is_a_leaf():
    """defs imports nothing from mmsim, so every layer may use it."""
    tree = ast.parse((PACKAGE / "defs.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("mmsim")
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("mmsim") for a in node.names)
