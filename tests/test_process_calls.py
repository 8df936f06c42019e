"""Issue 11: exited processes, argument types, and the process table (parts 1, 5, 6)."""

import errno
import inspect

import pytest

from mmsim.kernel import Kernel
from mmsim.task import SYSCALLS, Process
from mmsim.testing import errno_of
from mmsim.uapi import (MADV_COLD, MAP_ANONYMOUS, MAP_PRIVATE, PR_GET_DUMPABLE, PR_SET_NAME,
                        PROT_READ, PROT_WRITE, WNOHANG)

P = 4096
RW = PROT_READ | PROT_WRITE
ANON = MAP_PRIVATE | MAP_ANONYMOUS

# Plausible arguments for every syscall method, by name.
ARGS = {
    "fork": (), "vfork": (), "clone": (0,), "execve": ("/bin/true",), "exit": (0,),
    "exit_group": (0,), "wait4": (-1, WNOHANG), "setresuid": (0, 0, 0), "setuid": (0,),
    "setresgid": (0, 0, 0), "setgid": (0,), "capget": (0,), "capset": (0, 0, 0),
    "unshare": (0,), "pidfd_open": (1,), "process_madvise": (-10000, [(0, P)], MADV_COLD),
    "mctl": (-10000, 0), "prctl": (PR_GET_DUMPABLE,), "open": ("/f",), "close": (3,),
    "mmap": (0, P, RW, ANON), "munmap": (0x10000, P), "mprotect": (0x10000, P, RW),
    "madvise": (0x10000, P, 0), "mremap": (0x10000, P, P), "mlock": (0x10000, P),
    "mlock2": (0x10000, P, 0), "munlock": (0x10000, P), "brk": (0,), "touch": (0x10000, P),
    "getrlimit": (0,), "setrlimit": (0, (0, 0)), "prlimit": (0, 0), "mlockall": (1,),
    "munlockall": (), "openat": (-100, "/f"), "write": (3, 1), "pwrite": (3, 1, 0),
    "ftruncate": (3, 0), "fallocate": (3, 0, 0, P), "lseek": (3, 0, 0), "dup": (3,),
    "dup2": (3, 9), "dup3": (3, 9, 0), "fcntl": (3, 0, 0), "pipe2": (0,), "socket": (1, 1, 0),
    "eventfd2": (0, 0), "memfd_create": ("m", 0), "chdir": ("/",), "fchdir": (3,),
    "getcwd": (), "access": ([0x10000],), "read": (3, 1), "pread": (3, 1, 0),
    "readahead": (3, 0, P), "fadvise": (3, 0, 0, 0), "fsync": (3,), "fdatasync": (3,),
}


def public_methods():
    return sorted(n for n, v in vars(Process).items()
                  if not n.startswith("_") and callable(v))


def test_every_public_method_is_a_declared_syscall():
    """Argument conversion is declared in one table: no public method escapes it."""
    assert set(public_methods()) == set(SYSCALLS)
    assert set(ARGS) == set(public_methods())


@pytest.mark.parametrize("name", public_methods())
def test_an_exited_process_makes_no_call(name):
    """Simulator-defined: every call of a process that has exited is ESRCH (before, most
    raised AttributeError on the missing address space; pidfd_open succeeded)."""
    k = Kernel()
    k.create_file("/f", P)
    parent = k.spawn()
    proc = parent.fork()
    proc.exit(0)
    assert errno_of(getattr(proc, name), *ARGS[name]) == errno.ESRCH
    parent.wait4(proc.pid)
    assert errno_of(getattr(proc, name), *ARGS[name]) == errno.ESRCH


