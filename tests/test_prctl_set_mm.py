"""PR_SET_MM (kernel/sys.c: prctl_set_mm, prctl_set_mm_map, validate_prctl_map_addr) and
brk(2) on a break that PR_SET_MM_MAP moved.  The live comparison of the same calls is
tests/data/diff/12_brk.strace; the live errno checks below use PR_SET_MM_MAP, which
needs no capability (this host's root lacks CAP_SYS_RESOURCE)."""

import errno

import attrs
import pytest

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.prctl import MM_FIELDS, PRCTL_MM_MAP_SIZE, PrctlMmMap
from mmsim.trace import TraceError, parse, replay
from mmsim.uapi import (CLONE_NEWUSER, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PR_SET_MM,
                        PR_SET_MM_ARG_START, PR_SET_MM_BRK, PR_SET_MM_MAP, PR_SET_MM_MAP_SIZE,
                        PR_SET_MM_START_BRK, PR_SET_MM_START_CODE, PROT_READ, PROT_WRITE)
from mmsim.testing import errno_of

P = 4096
W = 0x200000000000


def layout(brk=W + 8 * P, **over):
    """A valid map: code and data at the window's bottom, the break at ``brk``."""
    fields = dict(start_code=W, end_code=W + P, start_data=W + P, end_data=W + P,
                  start_brk=brk, brk=brk, start_stack=W + 64 * P, arg_start=W + 64 * P,
                  arg_end=W + 64 * P, env_start=W + 64 * P, env_end=W + 64 * P)
    fields.update(over)
    return PrctlMmMap(**fields)


def test_set_mm_map_moves_the_break_and_fork_keeps_it(proc):
    assert proc.prctl(PR_SET_MM, PR_SET_MM_MAP, layout(), PRCTL_MM_MAP_SIZE) == 0
    assert proc.brk(0) == W + 8 * P
    assert proc.brk(W + 10 * P) == W + 10 * P
    child = proc.fork()
    for name in MM_FIELDS:
        assert getattr(child.mm, name) == getattr(proc.mm, name)
    assert child.brk(W + 12 * P) == W + 12 * P


@pytest.mark.parametrize("over", [
    {"start_brk": W + 9 * P},          # start_brk above brk
    {"end_code": W},                   # empty code
    {"end_data": W},                   # data ends below its start
    {"arg_end": W + 63 * P},           # arguments end below their start
    {"env_start": 0x1000},             # below mmap_min_addr
    {"start_stack": 1 << 47},          # beyond TASK_SIZE
])
def test_set_mm_map_rejects_an_unordered_or_outlying_map(over, proc):
    before = {name: getattr(proc.mm, name) for name in MM_FIELDS}
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP, layout(**over),
                    PRCTL_MM_MAP_SIZE) == errno.EINVAL
    assert {name: getattr(proc.mm, name) for name in MM_FIELDS} == before


def test_set_mm_map_argument_checks(proc):
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP, layout(), 100) == errno.EINVAL
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP, layout(), PRCTL_MM_MAP_SIZE,
                    1) == errno.EINVAL
    # A raw pointer: there is no user memory to read the struct from.
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP, W, PRCTL_MM_MAP_SIZE) == errno.EFAULT
    # auxv_size without auxv, and an exe_fd, are refused before anything changes.
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP, layout(auxv_size=8),
                    PRCTL_MM_MAP_SIZE) == errno.EINVAL
    proc.setuid(1000)
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP, layout(exe_fd=3),
                    PRCTL_MM_MAP_SIZE) == errno.EPERM
    # The map itself needs no capability.
    assert proc.prctl(PR_SET_MM, PR_SET_MM_MAP, layout(), PRCTL_MM_MAP_SIZE) == 0


def test_map_size_writes_to_user_memory(proc):
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP_SIZE, W) == errno.EFAULT
    proc.mmap(W, P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP_SIZE, W) == errno.EFAULT
    proc.mprotect(W, P, PROT_READ | PROT_WRITE)
    assert proc.prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, W) == 0


def test_single_options_need_cap_sys_resource_and_keep_the_order(proc):
    # The window lies below the synthetic break: start_brk first, as brk may not pass it.
    assert proc.mm.start_brk > W
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_BRK, W + 8 * P) == errno.EINVAL
    assert proc.prctl(PR_SET_MM, PR_SET_MM_START_BRK, W + 8 * P) == 0
    assert proc.prctl(PR_SET_MM, PR_SET_MM_BRK, W + 8 * P) == 0
    assert proc.brk(0) == W + 8 * P
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_START_CODE, 0x1000) == errno.EINVAL
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_BRK, W + 9 * P, 1) == errno.EINVAL
    # Stack-side fields must point below some VMA.
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_ARG_START, 0x7FFF00000000) == errno.EFAULT
    proc.mmap(0x7FFF00000000, P, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert proc.prctl(PR_SET_MM, PR_SET_MM_ARG_START, 0x7FFF00000000) == 0
    # A new user namespace's capabilities do not reach the initial namespace.
    proc.unshare(CLONE_NEWUSER)
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_BRK, W + 9 * P) == errno.EPERM


def test_the_trace_form_of_the_struct():
    text = ("prctl(PR_SET_MM, PR_SET_MM_MAP, {start_code=0x200000000000, "
            "end_code=0x200000001000, start_data=0x200000001000, end_data=0x200000001000, "
            "start_brk=0x200000008000, brk=0x200000008000, start_stack=0x200000040000, "
            "arg_start=0x200000040000, arg_end=0x200000040000, env_start=0x200000040000, "
            "env_end=0x200000040000, auxv=NULL, auxv_size=0, exe_fd=-1}, 104) = 0\n"
            "brk(NULL) = 0x200000008000\n")
    assert all(o.matches() for o in replay(text, Kernel(randomize=False)))
    bad = text.replace("start_code=", "start_kode=")
    with pytest.raises(TraceError, match="no field 'start_kode'"):
        parse(bad)      # strace never prints such a field: a malformed trace
    assert parse(text)[0].name == "prctl"


def _map_text(m):
    body = ", ".join(f"{k}={v:#x}" if k not in ("auxv_size", "exe_fd") else f"{k}={v}"
                     for k, v in attrs.asdict(m).items())
    return f"prctl(PR_SET_MM, PR_SET_MM_MAP, {{{body}}}, 104)\n"


@pytest.mark.live
@pytest.mark.parametrize("over", [{}, {"start_brk": W + 9 * P}, {"end_code": W},
                                  {"env_start": 0x1000}, {"auxv_size": 8}])
def test_set_mm_map_errors_match_the_live_kernel(over):
    m = attrs.evolve(layout(), **over)
    # Only after a successful move is the break the same on both sides.
    diffs, skipped = live.diff_trace(_map_text(m) + ("brk(NULL)\n" if not over else ""))
    assert diffs == [] and skipped == [], diffs
