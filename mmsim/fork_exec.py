"""fork: duplicating an address space by the kernel's rules (kernel/fork.c dup_mm and
mm_init, mm/mmap.c dup_mmap).  Exec arrives with the ELF loader."""

import os
import stat
from itertools import compress, count, repeat
from operator import attrgetter, is_not

from . import mctl, overcommit, pages
from .binfmt_elf import load_binprm, prepare_exec
from .cred import CAP_FULL_SET
from .defs import PAGE_SHIFT, bulk_build, error
from .mm import (MMF_DISABLE_THP_MASK, MMF_DUMP_FILTER_DEFAULT, MMF_DUMPABLE_MASK, MMF_HAS_MDWE,
                 MMF_HAS_MDWE_NO_INHERIT, MMF_TOPDOWN, MMF_VM_MERGE_ANY, Mm)
from .vma_tree import VmaTree
from .vma import (VM_ACCOUNT, VM_DONTCOPY, VM_INIT_DEF_MASK, VM_LOCKED_MASK, VM_MIXEDMAP,
                  VM_PFNMAP, VM_WIPEONFORK, AnonVma, Vma)

# The mm flags a new mm takes over from the one it is made from (MMF_INIT_LEGACY_MASK).
MMF_DUMP_FILTER_MASK = 0x1FF << 2
MMF_INIT_LEGACY_MASK = (MMF_DUMPABLE_MASK | MMF_DUMP_FILTER_MASK | MMF_DISABLE_THP_MASK
                        | MMF_HAS_MDWE | MMF_VM_MERGE_ANY | MMF_TOPDOWN)


def mmf_init_legacy_flags(flags):
    """The flags a new mm inherits: MDWE is dropped entirely when it was set NO_INHERIT."""
    if flags & MMF_HAS_MDWE_NO_INHERIT:
        flags &= ~(MMF_HAS_MDWE | MMF_HAS_MDWE_NO_INHERIT)
    return flags & MMF_INIT_LEGACY_MASK


def mm_init(kernel, oldmm):
    """A new, empty mm whose flags and def_flags come from ``oldmm`` (mm_init)."""
    if oldmm is None:
        return Mm(kernel, flags=MMF_DUMP_FILTER_DEFAULT | 1)
    mm = Mm(kernel, flags=mmf_init_legacy_flags(oldmm.flags),
            def_flags=oldmm.def_flags & VM_INIT_DEF_MASK)
    mm.memcg = oldmm.memcg
    return mm


# The mm fields dup_mm copies with the rest of the struct: where the image and the break
# are, the program file (dup_mm_exe_file) and the vDSO (arch_dup_mmap).
LAYOUT_FIELDS = ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                 "start_stack", "arg_start", "arg_end", "env_start", "env_end", "exe_file",
                 "vdso")


def dup_mm(kernel, oldmm):
    """fork's copy of ``oldmm`` (dup_mm + dup_mmap)."""
    # Fork of a large address space is a hot path (benchmarks/fork.py): one pass makes
    # the copies (unlinked, so nothing is observable yet) and sums what the charge
    # needs, kept from the cyclic collector (bulk_build); the few VMAs needing more
    # than a field copy are fixed up once the charge has gone through.
    olds = oldmm.vmas()
    with bulk_build():
        bounds, copies, seen, total, biggest = _copy_vmas(olds)
        if seen & VM_DONTCOPY:
            keep = [not old.vm_flags & VM_DONTCOPY for old in olds]
            olds = list(compress(olds, keep))
            bounds, copies, seen, total, biggest = _copy_vmas(olds)
        _charge_copies(oldmm, total >> PAGE_SHIFT, biggest >> PAGE_SHIFT)
        mm = mm_init(kernel, oldmm)
        mctl.inherit(oldmm, mm)
        mm.task_size = oldmm.task_size
        mm.mmap_base = oldmm.mmap_base
        for name in LAYOUT_FIELDS:
            setattr(mm, name, getattr(oldmm, name))
        _fix_copies(mm, olds, copies, seen)
    # The parent's tree is already in order: build the child's in one pass (__mt_dup).
    mm.tree = VmaTree.from_parts(bounds, copies, check=False)
    # dup_mm starts the child's high-water marks at what it holds.
    mm.total_vm = (sum(bounds[1::2]) - sum(bounds[0::2])) >> PAGE_SHIFT
    mm.hiwater_vm = mm.total_vm
    mm.hiwater_rss = mm.rss_anon + mm.rss_file + mm.rss_shmem
    return mm


