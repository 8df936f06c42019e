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


def _live_wait_for_a_thread():
    """On the live kernel: a forked child starts a thread; waitpid on the thread's tid,
    while it runs and after it has exited, as its group's parent.  The errnos seen."""
    import os
    import threading
    import time
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            def run():
                os.write(w, str(threading.get_native_id()).encode().ljust(16))
                time.sleep(0.2)
            t = threading.Thread(target=run)
            t.start()
            t.join()
            time.sleep(0.3)
        finally:
            os._exit(0)
    os.close(w)
    tid = int(os.read(r, 16))
    os.close(r)
    seen = []
    for pause in (0, 0.3):
        time.sleep(pause)
        try:
            os.waitpid(tid, os.WNOHANG)
            seen.append(0)
        except OSError as e:
            seen.append(e.errno)
    os.waitpid(pid, 0)
    return seen


@pytest.mark.live
def test_a_thread_is_never_its_group_parents_child_to_wait_for():
    """Only a group leader is on its parent's children list (copy_process): wait4 on a
    thread's tid is ECHILD, running or exited, on the live kernel and in mmsim."""
    assert _live_wait_for_a_thread() == [errno.ECHILD, errno.ECHILD]
    k = Kernel()
    parent = k.spawn()
    main = parent.fork()
    t = main.clone(PTHREAD)
    assert t.ppid == parent.pid and t.pid not in parent.children
    with pytest.raises(ChildProcessError):
        parent.wait4(t.pid, 0)
    t.exit(0)
    with pytest.raises(ChildProcessError):
        parent.wait4(t.pid, 0)


# ---------------------------------------------------------------- replay: clone3 and threads

W = 0x200000000000


def results(text, **kw):
    return [(o.event.line, o.result, o.matches())
            for o in replay(text, Kernel(randomize=False), **kw) if o.event.kind == "call"]


def test_clone3_makes_a_thread_sharing_the_mm():
    """clone3's flags come from its struct, its result is the child's tid, and the
    `=> {parent_tid=[N]}` tail strace adds on return is read past."""
    text = (f"[pid 10] mmap({W:#x}, 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {W:#x}\n"
            "[pid 10] clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD"
            "|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, "
            "child_tid=0x7f0000000990, parent_tid=0x7f0000000990, exit_signal=0, "
            "stack=0x7f0000001000, stack_size=0x7fff80, tls=0x7f00000006c0} <unfinished ...>\n"
            f"[pid 11] munmap({W:#x}, 4096) = 0\n"
            "[pid 10] <... clone3 resumed> => {parent_tid=[11]}, 88) = 11\n"
            f"[pid 10] mprotect({W:#x}, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)\n"
            f"[pid 11] mprotect({W + 4096:#x}, 4096, PROT_READ) = 0\n")
    assert all(ok for _, _, ok in results(text))
    k = Kernel(randomize=False)
    from mmsim.replay import Replayer
    from mmsim.strace import parse
    r = Replayer(k)
    r.run(parse(text))
    assert r.procs[11].mm is r.procs[None].mm and r.procs[11].tgid == r.procs[None].pid


def test_clone3_vfork_with_exit_signal():
    """posix_spawn's clone3: CLONE_VM|CLONE_VFORK with exit_signal=SIGCHLD makes a child
    its parent waits for."""
    text = ("clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x7f0000001000, "
            "stack_size=0x9000}, 88) = 21\n"
            "[pid 21] exit_group(0) = ?\n"
            "wait4(-1, NULL, 0, NULL) = 21\n")
    assert [r for _, r, _ in results(text)] == [21, "?", 21]


def test_clone3_exit_signal_in_flags_is_einval():
    """clone3 refuses CSIGNAL bits in flags (the exit signal has its own field)."""
    text = "clone3({flags=CLONE_VM|SIGCHLD, exit_signal=0}, 88) = -1 EINVAL (Invalid argument)\n"
    assert results(text) == [(1, -errno.EINVAL, True)]


@pytest.mark.parametrize("bad", ["clone3(0x7f00, 88) = 5\n", "clone3({flags=CLONE_NOPE}, 88) = 5\n",
                                 "clone3({flags}, 88) = 5\n"])
def test_clone3_struct_errors_name_the_line(bad):
    from mmsim.errors import TraceError
    with pytest.raises(TraceError) as e:
        replay("brk(NULL) = 0\n" + bad)
    assert ":2:" in str(e.value)


