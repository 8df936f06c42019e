"""Transparent huge pages: the sysfs policy and the 6.18 eligibility decision
(include/linux/huge_mm.h ``vma_thp_disabled``, mm/huge_memory.c
``__thp_vma_allowable_orders``), used by faults, MADV_COLLAPSE and smaps' THPeligible.

Every anonymous size (orders 2..9, 16 KiB to 2 MiB) has its own ``enabled`` knob
(``hugepages-<N>kB/enabled``: always, inherit, madvise, never); by default the PMD size
is ``inherit`` and every smaller size ``never``, as on the reference machine.  shmem
decides its orders itself (``mmsim.shmem``); the per-size counters of
``hugepages-<N>kB/stats/`` live here, one dict per order on the kernel.
"""

from .defs import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, align_up
from .vma import VM_HUGEPAGE, VM_NO_KHUGEPAGED, VM_NOHUGEPAGE

MODES = ("always", "madvise", "never")
# hugepages-<N>kB/enabled, in the order the file lists them.
SIZE_MODES = ("always", "inherit", "madvise", "never")

PMD_ORDER = 9
ANON_ORDERS = tuple(range(2, PMD_ORDER + 1))   # THP_ORDERS_ALL_ANON
ALL_ORDERS = tuple(range(1, PMD_ORDER + 1))    # a hugepages-<N>kB directory each

# hugepages-<N>kB/stats/: the statistics every size has, and those of anonymous sizes
# (thpsize_create attaches them by order), in the order ls lists them.
ANY_STATS = ("split", "split_failed", "swpin", "swpin_fallback", "swpin_fallback_charge",
             "swpout", "swpout_fallback", "zswpout")
ANON_STATS = ("anon_fault_alloc", "anon_fault_fallback", "anon_fault_fallback_charge",
              "nr_anon", "nr_anon_partially_mapped", "split_deferred")
# Those of the shmem sizes (every order): counted by mmsim.shmem.
SHMEM_STATS = ("shmem_alloc", "shmem_fallback", "shmem_fallback_charge")
# The THP vm events this model counts (their /proc/vmstat order is in Kernel.vmstat).
VM_EVENTS = ("thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
             "thp_split_page", "thp_split_page_failed", "thp_deferred_split_page",
             "thp_underused_split_page", "thp_split_pmd", "thp_zero_page_alloc",
             "thp_zero_page_alloc_failed", "thp_swpout", "thp_swpout_fallback")


def stat_names(order):
    """The files of ``hugepages-<N>kB/stats/`` this model keeps for ``order``."""
    return ANY_STATS + (ANON_STATS if order in ANON_ORDERS else ()) + SHMEM_STATS


def new_stats():
    """kernel.mthp_stats: order -> {stat name: 0} (mod_mthp_stat / count_mthp_stat)."""
    return {o: dict.fromkeys(stat_names(o), 0) for o in ALL_ORDERS}


def count(kernel, order, name, n=1):
    """count_mthp_stat: orders 0 and above the PMD order are not counted."""
    if 0 < order <= PMD_ORDER:
        kernel.mthp_stats[order][name] += n


# Who is asking (enum tva_type in 6.18).
TVA_SMAPS = "smaps"
TVA_PAGEFAULT = "fault"
TVA_KHUGEPAGED = "khugepaged"
TVA_FORCED_COLLAPSE = "collapse"

# The mm is on khugepaged's list (set and cleared by mmsim.khugepaged).
MMF_VM_HUGEPAGE = 1 << 17
MMF_DISABLE_THP_EXCEPT_ADVISED = 1 << 23
MMF_DISABLE_THP_COMPLETELY = 1 << 24


def size_kb(order):
    """The size of an order's folio in kB, as the hugepages-<N>kB directory names it."""
    return (1 << (order + PAGE_SHIFT)) >> 10


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


def size_dir(order):
    """The sysfs directory name of ``order``: hugepages-<N>kB."""
    return f"hugepages-{4 << order}kB"


def default_sizes():
    """hugepage_init_sysfs's defaults: the PMD size inherits, every other is never."""
    return {o: ("inherit" if o == PMD_ORDER else "never") for o in ANON_ORDERS}


def effective(mode, policy):
    """One size's mode with ``inherit`` resolved to the global ``enabled``."""
    return policy if mode == "inherit" else mode


