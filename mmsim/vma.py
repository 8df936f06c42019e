"""The VMA record (``struct vm_area_struct``), its ``vm_flags`` bits, and the rules that
decide whether two VMAs may merge (``mm/vma.c``: ``is_mergeable_vma``,
``is_mergeable_anon_vma``, ``can_vma_merge_before/after``).

Addresses are bytes; pages are 4 KiB.  The rules know nothing about trees or address
spaces: ``mmsim.mm`` applies them.
"""

import attrs

# PAGE_SIZE, PAGE_MASK, PMD_* and HPAGE_PMD_NR are re-exported for code that imports them
# from here; mmsim's own modules take them from mmsim.defs.
from .defs import HPAGE_PMD_NR, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PMD_SHIFT, PMD_SIZE  # noqa: F401

# --------------------------------------------------------------------------- vm_flags
# Values from include/linux/mm.h (x86-64).
VM_NONE = 0
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_MAYSHARE = 0x80
VM_GROWSDOWN = 0x100
VM_UFFD_MISSING = 0x200
VM_PFNMAP = 0x400
VM_MAYBE_GUARD = 0x800
VM_UFFD_WP = 0x1000
VM_LOCKED = 0x2000
VM_IO = 0x4000
VM_SEQ_READ = 0x8000
VM_RAND_READ = 0x10000
VM_DONTCOPY = 0x20000
VM_DONTEXPAND = 0x40000
VM_LOCKONFAULT = 0x80000
VM_ACCOUNT = 0x100000
VM_NORESERVE = 0x200000
VM_HUGETLB = 0x400000
VM_SYNC = 0x800000
VM_ARCH_1 = 0x1000000          # x86: VM_PAT
VM_WIPEONFORK = 0x2000000
VM_DONTDUMP = 0x4000000
VM_SOFTDIRTY = 0x8000000       # CONFIG_MEM_SOFT_DIRTY is off on the reference kernel: never set
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
VM_PKEY_BIT0 = 1 << 32
VM_PKEY_BIT1 = 1 << 33
VM_PKEY_BIT2 = 1 << 34
VM_PKEY_BIT3 = 1 << 35
VM_SHADOW_STACK = 1 << 37
VM_DROPPABLE = 1 << 40
VM_UFFD_MINOR = 1 << 41
VM_SEALED = 1 << 42

VM_PKEY_MASK = VM_PKEY_BIT0 | VM_PKEY_BIT1 | VM_PKEY_BIT2 | VM_PKEY_BIT3
VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT
VM_NO_KHUGEPAGED = VM_SPECIAL | VM_HUGETLB
# The flags two VMAs may differ in and still merge, and the mask of those they may not.
VM_IGNORE_MERGE = VM_SOFTDIRTY
VM_MERGE_MASK = ~VM_IGNORE_MERGE
# x86-64: VM_EXEC only under READ_IMPLIES_EXEC, which a 64-bit process never gets.
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_STACK_DEFAULT_FLAGS = VM_DATA_DEFAULT_FLAGS
VM_STACK_FLAGS = VM_GROWSDOWN | VM_STACK_DEFAULT_FLAGS | VM_ACCOUNT
# The only def_flags bit a new mm inherits (kernel/fork.c mm_init, VM_INIT_DEF_MASK).
VM_INIT_DEF_MASK = VM_NOHUGEPAGE

# show_smap_vma_flags() mnemonics in bit order (fs/proc/task_mmu.c); pkey bits print
# nothing here (they are shown in ProtectionKey:), and config-dependent bits that are
# off on the reference kernel are left out.
VMFLAG_MNEMONICS = (
    (VM_READ, "rd"), (VM_WRITE, "wr"), (VM_EXEC, "ex"), (VM_SHARED, "sh"),
    (VM_MAYREAD, "mr"), (VM_MAYWRITE, "mw"), (VM_MAYEXEC, "me"), (VM_MAYSHARE, "ms"),
    (VM_GROWSDOWN, "gd"), (VM_UFFD_MISSING, "um"), (VM_PFNMAP, "pf"), (VM_MAYBE_GUARD, "gu"),
    (VM_UFFD_WP, "uw"), (VM_LOCKED, "lo"), (VM_IO, "io"), (VM_SEQ_READ, "sr"),
    (VM_RAND_READ, "rr"), (VM_DONTCOPY, "dc"), (VM_DONTEXPAND, "de"), (VM_LOCKONFAULT, "lf"),
    (VM_ACCOUNT, "ac"), (VM_NORESERVE, "nr"), (VM_HUGETLB, "ht"), (VM_SYNC, "sf"),
    (VM_ARCH_1, "ar"), (VM_WIPEONFORK, "wf"), (VM_DONTDUMP, "dd"), (VM_SOFTDIRTY, "sd"),
    (VM_MIXEDMAP, "mm"), (VM_HUGEPAGE, "hg"), (VM_NOHUGEPAGE, "nh"), (VM_MERGEABLE, "mg"),
    (VM_SHADOW_STACK, "ss"), (VM_DROPPABLE, "dp"), (VM_UFFD_MINOR, "ui"), (VM_SEALED, "sl"),
)
MNEMONIC_FLAG = {name: bit for bit, name in VMFLAG_MNEMONICS}


