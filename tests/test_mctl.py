"""mctl(): actions, flags, errors, permissions, persistence and its composition with
PR_SET_THP_DISABLE, as docs/mctl.md defines them."""

import errno
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim import mctl as M
from mmsim.kernel import Kernel
from mmsim.uapi import (CLONE_NEWUSER, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MAP_ANONYMOUS, MAP_FIXED,
                        MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, MCTL_CLEAR_FADE_ON_DEATH,
                        MCTL_CLEAR_HUGEPAGE, MCTL_CLEAR_NOHUGEPAGE, MCTL_GET,
                        MCTL_SET_DEFAULT_EXEC, MCTL_SET_FADE_ON_DEATH, MCTL_SET_HUGEPAGE,
                        MCTL_SET_NOHUGEPAGE, PIDFD_SELF, PR_SET_THP_DISABLE,
                        PR_THP_DISABLE_EXCEPT_ADVISED, PROT_READ, PROT_WRITE)
from mmsim.vma import VM_HUGEPAGE, VM_NOHUGEPAGE
from mmsim.testing import errno_of

P = 4096
PMD = 2 << 20
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS
SELF = PIDFD_SELF
TRUE = shutil.which("true") or "/usr/bin/true"


def flags_of(proc):
    return [(v.start, v.end, v.vm_flags) for v in proc.mm.vmas()]


def state(proc, prop):
    return (proc.mctl(SELF, MCTL_GET) >> M.GET_SHIFT[prop]) & 3


# ------------------------------------------------------------------ errors


def test_argument_errors_come_first_and_change_nothing():
    k = Kernel()
    root = k.spawn()
    nobody = k.spawn(uid=65534)
    fd = nobody.pidfd_open(root.pid)
    before = flags_of(root), root.mctl(SELF, MCTL_GET)
    assert errno_of(root.mctl, SELF, 99, 0) == errno.EINVAL           # unknown action
    assert errno_of(root.mctl, SELF, MCTL_SET_NOHUGEPAGE, 2) == errno.EINVAL   # unknown flag
    assert errno_of(root.mctl, SELF, MCTL_GET, MCTL_SET_DEFAULT_EXEC) == errno.EINVAL
    # Argument checks before permission: nobody gets EINVAL, not EPERM.
    assert errno_of(nobody.mctl, fd, 99, 0) == errno.EINVAL
    assert errno_of(nobody.mctl, fd, MCTL_SET_NOHUGEPAGE, 8) == errno.EINVAL
    assert errno_of(nobody.mctl, fd, MCTL_SET_NOHUGEPAGE, 0) == errno.EPERM
    assert (flags_of(root), root.mctl(SELF, MCTL_GET)) == before


def test_bad_descriptor_and_exited_target():
    k = Kernel()
    parent = k.spawn()
    child = parent.fork()
    fd = parent.pidfd_open(child.pid)
    assert errno_of(parent.mctl, 9999, MCTL_SET_NOHUGEPAGE, 0) == errno.EBADF
    k.create_file("/data", 4 * P)         # a regular file descriptor is not a pidfd
    file_fd = parent.open("/data")
    assert errno_of(parent.mctl, file_fd, MCTL_SET_NOHUGEPAGE, 0) == errno.EBADF
    child.exit(0)
    assert errno_of(parent.mctl, fd, MCTL_SET_NOHUGEPAGE, 0) == errno.ESRCH
    parent.wait4(child.pid)
    assert errno_of(parent.mctl, fd, MCTL_GET, 0) == errno.ESRCH


@pytest.mark.parametrize("policy", ["strict", "relaxed"])
def test_permissions(policy):
    k = Kernel(mctl_policy=policy)
    root = k.spawn()
    alice = k.spawn(uid=1000)
    alice2 = k.spawn(uid=1000)
    fd_root = alice.pidfd_open(root.pid)
    fd_alice2 = alice.pidfd_open(alice2.pid)
    # Own mm, no flag: always allowed.
    assert alice.mctl(SELF, MCTL_SET_NOHUGEPAGE, 0) == 0
    # Another user's root process: never for alice.
    assert errno_of(alice.mctl, fd_root, MCTL_SET_NOHUGEPAGE, 0) == errno.EPERM
    # A same-user process: only under the relaxed (ptrace-attach) rule.
    want = 0 if policy == "relaxed" else errno.EPERM
    assert errno_of(alice.mctl, fd_alice2, MCTL_SET_NOHUGEPAGE, 0) == want
    # Persisting NOHUGEPAGE: CAP_SYS_ADMIN under strict, anyone under relaxed.
    assert errno_of(alice.mctl, SELF, MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC) == want
    # Persisting something that enables: CAP_SYS_ADMIN under both.
    assert errno_of(alice.mctl, SELF, MCTL_SET_HUGEPAGE, MCTL_SET_DEFAULT_EXEC) == errno.EPERM
    assert errno_of(alice.mctl, SELF, MCTL_SET_FADE_ON_DEATH, MCTL_SET_DEFAULT_EXEC) == errno.EPERM
    # Root may do all of it, to anyone.
    fd_alice = root.pidfd_open(alice.pid)
    assert root.mctl(fd_alice, MCTL_SET_HUGEPAGE, MCTL_SET_DEFAULT_EXEC) == 0
    assert state(alice, M.HUGEPAGE) == M.PERSISTENT


