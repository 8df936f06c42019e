"""The memory-mapping syscalls: mmap, munmap, mprotect, mremap, mlock, mlock2, munlock
and brk, with the kernel's argument checks in the kernel's order (mm/mmap.c,
mm/mprotect.c, mm/mremap.c, mm/mlock.c, mm/vma.c).

Each function takes the calling process' ``Mm`` (and kernel knobs through it), returns
what the syscall returns, and raises ``OSError`` with the kernel's errno.
"""

import errno

from . import overcommit, pages
from .defs import (MMAP_MIN_ADDR, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, STACK_GUARD_GAP, U64,
                   error, offset_in_page, page_align, page_align_down)
from .mm import MMF_HAS_MDWE, MMF_VM_MERGE_ANY, Mm, vm_start_gap
from .uapi import (MAP_32BIT, MAP_ANONYMOUS, MAP_DENYWRITE, MAP_DROPPABLE, MAP_EXECUTABLE,
                   MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_HUGE_MASK,
                   MAP_HUGE_SHIFT, MAP_HUGETLB, MAP_UNINITIALIZED, MAP_LOCKED, MAP_NONBLOCK,
                   MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED,
                   MAP_SHARED_VALIDATE, MAP_STACK, MAP_TYPE, MCL_CURRENT, MCL_FUTURE,
                   MCL_ONFAULT, MLOCK_ONFAULT, MREMAP_DONTUNMAP,
                   MREMAP_FIXED, MREMAP_MAYMOVE, PROT_EXEC, PROT_GROWSDOWN, PROT_GROWSUP,
                   PROT_READ, PROT_SEM, PROT_WRITE)
from .vma import (VM_ACCESS_FLAGS, VM_ACCOUNT, VM_DONTEXPAND, VM_IO,
                  VM_EXEC, VM_GROWSDOWN, VM_HUGETLB, VM_LOCKED, VM_LOCKED_MASK, VM_LOCKONFAULT,
                  VM_MAYEXEC, VM_MAYREAD, VM_MAYSHARE, VM_MAYWRITE, VM_NOHUGEPAGE, VM_NORESERVE,
                  VM_MERGEABLE, VM_MIXEDMAP, VM_PFNMAP, VM_READ, VM_SEALED, VM_SHARED,
                  VM_SPECIAL, VM_WRITE, VM_DROPPABLE,
                  MergeProposal, Vma, dup_vma)


# What KSM cannot merge (vma_ksm_compatible).
KSM_INCOMPATIBLE = (VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_HUGETLB
                    | VM_MIXEDMAP | VM_DROPPABLE)


def calc_vm_prot_bits(prot):
    """PROT_* to VM_READ/WRITE/EXEC."""
    return ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
            | (VM_EXEC if prot & PROT_EXEC else 0))


def calc_vm_flag_bits(flags):
    """MAP_* flags that become VMA flags (MAP_STACK means no THP since 6.7)."""
    vm = 0
    if flags & MAP_GROWSDOWN:
        vm |= VM_GROWSDOWN
    if flags & MAP_LOCKED:
        vm |= VM_LOCKED
    if flags & MAP_STACK:
        vm |= VM_NOHUGEPAGE
    return vm


def _aligned(addr):
    return not offset_in_page(addr)


def _page_align(n):
    """PAGE_ALIGN in unsigned 64-bit arithmetic: it wraps to 0 near the top."""
    return page_align(n) & U64


# ---------------------------------------------------------------------- mmap