def test_legacy_clone_of_a_thread():
    """clone(2) with CLONE_VM|CLONE_THREAD as glibc < 2.34 made threads."""
    text = ("clone(child_stack=0x7f0000001000, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND"
            "|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, "
            "parent_tid=[31], tls=0x7f0000000700, child_tidptr=0x7f00000009d0) = 31\n"
            "[pid 31] mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7ff7000\n"
            "[pid 31] exit(0) = ?\n"
            "munmap(0x7ffff7ff7000, 8192) = 0\n"
            "mprotect(0x7ffff7ff7000, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)\n")
    assert all(ok for _, _, ok in results(text, follow=True))


def test_calls_only_threads_make_are_accepted():
    """set_robust_list, rseq, futex and its new forms, sched_*, membarrier, gettid and
    tgkill replay (they do not touch memory), and madvise runs from any thread."""
    text = ("[pid 10] clone3({flags=CLONE_VM|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, exit_signal=0}, 88) = 11\n"
            "[pid 11] set_robust_list(0x7f00000009a0, 24) = 0\n"
            "[pid 11] rseq(0x7f0000000fe0, 0x20, 0, 0x53053053) = 0\n"
            "[pid 11] gettid() = 11\n"
            "[pid 11] futex(0x7f0000000990, FUTEX_WAKE_PRIVATE, 1) = 0\n"
            "[pid 11] futex_wake(0x7f0000000990, 1, FUTEX2_SIZE_U32) = 0\n"
            "[pid 11] futex_wait(0x7f0000000990, 0, 1, FUTEX2_SIZE_U32, NULL, CLOCK_MONOTONIC) = 0\n"
            "[pid 11] futex_waitv([], 0, 0, NULL, CLOCK_MONOTONIC) = 0\n"
            "[pid 11] sched_getaffinity(11, 32, [0 1]) = 8\n"
            "[pid 11] sched_get_priority_max(SCHED_OTHER) = 0\n"
            "[pid 11] sched_get_priority_min(SCHED_OTHER) = 0\n"
            "[pid 11] sched_getattr(11, {size=56, sched_policy=SCHED_OTHER}, 56, 0) = 0\n"
            "[pid 11] sched_setattr(11, {size=56, sched_policy=SCHED_OTHER}, 0) = 0\n"
            "[pid 11] sched_rr_get_interval(0, {tv_sec=0, tv_nsec=100000000}) = 0\n"
            "[pid 11] sched_yield() = 0\n"
            "[pid 11] membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) = 0\n"
            "[pid 11] tgkill(10, 11, SIGRTMIN) = 0\n"
            "[pid 11] madvise(0x7ffff0000000, 4096, MADV_DONTNEED) = -1 ENOMEM (Cannot allocate memory)\n"
            "[pid 11] exit(0) = ?\n"
            "[pid 11] +++ exited with 0 +++\n"
            "[pid 10] exit_group(0) = ?\n"
            "[pid 10] +++ exited with 0 +++\n")
    assert all(ok for _, _, ok in results(text))


# ---------------------------------------------------------------- interleaving pinned by results

PT = ("[pid 10] clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, "
      "exit_signal=0}, 88) = 11\n")
A = 0x7ffff7f00000


def test_a_call_runs_at_its_resumed_line():
    """Simulator-defined rule: a split call runs at its `resumed` line.  Here thread
    11's munmap started first but the mmap's result is only free once it has run, and
    it is the one that resumes first."""
    text = (PT + f"[pid 10] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 10] mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>\n"
            f"[pid 11] munmap({A:#x}, 8192) = 0\n"
            f"[pid 10] <... mmap resumed>) = {A:#x}\n")
    assert all(ok for _, _, ok in results(text, follow=True))


def test_a_munmap_whose_range_the_next_mmap_reuses_runs_first():
    """strace printed the munmap's `resumed` line after another thread's mmap that
    already got the range it frees: the munmap ran first (the recorded result pins it)."""
    text = (PT + f"[pid 10] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 11] munmap({A:#x}, 8192 <unfinished ...>\n"
            f"[pid 10] mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {A:#x}\n"
            "[pid 11] <... munmap resumed>) = 0\n"
            f"[pid 10] mprotect({A:#x}, 4096, PROT_READ) = 0\n")
    out = results(text, follow=True)
    assert all(ok for _, _, ok in out), out
    # Also when both calls are split and the mmap resumes first.
    text = (PT + f"[pid 10] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 11] munmap({A:#x}, 8192 <unfinished ...>\n"
            f"[pid 10] mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>\n"
            f"[pid 10] <... mmap resumed>) = {A:#x}\n"
            "[pid 11] <... munmap resumed>) = 0\n")
    assert all(ok for _, _, ok in results(text, follow=True))