def test_root_in_a_child_namespace_is_not_root_outside():
    k = Kernel()
    victim = k.spawn()
    boxed = k.spawn(uid=1000)
    boxed.unshare(CLONE_NEWUSER)           # every capability, but inside its namespace
    fd = boxed.pidfd_open(victim.pid)
    assert errno_of(boxed.mctl, fd, MCTL_SET_NOHUGEPAGE, 0) == errno.EPERM
    # CAP_SYS_ADMIN over its own namespace is enough to persist for itself.
    assert boxed.mctl(SELF, MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC) == 0


# ------------------------------------------------------------------ semantics


def test_set_walks_every_vma_merges_and_sets_the_default():
    k = Kernel(randomize=False)
    p = k.spawn()
    a = p.mmap(0, 12 * P, RW, ANON)
    p.madvise(a + 4 * P, 4 * P, MADV_HUGEPAGE)                  # three VMAs
    b = p.mmap(0, 4 * P, RW, MAP_SHARED | MAP_ANONYMOUS)
    assert len(p.mm.vmas(a, a + 12 * P)) == 3
    assert p.mctl(SELF, MCTL_SET_NOHUGEPAGE, 0) == 0
    assert len(p.mm.vmas(a, a + 12 * P)) == 1                   # hg dropped: all merge
    assert all(v.vm_flags & VM_NOHUGEPAGE and not v.vm_flags & VM_HUGEPAGE
               for v in p.mm.vmas())
    c = p.mmap(0, 4 * P, RW, ANON)                              # new VMAs start with nh
    assert p.mm.vma_lookup(c).vm_flags & VM_NOHUGEPAGE
    assert p.mm.vma_lookup(b).vm_flags & VM_NOHUGEPAGE
    assert state(p, M.NOHUGEPAGE) == M.ON
    # SET_HUGEPAGE turns NOHUGEPAGE off and gives every VMA hg instead.
    p.mctl(SELF, MCTL_SET_HUGEPAGE, 0)
    assert state(p, M.NOHUGEPAGE) == M.OFF and state(p, M.HUGEPAGE) == M.ON
    assert all(v.vm_flags & VM_HUGEPAGE and not v.vm_flags & VM_NOHUGEPAGE
               for v in p.mm.vmas())
    # CLEAR takes the flag off every VMA, without setting the other one.
    p.mctl(SELF, MCTL_CLEAR_HUGEPAGE, MCTL_SET_DEFAULT_EXEC)    # the flag adds nothing
    assert not any(v.vm_flags & (VM_HUGEPAGE | VM_NOHUGEPAGE) for v in p.mm.vmas())
    assert p.mctl(SELF, MCTL_GET) == 0
    d = p.mmap(0, 4 * P, RW, ANON)
    assert not p.mm.vma_lookup(d).vm_flags & (VM_HUGEPAGE | VM_NOHUGEPAGE)
    p.mm.check()


def test_fade_on_death_is_a_property_only():
    k = Kernel()
    p = k.spawn()
    before = flags_of(p)
    p.mctl(SELF, MCTL_SET_FADE_ON_DEATH, MCTL_SET_DEFAULT_EXEC)
    assert state(p, M.FADE_ON_DEATH) == M.PERSISTENT and flags_of(p) == before
    p.mctl(SELF, MCTL_CLEAR_FADE_ON_DEATH, 0)
    assert state(p, M.FADE_ON_DEATH) == M.OFF


