"""tools/testing/selftests/mm/prctl_thp_disable.c (6.18), ported: 2 fixtures x 3 sysfs
modes x {nofork, fork} = 12 instances, each checking whether a PMD THP backs a probe
region with no advice, MADV_NOHUGEPAGE, MADV_HUGEPAGE or MADV_COLLAPSE, while the
process has PR_SET_THP_DISABLE set and after it clears it.  The expected values are
the selftest's."""

import errno

import pytest

from mmsim import pages
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLLAPSE, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_PRIVATE,
                        PR_GET_THP_DISABLE, PR_SET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED,
                        PROT_READ, PROT_WRITE)

PMD = 2 << 20
NONE = None
PROBES = [NONE, MADV_NOHUGEPAGE, MADV_HUGEPAGE, MADV_COLLAPSE]

# (fixture, sysfs mode) -> (PR_GET_THP_DISABLE, results while set, results once cleared),
# results in PROBES order.
EXPECTED = {
    ("completely", "never"): (1, [0, 0, 0, 0], [0, 0, 0, 1]),
    ("completely", "madvise"): (1, [0, 0, 0, 0], [0, 0, 1, 1]),
    ("completely", "always"): (1, [0, 0, 0, 0], [1, 0, 1, 1]),
    ("except_advised", "never"): (3, [0, 0, 0, 1], [0, 0, 0, 1]),
    ("except_advised", "madvise"): (3, [0, 0, 1, 1], [0, 0, 1, 1]),
    ("except_advised", "always"): (3, [0, 0, 1, 1], [1, 0, 1, 1]),
}


def test_mmap_thp(proc, advice):
    """The selftest's probe: 1 if exactly one PMD THP backs a PMD-aligned window."""
    mem = proc.mmap(0, 2 * PMD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    window = (mem + PMD - 1) & ~(PMD - 1)
    if advice in (MADV_HUGEPAGE, MADV_NOHUGEPAGE):
        proc.madvise(window, PMD, advice)
    proc.touch(window, PMD, write=True)
    if advice == MADV_COLLAPSE:
        try:
            proc.madvise(window, PMD, MADV_COLLAPSE)
        except OSError as exc:
            assert exc.errno == errno.EINVAL
    proc.mprotect(window, PMD, PROT_READ)          # a VMA of its own
    vma = proc.mm.vma_lookup(window)
    result = int(pages.thp_count(vma) == 1 and pages.rss_pages(vma) == PMD >> 12)
    proc.munmap(mem, 2 * PMD)
    return result


test_mmap_thp.__test__ = False  # a helper, not a test


def body(proc, fixture, mode):
    get, while_set, once_cleared = EXPECTED[(fixture, mode)]
    assert proc.prctl(PR_GET_THP_DISABLE) == get
    assert [test_mmap_thp(proc, a) for a in PROBES] == while_set
    assert proc.prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0) == 0
    assert proc.prctl(PR_GET_THP_DISABLE) == 0
    assert [test_mmap_thp(proc, a) for a in PROBES] == once_cleared
    proc.mm.check()


@pytest.mark.parametrize("fork", [False, True], ids=["nofork", "fork"])
@pytest.mark.parametrize("mode", ["never", "madvise", "always"])
@pytest.mark.parametrize("fixture", ["completely", "except_advised"])
def test_prctl_thp_disable(fixture, mode, fork):
    kernel = Kernel(thp=mode, seed=7)
    proc = kernel.spawn()
    flags = PR_THP_DISABLE_EXCEPT_ADVISED if fixture == "except_advised" else 0
    assert proc.prctl(PR_SET_THP_DISABLE, 1, flags, 0, 0) == 0
    if fork:
        # The flag must survive fork; the child runs the body, the parent only waits.
        child = proc.fork()
        body(child, fixture, mode)
        assert proc.prctl(PR_GET_THP_DISABLE) == EXPECTED[(fixture, mode)][0]
    else:
        body(proc, fixture, mode)


@pytest.mark.parametrize("args, err", [
    ((1, 0, 1, 0), errno.EINVAL),                   # arg4 set
    ((1, 0, 0, 1), errno.EINVAL),                   # arg5 set
    ((0, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0), errno.EINVAL),   # a flag while enabling
    ((1, 1, 0, 0), errno.EINVAL),                   # bit 0 is reserved
    ((1, 4, 0, 0), errno.EINVAL),                   # unknown flag
])
def test_set_thp_disable_errors(args, err):
    """kernel/sys.c prctl_set_thp_disable's argument checks (checked live on 6.18)."""
    proc = Kernel().spawn()
    with pytest.raises(OSError) as exc:
        proc.prctl(PR_SET_THP_DISABLE, *args)
    assert exc.value.errno == err
    assert proc.prctl(PR_GET_THP_DISABLE) == 0


def test_get_thp_disable_values_and_status():
    """Any non-zero arg2 disables completely; GET is 0/1/3; status shows THP_enabled 0
    only when completely disabled."""
    kernel = Kernel()
    proc = kernel.spawn()
    status = lambda: kernel.proc_read(f"/proc/{proc.pid}/status")
    assert proc.prctl(PR_SET_THP_DISABLE, 5) == 0
    assert proc.prctl(PR_GET_THP_DISABLE) == 1 and "THP_enabled:\t0\n" in status()
    proc.prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED)
    assert proc.prctl(PR_GET_THP_DISABLE) == 3 and "THP_enabled:\t1\n" in status()
    with pytest.raises(OSError) as exc:
        proc.prctl(PR_GET_THP_DISABLE, 1)
    assert exc.value.errno == errno.EINVAL