def test_an_mprotect_of_a_range_a_pending_mmap_returned_runs_after_it():
    """The other direction: a call that found the range mapped ran after another
    thread's unfinished mmap that recorded that range."""
    text = (PT + f"[pid 11] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0 <unfinished ...>\n"
            f"[pid 10] mprotect({A:#x}, 8192, PROT_READ|PROT_WRITE) = 0\n"
            f"[pid 11] <... mmap resumed>) = {A:#x}\n")
    assert all(ok for _, _, ok in results(text, follow=True))


def test_pinning_stays_within_one_address_space():
    """A pending munmap of another process (not a thread: its own mm) is not pulled
    forward, so the mmap finds its range taken and the result differs."""
    text = ("[pid 10] fork() = 11\n"
            f"[pid 10] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 11] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 11] munmap({A:#x}, 8192 <unfinished ...>\n"
            f"[pid 10] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0) = {A:#x}\n"
            "[pid 11] <... munmap resumed>) = 0\n")
    out = results(text, follow=True)
    assert [ok for _, _, ok in out] == [True, True, True, False, True]


def test_a_child_is_a_zombie_at_its_exited_line():
    """wait4(-1) reaps the zombies there are at its line: a child whose exit_group is
    earlier but whose `+++ exited` line is later is not one yet."""
    text = ("[pid 10] fork() = 11\n"
            "[pid 10] fork() = 12\n"
            "[pid 11] exit_group(0) = ?\n"
            "[pid 12] exit_group(0) = ?\n"
            "[pid 12] +++ exited with 0 +++\n"
            "[pid 10] wait4(-1, NULL, 0, NULL) = 12\n"
            "[pid 11] +++ exited with 0 +++\n"
            "[pid 10] wait4(-1, NULL, 0, NULL) = 11\n")
    assert [r for _, r, _ in results(text)] == [11, 12, "?", "?", 12, 11]


def test_exit_group_ends_threads_that_had_calls_pending():
    """After exit_group, another thread's unfinished call comes back `= ?` and its
    `+++ exited` line finds it already gone; the parent reaps the group once."""
    text = ("[pid 9] fork() = 10\n" + PT +
            "[pid 11] futex(0x7f0000000990, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>\n"
            "[pid 10] exit_group(3) = ?\n"
            "[pid 11] <... futex resumed>) = ?\n"
            "[pid 11] +++ exited with 3 +++\n"
            "[pid 10] +++ exited with 3 +++\n"
            "[pid 9] wait4(-1, NULL, 0, NULL) = 10\n"
            "[pid 9] wait4(-1, NULL, WNOHANG, NULL) = -1 ECHILD (No child processes)\n")
    out = results(text)
    assert all(ok for _, _, ok in out), out


# ---------------------------------------------------------------- real multi-threaded logs

import json
import os
import shutil
import subprocess
import tempfile

MANIFEST = json.loads((THREADS / "manifest.json").read_text())


@pytest.fixture(scope="module")
def programs():
    """The recorded programs back where the logs name them: /tmp/mmsim-pthreads built
    from pthreads.c, /tmp/mmsim-threads.py copied (record.sh put them there); removed
    afterwards."""
    made = []
    if shutil.which("gcc"):
        fd, tmp = tempfile.mkstemp(dir="/tmp", prefix="mmsim-pthreads.")
        os.close(fd)
        subprocess.run(["gcc", "-O1", "-pthread", "-o", tmp, str(THREADS / "pthreads.c")],
                       check=True, capture_output=True)
        os.replace(tmp, "/tmp/mmsim-pthreads")
        made.append("/tmp/mmsim-pthreads")
    shutil.copyfile(THREADS / "threads.py", "/tmp/mmsim-threads.py")
    made.append("/tmp/mmsim-threads.py")
    yield
    for path in made:
        os.unlink(path)


def _host_differs(log):
    for path, size in MANIFEST[log].items():
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return f"{path} differs from the machine the log was recorded on"
    return None


@pytest.mark.parametrize("log", sorted(log for log in MANIFEST if log.endswith("_norand.strace")))
def test_real_threaded_log_reproduces_every_recorded_result(log, programs, capsys):
    """The setarch -R logs: `mmsim replay --norandmaps --follow --check` reproduces every
    recorded result (clone3 threads, split calls, thread exits, exit_group)."""
    reason = _host_differs(log)
    if reason:
        pytest.skip(reason)
    status = cli.main(["replay", str(THREADS / log), "--norandmaps", "--follow", "--check"])
    err = capsys.readouterr().err
    assert status == 0, err


