"""Issue 12, parts 5 and 7: layout details (the vsyscall page, file mappings placed as
thp_get_unmapped_area places them, --follow keyed by the mm) and output a user can act
on (--check in strace's terms, policies before the first line, dumps, --json, and
streaming in flat memory)."""

import json
import os

import pytest

from mmsim import cli
from mmsim.kernel import Kernel
from mmsim.replay import replay_trace


def _run(capsys, argv):
    status = cli.main(argv)
    cap = capsys.readouterr()
    return status, cap.out, cap.err


def _trace(tmp_path, text, name="t.strace"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_follow_takes_each_new_address_space_first_brk():
    """--follow sets the break from each address space's first brk(NULL), keyed by the
    Mm itself: forty short-lived children, whose freed Mm objects Python reuses the
    memory (and so the id()) of, each get their own recorded break."""
    lines = []
    for i in range(40):
        pid = 100 + i
        lines += [f"fork() = {pid}",
                  f"[pid {pid}] brk(NULL) = {0x560000000000 + i * 0x100000:#x}",
                  f"[pid {pid}] exit_group(0) = ?",
                  f"wait4({pid}, NULL, 0, NULL) = {pid}"]
    out = replay_trace("\n".join(lines) + "\n", Kernel(), follow=True)
    assert [o.line() for o in out if not o.matches()] == []