def vmflags_mnemonics(vm_flags):
    """The VmFlags: mnemonics for ``vm_flags``, in the kernel's order."""
    return [name for bit, name in VMFLAG_MNEMONICS if vm_flags & bit]


# --------------------------------------------------------------------------- records


class AnonVma:
    """An anon_vma: the reverse-map root that anonymous pages of a VMA hang off.

    Only its identity matters to the merge rules; ``name`` helps when debugging."""

    __slots__ = ("name",)

    def __init__(self, name=""):
        self.name = name

    def __repr__(self):
        return f"<AnonVma {self.name or hex(id(self))}>"


@attrs.define(eq=False, repr=False)
class Vma:
    """A VMA: the range ``[start, end)`` and everything the kernel keeps per mapping."""

    start: int
    end: int
    vm_flags: int
    pgoff: int
    file: object = None          # an OpenFile (compared by identity, like struct file *)
    anon_vma: AnonVma | None = None
    # The anon_vma chain has more than one link: this VMA is a fork child's copy that
    # may still share pages with its parent (vma_is_fork_child()).
    forked: bool = False
    anon_name: str | None = None
    special: str | None = None   # name of a special mapping ([vdso], [vvar], ...)
    close_hook: bool = False     # vm_ops->close: such a VMA is never removed by a merge
    uffd_ctx: object = None
    policy: object = None
    # Resident pages as extents of page numbers in the same state (a pages.PageMap:
    # PTE- and PMD-mapped, young or old).  None until the first fault, to keep VMAs small.
    pages: object = None
    # Page ranges carrying a guard marker (MADV_GUARD_INSTALL, a pages.PageRanges):
    # touching one faults.
    guards: object = None
    # Swap entries (pages.SwapEntries): page ranges swapped out, disjoint from ``pages``.
    swap: object = None
    # Zero-page mappings (pages.ZeroMap): page ranges whose PTEs map the shared zero
    # page, or whose PMD maps the huge zero folio, after a read fault; disjoint from
    # ``pages`` and ``swap``.  They hold no memory but are page-table entries.
    zero: object = None
    # Resident (or swapped) pages of a private anonymous VMA the program never stored
    # data in (a pages.PageRanges): zero-filled, which a THP split and the
    # underused-THP shrinker look at.  None while there are none.
    unwritten: object = None

    def __repr__(self):
        flags = " ".join(vmflags_mnemonics(self.vm_flags))
        return f"<Vma {self.start:#x}-{self.end:#x} pgoff {self.pgoff:#x} [{flags}]>"

    @property
    def npages(self):
        """Length in pages (vma_pages)."""
        return (self.end - self.start) >> PAGE_SHIFT

    def pgoff_at(self, addr):
        """The page offset ``addr`` maps to (linear_page_index)."""
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def is_anonymous(self):
        """True for private VMAs with no file behind them (vma_is_anonymous)."""
        return self.file is None and self.special is None and not self.vm_flags & VM_MAYSHARE

    def shared_anon(self):
        """A MAP_SHARED|MAP_ANONYMOUS mapping: shmem behind the scenes."""
        return self.file is None and self.special is None and bool(self.vm_flags & VM_MAYSHARE)


_new = object.__new__


def new_vma(start, end, vm_flags, pgoff):
    """``Vma(start, end, vm_flags, pgoff)``: every other field at its default."""
    # Field by field, as dup_vma and for the same reason: the fused mmap makes one per
    # call that merges with neither neighbour.  (tests/test_vma.py checks that it
    # matches.)
    new = _new(Vma)
    new.start = start
    new.end = end
    new.vm_flags = vm_flags
    new.pgoff = pgoff
    new.file = None
    new.anon_vma = None
    new.forked = False
    new.anon_name = None
    new.special = None
    new.close_hook = False
    new.uffd_ctx = None
    new.policy = None
    new.pages = None
    new.guards = None
    new.swap = None
    new.zero = None
    new.unwritten = None
    return new


def dup_vma(vma):
    """A copy of ``vma`` with no pages (vm_area_dup); pages are moved by the caller."""
    # Every field set here, as Vma(...) would: CPython 3.11 runs a class's __init__
    # through a generic slot call that costs about as much as the fifteen stores, and a
    # replay splits VMAs all the time.  (tests/test_vma.py checks that it matches.)
    new = _new(Vma)
    new.start = vma.start
    new.end = vma.end
    new.vm_flags = vma.vm_flags
    new.pgoff = vma.pgoff
    new.file = vma.file
    new.anon_vma = vma.anon_vma
    new.forked = vma.forked
    new.anon_name = vma.anon_name
    new.special = vma.special
    new.close_hook = vma.close_hook
    new.uffd_ctx = vma.uffd_ctx
    new.policy = vma.policy
    new.pages = None
    new.guards = None
    new.swap = None
    new.zero = None
    new.unwritten = None
    return new