def pmd_policy(kernel):
    """The PMD size's effective mode (hugepage_pmd_enabled is this not being never)."""
    return effective(kernel.thp_sizes[PMD_ORDER], kernel.thp)


def _suitable(vma, order, addr=None):
    """thp_vma_suitable_order: the naturally aligned block of ``order`` around ``addr``
    (for the size filter: the last one ending at or below vm_end) lies in the VMA."""
    size = PAGE_SIZE << order
    if vma.file is not None and ((vma.start >> PAGE_SHIFT) - vma.pgoff) % (1 << order):
        return False
    if addr is None:
        addr = vma.end - size
    haddr = addr & ~(size - 1)
    return vma.start <= haddr and haddr + size <= vma.end


def allowable_orders(vma, mm_flags, kernel, tva, orders=ANON_ORDERS, is_stack_setup=False):
    """thp_vma_allowable_orders for an anonymous VMA: the subset of ``orders`` (a
    tuple) the per-size knobs, the global mode, VM_HUGEPAGE/VM_NOHUGEPAGE, the prctl
    and mctl switches and (except for the fault) the size filter allow; highest first.
    Other VMAs answer through ``allowed`` (PMD order only)."""
    anon = vma.file is None and vma.special is None
    if not anon:
        return tuple(o for o in orders if o == PMD_ORDER
                     and allowed(vma, mm_flags, pmd_policy(kernel), tva, is_stack_setup,
                                 kernel))
    vm_flags = vma.vm_flags
    if tva != TVA_FORCED_COLLAPSE:
        hg = vm_flags & VM_HUGEPAGE
        policy = kernel.thp
        sizes = kernel.thp_sizes
        orders = tuple(o for o in orders if sizes[o] == "always"
                       or (hg and sizes[o] == "madvise")
                       or (sizes[o] == "inherit" and (policy == "always"
                                                      or (hg and policy == "madvise"))))
    if not orders or vma_thp_disabled(vm_flags, mm_flags, tva == TVA_FORCED_COLLAPSE):
        return ()
    if tva not in (TVA_PAGEFAULT, TVA_SMAPS) and vm_flags & VM_NO_KHUGEPAGED:
        return ()
    orders = tuple(sorted(orders, reverse=True))
    if tva != TVA_PAGEFAULT:
        # The highest order whose last aligned block fits stops the walk: it and
        # every smaller order are kept.
        for n, o in enumerate(orders):
            if _suitable(vma, o):
                orders = orders[n:]
                break
        else:
            return ()
    if is_stack_setup:
        return ()
    if vma.anon_vma is None and tva in (TVA_KHUGEPAGED, TVA_FORCED_COLLAPSE):
        return ()
    return orders


def small_anon_sizes(kernel):
    """Whether any anonymous size below the PMD size is other than never."""
    sizes = kernel.thp_sizes
    return any(sizes[o] != "never" for o in ANON_ORDERS if o != PMD_ORDER)


def smaps_eligible(vma, mm_flags, kernel, policy=None, small=None):
    """smaps THPeligible (0 or 1): any order, PMD or smaller, allowed for TVA_SMAPS;
    ``policy`` (the PMD size's effective mode) and ``small`` (``small_anon_sizes``),
    if the caller has them (smaps reads them once for all its VMAs)."""
    if policy is None:
        policy = pmd_policy(kernel)
    if small is None:
        small = small_anon_sizes(kernel)
    if small and vma.file is None and vma.special is None:
        return int(bool(allowable_orders(vma, mm_flags, kernel, TVA_SMAPS)))
    return int(allowed(vma, mm_flags, policy, TVA_SMAPS, kernel=kernel))


def suitable_orders(vma, addr, orders):
    """thp_vma_suitable_orders: ``orders`` (highest first) from the highest whose
    aligned block around ``addr`` lies in the VMA."""
    for n, o in enumerate(orders):
        if _suitable(vma, o, addr):
            return orders[n:]
    return ()


def allowed(vma, mm_flags, policy, tva, is_stack_setup=False, kernel=None):
    """Whether a PMD-sized THP is allowed for ``vma`` for the asker ``tva``; ``policy``
    is the PMD size's effective mode (``pmd_policy``).  A shmem VMA follows the shmem
    knobs of ``kernel`` (without a kernel: only a forced collapse, the reference
    machine's shmem_enabled=never)."""
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
