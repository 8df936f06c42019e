"""khugepaged (mm/khugepaged.c, 6.18): the daemon that collapses runs of small
anonymous pages into PMD-sized THPs in the background.

The model follows the kernel's structure:

- the mm slot list: an mm is registered (``MMF_VM_HUGEPAGE``) when one of its VMAs
  becomes eligible for khugepaged (``enter_vma``: the anonymous fault path, mmap/brk
  merges, MADV_HUGEPAGE, mctl), a fork child of a registered mm is registered too,
  and an exiting mm leaves the list;
- the scan cursor (an mm and an address) walks the eligible VMAs in PMD steps,
  spending ``pages_to_scan`` units of progress per wake-up as khugepaged_scan_mm_slot
  counts them (one per mm visited, one per VMA skipped, HPAGE_PMD_NR per PMD);
  ``full_scans`` counts the times the cursor came back to the head of the list;
- each PMD is checked as hpage_collapse_scan_pmd checks it (``max_ptes_none``,
  ``max_ptes_swap``, ``max_ptes_shared``, a referenced page; 6.18 asks for no
  writable PTE, as the live kernel shows), and a
  candidate is collapsed as collapse_huge_page does: a huge page is allocated (no OOM
  killer, direct reclaim only with ``defrag``) and charged to the mm's cgroup, swapped
  PTEs are read in, and the range becomes one PMD-mapped THP;
- the daemon's timing: a scan every ``scan_sleep_millisecs``, a pause of
  ``alloc_sleep_millisecs`` after a failed allocation, in jiffies of the reference
  machine (HZ=250).

Time passes only through ``Kernel.advance`` (docs/thp.md).  Read-only file text is
not collapsed: the reference kernel is built without CONFIG_READ_ONLY_THP_FOR_FS, and
shmem is not collapsed by khugepaged while shmem_enabled is ``never`` (thp.allowed).
"""

import errno

from . import memcg as memcg_mod
from . import pages, shmem, thp, vmscan
from .defs import HPAGE_PMD_NR, PAGE_SHIFT, PMD_SIZE, align_down, align_up, error
from .kstrtox import kstrtoull
from .vma import VM_UFFD_MINOR, VM_UFFD_MISSING, VM_UFFD_WP

MMF_VM_HUGEPAGE = thp.MMF_VM_HUGEPAGE
HZ = 250   # CONFIG_HZ of the reference machine: sleeps are whole jiffies
NSEC_PER_JIFFY = 1_000_000_000 // HZ
UINT_MAX = (1 << 32) - 1
_UFFD_ARMED = VM_UFFD_MISSING | VM_UFFD_WP | VM_UFFD_MINOR

# enum scan_result, the values this model reaches.
SCAN_FAIL = "fail"
SCAN_SUCCEED = "succeed"
SCAN_PMD_NULL = "pmd_null"
SCAN_PMD_MAPPED = "pmd_mapped"
SCAN_EXCEED_NONE_PTE = "exceed_none_pte"
SCAN_EXCEED_SWAP_PTE = "exceed_swap_pte"
SCAN_EXCEED_SHARED_PTE = "exceed_shared_pte"
SCAN_PTE_NON_PRESENT = "pte_non_present"
SCAN_LACK_REFERENCED_PAGE = "lack_referenced_page"
SCAN_ANY_PROCESS = "any_process"
SCAN_ALLOC_HUGE_PAGE_FAIL = "alloc_huge_page_fail"
SCAN_CGROUP_CHARGE_FAIL = "cgroup_charge_fail"
SCAN_PTE_MAPPED_HUGEPAGE = "pte_mapped_hugepage"
HPAGE_PMD_ORDER = thp.PMD_ORDER

# The knobs under /sys/kernel/mm/transparent_hugepage/khugepaged/ in the order ls
# lists them; the writable ones with their parser (see ``write_knob``).
KNOBS = ("alloc_sleep_millisecs", "defrag", "full_scans", "max_ptes_none", "max_ptes_shared",
         "max_ptes_swap", "pages_collapsed", "pages_to_scan", "scan_sleep_millisecs")