@pytest.mark.parametrize("bad", [None, 1.5, "12", b"12", [1], object()])
def test_a_non_integer_argument_is_einval(bad):
    proc = Kernel().spawn()
    for call in (lambda: proc.mmap(bad, P, RW, ANON), lambda: proc.mmap(0, bad, RW, ANON),
                 lambda: proc.munmap(bad, P), lambda: proc.madvise(0x10000, P, bad),
                 lambda: proc.brk(bad), lambda: proc.setuid(bad), lambda: proc.wait4(bad),
                 lambda: proc.touch(0x10000, P, bad), lambda: proc.close(bad)):
        assert errno_of(call) == errno.EINVAL


def test_integers_convert_as_the_abi_does():
    """bool is an int (as os.* take it); an int argument keeps its low 32 bits, an
    unsigned long its low 64."""
    proc = Kernel().spawn()
    a = proc.mmap(0, P, RW, ANON)
    assert proc.madvise(a, P, (1 << 32) + MADV_COLD) == 0       # advice: low 32 bits
    assert errno_of(proc.madvise, a, P, (1 << 32) + 99) == errno.EINVAL
    assert proc.munmap(a + (1 << 64), P) == 0                  # low 64 bits: a again
    assert proc.mm.map_count == 0
    assert proc.prctl(PR_GET_DUMPABLE + (1 << 32)) == 1        # option is an int
    assert proc.touch(0, 0, True) == 0


def test_paths_and_pointers():
    """A path with a NUL is EINVAL (os.open raises ValueError); a path that is not a
    string, or argv that is not a list of strings, is EFAULT; bytes paths work."""
    k = Kernel()
    k.create_file("/f", P)
    proc = k.spawn()
    assert proc.open(b"/f") >= 3
    assert errno_of(proc.open, "/f\0x") == errno.EINVAL
    for bad in (None, 3, 1.5, ["/f"]):
        assert errno_of(proc.open, bad) == errno.EFAULT
    assert errno_of(proc.execve, "/bin/true\0") == errno.EINVAL
    assert errno_of(proc.execve, "/bin/true", "true") == errno.EFAULT
    assert errno_of(proc.execve, "/bin/true", [None]) == errno.EFAULT
    for bad in (None, 5, [(1,)], [("a", 1)], [(1.5, 2)]):
        assert errno_of(proc.process_madvise, -10000, bad, MADV_COLD) == errno.EFAULT
    assert errno_of(k.proc_read, None) == errno.EFAULT
    assert errno_of(k.proc_read, "/proc/" + "9" * 5000 + "/maps") == errno.ENOENT


def test_prctl_set_name_takes_the_name():
    k = Kernel()
    proc = k.spawn()
    assert proc.prctl(PR_SET_NAME, "a-very-long-thread-name") == 0
    assert "Name:\ta-very-long-thr\n" in k.proc_read(f"/proc/{proc.pid}/status")
    assert errno_of(proc.prctl, PR_SET_NAME, 8) == errno.EFAULT      # nothing mapped
    assert errno_of(proc.prctl, PR_GET_DUMPABLE, "x") == errno.EFAULT


def test_reaped_processes_leave_the_table():
    k = Kernel()
    parent = k.spawn()
    child = parent.fork()
    grandchild = child.fork()
    assert set(parent.children) == {child.pid} and set(child.children) == {grandchild.pid}
    fd = parent.pidfd_open(child.pid)
    child.exit(0)
    assert child.pid in k.processes                       # a zombie until waited for
    assert grandchild.ppid == 1 and grandchild.pid in parent.children   # init is pid 1
    assert parent.wait4(child.pid) == (child.pid, 0)
    assert child.pid not in k.processes and child.state == "reaped"
    assert errno_of(k.proc_read, f"/proc/{child.pid}/status") == errno.ENOENT
    # The pidfd still holds the process object; calls that need the task are ESRCH.
    assert errno_of(parent.process_madvise, fd, [(0, P)], MADV_COLD) == errno.ESRCH
    assert errno_of(parent.pidfd_open, child.pid) == errno.ESRCH
    grandchild.exit(3)
    assert parent.wait4(-1) == (grandchild.pid, 3 << 8)
    assert list(k.processes) == [parent.pid]