def test_fork_keeps_persistent_properties_only():
    k = Kernel(randomize=False)
    p = k.spawn()
    a = p.mmap(0, 4 * P, RW, ANON)
    p.mctl(SELF, MCTL_SET_NOHUGEPAGE, 0)                        # on, not persistent
    p.mctl(SELF, MCTL_SET_FADE_ON_DEATH, MCTL_SET_DEFAULT_EXEC)
    c = p.fork()
    assert state(c, M.NOHUGEPAGE) == M.OFF and state(c, M.FADE_ON_DEATH) == M.PERSISTENT
    assert c.mm.vma_lookup(a).vm_flags & VM_NOHUGEPAGE         # VMAs copied as they are
    d = c.mmap(0, 4 * P, RW, ANON)
    assert not c.mm.vma_lookup(d).vm_flags & VM_NOHUGEPAGE     # but no default any more
    p.mctl(SELF, MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC)
    c2 = p.fork()
    assert state(c2, M.NOHUGEPAGE) == M.PERSISTENT
    e = c2.mmap(0, 4 * P, RW, ANON)
    assert c2.mm.vma_lookup(e).vm_flags & VM_NOHUGEPAGE


@pytest.mark.skipif(not os.path.exists(TRUE), reason="no 'true' binary to exec")
def test_exec_keeps_persistent_properties_and_applies_them_to_the_new_image():
    k = Kernel()
    p = k.spawn()
    p.mctl(SELF, MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC)
    p.mctl(SELF, MCTL_SET_FADE_ON_DEATH, MCTL_SET_DEFAULT_EXEC)
    p.execve(TRUE)
    assert state(p, M.NOHUGEPAGE) == M.PERSISTENT
    assert state(p, M.FADE_ON_DEATH) == M.PERSISTENT
    assert all(v.vm_flags & VM_NOHUGEPAGE for v in p.mm.vmas())   # segments, stack, vdso
    p.mctl(SELF, MCTL_SET_HUGEPAGE, MCTL_SET_DEFAULT_EXEC)
    p.execve(TRUE)
    assert all(v.vm_flags & VM_HUGEPAGE for v in p.mm.vmas())


def test_secure_exec_drops_enabling_properties():
    """Run by nobody, a set-uid-root binary is a secure exec: the persistent HUGEPAGE
    and FADE_ON_DEATH (set for it by root) are dropped, NOHUGEPAGE would persist."""
    from test_exec import _setuid_root_elf
    path = _setuid_root_elf()
    if path is None:
        pytest.skip("no set-uid-root ELF file on this machine")
    k = Kernel()
    root = k.spawn()
    nobody = k.spawn(uid=65534, gid=65534)
    fd = root.pidfd_open(nobody.pid)
    root.mctl(fd, MCTL_SET_HUGEPAGE, MCTL_SET_DEFAULT_EXEC)
    root.mctl(fd, MCTL_SET_FADE_ON_DEATH, MCTL_SET_DEFAULT_EXEC)
    nobody.execve(path)
    assert nobody.cred.euid == 0
    assert nobody.mctl(SELF, MCTL_GET) == 0
    assert not any(v.vm_flags & VM_HUGEPAGE for v in nobody.mm.vmas())
    other = k.spawn(uid=65534, gid=65534)
    root.mctl(root.pidfd_open(other.pid), MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC)
    other.execve(path)
    assert state(other, M.NOHUGEPAGE) == M.PERSISTENT
    assert all(v.vm_flags & VM_NOHUGEPAGE for v in other.mm.vmas())


# Composition with PR_SET_THP_DISABLE: THPeligible of a 4 MiB anonymous VMA.
@pytest.mark.parametrize("mode", ["always", "madvise", "never"])
@pytest.mark.parametrize("prctl_mode", [None, 0, PR_THP_DISABLE_EXCEPT_ADVISED])
@pytest.mark.parametrize("action", [None, MCTL_SET_HUGEPAGE, MCTL_SET_NOHUGEPAGE])
def test_composes_with_prctl_thp_disable(mode, prctl_mode, action):
    from mmsim.procfs import thp_eligible
    k = Kernel(thp=mode)
    p = k.spawn()
    a = p.mmap(0, 2 * PMD, RW, ANON)
    if prctl_mode is not None:
        p.prctl(PR_SET_THP_DISABLE, 1, prctl_mode)
    if action is not None:
        p.mctl(SELF, action, 0)
    hg = action == MCTL_SET_HUGEPAGE
    nh = action == MCTL_SET_NOHUGEPAGE
    # The kernel's own decision (vma_thp_disabled, then sysfs), written out.
    if nh or prctl_mode == 0:
        want = 0
    elif prctl_mode == PR_THP_DISABLE_EXCEPT_ADVISED and not hg:
        want = 0
    else:
        want = int(mode == "always" or (mode == "madvise" and hg))
    assert thp_eligible(p.mm, p.mm.vma_lookup(a)) == want


# ------------------------------------------------------------------ properties


calls = st.lists(st.tuples(st.sampled_from(["map", "map_nores", "map_shared", "hg", "nh",
                                            "prot", "unmap"]),
                           st.integers(0, 40), st.integers(1, 8)), max_size=25)