def mmap(mm: Mm, addr, length, prot, flags, file=None, offset=0, policy="madvise",
         memlock=None):
    """mmap(2).  ``file`` is the OpenFile behind ``fd`` (the caller resolves fds);
    ``memlock`` is the caller's RLIMIT_MEMLOCK in bytes, None with CAP_IPC_LOCK."""
    if flags & MAP_HUGETLB:
        length = _hugetlb_length(file, length, flags)
    if offset_in_page(offset):
        raise error(errno.EINVAL, "offset not page aligned")
    pgoff = offset >> PAGE_SHIFT
    if not length:
        raise error(errno.EINVAL, "length 0")
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    if not flags & MAP_FIXED and addr and addr < MMAP_MIN_ADDR:
        addr = page_align(MMAP_MIN_ADDR)  # round_hint_to_min
    length = page_align(length)
    if not length or length >= 1 << 64:
        raise error(errno.ENOMEM)
    if pgoff + (length >> PAGE_SHIFT) >= 1 << 64:
        raise error(errno.EOVERFLOW)
    if mm.map_count > mm.kernel.max_map_count:
        raise error(errno.ENOMEM, "map_count above max_map_count")
    if flags & MAP_FIXED and not _aligned(addr):
        raise error(errno.EINVAL, "MAP_FIXED address not page aligned")
    map_type = flags & MAP_TYPE
    addr = mm.get_unmapped_area(addr, length, pgoff, flags, file)
    if flags & MAP_FIXED_NOREPLACE and mm.find_vma_intersection(addr, addr + length):
        raise error(errno.EEXIST)
    vm_flags = (calc_vm_prot_bits(prot) | calc_vm_flag_bits(flags) | mm.def_flags
                | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC)
    if flags & MAP_LOCKED and memlock == 0:
        raise error(errno.EPERM, "MAP_LOCKED with RLIMIT_MEMLOCK 0")   # can_do_mlock
    if not mlock_future_ok(mm, vm_flags, length, memlock):
        raise error(errno.EAGAIN, "would lock more than RLIMIT_MEMLOCK")
    if file is not None:
        vm_flags, pgoff = _file_flags(file, prot, flags, vm_flags, pgoff)
    elif map_type == MAP_SHARED:
        if vm_flags & VM_GROWSDOWN:
            raise error(errno.EINVAL, "shared mapping cannot grow down")
        pgoff = 0
        vm_flags |= VM_SHARED | VM_MAYSHARE
    elif map_type == MAP_DROPPABLE:
        raise error(errno.EINVAL, "MAP_DROPPABLE is not simulated")
    elif map_type == MAP_PRIVATE:
        pgoff = addr >> PAGE_SHIFT  # anonymous private: pgoff follows the address
    else:
        raise error(errno.EINVAL, "unknown mapping type")
    if flags & MAP_NORESERVE and mm.kernel.overcommit_memory != overcommit.OVERCOMMIT_NEVER:
        # Under strict overcommit MAP_NORESERVE is ignored: everything is accounted.
        vm_flags |= VM_NORESERVE
    if mm.flags & MMF_VM_MERGE_ANY and not vm_flags & KSM_INCOMPATIBLE:
        vm_flags |= VM_MERGEABLE   # PR_SET_MEMORY_MERGE: every new VMA KSM can handle
    if map_deny_write_exec(mm, vm_flags, vm_flags):
        raise error(errno.EACCES, "memory-deny-write-execute refuses a writable executable mapping")
    if flags & MAP_HUGETLB:
        # The hugetlbfs mmap hook reserves the pages, and the pool is empty.
        raise error(errno.ENOMEM, "no huge pages reserved (nr_hugepages = 0)")
    addr = mmap_region(mm, addr, length, vm_flags, pgoff, file, shared_anon=file is None
                       and map_type == MAP_SHARED)
    if vm_flags & VM_LOCKED or flags & (MAP_POPULATE | MAP_NONBLOCK) == MAP_POPULATE:
        mm_populate(mm, addr, addr + length)
    return addr


# The flags every file's mmap accepts; MAP_SHARED_VALIDATE refuses any other
# (include/linux/mman.h LEGACY_MAP_MASK: 0x7c07f17f with MAP_HUGE_2MB | MAP_HUGE_1GB).
LEGACY_MAP_MASK = (MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE
                   | MAP_EXECUTABLE | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED
                   | MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB
                   | MAP_32BIT | (21 << MAP_HUGE_SHIFT) | (30 << MAP_HUGE_SHIFT))
# The huge page sizes the reference machine has (log2): 2 MiB, the default, and 1 GiB.
HUGE_PAGE_SHIFTS = {0: 21, 21: 21, 30: 30}