def test_processes_nobody_waits_for_are_reaped_at_exit():
    """Simulator-defined: a process with no simulated parent (from Kernel.spawn, or an
    orphan when pid 1 is not a running simulated process) is reaped when it exits."""
    k = Kernel()
    first = k.spawn()
    other = k.spawn()
    orphan = other.fork()
    other.exit(0)
    assert other.pid not in k.processes               # spawned: nobody to wait
    assert orphan.pid in first.children               # pid 1 adopts it
    first.exit(0)
    assert orphan.ppid == 1
    orphan.exit(0)
    assert list(k.processes) == []


def test_threads_belong_to_the_group_parent():
    from mmsim.uapi import CLONE_SIGHAND, CLONE_THREAD, CLONE_VM
    k = Kernel()
    parent = k.spawn()
    proc = parent.fork()
    thread = proc.clone(CLONE_VM | CLONE_SIGHAND | CLONE_THREAD)
    # Only a group leader is on its parent's children list (checked live in
    # tests/test_replay_threads.py): a thread is nobody's to wait for.
    assert thread.ppid == parent.pid and thread.pid not in parent.children
    assert thread.pid not in proc.children
    thread.exit(0)
    with pytest.raises(ChildProcessError):
        parent.wait4(thread.pid)


def test_signatures_are_typed():
    """The public API of Process and Kernel carries type hints."""
    from mmsim.kernel import Kernel as K
    for cls in (Process, K):
        for name, fn in vars(cls).items():
            if name.startswith("_") or not callable(fn):
                continue
            sig = inspect.signature(fn)
            assert sig.return_annotation is not inspect.Signature.empty, name


def test_prctl_pointer_stand_ins_only_where_a_pointer_is_read():
    """Found by the hostile test: a string or PrctlMmMap passed to an option that reads
    no such pointer reached integer comparisons (TypeError); now EFAULT."""
    from mmsim.prctl import PrctlMmMap
    from mmsim.uapi import (PR_CAPBSET_READ, PR_SET_MM, PR_SET_MM_MAP, PR_SET_MM_START_CODE,
                            PR_SET_PDEATHSIG)
    proc = Kernel().spawn()
    assert errno_of(proc.prctl, PR_SET_PDEATHSIG, "12") == errno.EFAULT
    assert errno_of(proc.prctl, PR_CAPBSET_READ, b"1") == errno.EFAULT
    assert errno_of(proc.prctl, PR_SET_NAME, 0, "x") == errno.EFAULT
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_START_CODE, PrctlMmMap()) == errno.EFAULT
    assert errno_of(proc.prctl, PR_SET_PDEATHSIG, PrctlMmMap()) == errno.EFAULT
    assert errno_of(proc.prctl, PR_SET_MM, PR_SET_MM_MAP, PrctlMmMap(), 104) == errno.EINVAL


def test_process_madvise_checks_flags_before_reading_the_vector():
    """The kernel refuses unknown flags before import_iovec reads the vector, and counts
    the elements before reading any (live 6.18, an unreadable vector at address 8:
    flags 1 -> EINVAL, flags 0 -> EFAULT, 1025 elements -> EINVAL, a bad pidfd ->
    EFAULT); a generator is no vector."""
    proc = Kernel().spawn()
    assert errno_of(proc.process_madvise, -10000, "bad", MADV_COLD, 1) == errno.EINVAL
    assert errno_of(proc.process_madvise, -10000, "bad", MADV_COLD) == errno.EFAULT
    assert errno_of(proc.process_madvise, -10000, [None] * 1025, MADV_COLD) == errno.EINVAL
    assert errno_of(proc.process_madvise, -10000, ((0, P) for _ in range(3)), MADV_COLD) \
        == errno.EFAULT
    assert errno_of(proc.process_madvise, 9999, "bad", MADV_COLD) == errno.EFAULT