def test_the_race_log_needs_calls_pinned_by_results(programs, monkeypatch):
    """pthreads_race_norand.strace holds munmap/mmap pairs whose order only the results
    tell: replayed at their `resumed` lines alone, results differ."""
    log = "pthreads_race_norand.strace"
    reason = _host_differs(log)
    if reason:
        pytest.skip(reason)
    from mmsim.replay import Replayer, replay_file
    outs = replay_file(str(THREADS / log), Kernel(randomize=False), follow=True)
    assert all(o.matches() for o in outs)
    monkeypatch.setattr(Replayer, "_run_pinned", lambda self, proc, ev: None)
    outs = replay_file(str(THREADS / log), Kernel(randomize=False), follow=True)
    assert sum(not o.matches() for o in outs) > 0


@pytest.mark.parametrize("log", ["pthreads.strace", "python.strace"])
def test_aslr_threaded_logs_reproduce_with_follow(log, programs):
    """The full-ASLR logs replay with --follow, exec's layout worked out from the log
    (its RELRO mprotects and first brk), with every recorded result reproduced."""
    reason = _host_differs(log)
    if reason:
        pytest.skip(reason)
    from mmsim.replay import replay_file
    outs = replay_file(str(THREADS / log), Kernel(), follow=True)
    assert [o.line() for o in outs if not o.matches()] == []


def test_a_descriptor_one_thread_opens_is_the_groups():
    """The trace's descriptor numbers are shared by threads as the table is: a file a
    thread opened is mapped and closed by another."""
    here = pathlib.Path(__file__).resolve()
    text = ("[pid 10] clone3({flags=CLONE_VM|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, exit_signal=0}, 88) = 11\n"
            f'[pid 11] openat(AT_FDCWD, "{here}", O_RDONLY) = 7\n'
            "[pid 10] mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 7, 0) = 0x7ffff7ff0000\n"
            "[pid 10] close(7) = 0\n"
            "[pid 11] mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 7, 0) = -1 EBADF (Bad file descriptor)\n"
            # A fork's child has its own copy, numbered alike.
            f'[pid 10] openat(AT_FDCWD, "{here}", O_RDONLY) = 8\n'
            "[pid 10] fork() = 12\n"
            "[pid 10] close(8) = 0\n"
            "[pid 12] mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 8, 0) = 0x7ffff7fe0000\n")
    out = results(text, follow=True)
    assert all(ok for _, _, ok in out), out


def test_mremap_fixed_pins_nothing():
    """MREMAP_FIXED replaces whatever is at its target: a pending munmap of that range is
    not pulled forward, so it still runs (and unmaps the moved pages) at its line."""
    B = A + 0x100000
    text = (PT + f"[pid 10] mmap({A:#x}, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 10] mmap({B:#x}, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {B:#x}\n"
            f"[pid 11] munmap({B:#x}, 4096 <unfinished ...>\n"
            f"[pid 10] mremap({A:#x}, 4096, 4096, MREMAP_MAYMOVE|MREMAP_FIXED, {B:#x}) = {B:#x}\n"
            "[pid 11] <... munmap resumed>) = 0\n"
            f"[pid 10] mprotect({B:#x}, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)\n")
    out = results(text, follow=True)
    assert all(ok for _, _, ok in out), out


def test_mremap_dontunmap_frees_nothing():
    """MREMAP_DONTUNMAP leaves its old range mapped, so it is never pulled forward to
    free that range for another call (here a recorded mmap result no order explains):
    it runs at its resumed line, after the munmap that frees its target."""
    B = A + 0x100000
    text = (PT + f"[pid 10] mmap({A:#x}, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 10] mmap({B:#x}, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {B:#x}\n"
            f"[pid 11] mremap({A:#x}, 4096, 4096, MREMAP_MAYMOVE|MREMAP_DONTUNMAP <unfinished ...>\n"
            f"[pid 10] mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {A:#x}\n"
            f"[pid 10] munmap({B:#x}, 4096) = 0\n"
            f"[pid 11] <... mremap resumed>) = {B:#x}\n")
    out = results(text, follow=True)
    assert out[-1] == (7, B, True), out


def test_a_call_the_group_exit_interrupted_is_not_run():
    """strace prints `call(args <unfinished ...>) = ?` for a call whose thread died in
    it (and `= ?` on a resumed line): what it did is unknown, so it is not run and its
    result is `?` (simulator-defined)."""
    text = (PT + f"[pid 10] mmap({A:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {A:#x}\n"
            f"[pid 11] munmap({A:#x}, 4096 <unfinished ...>) = ?\n"
            f"[pid 10] mprotect({A:#x}, 8192, PROT_READ) = 0\n"
            "[pid 10] exit_group(0) = ?\n"
            "[pid 11] +++ exited with 0 +++\n"
            "[pid 10] +++ exited with 0 +++\n")
    out = results(text)
    assert out[2] == (3, "?", True) and all(ok for _, _, ok in out), out