def build(seq):
    k = Kernel(randomize=False)
    p = k.spawn()
    for step in seq:
        build_step(p, step)
    return p


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(calls, st.sampled_from([(MCTL_SET_NOHUGEPAGE, MADV_NOHUGEPAGE),
                               (MCTL_SET_HUGEPAGE, MADV_HUGEPAGE)]))
def test_set_equals_madvise_on_each_vma(seq, pair):
    """MCTL_SET_X gives exactly the VMAs MADV_X applied to each VMA in turn gives."""
    action, advice = pair
    a = build(seq)
    b = build(seq)
    a.mctl(SELF, action, 0)
    for vma in b.mm.vmas():
        current = b.mm.vma_lookup(vma.start)
        if current is vma:
            b.madvise(vma.start, vma.end - vma.start, advice)
    assert flags_of(a) == flags_of(b)
    a.mm.check()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([MCTL_SET_NOHUGEPAGE, MCTL_CLEAR_NOHUGEPAGE,
                                           MCTL_SET_HUGEPAGE, MCTL_CLEAR_HUGEPAGE,
                                           MCTL_SET_FADE_ON_DEATH, MCTL_CLEAR_FADE_ON_DEATH]),
                          st.booleans()), min_size=1, max_size=12))
def test_query_reflects_the_last_change(actions):
    p = Kernel().spawn()
    model = {M.NOHUGEPAGE: 0, M.HUGEPAGE: 0, M.FADE_ON_DEATH: 0}
    for action, persist in actions:
        p.mctl(SELF, action, MCTL_SET_DEFAULT_EXEC if persist else 0)
        prop, on = M.ACTIONS[action]
        model[prop] = (M.PERSISTENT if persist else M.ON) if on else M.OFF
        if on and prop in M.OPPOSITE:
            model[M.OPPOSITE[prop]] = M.OFF
        assert p.mctl(SELF, MCTL_GET) == sum(v << M.GET_SHIFT[k] for k, v in model.items())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.tuples(st.sampled_from(["map", "map_nores", "map_shared", "hg", "nh", "prot", "unmap"]),
              st.integers(0, 40), st.integers(1, 8)),
    st.tuples(st.sampled_from(["mctl"]),
              st.sampled_from([MCTL_SET_NOHUGEPAGE, MCTL_CLEAR_NOHUGEPAGE, MCTL_SET_HUGEPAGE,
                               MCTL_CLEAR_HUGEPAGE]), st.just(0))), max_size=30))
def test_repeated_walks_after_changes_stay_exact(seq):
    """Syscalls and mctl actions interleaved: each action must leave exactly the VMAs
    that applying its change to each VMA in turn leaves (the flag summaries may never
    make a walk miss a VMA), and the tree's summaries check out."""
    k = Kernel(randomize=False)
    a = k.spawn()
    b = k.spawn()
    for step in seq:
        if step[0] == "mctl":
            action = step[1]
            a.mctl(SELF, action, 0)
            prop, on = M.ACTIONS[action]
            flag = M.VM_FLAG[prop]
            advice = MADV_NOHUGEPAGE if prop == M.NOHUGEPAGE else MADV_HUGEPAGE
            M.states(b.mm)[prop] = M.ON if on else M.OFF
            if on:
                M.states(b.mm)[M.OPPOSITE[prop]] = M.OFF
            M.sync_def_flags(b.mm)
            for vma in b.mm.vmas():
                if b.mm.vma_lookup(vma.start) is not vma:
                    continue
                if on:
                    b.madvise(vma.start, vma.end - vma.start, advice)
                elif vma.vm_flags & flag:
                    b.mm.modify(vma, vma.start, vma.end, vma.vm_flags & ~flag)
        else:
            for proc in (a, b):
                build_step(proc, step)
        assert flags_of(a) == flags_of(b)
        a.mm.check()


def build_step(p, step):
    kind, page, n = step
    addr, length = 0x200000000000 + page * P, n * P
    try:
        if kind.startswith("map"):
            flags = {"map": ANON, "map_nores": ANON | MAP_NORESERVE,
                     "map_shared": MAP_SHARED | MAP_ANONYMOUS}[kind]
            p.mmap(addr, length, RW, flags | MAP_FIXED)
        elif kind == "hg":
            p.madvise(addr, length, MADV_HUGEPAGE)
        elif kind == "nh":
            p.madvise(addr, length, MADV_NOHUGEPAGE)
        elif kind == "prot":
            p.mprotect(addr, length, PROT_READ)
        else:
            p.munmap(addr, length)
    except OSError:
        pass
