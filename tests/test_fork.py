"""fork: dup_mm/dup_mmap rules (kernel/fork.c, mm/mmap.c); merge.c's two fork cases are in
tests/test_merge_selftests.py, run on mmsim and on the live kernel.  Expected values are the kernel's (reference notes
checked live on 6.18: kernel-semantics.md section 1 and 5.1, vma-store.md section 3.3)."""

from mmsim.fork_exec import MMF_INIT_LEGACY_MASK, mmf_init_legacy_flags
from mmsim.kernel import Kernel
from mmsim.procfs import VSYSCALL_SMAPS
from mmsim.mm import (MMF_DISABLE_THP_COMPLETELY, MMF_DISABLE_THP_EXCEPT_ADVISED, MMF_HAS_MDWE,
                      MMF_HAS_MDWE_NO_INHERIT, MMF_VM_HUGEPAGE, MMF_VM_MERGE_ANY)
from mmsim.uapi import (MADV_DONTDUMP, MADV_DONTFORK, MADV_HUGEPAGE, MADV_WIPEONFORK,
                        MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED,
                        PR_SET_THP_DISABLE, PROT_READ, PROT_WRITE)
from mmsim.vma import VM_LOCKED, VM_NOHUGEPAGE

P = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def test_dontfork_wipeonfork_locks_and_flags(kernel, proc):
    """DONTCOPY VMAs are left out; WIPEONFORK ones come back empty; mlock is dropped;
    every other flag (hg, dd, ...) is kept and the boundaries are the parent's."""
    a = proc.mmap(0, 12 * P, RW, ANON)
    proc.touch(a, 12 * P)
    proc.madvise(a, 2 * P, MADV_DONTFORK)
    proc.madvise(a + 2 * P, 2 * P, MADV_WIPEONFORK)
    proc.madvise(a + 4 * P, 2 * P, MADV_HUGEPAGE)
    proc.madvise(a + 6 * P, 2 * P, MADV_DONTDUMP)
    proc.mlock(a + 8 * P, 2 * P)
    c = proc.fork()
    assert c.ppid == proc.pid and c.pid != proc.pid
    pv = [(v.start, v.end) for v in proc.mm.vmas()]
    cv = [(v.start, v.end) for v in c.mm.vmas()]
    assert cv == pv[1:]                                  # the DONTFORK VMA is missing
    wiped = c.mm.vma_lookup(a + 2 * P)
    assert not wiped.pages and wiped.anon_vma is None and "wf" in repr(wiped)
    assert "hg" in repr(c.mm.vma_lookup(a + 4 * P)) and "dd" in repr(c.mm.vma_lookup(a + 6 * P))
    assert not c.mm.vma_lookup(a + 8 * P).vm_flags & VM_LOCKED
    assert proc.mm.vma_lookup(a + 8 * P).vm_flags & VM_LOCKED
    assert c.mm.rss_anon == 8                            # 12 minus DONTFORK and WIPEONFORK
    c.mm.check()
    proc.mm.check()


def test_child_shares_pages_copy_on_write(kernel, proc):
    """After fork the pages are shared (Pss halves); a write in the child copies one."""
    a = proc.mmap(0, 4 * P, RW, ANON)
    proc.touch(a, 4 * P)
    c = proc.fork()
    smaps = kernel.proc_read(f"/proc/{c.pid}/smaps")
    assert "Shared_Dirty:         16 kB" in smaps and "Pss:                   8 kB" in smaps
    c.touch(a, P)
    smaps = kernel.proc_read(f"/proc/{proc.pid}/smaps")
    assert "Private_Dirty:         4 kB" in smaps and "Shared_Dirty:         12 kB" in smaps


def test_shared_anon_not_prefaulted_in_child(kernel, proc):
    """Shared mappings without an anon_vma are not copied: the child's Rss is 0 there."""
    a = proc.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    proc.touch(a, 4 * P)
    c = proc.fork()
    assert not c.mm.vma_lookup(a).pages and c.mm.rss_shmem == 0 and proc.mm.rss_shmem == 4