def test_any_thread_waits_for_the_children_of_its_group():
    """do_wait looks at the children of every thread of the caller's group (unless
    __WNOTHREAD): a child a thread forked is reaped by the main thread."""
    k = Kernel()
    main = k.spawn()
    t = main.clone(PTHREAD)
    child = t.fork()
    child.exit(4)
    with pytest.raises(ChildProcessError):
        main.wait4(child.pid, 0x20000000)   # __WNOTHREAD: only the caller's own
    assert main.wait4(-1, 0) == (child.pid, 4 << 8)
    assert child.pid not in t.children and child.state == "reaped"
    # In a replayed log: posix_spawn from a thread, the main thread waits.
    text = (PT + "[pid 11] clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD}, 88) = 12\n"
            "[pid 12] exit_group(0) = ?\n"
            "[pid 12] +++ exited with 0 +++\n"
            "[pid 10] wait4(-1, NULL, 0, NULL) = 12\n")
    assert all(ok for _, _, ok in results(text))


@pytest.mark.live
def test_diff_runs_a_trace_with_split_calls(capsys):
    """`mmsim diff` replays a trace whose calls strace split across two processes on the
    live kernel too (a live helper has no mm to pin calls by: it runs them in order)."""
    from mmsim.live import diff_trace
    W = 0x200000000000
    text = ("fork() = 41\n"
            f"mmap({W:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {W:#x}\n"
            f"[pid 41] mmap({W:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0 <unfinished ...>\n"
            f"munmap({W:#x}, 4096) = 0\n"
            f"[pid 41] <... mmap resumed>) = {W:#x}\n"
            f"mprotect({W + 4096:#x}, 4096, PROT_NONE) = 0\n")
    diffs, skipped = diff_trace(text, "t")
    assert not diffs, diffs


@pytest.mark.live
def test_diff_runs_a_trace_with_exited_lines():
    """`+++ exited` lines work on the live side too: the child exits there and the
    parent's wait4 reaps it."""
    from mmsim.live import diff_trace
    text = ("fork() = 41\n"
            "[pid 41] exit_group(0) = ?\n"
            "[pid 41] +++ exited with 0 +++\n"
            "wait4(-1, NULL, 0, NULL) = 41\n")
    diffs, skipped = diff_trace(text, "t")
    assert not diffs and not skipped, (diffs, skipped)


@pytest.mark.parametrize("length", ["0", "-4096", "0xffffffffffffffff"])
def test_pinning_ignores_lengths_no_range_has(length):
    """A recorded success with a length that names no range pins nothing (and runs)."""
    text = (PT + f"[pid 11] munmap({A:#x}, 4096 <unfinished ...>\n"
            f"[pid 10] mmap(NULL, {length}, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {A:#x}\n"
            f"[pid 10] mprotect({A:#x}, {length}, PROT_READ) = 0\n"
            "[pid 11] <... munmap resumed>) = 0\n")
    out = results(text, follow=True)
    assert len(out) == 4


def test_a_line_after_the_group_is_gone_is_esrch():
    """Found by fuzzing: a thread's exit_group (no `+++` lines) ends the group; a later
    line of another thread (a log no kernel writes) is ESRCH, not an internal error
    (with --follow the mmap handler looked at the dead thread's mm)."""
    text = (PT + "[pid 11] exit_group(0) = ?\n"
            f"[pid 10] mremap({A:#x}, 4096, 8192, MREMAP_MAYMOVE) = {A:#x}\n"
            f"[pid 10] mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {A:#x}\n")
    for follow in (False, True):
        assert [r for _, r, _ in results(text, follow=follow)][2:] == [-errno.ESRCH] * 2


def test_lines_of_a_child_whose_fork_failed_here():
    """Found by fuzzing: a thread of a group already gone forks (ESRCH here), and the
    child the log names never exists: its calls are ESRCH and its dump empty, not an
    internal error."""
    text = (PT + "[pid 11] exit_group(0) = ?\n"
            "[pid 10] vfork() = 12\n"
            "[pid 12] brk(NULL) = 0x555555559000\n"
            "[pid 12] # dump\n")
    outs = replay(text, Kernel(randomize=False))
    assert [o.result for o in outs if o.event.kind == "call"][2:] == [-errno.ESRCH] * 2
    assert outs[-1].smaps == ""