def _hugetlb_length(file, length, flags):
    """ksys_mmap_pgoff's MAP_HUGETLB step: only for anonymous memory (no simulated file
    is on hugetlbfs), with a huge page size the machine has; the length rounds up to
    that size, in unsigned 64-bit arithmetic."""
    if file is not None:
        raise error(errno.EINVAL, "MAP_HUGETLB of a file not on hugetlbfs")
    shift = HUGE_PAGE_SHIFTS.get((flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK)
    if shift is None:
        raise error(errno.EINVAL, "no huge page size 2**%d" % ((flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK))
    size = 1 << shift
    return (length + size - 1) & ~(size - 1) & U64


def map_deny_write_exec(mm, old, new):
    """Memory-deny-write-execute (PR_SET_MDWE): with it on, no mapping may become
    writable and executable, nor executable when it was not."""
    if not mm.flags & MMF_HAS_MDWE or not new & VM_EXEC:
        return False
    return bool(new & VM_WRITE or not old & VM_EXEC)


def _file_flags(file, prot, flags, vm_flags, pgoff):
    """The file half of do_mmap: access checks against how the file was opened."""
    map_type = flags & MAP_TYPE
    if map_type == MAP_SHARED_VALIDATE and flags & ~LEGACY_MAP_MASK:
        raise error(errno.EOPNOTSUPP, "MAP_SHARED_VALIDATE with a flag the file does not know")
    if map_type in (MAP_SHARED, MAP_SHARED_VALIDATE):
        if prot & PROT_WRITE and not file.writable:
            raise error(errno.EACCES, "shared writable mapping of a read-only file")
        vm_flags |= VM_SHARED | VM_MAYSHARE
        if not file.writable:
            vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
    elif map_type == MAP_PRIVATE:
        if not file.readable:
            raise error(errno.EACCES, "private mapping of a file not open for reading")
    else:
        raise error(errno.EINVAL, "unknown mapping type")
    if not file.readable:
        raise error(errno.EACCES, "file not open for reading")
    if not file.mappable:
        raise error(errno.ENODEV, "the file has no mmap operation")
    return vm_flags, pgoff


def accountable_mapping(file, vm_flags):
    """Private writable mappings are charged (VM_ACCOUNT) unless NORESERVE."""
    return (vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE


def mmap_region(mm, addr, length, vm_flags, pgoff, file, shared_anon=False):
    """__mmap_region: clear what was there, then merge with a neighbour or insert."""
    end = addr + length
    old_accounted = charged = 0
    # Every VMA the mapping replaces, in one lookup: the charge, the unmap and the
    # neighbours of the new mapping all come from it.
    existing = mm.tree.values(addr, end)
    if accountable_mapping(file, vm_flags):
        # Charged before anything is unmapped; what this mapping replaces was charged
        # already and is carried over rather than charged twice.
        for vma in existing:
            if vma.vm_flags & VM_ACCOUNT:
                old_accounted += (min(vma.end, end) - max(vma.start, addr)) >> PAGE_SHIFT
        charged = (length >> PAGE_SHIFT) - old_accounted
        overcommit.charge(mm, charged)
        vm_flags |= VM_ACCOUNT
    shmem_pages = 0
    if shared_anon and not vm_flags & VM_NORESERVE:
        # shmem_acct_size: the shmem object behind a shared anonymous mapping is
        # charged too (checked before anything is unmapped, so a refusal changes nothing).
        shmem_pages = length >> PAGE_SHIFT
        try:
            overcommit.charge(mm, shmem_pages)
        except OSError:
            overcommit.vm_unacct_memory(mm.kernel, charged)
            raise
    below = above = None
    if existing:
        try:
            # The MAP_FIXED fast path: the range stays in the tree until the store of
            # the new mapping below overwrites it.
            below, above = mm.unmap_vmas(existing, addr, end, overwrite=True)
        except OSError:
            overcommit.vm_unacct_memory(mm.kernel, charged + shmem_pages)
            raise
    # The unmap gave the replaced VMAs' charge back; the new mapping keeps it.
    overcommit.vm_acct_memory(mm.kernel, old_accounted)
    if shared_anon:
        # shmem_zero_setup(): a shared anonymous mapping is backed by its own shmem file
        # (so it merges with nothing).
        file = mm.kernel.shmem_file(length)
        if shmem_pages:
            overcommit.shmem_held(mm.kernel, file.inode, shmem_pages)
    # The neighbours: what the unmap's edge splits left, else a lookup.
    prev = below if below is not None else mm.prev_of(addr)
    nxt = above if above is not None else mm.next_of(end)
    new = mm.merge_or_insert(MergeProposal(addr, end, vm_flags, pgoff, file), prev, nxt)
    if existing:
        mm.relink(below, above, new)
    mm.kernel.khugepaged.enter_vma(mm, new)   # __mmap_new_vma / vma_merge_new_range
    return addr


def populate_vma_page_range(mm, vma, start, end):
    """Fault ``[start, end)`` of ``vma`` in the way mlock and MAP_POPULATE do: private
    writable mappings for write (breaking COW), others for read, forcing through
    missing read or write permission on any accessible VMA.  VM_LOCKONFAULT VMAs are
    left to fault on their own; a PROT_NONE VMA is EFAULT."""
    flags = vma.vm_flags
    if flags & VM_LOCKONFAULT:
        return
    if not flags & VM_ACCESS_FLAGS or vma.special is not None:
        raise error(errno.EFAULT)
    pages.populate(mm, vma, start, end, _populate_write(flags), force=True, touch=True)


def _populate_write(vm_flags):
    """GUP populates private writable mappings for write (breaking COW), others for read."""
    return (vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE


def populate_need(mm, start, end, lock=False, pinned=False):
    """An upper bound on the pages ``mm_populate`` of ``[start, end)`` makes resident;
    with ``lock``, as if mlock had just locked the range (VM_LOCKONFAULT cleared);
    with ``pinned``, only those that could not go to swap."""
    cost = pages.pinned_cost if pinned and not lock else pages.populate_cost
    need = 0
    for vma in mm.vmas(start, end):
        flags = vma.vm_flags
        if flags & (VM_IO | VM_PFNMAP) or not flags & VM_ACCESS_FLAGS or vma.special is not None:
            continue
        if flags & VM_LOCKONFAULT and not lock:
            continue
        need += cost(vma, max(start, vma.start), min(end, vma.end), _populate_write(flags))
    return need


def mm_populate(mm, start, end, ignore_errors=True):
    """__mm_populate: populate every VMA piece in ``[start, end)`` (holes are skipped);
    without ``ignore_errors`` the first failure stops it and is raised.  When the pages
    would not fit in the machine's memory nothing is populated (ENOMEM without
    ``ignore_errors``): simulator-defined, where the kernel would OOM-kill."""
    try:
        pages.check_room(mm, populate_need(mm, start, end),
                         populate_need(mm, start, end, pinned=True)
                         if mm.kernel.swap is not None else 0)
    except OSError:
        if ignore_errors:
            return
        raise
    nstart = start
    while nstart < end:
        vma = mm.find_vma_intersection(nstart, end)
        if vma is None:
            break
        nend = min(end, vma.end)
        if not vma.vm_flags & (VM_IO | VM_PFNMAP):
            try:
                populate_vma_page_range(mm, vma, max(nstart, vma.start), nend)
            except OSError:
                if not ignore_errors:
                    raise
        nstart = nend


# ---------------------------------------------------------------------- munmap


def munmap(mm: Mm, addr, length):
    """munmap(2)."""
    if not _aligned(addr) or addr > mm.task_size or length > mm.task_size - addr:
        raise error(errno.EINVAL)
    end = addr + page_align(length)
    if end == addr:
        raise error(errno.EINVAL)
    mm.unmap(addr, end)
    return 0


# ---------------------------------------------------------------------- mprotect


def mprotect(mm: Mm, addr, length, prot):
    """mprotect(2), changing VMAs as it goes (earlier VMAs stay changed on error)."""
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == PROT_GROWSDOWN | PROT_GROWSUP:
        raise error(errno.EINVAL)
    if not _aligned(addr):
        raise error(errno.EINVAL)
    if not length:
        return 0
    end = (addr + _page_align(length)) & U64
    if end <= addr:
        raise error(errno.ENOMEM)
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM):
        raise error(errno.EINVAL)
    vma = mm.find_vma_intersection(addr, end)
    if vma is None:
        raise error(errno.ENOMEM)
    if grows & PROT_GROWSDOWN:
        if vma.start >= end:
            raise error(errno.ENOMEM)
        addr = vma.start
        if not vma.vm_flags & VM_GROWSDOWN:
            raise error(errno.EINVAL)
    else:
        if vma.start > addr:
            raise error(errno.ENOMEM)
        if grows & PROT_GROWSUP:
            raise error(errno.EINVAL)  # no VM_GROWSUP on x86
    tmp = vma.start
    nstart = addr
    while tmp < end and vma is not None and vma.start < end:
        if vma.start != tmp:
            raise error(errno.ENOMEM, "hole in range")
        newflags = calc_vm_prot_bits(prot) | (vma.vm_flags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            raise error(errno.EACCES)
        if map_deny_write_exec(mm, vma.vm_flags, newflags):
            raise error(errno.EACCES, "memory-deny-write-execute")
        tmp = min(vma.end, end)
        # Go on after whatever VMA now holds the changed piece: a merge may have
        # carried it past ``end`` or into the next VMA (vma_iter_end).
        tmp = mprotect_fixup(mm, vma, nstart, tmp, newflags).end
        nstart = tmp
        if tmp >= end:
            break   # done: the loop would look the next VMA up only to stop
        vma = mm.find_vma(tmp)
    if tmp < end:
        raise error(errno.ENOMEM, "hole at end of range")
    return 0


def mprotect_fixup(mm, vma, start, end, newflags):
    """Change ``[start, end)`` of ``vma`` to ``newflags``, with VM_ACCOUNT upkeep."""
    if vma.vm_flags & VM_SEALED:
        raise error(errno.EPERM)
    oldflags = vma.vm_flags
    if newflags == oldflags:
        return vma
    nrpages = (end - start) >> PAGE_SHIFT
    charged = 0
    if newflags & VM_WRITE:
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            # A private mapping becoming writable is charged now (ENOMEM if refused).
            overcommit.charge(mm, nrpages)
            charged = nrpages
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.is_anonymous() and vma.anon_vma is None:
        # A private mapping that never faulted can give its charge back.
        newflags &= ~VM_ACCOUNT
    try:
        vma = mm.modify(vma, start, end, newflags)
    except OSError:
        overcommit.vm_unacct_memory(mm.kernel, charged)
        raise
    if oldflags & VM_ACCOUNT and not newflags & VM_ACCOUNT:
        overcommit.vm_unacct_memory(mm.kernel, nrpages)
    if (oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and newflags & VM_WRITE:
        # A locked private mapping turning writable is COW-broken at once (errors,
        # and a populate too large for the machine, are ignored).
        mm_populate(mm, start, end)
    return vma


# ---------------------------------------------------------------------- mlock


def _apply_lock(mm, start, end, lock_flags):
    """apply_vma_lock_flags: set or clear VM_LOCKED[|VM_LOCKONFAULT] over the range."""
    vma = mm.find_vma_intersection(start, end)
    if vma is None or vma.start > start:
        raise error(errno.ENOMEM)
    tmp = start
    while tmp < end and vma is not None and vma.start < end:
        if vma.start > tmp:
            raise error(errno.ENOMEM)
        stop = min(vma.end, end)
        newflags = (vma.vm_flags & ~VM_LOCKED_MASK) | lock_flags
        if newflags != vma.vm_flags and not vma.vm_flags & VM_SPECIAL:
            stop = mm.modify(vma, max(tmp, vma.start), stop, newflags).end
        tmp = stop
        vma = mm.find_vma(tmp)
    if tmp < end:
        raise error(errno.ENOMEM)


def _lock_range(addr, length, memlock=None, mm=None):
    """do_mlock's range: the length grows by the start's offset in its page, all in
    wrapping 64-bit arithmetic.  With ``memlock`` (RLIMIT_MEMLOCK in bytes, the caller
    lacking CAP_IPC_LOCK) the pages already locked plus the new ones must fit (ENOMEM),
    checked before a range that wraps is EINVAL."""
    length = _page_align(length + offset_in_page(addr))
    start = page_align_down(addr)
    end = (start + length) & U64
    if memlock is not None:
        limit = memlock >> PAGE_SHIFT
        locked = (length >> PAGE_SHIFT) + locked_vm(mm)
        if locked > limit and end > start:
            # count_mm_mlocked_page_nr: pages of the range that are locked already.
            locked -= sum(min(v.end, end) - max(v.start, start) for v in mm.vmas(start, end)
                          if v.vm_flags & VM_LOCKED) >> PAGE_SHIFT
        if locked > limit:
            raise error(errno.ENOMEM, "would lock more than RLIMIT_MEMLOCK")
    if end < start:
        raise error(errno.EINVAL)
    return start, end


def _covered(mm, start, end):
    """Every page of ``[start, end)`` is mapped."""
    at = start
    for vma in mm.vmas(start, end):
        if vma.start > at:
            return False
        at = vma.end
    return at >= end


def locked_vm(mm):
    """mm->locked_vm: the pages of the VM_LOCKED VMAs."""
    return sum(vma.npages for vma in mm.vmas() if vma.vm_flags & VM_LOCKED)


def mlock_future_ok(mm, vm_flags, length, memlock):
    """mlock_future_ok: a new VM_LOCKED mapping of ``length`` bytes fits under
    RLIMIT_MEMLOCK (``memlock`` None: CAP_IPC_LOCK, no limit)."""
    if not vm_flags & VM_LOCKED or memlock is None:
        return True
    return (length >> PAGE_SHIFT) + locked_vm(mm) <= memlock >> PAGE_SHIFT


def mlock(mm: Mm, addr, length, flags=0, memlock=None):
    """mlock(2) / mlock2(2): lock, then fault the range in unless MLOCK_ONFAULT.
    ``memlock`` is the caller's RLIMIT_MEMLOCK in bytes, None with CAP_IPC_LOCK: 0
    means EPERM (can_do_mlock).  A range whose pages would not fit in the machine's
    memory is EAGAIN before anything is locked (simulator-defined, docs/mm.md)."""
    if flags & ~MLOCK_ONFAULT:
        raise error(errno.EINVAL)
    if memlock == 0:
        raise error(errno.EPERM, "RLIMIT_MEMLOCK is 0")
    start, end = _lock_range(addr, length, memlock, mm)
    if end == start:
        return 0
    lock = VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0)
    if not flags & MLOCK_ONFAULT and _covered(mm, start, end):
        # (A range with a hole fails in _apply_lock, as the kernel's does.)
        try:
            need = populate_need(mm, start, end, lock=True)
            pages.check_room(mm, need, need)
        except OSError:
            raise error(errno.EAGAIN, "the range does not fit in memory") from None
    _apply_lock(mm, start, end, lock)
    try:
        mm_populate(mm, start, end, ignore_errors=False)
    except OSError as exc:
        # __mlock_posix_error_return: EFAULT reads as ENOMEM, ENOMEM as EAGAIN.
        code = {errno.EFAULT: errno.ENOMEM, errno.ENOMEM: errno.EAGAIN}.get(exc.errno, exc.errno)
        raise error(code) from None
    return 0


def mlockall(mm: Mm, flags, memlock=None):
    """mlockall(2): lock every VMA (MCL_CURRENT) and/or what is mapped later
    (MCL_FUTURE, through def_flags), then populate unless MCL_ONFAULT.  ``memlock`` as
    for mlock; MCL_CURRENT needs the whole address space to fit under it (ENOMEM)."""
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        raise error(errno.EINVAL)
    if memlock == 0:
        raise error(errno.EPERM, "RLIMIT_MEMLOCK is 0")
    if flags & MCL_CURRENT and memlock is not None:
        if sum(vma.npages for vma in mm.vmas()) > memlock >> PAGE_SHIFT:
            raise error(errno.ENOMEM, "would lock more than RLIMIT_MEMLOCK")
    _apply_mlockall(mm, flags)
    if flags & MCL_CURRENT:
        mm_populate(mm, 0, mm.task_size)   # errors (and a range too big) ignored
    return 0


def munlockall(mm: Mm):
    """munlockall(2)."""
    _apply_mlockall(mm, 0)
    return 0


def _apply_mlockall(mm, flags):
    """apply_mlockall_flags: def_flags for MCL_FUTURE, then every VMA's lock bits for
    MCL_CURRENT (or cleared), each change through the merge engine, errors ignored."""
    onfault = VM_LOCKONFAULT if flags & MCL_ONFAULT else 0
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & MCL_FUTURE:
        mm.def_flags |= VM_LOCKED | onfault
        if not flags & MCL_CURRENT:
            return
    to_add = VM_LOCKED | onfault if flags & MCL_CURRENT else 0
    addr = 0
    while True:
        vma = mm.find_vma(addr)
        if vma is None:
            return
        addr = vma.end
        newflags = (vma.vm_flags & ~VM_LOCKED_MASK) | to_add
        if newflags != vma.vm_flags and not vma.vm_flags & VM_SPECIAL:
            try:
                addr = mm.modify(vma, vma.start, vma.end, newflags).end
            except OSError:
                pass


def munlock(mm: Mm, addr, length):
    """munlock(2)."""
    start, end = _lock_range(addr, length)
    if end == start:
        return 0
    _apply_lock(mm, start, end, 0)
    return 0


# ---------------------------------------------------------------------- mremap


def mremap(mm: Mm, old_addr, old_len, new_len, flags=0, new_addr=0, memlock=None):
    """mremap(2): shrink, grow in place, or move (MREMAP_MAYMOVE / FIXED / DONTUNMAP).
    ``memlock``: the caller's RLIMIT_MEMLOCK in bytes, None with CAP_IPC_LOCK."""
    if flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP):
        raise error(errno.EINVAL)
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        raise error(errno.EINVAL)
    if flags & MREMAP_DONTUNMAP and not flags & MREMAP_MAYMOVE:
        raise error(errno.EINVAL)
    if not _aligned(old_addr):
        raise error(errno.EINVAL)
    old_len = _page_align(old_len)
    new_len = _page_align(new_len)
    if not new_len or new_len > mm.task_size:
        raise error(errno.EINVAL)
    if flags & MREMAP_DONTUNMAP and old_len != new_len:
        raise error(errno.EINVAL)
    if flags & MREMAP_FIXED:
        if not _aligned(new_addr) or new_len > mm.task_size or new_addr > mm.task_size - new_len:
            raise error(errno.EINVAL)
        if new_addr < old_addr + old_len and old_addr < new_addr + new_len:
            raise error(errno.EINVAL)
    vma = mm.vma_lookup(old_addr)
    if vma is None:
        raise error(errno.EFAULT)
    if not flags & (MREMAP_FIXED | MREMAP_DONTUNMAP) and old_len == new_len:
        return old_addr
    if flags & MREMAP_FIXED:
        if old_len == new_len and old_len:
            # A move-only remap goes VMA by VMA and may span several (6.17+).
            return _move_multi(mm, old_addr, old_len, new_addr, flags)
        # Anything else must stay inside one VMA, checked (with the shrunk length)
        # before the destination or the tail is touched.
        _resize_is_valid(vma, old_addr, min(old_len, new_len), new_len, flags, mm, memlock)
        mm.unmap(new_addr, new_addr + new_len)
        if old_len > new_len:
            munmap(mm, old_addr + new_len, old_len - new_len)
            old_len = new_len
        vma = mm.vma_lookup(old_addr)
        if vma is None:
            raise error(errno.EFAULT)
        return _move(mm, vma, old_addr, old_len, new_len, new_addr, flags)
    if old_len >= new_len and not flags & MREMAP_DONTUNMAP:
        if old_len > new_len:
            munmap(mm, old_addr + new_len, old_len - new_len)
        return old_addr
    _resize_is_valid(vma, old_addr, old_len, new_len, flags, mm, memlock)
    if not flags & MREMAP_DONTUNMAP and old_len and old_addr + old_len == vma.end:
        # Grow in place when the space after the VMA is free (vma_merge_extend).
        delta = new_len - old_len
        nxt = mm.next_of(vma.end)
        if vma.end + delta <= mm.task_size and (nxt is None or nxt.start >= vma.end + delta):
            if vma.vm_flags & VM_ACCOUNT:
                overcommit.charge(mm, delta >> PAGE_SHIFT)   # vrm_calc_charge
                try:
                    mm.expand(vma, vma.end + delta)
                except OSError:
                    overcommit.vm_unacct_memory(mm.kernel, delta >> PAGE_SHIFT)
                    raise
            else:
                mm.expand(vma, vma.end + delta)
            if vma.vm_flags & VM_LOCKED:
                mm_populate(mm, old_addr + old_len, old_addr + new_len)
            return old_addr
    if not flags & MREMAP_MAYMOVE:
        raise error(errno.ENOMEM)
    return _move(mm, vma, old_addr, old_len, new_len, 0, flags)


def _resize_is_valid(vma, old_addr, old_len, new_len, flags, mm=None, memlock=None):
    """resize_is_valid (mm/mremap.c), in its order; growing a locked VMA must fit under
    RLIMIT_MEMLOCK (``memlock``, checked when ``mm`` is given)."""
    if not old_len and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        raise error(errno.EINVAL, "duplicating a private mapping")
    if flags & MREMAP_DONTUNMAP and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise error(errno.EINVAL)
    if old_len > vma.end - old_addr:
        raise error(errno.EFAULT, "range spans VMAs")
    if new_len > old_len and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise error(errno.EFAULT)
    if mm is not None and new_len > old_len and not mlock_future_ok(
            mm, vma.vm_flags, new_len - old_len, memlock):
        raise error(errno.EAGAIN, "would lock more than RLIMIT_MEMLOCK")


def _move(mm, vma, old_addr, old_len, new_len, new_addr, flags):
    """move_vma: a new VMA at the destination (merging via copy_vma), pages carried."""
    _resize_is_valid(vma, old_addr, old_len, new_len, flags)
    if mm.map_count >= mm.kernel.max_map_count - 3:
        raise error(errno.ENOMEM)
    if flags & MREMAP_FIXED:
        dest = new_addr
    else:
        dest = mm.get_unmapped_area(0, new_len, vma.pgoff_at(old_addr),
                                    MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0, vma.file)
    # vrm_calc_charge: an accounted move charges the growth, or the whole new length
    # when the source stays mapped (MREMAP_DONTUNMAP).
    dontunmap = flags & MREMAP_DONTUNMAP
    charged = 0
    if vma.vm_flags & VM_ACCOUNT:
        charged = (new_len if dontunmap else max(new_len - old_len, 0)) >> PAGE_SHIFT
        overcommit.charge(mm, charged)
    if not old_len:
        # Duplicating a shared mapping: a second view of the same pages elsewhere.
        mm.insert(Vma(dest, dest + new_len, vma.vm_flags, vma.pgoff_at(old_addr), vma.file))
        return dest
    old_end = old_addr + old_len
    whole = old_addr == vma.start and old_end == vma.end
    if dontunmap:
        # The source is never split: its pages in the range leave, the VMA stays whole
        # (THPs across the range's ends are split, as the page-table move does).
        pages.split_huge_at(vma, old_addr, mm)
        pages.split_huge_at(vma, old_end, mm)
    else:
        # Carve the moving part out as a VMA of its own.
        if old_addr > vma.start:
            mm.split(vma, old_addr, new_below=True)  # vma keeps the part from old_addr up
        if old_end < vma.end:
            mm.split(vma, old_end, new_below=False)
    pgoff = vma.pgoff_at(old_addr)
    if vma.is_anonymous() and vma.anon_vma is None:
        pgoff = dest >> PAGE_SHIFT  # an unfaulted VMA takes the new address' pgoff
    delta = dest - old_addr
    if delta & (PMD_SIZE - 1):
        pages.split_pmds(mm, vma, old_addr, old_end)
    moved, moved_guards = pages.take_range(vma, old_addr, old_end, mm)
    # copy_vma: the whole new length at the destination merges with a neighbour or is a
    # copy of the source.
    new_end = dest + new_len
    prop = MergeProposal(dest, new_end, vma.vm_flags, pgoff, vma.file, vma.anon_vma,
                         vma.anon_name, vma.uffd_ctx, vma.policy, copied_from=vma)
    copy = dup_vma(vma)
    copy.start, copy.end, copy.pgoff = dest, new_end, pgoff
    target = mm.merge_or_insert(prop, mm.prev_of(dest), mm.next_of(new_end), vma=copy)
    pages.put_range(target, moved, moved_guards, delta >> PAGE_SHIFT)
    pages.folios_moved(mm, old_addr >> PAGE_SHIFT, old_end >> PAGE_SHIFT, delta >> PAGE_SHIFT)
    if dontunmap:
        # The source stays mapped, emptied over the range.  The whole VMA loses its
        # lock (dontunmap_complete clears VM_LOCKED without splitting), and its
        # anon_vma only when all of it moved.
        mm.set_vm_flags(vma, vma.vm_flags & ~VM_LOCKED_MASK)
        if whole:
            vma.anon_vma = None
            vma.forked = False
    else:
        # The source may have merged into the destination (copy_vma allows it for an
        # unfaulted VMA): unmap the old range, not the VMA object.  The move does not
        # raise VmPeak: move_vma puts the high-water mark back after the unmap.
        hiwater_vm = mm.hiwater_vm
        mm.unmap(old_addr, old_addr + old_len)
        mm.hiwater_vm = hiwater_vm
        if target.vm_flags & VM_ACCOUNT:
            # The source's charge moves with it (move_vma hides VM_ACCOUNT from the
            # unmap of the old range).
            overcommit.vm_acct_memory(mm.kernel, old_len >> PAGE_SHIFT)
    if new_len > old_len and mm.vma_lookup(dest).vm_flags & VM_LOCKED:
        mm_populate(mm, dest + old_len, new_end)
    return dest


def _move_multi(mm, old_addr, length, new_addr, flags):
    """A move-only mremap over several VMAs and the gaps between them (6.17+): each
    VMA piece goes to the same offset at the destination, gaps included."""
    if new_addr < old_addr + length and old_addr < new_addr + length:
        raise error(errno.EINVAL)
    if mm.vma_lookup(old_addr) is None:
        raise error(errno.EFAULT, "range starts in a gap")
    pieces = [(max(v.start, old_addr), min(v.end, old_addr + length))
              for v in mm.vmas(old_addr, old_addr + length)]
    for start, end in pieces:
        # Each piece replaces only its own part of the destination; what lies opposite
        # a gap in the source stays mapped.
        dest = new_addr + (start - old_addr)
        mm.unmap(dest, dest + end - start)
        vma = mm.vma_lookup(start)
        _move(mm, vma, start, end - start, end - start, dest, flags)
    return new_addr


# ---------------------------------------------------------------------- brk


def brk(mm: Mm, addr, memlock=None):
    """brk(2): move the program break; returns the new break, or the old one when the
    request cannot be met (SYSCALL_DEFINE1(brk) never fails with an errno).
    ``memlock`` as for mlock: growth locked by mlockall(MCL_FUTURE) must fit under it."""
    if addr < mm.start_brk:
        return mm.brk
    newbrk = _page_align(addr)
    oldbrk = _page_align(mm.brk)
    if oldbrk == newbrk:
        mm.brk = addr
        return mm.brk
    if addr <= mm.brk:
        # Shrinking is always allowed, if a brk VMA is really there to shrink.
        heap = mm.find_vma_intersection(newbrk, oldbrk)
        if heap is None:
            return mm.brk
        mm.brk = addr
        mm.unmap(newbrk, oldbrk)
        return mm.brk
    # A break past the user address space cannot be mapped.  (On the kernel the stack
    # above the heap, or overcommit, stops it first; a synthetic process has no stack.)
    if newbrk < oldbrk or newbrk > mm.task_size:
        return mm.brk
    # Growing needs a page of room below the next mapping (and its stack guard gap).
    nxt = mm.find_vma_intersection(oldbrk, newbrk + PAGE_SIZE + STACK_GUARD_GAP)
    if nxt is not None and newbrk + PAGE_SIZE > vm_start_gap(nxt):
        return mm.brk
    vm_flags = (VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
                | mm.def_flags)
    # do_brk_flags may extend the VMA just below the break, found by vma_prev_limit with
    # start_brk as the floor: a VMA reaching above start_brk counts even when it starts
    # below it (the live kernel merges with one mapped over the heap's bottom).
    if not mlock_future_ok(mm, mm.def_flags, newbrk - oldbrk, memlock):   # check_brk_limits
        return mm.brk
    try:
        overcommit.charge(mm, (newbrk - oldbrk) >> PAGE_SHIFT)   # do_brk_flags
    except OSError:
        return mm.brk
    prev = mm.prev_of(oldbrk)
    if prev is not None and prev.end <= mm.start_brk:
        prev = None
    heap = mm.merge_or_insert(MergeProposal(oldbrk, newbrk, vm_flags, oldbrk >> PAGE_SHIFT),
                              prev, None, just_expand=True)
    mm.kernel.khugepaged.enter_vma(mm, heap)   # do_brk_flags
    mm.brk = addr
    if mm.def_flags & VM_LOCKED:
        mm_populate(mm, oldbrk, newbrk)
    return mm.brk


__all__ = ["mmap", "munmap", "mprotect", "mremap", "mlock", "munlock", "mlockall", "munlockall",
           "brk", "mm_populate",
           "mmap_region", "calc_vm_prot_bits"]