READ_ONLY = ("full_scans", "pages_collapsed")


def msecs_to_jiffies(ms):
    """msecs_to_jiffies at HZ=250: rounded up to whole jiffies."""
    return -(-ms * HZ // 1000)


class _VmaView:
    """A VMA as khugepaged_enter_vma sees it: its own fields with other flags (the
    madvise path asks before the flags are stored)."""

    __slots__ = ("start", "end", "vm_flags", "file", "special", "pgoff", "anon_vma")

    def __init__(self, vma, vm_flags):
        self.start, self.end, self.pgoff = vma.start, vma.end, vma.pgoff
        self.file, self.special, self.anon_vma = vma.file, vma.special, vma.anon_vma
        self.vm_flags = vm_flags


class Khugepaged:
    """The khugepaged thread of one simulated machine, its mm slot list, its scan
    cursor and its sysfs knobs (defaults of khugepaged_init for 4 KiB pages)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.pages_to_scan = HPAGE_PMD_NR * 8
        self.pages_collapsed = 0
        self.full_scans = 0
        self.scan_sleep_millisecs = 10000
        self.alloc_sleep_millisecs = 60000
        self.defrag = 1
        self.max_ptes_none = HPAGE_PMD_NR - 1
        self.max_ptes_swap = HPAGE_PMD_NR // 8
        self.max_ptes_shared = HPAGE_PMD_NR // 2
        self.slots = []          # registered mms, in list order (new ones at the tail)
        self.cursor = None       # khugepaged_scan.mm_slot's mm, or None at the head
        self.address = 0         # khugepaged_scan.address
        # The thread: running while THP is not ``never``; ``wake_at`` is the simulated
        # time (ns) of its next run, None while it waits for an mm to be registered.
        self.running = kernel.thp_pmd_policy != "never"
        self.wake_at = 0 if self.running else None
        self.sleeping = None     # "scan" or "alloc": which sleep ``wake_at`` ends
        self.resume = None       # (progress, passes) of a scan paused by an alloc sleep
        self.scanned = 0         # progress units spent, summed (a benchmark's measure)
        self.last_result = None  # the result of the last PMD scanned (a checking aid)
        self._seen = {}          # fast_forward's wake-up states since the last change
        self.runs = 0            # wake-ups simulated one by one (fast_forward skips some)

    # ------------------------------------------------------------------ registration

    def pmd_enabled(self):
        """hugepage_pmd_enabled: the PMD size's knob (``inherit``: ``enabled``) is not
        never; shmem allowing the PMD size keeps the thread too
        (shmem_hpage_pmd_enabled)."""
        return self.kernel.thp_pmd_policy != "never" or shmem.pmd_enabled(self.kernel)

    def enter(self, mm):
        """__khugepaged_enter: put ``mm`` at the tail of the list (behind the cursor);
        the first one wakes a thread waiting for work."""
        if mm.flags & MMF_VM_HUGEPAGE:
            return
        mm.flags |= MMF_VM_HUGEPAGE
        wakeup = not self.slots
        self.slots.append(mm)
        if wakeup and self.running and self.wake_at is None:
            self.wake_at = self.kernel.now_ns

    def enter_vma(self, mm, vma, vm_flags=None):
        """khugepaged_enter_vma: register ``mm`` when ``vma`` (with ``vm_flags``, when
        given, in place of its own) is eligible for khugepaged."""
        if mm.flags & MMF_VM_HUGEPAGE or not self.pmd_enabled():
            return
        shmem_vma = vma.file is not None and vma.file.shmem
        if (vma.anon_vma is None or vma.file is not None) and not shmem_vma:
            # thp.allowed says no for these at once (no anon_vma yet; files need
            # CONFIG_READ_ONLY_THP_FOR_FS or shmem THP): the common mmap, kept cheap.
            return
        view = vma if vm_flags is None else _VmaView(vma, vm_flags)
        if thp.allowed(view, mm.flags, self.kernel.thp_pmd_policy, thp.TVA_KHUGEPAGED,
                       kernel=self.kernel):
            self.enter(mm)

    def enter_vmas(self, mm):
        """khugepaged_enter_vma for every VMA of ``mm`` until one registers it."""
        for vma in mm.vmas():
            if mm.flags & MMF_VM_HUGEPAGE:
                return
            self.enter_vma(mm, vma)

    def fault(self, mm, vma, lo, hi):
        """The anonymous fault path over pages ``[lo, hi)`` of ``vma``: a fault that
        takes the huge path (THP allowed for the fault, an aligned PMD inside the VMA
        and no page table under it yet) prepares the anon_vma and registers the mm
        (do_huge_pmd_anonymous_page), for a read as for a write."""
        kernel = self.kernel
        policy = kernel.thp_pmd_policy
        if policy == "never" or not thp.allowed(vma, mm.flags, policy, thp.TVA_PAGEFAULT):
            return
        vlo, vhi = vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT
        head = lo & ~(HPAGE_PMD_NR - 1)
        while head < hi:
            if head >= vlo and head + HPAGE_PMD_NR <= vhi and pages.pmd_none(vma, head):
                pages.anon_vma_prepare(vma)
                self.enter_vma(mm, vma)
                return
            head += HPAGE_PMD_NR

    def fork(self, oldmm, mm):
        """khugepaged_fork: the child of a registered mm is registered."""
        if oldmm.flags & MMF_VM_HUGEPAGE:
            self.enter(mm)

    def exit(self, mm):
        """khugepaged_exit (__mmput): ``mm`` leaves the list, unless the cursor is on
        it (the scan then drops it when it next looks)."""
        if not mm.flags & MMF_VM_HUGEPAGE:
            return
        if self.cursor is not mm:
            self.slots.remove(mm)
            mm.flags &= ~MMF_VM_HUGEPAGE

    def start_stop(self):
        """start_stop_khugepaged after ``enabled`` is written: the thread starts (and
        scans at once) when THP is enabled, stops when it is ``never``."""
        if self.pmd_enabled():
            if not self.running:
                self.running = True
                self.wake_at = self.kernel.now_ns
                self.sleeping = None
                self.resume = None
            elif self.slots and self.sleeping == "alloc":
                self.wake_at = self.kernel.now_ns   # the wake-up ends an alloc sleep
        elif self.running:
            self.running = False
            self.wake_at = self.sleeping = self.resume = None
            mm = self.cursor
            self.cursor = None
            if mm is not None:
                self._collect(mm)

    # ------------------------------------------------------------------ sysfs

    def read_knob(self, name):
        """The text of khugepaged/NAME."""
        return f"{getattr(self, name)}\n"

    def write_knob(self, name, text):
        """Write khugepaged/NAME as its store handler does: EINVAL for what it refuses
        (defrag passes kstrtoul's own error through), EACCES for the read-only files."""
        if name in READ_ONLY:
            raise error(errno.EACCES, f"khugepaged/{name} is read-only")
        if not text:
            return   # a write of nothing never reaches the store handler (checked live)
        if name == "defrag":
            value = kstrtoull(text, 10)   # single_hugepage_flag_store returns its error
            if value > 1:
                raise error(errno.EINVAL, "defrag takes 0 or 1")
            self.defrag = value
            return
        try:
            value = kstrtoull(text, 10)
        except OSError:
            raise error(errno.EINVAL, f"khugepaged/{name} takes a decimal number") from None
        if name.startswith("max_ptes_"):
            if value > HPAGE_PMD_NR - 1:
                raise error(errno.EINVAL, f"{name} is at most {HPAGE_PMD_NR - 1}")
        elif value > UINT_MAX:
            raise error(errno.EINVAL, f"{name} is an unsigned int")
        if name == "pages_to_scan" and not value:
            raise error(errno.EINVAL, "pages_to_scan must not be 0")
        setattr(self, name, value)
        if name in ("scan_sleep_millisecs", "alloc_sleep_millisecs") and self.sleeping:
            # khugepaged_sleep_expire = 0 and a wake-up: a sleeping thread scans now.
            self.wake_at = self.kernel.now_ns

    # ------------------------------------------------------------------ the thread

    def run(self):
        """One wake-up of the thread at ``kernel.now_ns``: khugepaged_do_scan (or the
        rest of one an alloc sleep paused), then khugepaged_wait_work."""
        self.sleeping = None
        self.runs += 1
        pages_budget = self.pages_to_scan
        progress, passes, wait = self.resume if self.resume is not None else (0, 0, True)
        self.resume = None
        now = self.kernel.now_ns
        while True:
            result = SCAN_SUCCEED
            if self.cursor is None:
                passes += 1
            if self.slots and self.pmd_enabled() and passes < 2:
                done, result = self.scan_mm_slot(pages_budget - progress)
                progress += done
            else:
                progress = pages_budget
            if progress >= pages_budget:
                break
            if result == SCAN_ALLOC_HUGE_PAGE_FAIL:
                # khugepaged_alloc_sleep once; a second failure ends the scan.
                if not wait:
                    break
                self.resume = (progress, passes, False)
                self.sleeping = "alloc"
                self.wake_at = now + msecs_to_jiffies(self.alloc_sleep_millisecs) * NSEC_PER_JIFFY
                return
        # khugepaged_wait_work: a timed sleep while there is work, else wait for some.
        if self.slots:
            # Simulator-defined: a zero sleep is one jiffy, so time always moves on.
            jiffies = max(msecs_to_jiffies(self.scan_sleep_millisecs), 1)
            self.sleeping = "scan"
            self.wake_at = now + jiffies * NSEC_PER_JIFFY
        else:
            self.wake_at = None

    # ------------------------------------------------------------------ fast forward

    # Events that mean memory or the LRU changed: a stretch where one of them moved is
    # never taken to repeat.
    _CHANGES = frozenset((
        "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive",
        "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgsteal_proactive",
        "pgrefill", "pgactivate", "pgdeactivate", "pgrotated", "pgfault", "pgmajfault",
        "pswpin", "pswpout", "pglazyfreed", "workingset_refault_anon",
        "workingset_refault_file", "nr_written"))

    def forget(self):
        """A new stretch of time starts (system calls may have changed anything): no
        earlier wake-up state may be taken to repeat."""
        self._seen = {}

    def _levels(self):
        """What memory looks like, as far as a stretch that changed nothing (see
        ``_CHANGES``) could tell: the node's and every cgroup's page counts and the
        reclaim state of their LRU lists."""
        kernel = self.kernel
        node = kernel.node
        swap = kernel.swap
        out = [node.nr_anon, node.nr_file_pages, node.nr_mapped, node.nr_dirty,
               node.nr_writeback, node.nr_shmem, len(node.shadow_nodes), kernel.nr_resident,
               swap.used if swap is not None else 0]
        for m in kernel.memcgs.values():
            lru = m.lruvec
            out += [m.current, m.swap_current, tuple(lru.nr), lru.nonresident_age,
                    tuple(lru.refaults), lru.iter_pos, getattr(lru, "anon_hand", None)]
        return tuple(out)

    def _counters(self):
        """Every event counter a repeating stretch adds to, as (dict, key) pairs."""
        node_events = self.kernel.node.events
        refs = [(node_events, name) for name in node_events]
        for m in self.kernel.memcgs.values():
            refs += [(m.stat, name) for name in memcg_mod.EVENTS]
            refs += [(m.events, name) for name in m.events]
            refs += [(m.local_events, name) for name in m.local_events]
        return refs

    def fast_forward(self, end_ns):
        """Called at a timed wake-up (at ``kernel.now_ns``): when the scan is where it
        was at an earlier wake-up of this stretch, nothing collapsed since, and memory
        and the LRU lists are as they were with none of ``_CHANGES`` moved, the
        wake-ups in between repeat exactly.  Skip as many whole repeats as end by
        ``end_ns``, adding what each adds to every event counter (full_scans, the
        units scanned, thp_scan_exceed_*, a failing charge's memory.events ``max``,
        ...); the wake-up at the new time then runs as usual."""
        if self.resume is not None or self.sleeping != "scan":
            return
        now = self.kernel.now_ns
        key = (id(self.cursor), self.address, tuple(id(mm) for mm in self.slots),
               self._levels())
        refs = self._counters()
        counts = (self.full_scans, self.scanned, self.pages_collapsed,
                  tuple(d[name] for d, name in refs))
        seen = self._seen.get(key)
        self._seen[key] = (now, counts, refs)
        if seen is None:
            return
        before, old, old_refs = seen
        if counts[2] != old[2] or len(refs) != len(old_refs):
            return
        # The node's events come first in ``refs``, in the dict's order.
        for i, name in enumerate(self.kernel.node.events):
            if name in self._CHANGES and counts[3][i] != old[3][i]:
                return
        period = now - before
        times = (end_ns - now) // period
        if times <= 0:
            return
        self.full_scans += times * (counts[0] - old[0])
        self.scanned += times * (counts[1] - old[1])
        for (d, name), c, o in zip(refs, counts[3], old[3]):
            if c != o:
                d[name] += times * (c - o)
        self.kernel.now_ns = self.wake_at = now + times * period
        self._seen = {}

    def _test_exit(self, mm):
        return mm.users == 0

    def _test_exit_or_disable(self, mm):
        return mm.users == 0 or bool(mm.flags & thp.MMF_DISABLE_THP_COMPLETELY)

    def _collect(self, mm):
        """collect_mm_slot: an exited mm's slot is freed."""
        if self._test_exit(mm):
            self.slots.remove(mm)

    def scan_mm_slot(self, budget):
        """khugepaged_scan_mm_slot: scan from the cursor; returns (progress, result)."""
        result = SCAN_FAIL
        if self.cursor is None:
            self.cursor = self.slots[0]
            self.address = 0
        mm = self.cursor
        progress = 1
        vma = None
        policy = self.kernel.thp_pmd_policy
        if not self._test_exit_or_disable(mm):
            for vma in mm.vmas(self.address):
                if not thp.allowed(vma, mm.flags, policy, thp.TVA_KHUGEPAGED,
                                   kernel=self.kernel):
                    progress += 1
                    continue
                hstart = align_up(vma.start, PMD_SIZE)
                hend = align_down(vma.end, PMD_SIZE)
                if self.address > hend:
                    progress += 1
                    continue
                if self.address < hstart:
                    self.address = hstart
                stop = False
                while self.address < hend:
                    result, unlocked = self.scan_pmd(mm, vma, self.address)
                    if result == SCAN_SUCCEED:
                        self.pages_collapsed += 1
                        mm.thp_collapsed[0] += 1
                    self.address += PMD_SIZE
                    progress += HPAGE_PMD_NR
                    if unlocked or progress >= budget:
                        stop = True
                        break
                if stop:
                    break
            else:
                vma = None   # every VMA was walked: this mm is done
        self.scanned += progress
        if self._test_exit(mm) or vma is None:
            i = self.slots.index(mm)
            if i + 1 < len(self.slots):
                self.cursor = self.slots[i + 1]
                self.address = 0
            else:
                self.cursor = None
                self.full_scans += 1
            self._collect(mm)
        return progress, result

    # ------------------------------------------------------------------ one PMD

    def _census(self, vma, head):
        """hpage_collapse_scan_pmd's walk over the 512 PTEs of the block at page
        ``head``, in address order: the first limit passed (a result), else None, with
        the counts (referenced, swapped)."""
        kernel_none = self.max_ptes_none
        none = swapped = shared = referenced = 0
        uffd = bool(vma.vm_flags & _UFFD_ARMED)
        end = head + HPAGE_PMD_NR
        segments = _segments(vma, head, end)
        ev = self.kernel.node.events
        for x, y, kind, span in segments:
            n = y - x
            if kind == "swap":
                swapped += n
                if swapped > self.max_ptes_swap:
                    ev["thp_scan_exceed_swap_pte"] += 1
                    return SCAN_EXCEED_SWAP_PTE, referenced, swapped
                continue
            if kind == "guard":
                return SCAN_PTE_NON_PRESENT, referenced, swapped
            if kind == "none":
                none += n
                if uffd or none > kernel_none:
                    ev["thp_scan_exceed_none_pte"] += 1
                    return SCAN_EXCEED_NONE_PTE, referenced, swapped
                continue
            for a, b, mapcount, _anon, _dirty, ref in pages.span_pieces(span, x, y):
                m = b - a
                if mapcount > 1:
                    shared += m
                    if shared > self.max_ptes_shared:
                        ev["thp_scan_exceed_share_pte"] += 1
                        return SCAN_EXCEED_SHARED_PTE, referenced, swapped
                if span.young or ref:
                    referenced += m
        return None, referenced, swapped

    def scan_file(self, mm, vma, addr):
        """hpage_collapse_scan_file for the shmem block at ``addr`` (the mm's lock is
        dropped for it, so the visit ends): a PMD-order folio there already has this
        mapping's PTEs retracted (collapse_pte_mapped_thp: a fault maps it by a PMD);
        else fewer than 512 - max_ptes_none pages in the file is
        SCAN_EXCEED_NONE_PTE; else collapse_file makes one folio of them (no PMD is
        installed: the mappings refault)."""
        head = addr >> PAGE_SHIFT
        inode = vma.file.inode
        index = vma.pgoff + head - (vma.start >> PAGE_SHIFT)
        cache = inode.cache
        page = cache.get(index)
        if page is not None and page.order == HPAGE_PMD_ORDER:
            pm = vma.pages
            i = pm.index(head) if pm else -1
            if i >= 0 and pm.tag[i].pmd:
                result = SCAN_PMD_MAPPED
            else:
                result = SCAN_PTE_MAPPED_HUGEPAGE
                pages.retract_ptes(mm, vma, head)
            self.last_result = result
            return result, True
        present = sum(1 for i in range(index, index + HPAGE_PMD_NR) if i in cache)
        if present < HPAGE_PMD_NR - self.max_ptes_none:
            self.kernel.node.events["thp_scan_exceed_none_pte"] += 1
            self.last_result = SCAN_EXCEED_NONE_PTE
            return SCAN_EXCEED_NONE_PTE, True
        ev = self.kernel.node.events
        if not self._alloc():
            ev["thp_collapse_alloc_failed"] += 1
            result = SCAN_ALLOC_HUGE_PAGE_FAIL
        else:
            ev["thp_collapse_alloc"] += 1
            memcg = mm.memcg
            if not self._charge(memcg):
                result = SCAN_CGROUP_CHARGE_FAIL
            else:
                pages.collapse_file(self.kernel, memcg, inode, index)
                memcg.stat["thp_collapse_alloc"] += 1
                result = SCAN_SUCCEED
        self.last_result = result
        return result, True

    def scan_pmd(self, mm, vma, addr):
        """hpage_collapse_scan_pmd for the block at ``addr``: (result, whether a
        collapse was tried, which ends this visit of the mm)."""
        if vma.file is not None and vma.file.shmem:
            return self.scan_file(mm, vma, addr)
        head = addr >> PAGE_SHIFT
        pm = vma.pages
        if pages.pmd_none(vma, head):
            # Simulator-defined: a block with nothing in it has no page table.
            self.last_result = SCAN_PMD_NULL
            return SCAN_PMD_NULL, False
        if (pm and pm.index(head) >= 0 and pm.tag[pm.index(head)].pmd is True) or (
                pages.huge_zero_at(vma, head)):
            self.last_result = SCAN_PMD_MAPPED
            return SCAN_PMD_MAPPED, False
        result, referenced, swapped = self._census(vma, head)
        if result is None:
            if not referenced or (swapped and referenced < HPAGE_PMD_NR // 2):
                result = SCAN_LACK_REFERENCED_PAGE
            else:
                result = self.collapse_huge_page(mm, vma, addr, swapped)
                self.last_result = result
                return result, True
        self.last_result = result
        return result, False

    def _alloc(self):
        """The huge page's allocation (GFP_TRANSHUGE with defrag, else
        GFP_TRANSHUGE_LIGHT): an order-9 request never calls the OOM killer; with
        defrag it may reclaim once (Kernel.costly_page_alloc_fails)."""
        return not self.kernel.costly_page_alloc_fails(HPAGE_PMD_NR, bool(self.defrag))

    def _charge(self, memcg):
        """mem_cgroup_charge of the new THP: past memory.max, reclaim the cgroup (only
        when the allocation may block, i.e. with defrag) and fail rather than call the
        OOM killer (Kernel.costly_charge_fails)."""
        return not self.kernel.costly_charge_fails(memcg, HPAGE_PMD_NR, bool(self.defrag))

    def collapse_huge_page(self, mm, vma, addr, swapped):
        """collapse_huge_page: allocate and charge the THP, read the swapped pages in,
        check the PTEs again (__collapse_huge_page_isolate) and map the new THP."""
        ev = self.kernel.node.events
        if not self._alloc():
            ev["thp_collapse_alloc_failed"] += 1
            return SCAN_ALLOC_HUGE_PAGE_FAIL
        ev["thp_collapse_alloc"] += 1
        memcg = mm.memcg
        if not self._charge(memcg):
            return SCAN_CGROUP_CHARGE_FAIL
        head = addr >> PAGE_SHIFT
        if swapped:
            pages.swap_in(mm, vma, head, head + HPAGE_PMD_NR)
            if not _block_empty(None, vma.swap, head):
                return SCAN_FAIL   # do_swap_page could not bring every page in
        result, referenced, _swapped = self._census(vma, head)
        if result is None and not referenced:
            result = SCAN_LACK_REFERENCED_PAGE
        if result is not None:
            return result
        pages.collapse(mm, vma, addr, addr + PMD_SIZE)
        memcg.stat["thp_collapse_alloc"] += 1
        return SCAN_SUCCEED


def _block_empty(pm, sw, head):
    """Whether no page and no swap entry lies in the 512-page block at ``head``."""
    end = head + HPAGE_PMD_NR
    if pm:
        i, j = pm.overlap(head, end)
        if i < j:
            return False
    if sw:
        i, j = sw.overlap(head, end)
        if i < j:
            return False
    return True


def _segments(vma, lo, hi):
    """The PTEs of ``[lo, hi)`` as ``(x, y, kind, span)`` runs in address order; kind is
    "present", "swap", "guard" or "none" (no entry, or the zero page)."""
    marks = []
    pm = vma.pages
    if pm:
        i, j = pm.overlap(lo, hi)
        for k in range(i, j):
            marks.append((max(pm.lo[k], lo), min(pm.hi[k], hi), "present", pm.tag[k]))
    sw = vma.swap
    if sw:
        i, j = sw.overlap(lo, hi)
        for k in range(i, j):
            marks.append((max(sw.lo[k], lo), min(sw.hi[k], hi), "swap", None))
    guards = vma.guards
    if guards:
        for a, b in guards.ranges():
            if a < hi and b > lo:
                marks.append((max(a, lo), min(b, hi), "guard", None))
    marks.sort(key=lambda m: m[0])
    out = []
    v = lo
    for x, y, kind, span in marks:
        if x > v:
            out.append((v, x, "none", None))
        out.append((x, y, kind, span))
        v = y
    if v < hi:
        out.append((v, hi, "none", None))
    return out


__all__ = ["Khugepaged", "KNOBS", "READ_ONLY", "msecs_to_jiffies", "HZ",
           "SCAN_SUCCEED", "SCAN_FAIL", "SCAN_PMD_NULL", "SCAN_PMD_MAPPED",
           "SCAN_EXCEED_NONE_PTE", "SCAN_EXCEED_SWAP_PTE", "SCAN_EXCEED_SHARED_PTE",
           "SCAN_LACK_REFERENCED_PAGE", "SCAN_ALLOC_HUGE_PAGE_FAIL",
           "SCAN_CGROUP_CHARGE_FAIL", "SCAN_PTE_MAPPED_HUGEPAGE"]