def test_mm_flags_and_def_flags_through_the_init_mask():
    """mm_init(): the THP-disable, KSM merge-any, MDWE and TOPDOWN bits are inherited,
    MDWE with NO_INHERIT is dropped, khugepaged registration is not; of def_flags only
    VM_NOHUGEPAGE survives (mlockall's VM_LOCKED does not)."""
    assert mmf_init_legacy_flags(MMF_DISABLE_THP_COMPLETELY | MMF_VM_HUGEPAGE) == \
        MMF_DISABLE_THP_COMPLETELY
    assert mmf_init_legacy_flags(MMF_HAS_MDWE | MMF_HAS_MDWE_NO_INHERIT) == 0
    assert mmf_init_legacy_flags(MMF_HAS_MDWE | MMF_VM_MERGE_ANY) == MMF_HAS_MDWE | MMF_VM_MERGE_ANY
    assert MMF_DISABLE_THP_EXCEPT_ADVISED & MMF_INIT_LEGACY_MASK
    k = Kernel(randomize=False)
    p = k.spawn()
    p.prctl(PR_SET_THP_DISABLE, 1)
    p.mm.def_flags = VM_NOHUGEPAGE | VM_LOCKED
    c = p.fork()
    assert c.mm.flags & MMF_DISABLE_THP_COMPLETELY
    assert c.mm.def_flags == VM_NOHUGEPAGE
    assert "THP_enabled:\t0" in k.proc_read(f"/proc/{c.pid}/status")


def test_threads_share_the_mm():
    """CLONE_VM|CLONE_SIGHAND|CLONE_THREAD: one mm for both; a prctl in one thread is
    seen by the other (kernel-semantics.md 1.3, live); the mm goes with its last user."""
    from mmsim.uapi import CLONE_SIGHAND, CLONE_THREAD, CLONE_VM, PR_GET_THP_DISABLE
    import errno
    import pytest
    k = Kernel(randomize=False)
    p = k.spawn()
    a = p.mmap(0, 4 * P, RW, ANON)
    t = p.clone(CLONE_VM | CLONE_SIGHAND | CLONE_THREAD)
    assert t.mm is p.mm and t.tgid == p.tgid and p.mm.users == 2
    t.prctl(PR_SET_THP_DISABLE, 1)
    assert p.prctl(PR_GET_THP_DISABLE) == 1
    t.touch(a, P)
    assert p.mm.rss_anon == 1
    t.exit(0)
    assert p.mm.map_count == 1                       # still the other thread's
    with pytest.raises(OSError) as exc:
        p.clone(CLONE_THREAD)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        p.clone(CLONE_SIGHAND)
    assert exc.value.errno == errno.EINVAL
    v = p.vfork()
    assert v.mm is p.mm and v.tgid != p.tgid
    v.exit(0)
    p.exit(0)
    assert p.mm is None


def test_referenced_after_fork_and_cold():
    """copy_present_pte makes the child's PTEs old: its Referenced counts only what it
    touched since (or folios an mlock populate marked); MADV_COLD clears both, except
    on folios the child still shares, and a page zapped and faulted again is young.
    (The parent's numbers are what Linux 6.18 shows for the same steps.)"""
    from mmsim.uapi import MADV_COLD, MADV_DONTNEED
    k = Kernel(randomize=False)
    p = k.spawn()
    a = p.mmap(0, 8 * P, RW, ANON)
    p.touch(a, 8 * P)
    c = p.fork()
    ref = lambda proc: [l for l in k.proc_read(f"/proc/{proc.pid}/smaps")
                        .removesuffix(VSYSCALL_SMAPS).splitlines() if l.startswith("Referenced")]
    assert ref(c) == ["Referenced:            0 kB"]
    c.touch(a, 2 * P)
    assert ref(c) == ["Referenced:            8 kB"]
    assert ref(p) == ["Referenced:           32 kB"]
    p.madvise(a, 8 * P, MADV_COLD)
    assert ref(p) == ["Referenced:           24 kB"]   # the six pages c still shares
    p.madvise(a, P, MADV_DONTNEED)
    p.touch(a, P)
    assert ref(p) == ["Referenced:           28 kB"]
