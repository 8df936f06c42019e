"""Overcommit accounting (mm/util.c ``__vm_enough_memory``, ``vm_commit_limit``): the
machine-wide ``Committed_AS`` counter and the vm.overcommit_memory policies that decide
whether a new commitment of address space is allowed.

The counter lives on the ``Kernel`` (``committed_as``, in pages) together with the knobs
(``overcommit_memory``, ``overcommit_ratio``, ``overcommit_kbytes``, ``memory``,
``admin_reserve_kbytes``, ``user_reserve_kbytes``).  This module is a leaf: it reads
those attributes and the VMAs it is given, and imports nothing above ``vma`` but the
capability check (``cred``, itself a leaf) that mode 2's admin reserve asks.
"""

import errno
import os

from .cred import CAP_SYS_ADMIN, capable
from .defs import PAGE_SHIFT
from .vma import VM_ACCOUNT

OVERCOMMIT_GUESS, OVERCOMMIT_ALWAYS, OVERCOMMIT_NEVER = 0, 1, 2


def totalram_pages(kernel):
    """totalram_pages(): the machine's memory in pages (``Kernel(memory=...)``)."""
    return kernel.memory >> PAGE_SHIFT


def total_swap_pages(kernel):
    """total_swap_pages: the slots of the swap devices (none until Kernel.swapon)."""
    return kernel.swap_total_pages()


def commit_limit(kernel):
    """vm_commit_limit(): overcommit_kbytes if set, else overcommit_ratio percent of
    RAM (no hugetlb pages here), plus swap; in pages."""
    if kernel.overcommit_kbytes:
        allowed = kernel.overcommit_kbytes >> (PAGE_SHIFT - 10)
    else:
        allowed = totalram_pages(kernel) * kernel.overcommit_ratio // 100
    return allowed + total_swap_pages(kernel)


def default_reserves(memory):
    """init_admin_reserve / init_user_reserve at boot with all memory free: 1/32 of it,
    capped at 8 MiB and 128 MiB; returns ``(admin_kbytes, user_kbytes)``."""
    free_kbytes = memory >> 10
    return min(free_kbytes // 32, 1 << 13), min(free_kbytes // 32, 1 << 17)


def vm_acct_memory(kernel, pages):
    """Add ``pages`` to Committed_AS without any check."""
    kernel.committed_as += pages


def vm_unacct_memory(kernel, pages):
    """Take ``pages`` off Committed_AS."""
    kernel.committed_as -= pages


def vm_enough_memory(mm, pages, cap_sys_admin=True):
    """__vm_enough_memory: charge ``pages`` to Committed_AS, or raise ENOMEM (leaving
    the counter as it was) when the overcommit policy refuses them."""
    kernel = mm.kernel
    vm_acct_memory(kernel, pages)
    mode = kernel.overcommit_memory
    if mode == OVERCOMMIT_ALWAYS:
        return
    if mode == OVERCOMMIT_GUESS:
        # Since 5.2 the heuristic only refuses a single request larger than RAM + swap.
        if pages <= totalram_pages(kernel) + total_swap_pages(kernel):
            return
    else:
        allowed = commit_limit(kernel)
        if not cap_sys_admin:
            allowed -= kernel.admin_reserve_kbytes >> (PAGE_SHIFT - 10)
        reserve = kernel.user_reserve_kbytes >> (PAGE_SHIFT - 10)
        allowed -= min(total_vm(mm) // 32, reserve)
        if committed(kernel) < allowed:
            return
    vm_unacct_memory(kernel, pages)
    raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM) + ": overcommit refused")


def total_vm(mm):
    """mm->total_vm: the pages of every VMA of ``mm``."""
    return sum(vma.npages for vma in mm.vmas())


def accounted_pages(mm, start, end):
    """The pages of VM_ACCOUNT VMAs of ``mm`` that lie inside ``[start, end)``."""
    n = 0
    for vma in mm.vmas(start, end):
        if vma.vm_flags & VM_ACCOUNT:
            n += (min(vma.end, end) - max(vma.start, start)) >> PAGE_SHIFT
    return n


def _live_mms(kernel):
    seen = set()
    for proc in kernel.processes.values():
        mm = proc.mm
        if mm is not None and id(mm) not in seen:
            seen.add(id(mm))
            yield mm


def _mapped_shmem(kernel):
    """The inodes of every shmem file some live VMA maps."""
    return {vma.file.inode for mm in _live_mms(kernel) for vma in mm.vmas()
            if vma.file is not None and vma.file.shmem}


def shmem_held(kernel, inode, pages):
    """Record that ``pages`` already charged (shmem_acct_size) belong to the shmem
    object ``inode``: they are given back once no mapping of it is left."""
    kernel.shmem_committed[inode] = pages


def prune_shmem(kernel):
    """shmem_unacct_size of every shmem object no mapping uses any more (the kernel
    does it when the object dies; the model finds out lazily, when asked)."""
    held = kernel.shmem_committed
    if not held:
        return
    alive = _mapped_shmem(kernel)
    for inode in [i for i in held if i not in alive]:
        vm_unacct_memory(kernel, held.pop(inode))


def committed(kernel):
    """Committed_AS in pages (percpu_counter_read_positive(&vm_committed_as))."""
    prune_shmem(kernel)
    return max(kernel.committed_as, 0)


def committed_by_vmas(kernel):
    """Committed_AS recomputed from scratch: the VM_ACCOUNT pages of every live address
    space plus the charges of the shmem objects still mapped (what the counter must
    equal; a checking aid)."""
    n = sum(accounted_pages(mm, 0, 1 << 64) for mm in _live_mms(kernel))
    alive = _mapped_shmem(kernel)
    return n + sum(pages for inode, pages in kernel.shmem_committed.items() if inode in alive)


def caller_is_admin(mm):
    """Whether the process running on ``mm`` has CAP_SYS_ADMIN (cap_vm_enough_memory).
    Simulator-defined: an mm no running process uses yet (exec building it) counts as
    the admin's."""
    for proc in mm.kernel.processes.values():
        if proc.mm is mm and proc.state == "running":
            return capable(proc.cred, CAP_SYS_ADMIN)
    return True


def charge(mm, pages):
    """security_vm_enough_memory_mm: ``vm_enough_memory`` with the caller's
    CAP_SYS_ADMIN looked up only when the strict policy needs it."""
    if not pages:
        return
    kernel = mm.kernel
    mode = kernel.overcommit_memory
    if mode == OVERCOMMIT_ALWAYS or (mode == OVERCOMMIT_GUESS
                                     and pages <= totalram_pages(kernel)):
        kernel.committed_as += pages   # the common case, without the general path
        return
    vm_enough_memory(mm, pages, caller_is_admin(mm) if mode == OVERCOMMIT_NEVER else True)


__all__ = ["charge", "committed", "shmem_held", "prune_shmem", "vm_enough_memory", "vm_acct_memory", "vm_unacct_memory", "commit_limit",
           "accounted_pages", "committed_by_vmas", "OVERCOMMIT_GUESS", "OVERCOMMIT_ALWAYS",
           "OVERCOMMIT_NEVER"]
