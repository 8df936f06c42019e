"""Threads (issue 12 parts 2 and 3): clone3 and CLONE_THREAD threads sharing the mm and
the fd table, a thread's exit against exit_group, calls only threads make, strace -f's
<unfinished ...>/resumed interleaving with calls pinned by their results, zombies at
their `+++ exited` line, and real multi-threaded logs (tests/data/strace/threads/)
reproduced result for result."""

import errno
import pathlib

import pytest

from mmsim import cli
from mmsim.kernel import Kernel
from mmsim.replay import replay_trace as replay
from mmsim.uapi import (CLONE_CHILD_CLEARTID, CLONE_FILES, CLONE_FS, CLONE_PARENT_SETTID,
                        CLONE_SETTLS, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD, CLONE_VM,
                        MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE)

THREADS = pathlib.Path(__file__).parent / "data" / "strace" / "threads"
PTHREAD = (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM
           | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID)
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE
P = 4096


# ---------------------------------------------------------------- Process: threads

def test_threads_share_the_fd_table_by_reference():
    """CLONE_FILES shares one table: a descriptor a thread opens is the group's."""
    k = Kernel()
    main = k.spawn()
    k.create_file("/f", 2 * P)
    t = main.clone(PTHREAD)
    fd = t.open("/f", 0)
    assert main.fds[fd] is t.fds[fd]
    main.close(fd)
    assert fd not in t.fds
    # Without CLONE_FILES the table is a copy, as fork makes.
    c = main.clone(CLONE_VM | CLONE_SIGHAND | CLONE_THREAD)
    fd2 = c.open("/f", 0)
    assert fd2 not in main.fds


def test_a_threads_exit_ends_only_that_thread():
    """exit(2) of a thread: the mm and the fd table stay with the other threads, and the
    thread is reaped at once (a thread's exit signal is none)."""
    k = Kernel()
    parent = k.spawn()
    main = parent.fork()
    k.create_file("/f", P)
    fd = main.open("/f", 0)
    a = main.mmap(0, 4 * P, RW, ANON)
    t = main.clone(PTHREAD)
    t.exit(0)
    assert t.state == "reaped" and t.pid not in k.processes
    assert main.mm.vma_lookup(a) is not None and main.mm.users == 1
    assert fd in main.fds
    main.munmap(a, P)   # the group goes on
    assert t.pid not in parent.children


def test_exit_group_ends_every_thread():
    """exit_group(2) from any thread ends the whole group and tears down the mm once."""
    k = Kernel()
    parent = k.spawn()
    main = parent.fork()
    mm = main.mm
    a = main.mmap(0, 4 * P, RW, ANON)
    t1 = main.clone(PTHREAD)
    t2 = main.clone(PTHREAD)
    t1.exit_group(3)
    assert [p.state for p in (main, t1, t2)] == ["zombie", "reaped", "reaped"]
    assert mm.users == 0 and mm.tree.find(a, a + P) is None
    assert parent.wait4(-1, 0) == (main.pid, 3 << 8)


def test_a_leader_that_exits_first_is_reaped_after_its_last_thread():
    """The group leader's exit(2) leaves a zombie the parent cannot reap while another
    thread of the group runs (delay_group_leader)."""
    k = Kernel()
    parent = k.spawn()
    main = parent.fork()
    t = main.clone(PTHREAD)
    main.exit(0)
    assert main.state == "zombie" and t.mm is not None
    with pytest.raises(OSError) as e:
        parent.wait4(-1, 0)
    assert e.value.errno == errno.EDEADLK   # nothing reapable: it would block
    t.exit(5)
    assert parent.wait4(-1, 0) == (main.pid, 0)