# --------------------------------------------------------------------------- merge rules


def is_fork_child(vma):
    """The VMA may still share anonymous pages with a parent (a chain of more than one)."""
    return vma is not None and vma.anon_vma is not None and vma.forked


def is_mergeable_vma(tgt, vm_flags, file, uffd_ctx, anon_name, policy):
    """``tgt`` agrees with a proposed range on every property but anon_vma and pgoff."""
    return (tgt.policy == policy
            and not (tgt.vm_flags ^ vm_flags) & VM_MERGE_MASK
            and tgt.file is file
            and tgt.uffd_ctx is uffd_ctx
            and tgt.anon_name == anon_name)


def is_mergeable_anon_vma(tgt, src, src_anon, copied_from=None):
    """The 6.16-6.18 anon_vma rule: an unfaulted VMA may merge with a faulted one unless
    the faulted side is a fork child's copy (``src`` is the VMA being changed, if any)."""
    tgt_anon = tgt.anon_vma
    if tgt_anon is None and src_anon is not None:
        return not is_fork_child(src) and not is_fork_child(copied_from)
    if tgt_anon is not None and src_anon is None:
        return not is_fork_child(tgt)
    return src_anon is tgt_anon


class MergeProposal:
    """The properties of a range about to be added or changed (struct vma_merge_struct)."""

    __slots__ = ("start", "end", "vm_flags", "pgoff", "file", "anon_vma", "anon_name",
                 "uffd_ctx", "policy", "middle", "copied_from")

    def __init__(self, start, end, vm_flags, pgoff, file=None, anon_vma=None, anon_name=None,
                 uffd_ctx=None, policy=None, middle=None, copied_from=None):
        self.start = start
        self.end = end
        self.vm_flags = vm_flags
        self.pgoff = pgoff
        self.file = file
        self.anon_vma = anon_vma
        self.anon_name = anon_name
        self.uffd_ctx = uffd_ctx
        self.policy = policy
        self.middle = middle
        self.copied_from = copied_from

    @classmethod
    def for_change(cls, vma, start, end, vm_flags, anon_name=None):
        """The proposal for giving ``[start, end)`` of ``vma`` new flags (VMG_VMA_STATE)."""
        return cls(start, end, vm_flags, vma.pgoff_at(start), vma.file, vma.anon_vma,
                   vma.anon_name if anon_name is None else anon_name, vma.uffd_ctx, vma.policy,
                   middle=vma)

    @classmethod
    def for_growth(cls, vma, new_end):
        """The proposal for growing ``vma`` up to ``new_end`` (vma_merge_extend)."""
        return cls(vma.end, new_end, vma.vm_flags, vma.pgoff_at(vma.end), vma.file,
                   vma.anon_vma, vma.anon_name, vma.uffd_ctx, vma.policy)

    @staticmethod
    def whole_change_merges(vma, vm_flags, prev, nxt):
        """Would giving all of ``vma`` the flags ``vm_flags`` merge it with ``prev`` or
        ``nxt`` (its neighbours in the tree, or None)?  When not, vma_modify neither
        merges nor splits and the flags change in place."""
        prop = MergeProposal.for_change(vma, vma.start, vma.end, vm_flags)
        return bool((prev is not None and prop.can_merge_after(prev))
                    or (nxt is not None and prop.can_merge_before(nxt)))

    def new_vma(self):
        """A new, unlinked VMA with the proposal's range and properties."""
        return Vma(self.start, self.end, self.vm_flags, self.pgoff, self.file, self.anon_vma,
                   False, self.anon_name, None, False, self.uffd_ctx, self.policy)

    def mergeable_with(self, tgt):
        return (is_mergeable_vma(tgt, self.vm_flags, self.file, self.uffd_ctx, self.anon_name,
                                 self.policy)
                and is_mergeable_anon_vma(tgt, self.middle, self.anon_vma, self.copied_from))

    def can_merge_after(self, prev):
        """``prev`` can grow over the proposal (can_vma_merge_left without adjacency)."""
        return (prev.end == self.start and self.mergeable_with(prev)
                and prev.pgoff + prev.npages == self.pgoff)

    def can_merge_before(self, nxt):
        """``nxt`` can grow down over the proposal (can_vma_merge_before)."""
        pages = (self.end - self.start) >> PAGE_SHIFT
        return (nxt.start == self.end and self.mergeable_with(nxt)
                and nxt.pgoff == self.pgoff + pages)