def _copy_vmas(olds):
    """dup_mmap's loop, first half: a copy of every VMA of ``olds`` with no anon_vma,
    their bounds interleaved, the OR of their flags, and the bytes of the accounted
    ones, in total and the largest."""
    bounds = []
    copies = []
    add_bounds = bounds.extend
    append = copies.append
    new_vma = Vma
    accounted = VM_ACCOUNT
    seen = total = biggest = 0
    for old in olds:
        flags = old.vm_flags
        seen |= flags
        start = old.start
        end = old.end
        if flags & accounted:
            n = end - start
            total += n
            if n > biggest:
                biggest = n
        add_bounds((start, end))
        append(new_vma(start, end, flags, old.pgoff, old.file, None, False, old.anon_name,
                       old.special, old.close_hook, old.uffd_ctx, old.policy))
    return bounds, copies, seen, total, biggest


def _charge_copies(oldmm, total, biggest):
    """dup_mmap charges every accounted VMA the child gets (``total`` pages, the largest
    ``biggest``), each checked on its own; ENOMEM (and nothing charged) when the
    overcommit policy refuses one.  Checked in aggregate: the heuristic refuses only a
    VMA larger than RAM, and the strict limit is crossed by some prefix of the VMAs
    exactly when it is crossed by all of them."""
    if oldmm.kernel.overcommit_memory == overcommit.OVERCOMMIT_GUESS:
        overcommit.charge(oldmm, biggest)   # the heuristic's test, on the largest one
        overcommit.vm_acct_memory(oldmm.kernel, total - biggest)
    else:
        overcommit.charge(oldmm, total)


_anon_vma = attrgetter("anon_vma")


def _fix_copies(mm, olds, copies, seen):
    """dup_mmap's loop, second half: mlock is not inherited, and a VMA with an anon_vma
    (unless wiped on fork) or raw page frames shares its pages."""
    if seen & VM_LOCKED_MASK:
        keep = ~VM_LOCKED_MASK
        for new in copies:
            new.vm_flags &= keep
    todo = compress(count(), map(is_not, map(_anon_vma, olds), repeat(None)))
    raw = VM_PFNMAP | VM_MIXEDMAP
    if seen & raw:
        todo = sorted(set(todo).union(i for i, old in enumerate(olds) if old.vm_flags & raw))
    wipe = VM_WIPEONFORK
    share = pages.share_pages
    for i in todo:
        old = olds[i]
        if old.vm_flags & wipe:
            continue
        new = copies[i]
        if old.anon_vma is not None:
            # anon_vma_fork: a new anon_vma of the child's own, chained to the
            # parent's: the VMA now has unCoWed parents, which the merge rules read.
            new.anon_vma = AnonVma()
            new.forked = True
        # copy_page_range runs only where there is private anonymous memory or raw
        # page frames: shared file and shmem pages fault back in on demand.
        share(mm, old, new)


def execve(proc, path, argv=None, envp=None):
    """execve(2): read and check everything first (errors leave the process as it was),
    then build the new mm, switch to it (exec_mmap), recompute dumpable and handle a
    set-id file."""
    kernel = proc.kernel
    old = proc.mm
    bprm = prepare_exec(kernel, path, argv, envp, cwd=proc.cwd)
    # The credentials come from the ELF file that runs (a script's interpreter): the
    # set-id bits of a script itself are ignored (bprm_creds_from_file).
    st = bprm.host.st
    cred = proc.cred
    new_cred = cred.copy()
    if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISUID:
        new_cred.euid = new_cred.suid = new_cred.fsuid = st.st_uid
    if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISGID:
        new_cred.egid = new_cred.sgid = new_cred.fsgid = st.st_gid
    secureexec = new_cred.euid != new_cred.uid or new_cred.egid != new_cred.gid
    # bprm_mm_init: mm_init() copies from current->mm, so the legacy mm flags (THP
    # disable, KSM merge-any, MDWE) and def_flags & VM_INIT_DEF_MASK survive exec;
    # mctl's persistent properties follow before anything is mapped.
    mm = kernel.new_mm(old)
    mm.user_ns = proc.cred.user_ns
    if old is not None:
        mctl.inherit(old, mm, secureexec)
    try:
        load_binprm(kernel, mm, bprm)
    except OSError:
        mm.unmap(0, mm.task_size)   # mmput of the half-built mm gives its charge back
        raise
    if new_cred.euid == 0 and cred.euid != 0:
        # A set-uid-root file grants the full permitted set (commoncap).
        new_cred.cap_permitted = new_cred.cap_effective = CAP_FULL_SET
    # begin_new_exec: dumpable is SUID_DUMP_USER again unless the exec is secure, then
    # fs.suid_dumpable (0 on the reference machine).
    mm.flags = (mm.flags & ~3) | (0 if secureexec else 1)
    proc.cred = new_cred
    if old is not None:
        old.users -= 1
        if old.users == 0:
            kernel.khugepaged.exit(old)
            old.unmap(0, old.task_size)
    proc.mm = mm
    proc.comm = os.path.basename(path)[:15]
    return 0
