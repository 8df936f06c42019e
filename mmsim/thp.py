"""Transparent huge pages: the sysfs policy and the 6.18 eligibility decision
(include/linux/huge_mm.h ``vma_thp_disabled``, mm/huge_memory.c
``__thp_vma_allowable_orders``), used by faults, MADV_COLLAPSE and smaps' THPeligible.

Only the PMD order (2 MiB) exists for anonymous memory here: the reference machine has
every smaller mTHP size set to ``never`` and the PMD size to ``inherit``.  shmem decides
its orders itself (``mmsim.shmem``); the per-size counters of
``hugepages-<N>kB/stats/`` live here, one dict per order on the kernel.
"""

from .defs import PAGE_SHIFT, PMD_SIZE, align_up
from .vma import VM_HUGEPAGE, VM_NO_KHUGEPAGED, VM_NOHUGEPAGE

MODES = ("always", "madvise", "never")

# Who is asking (enum tva_type in 6.18).
TVA_SMAPS = "smaps"
TVA_PAGEFAULT = "fault"
TVA_KHUGEPAGED = "khugepaged"
TVA_FORCED_COLLAPSE = "collapse"

# The mm is on khugepaged's list (set and cleared by mmsim.khugepaged).
MMF_VM_HUGEPAGE = 1 << 17
MMF_DISABLE_THP_EXCEPT_ADVISED = 1 << 23
MMF_DISABLE_THP_COMPLETELY = 1 << 24


# The per-size directories hugepages-<N>kB: orders 1 (8 kB) to 9 (2048 kB).
PMD_ORDER = PMD_SIZE.bit_length() - 1 - PAGE_SHIFT
SIZE_ORDERS = tuple(range(1, PMD_ORDER + 1))

# The per-size stats the simulator keeps (hugepages-<N>kB/stats/<name>).  Another
# counter is added by naming it here and counting it with count_mthp_stat.
MTHP_STATS = ("shmem_alloc", "shmem_fallback", "shmem_fallback_charge")


def size_kb(order):
    """The size of an order's folio in kB, as the hugepages-<N>kB directory names it."""
    return (1 << (order + PAGE_SHIFT)) >> 10


def new_mthp_stats():
    """The per-order counters at boot: order -> {stat name: 0}."""
    return {order: dict.fromkeys(MTHP_STATS, 0) for order in SIZE_ORDERS}


def count_mthp_stat(kernel, order, name, n=1):
    """count_mthp_stat: orders 0 and above the PMD order are not counted."""
    if 0 < order <= PMD_ORDER:
        kernel.mthp_stats[order][name] += n


def recommended_min_free_kbytes(memory):
    """set_recommended_min_free_kbytes: what khugepaged raises vm.min_free_kbytes to
    (eleven pageblocks for each of three zones, capped at 5% of RAM), in KiB."""
    zones, pageblock = 3, 512
    recommended = pageblock * zones * 2 + pageblock * zones * 3 * 3
    return min(recommended, (memory >> PAGE_SHIFT) // 20) << (PAGE_SHIFT - 10)


def vma_thp_disabled(vm_flags, mm_flags, forced_collapse):
    """The per-VMA and per-process switches, first match wins (vma_thp_disabled)."""
    if vm_flags & VM_NOHUGEPAGE:
        return True
    if mm_flags & MMF_DISABLE_THP_COMPLETELY:
        return True
    if vm_flags & VM_HUGEPAGE:
        return False
    if forced_collapse:
        return False
    return bool(mm_flags & MMF_DISABLE_THP_EXCEPT_ADVISED)


def pmd_fits(vma):
    """An aligned 2 MiB block fits inside the VMA (and, for files, lines up with pgoff)."""
    haddr = align_up(vma.start, PMD_SIZE)
    if haddr + PMD_SIZE > vma.end:
        return False
    if vma.file is not None:
        return ((vma.pgoff << PAGE_SHIFT) - vma.start) % PMD_SIZE == 0
    return True


def allowed(vma, mm_flags, policy, tva, is_stack_setup=False, kernel=None):
    """Whether a PMD-sized THP is allowed for ``vma`` for the asker ``tva``; a shmem
    VMA follows the shmem knobs of ``kernel`` (without a kernel: only a forced
    collapse, the reference machine's shmem_enabled=never)."""
    vm_flags = vma.vm_flags
    anon = vma.file is None and vma.special is None
    forced = tva == TVA_FORCED_COLLAPSE
    if anon and not forced:
        # sysfs: per-size 'inherit' follows the global setting.
        if not (policy == "always" or (vm_flags & VM_HUGEPAGE and policy == "madvise")):
            return False
    if vma.special is not None:
        return False
    if vma_thp_disabled(vm_flags, mm_flags, forced):
        return False
    if tva not in (TVA_PAGEFAULT, TVA_SMAPS) and vm_flags & VM_NO_KHUGEPAGED:
        return False
    if (kernel is not None and tva != TVA_PAGEFAULT and not anon
            and vma.file is not None and vma.file.shmem):
        # smaps asks about every order, khugepaged and MADV_COLLAPSE about the PMD
        # order (the shmem rules live in mmsim.shmem, which builds on this module).
        orders = kernel.shmem_vma_orders(vma, mm_flags, forced)
        return bool(orders if tva == TVA_SMAPS else orders & (1 << PMD_ORDER))
    if tva != TVA_PAGEFAULT and not pmd_fits(vma):
        return False
    if not anon:
        # shmem follows its own knobs (shmem_allowable_huge_orders); regular files need
        # CONFIG_READ_ONLY_THP_FOR_FS, which is off.
        shmem = vma.file is not None and vma.file.shmem
        return shmem and forced
    if is_stack_setup:
        return False
    if vma.anon_vma is None and tva in (TVA_KHUGEPAGED, TVA_FORCED_COLLAPSE):
        return False
    return True
