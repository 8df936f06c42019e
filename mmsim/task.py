"""A process: its address space and file table, and syscall methods named and ordered
like the C calls.  Every method returns what the syscall returns or raises OSError with
the kernel's errno, like Python's ``os`` module.

Argument conversion lives in one place: each public syscall method declares the C type
of its arguments with ``@syscall(...)`` and the decorator converts them before the body
runs (docs/processes.md, "Arguments").  A process that has exited can make no call:
every syscall method answers ESRCH."""

from __future__ import annotations

import errno
import functools
import inspect
import os
import posixpath
from collections.abc import Mapping

from . import madvise as _madvise
from . import fastpath, filemap, mman, notebook, pages, shmem
from .files import DIR, EVENTFD, PIPE, REG, SEEKABLE, SOCKET, Inode
from .cred import (CAP_IPC_LOCK, CAP_SYS_ADMIN, CAP_SYS_NICE, CAP_SYS_RESOURCE,
                   PTRACE_MODE_READ_FSCREDS, Cred, capable, capget, capset, inode_permission,
                   ns_capable, ptrace_may_access, setgid, setresgid, setresuid, setuid,
                   unshare_user)
from .defs import (PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, TASK_SIZE, U64, error, page_align,
                   page_align_down, pfn_up)
from .fork_exec import dup_mm, execve
from .mctl import mctl
from .prctl import PrctlMmMap, prctl
from .uapi import (CLONE_DETACHED, CLONE_FILES, CLONE_FS, CLONE_NEWCGROUP, CLONE_NEWIPC,
                   CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS,
                   CLONE_PARENT_SETTID, CLONE_PIDFD, CLONE_SIGHAND, CLONE_SYSVSEM, CLONE_THREAD,
                   CLONE_VFORK, CLONE_VM, MAP_ANONYMOUS, MAP_FIXED, O_APPEND, O_CLOEXEC, O_CREAT,
                   O_DIRECTORY, O_EXCL, O_NONBLOCK, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, AT_FDCWD,
                   PIDFD_NONBLOCK, PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP, PIDFD_THREAD,
                   RLIMIT_MEMLOCK, RLIMIT_NOFILE, RLIM_NLIMITS, WALL, WCLONE, WCONTINUED, WNOHANG,
                   WUNTRACED)
from .vma import VM_READ, VM_WRITE

O_ACCMODE = 3
WNOTHREAD = 0x20000000   # __WNOTHREAD
RUNNING, ZOMBIE, REAPED = "running", "zombie", "reaped"


def _int(value, code=errno.EINVAL):
    """The integer behind ``value`` (an int, a bool or anything with ``__index__``), or
    OSError ``code``: a value no C integer could carry."""
    if type(value) is int:
        return value
    try:
        return value.__index__()
    except (AttributeError, TypeError):
        raise error(code, f"an integer argument, not {type(value).__name__}") from None


def _u64(value):
    """An argument the kernel receives as ``unsigned long``: its low 64 bits."""
    if type(value) is int:   # the common case, without a call to _int
        return value & U64
    return _int(value) & U64


def _cint(value):
    """An argument the kernel receives as ``int``: its low 32 bits, signed."""
    value = (value if type(value) is int else _int(value)) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _uint(value):
    """An argument the kernel receives as ``unsigned int``: its low 32 bits."""
    return _int(value) & 0xFFFFFFFF


def _flag(value):
    """A Python-side switch (not a C argument): an integer taken as true or false."""
    return bool(_int(value))


def _path(value):
    """A ``const char *`` path: str, bytes or os.PathLike.  A NUL inside cannot reach the
    kernel (its copy would stop there): EINVAL; anything that is not a string: EFAULT."""
    try:
        value = os.fsdecode(value)
    except TypeError:
        raise error(errno.EFAULT, "a path must be str, bytes or os.PathLike") from None
    if "\0" in value:
        raise error(errno.EINVAL, "embedded NUL in a path")
    return value


def _strings(value):
    """A NULL-terminated ``char *[]`` (argv, envp): None (NULL) or a list or tuple of
    strings, each converted as a path is."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise error(errno.EFAULT, "argv/envp must be a list of strings")
    return [_path(v) for v in value]


def _environ(value):
    """envp: what ``_strings`` takes, or a mapping of names to values as ``os.execve``
    takes it (each pair becomes ``NAME=VALUE``)."""
    if isinstance(value, Mapping):
        return [_path(k) + "=" + _path(v) for k, v in value.items()]
    return _strings(value)


UIO_MAXIOV = 1024
MAX_RW_COUNT = 0x7FFFFFFF & PAGE_MASK   # INT_MAX & PAGE_MASK


def _iovec(value):
    """``const struct iovec *``: a list or tuple of (address, length) pairs.  The kernel
    checks the flags before it reads the vector, so a vector it would refuse comes back
    as the OSError to raise at that point: EINVAL for more than UIO_MAXIOV elements
    (counted before any is read), EFAULT for anything that is not such a list."""
    if not isinstance(value, (list, tuple)):
        return error(errno.EFAULT, "iovec is not a list of (address, length) pairs")
    if len(value) > UIO_MAXIOV:
        return error(errno.EINVAL, "more than UIO_MAXIOV elements")
    out = []
    for pair in value:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return error(errno.EFAULT, "iovec is not a list of (address, length) pairs")
        try:
            out.append((_int(pair[0], errno.EFAULT) & U64, _int(pair[1], errno.EFAULT) & U64))
        except OSError as exc:
            return exc
    return out


def import_iovec(elements):
    """The rest of __import_iovec, on a vector ``_iovec`` has read: EINVAL for a
    negative (ssize_t) length, EFAULT for a range access_ok refuses, then every length
    is cut so the total stays within MAX_RW_COUNT (later elements become empty)."""
    if any(n >> 63 for _, n in elements):
        raise error(errno.EINVAL, "negative length")
    out = []
    total = 0
    for base, n in elements:
        # access_ok: the end (base + length, even for an empty element) may not pass
        # TASK_SIZE_MAX nor wrap.
        if base + n > TASK_SIZE:
            raise error(errno.EFAULT, "iovec element outside the user address space")
        n = min(n, MAX_RW_COUNT - total)
        total += n
        out.append((base, n))
    return out


def _rlimit_pair(value):
    """``const struct rlimit *``: None (NULL) or a ``(soft, hard)`` pair of integers,
    each an unsigned long (-1 is RLIM_INFINITY); anything else is EFAULT."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise error(errno.EFAULT, "limits must be a (soft, hard) pair")
    return tuple(_int(v, errno.EFAULT) & U64 for v in value)


def _prctl_arg(value):
    """A prctl argument: an ``unsigned long``, or the object mmsim takes in place of a
    pointer to user memory (a PrctlMmMap, a name as str or bytes)."""
    if isinstance(value, (PrctlMmMap, str, bytes)):
        return value
    return _u64(value)


def _addrs(value):
    """An access stream: an iterable of addresses, each an unsigned long, read lazily so
    a stream of any length costs no memory (an element that is no integer raises EFAULT
    when the stream reaches it); anything not iterable is EFAULT at once."""
    if isinstance(value, (str, bytes)):
        raise error(errno.EFAULT, "an access stream is an iterable of addresses")
    try:
        it = iter(value)
    except TypeError:
        raise error(errno.EFAULT, "an access stream is an iterable of addresses") from None
    return (_int(a, errno.EFAULT) & U64 for a in it)


# The ABI types a syscall argument can be declared with.
ULONG, INT, UINT, FLAG, PATH, STRINGS, ENVIRON, IOVEC, RLIMIT, PRCTL_ARG, ADDRS = (
    _u64, _cint, _uint, _flag, _path, _strings, _environ, _iovec, _rlimit_pair, _prctl_arg,
    _addrs)

# Every public syscall method of Process: name -> {argument: converter}.
SYSCALLS: dict[str, dict] = {}


def syscall(**types):
    """Declare a Process method a syscall: its arguments are converted by their declared
    ABI type, and a process that has exited gets ESRCH before anything else."""
    def wrap(fn):
        names = tuple(inspect.signature(fn).parameters)[1:]
        unknown = set(types) - set(names)
        if unknown:
            raise AssertionError(f"{fn.__name__}: no argument {unknown}")
        convs = tuple(types.get(n) for n in names)
        nconvs = len(convs)

        @functools.wraps(fn)
        def call(self, *args, **kwargs):
            if self.state != RUNNING:
                raise error(errno.ESRCH, "the process has exited")
            kernel = self.kernel
            kernel.current = self
            if args:
                # A list comprehension: the cheapest per-call loop CPython has here.
                converted = [a if c is None else c(a) for c, a in zip(convs, args)]
                args = converted if len(args) <= nconvs else converted + list(args[nconvs:])
            if kwargs:
                for name in kwargs:
                    conv = types.get(name)
                    if conv is not None:
                        kwargs[name] = conv(kwargs[name])
            result = fn(self, *args, **kwargs)
            if kernel.pressure:
                # Reclaim, OOM kills and kswapd wait for the call's end (vmscan.py).
                kernel.balance(self)
            return result
        SYSCALLS[fn.__name__] = dict(types)
        return call
    return wrap


# File-related constants (include/uapi/linux/*.h, x86-64).
MAX_LFS_FILESIZE = (1 << 63) - 1
SEEK_DATA, SEEK_HOLE = 3, 4
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
F_DUPFD, F_GETFD, F_SETFD, F_GETFL, F_SETFL, F_DUPFD_CLOEXEC = 0, 1, 2, 3, 4, 1030
O_DIRECT = 0o40000
O_NOTIFICATION_PIPE = O_EXCL
SOCK_NONBLOCK, SOCK_CLOEXEC = O_NONBLOCK, O_CLOEXEC
AF_MAX, SOCK_MAX = 46, 11
EFD_SEMAPHORE = 1
MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_HUGETLB, MFD_NOEXEC_SEAL, MFD_EXEC = 1, 2, 4, 8, 0x10
MFD_NAME_MAX = 255 - len("memfd:")
PATH_MAX = 4096


def _host_cwd():
    """The host's working directory ("/" when it was removed)."""
    try:
        return os.getcwd()
    except OSError:
        return "/"


def resolve_at(proc, dirfd, path):
    """The absolute, lexically normalised path the kernel looks ``path`` up at for
    ``proc``: a relative one starts at ``dirfd``'s directory (AT_FDCWD: the working
    directory).  ENOENT for an empty path, ENAMETOOLONG past PATH_MAX, EBADF or
    ENOTDIR for a ``dirfd`` that is no open directory, ENOTDIR when a component is a
    simulated regular file."""
    if not path:
        raise error(errno.ENOENT, "empty path")
    if len(os.fsencode(path)) >= PATH_MAX:
        raise error(errno.ENAMETOOLONG)
    if not path.startswith("/"):
        if dirfd == AT_FDCWD:
            base = proc.cwd
        else:
            f = proc.fds.get(dirfd)
            if f is None:
                raise error(errno.EBADF)
            if isinstance(f, Pidfd) or f.inode.kind != DIR:
                raise error(errno.ENOTDIR)
            base = f.path
        path = base.rstrip("/") + "/" + path
    trailing = path.endswith("/")
    name = "/" + posixpath.normpath(path).lstrip("/")
    files = proc.kernel.files
    parent = posixpath.dirname(name)
    while parent != "/":
        inode = files.get(parent)
        if inode is not None and inode.kind != DIR:
            raise error(errno.ENOTDIR, name)
        parent = posixpath.dirname(parent)
    if trailing:
        inode = files.get(name)
        if inode is not None and inode.kind != DIR:
            raise error(errno.ENOTDIR, name)
    return name


class Pidfd:
    """An open pidfd: a reference to a process that outlives its exit (and its reaping:
    the object stays alive as long as the descriptor does)."""

    __slots__ = ("process", "flags")
    readable = writable = True   # pidfd_open's file is O_RDWR
    mappable = False             # no mmap file operation: mmap gives ENODEV

    def __init__(self, process, flags):
        self.process = process
        self.flags = flags


class Process:
    """A simulated process (one thread for now)."""

    def __init__(self, kernel, pid: int, mm, comm: str = "sim", ppid: int = 0, cred=None):
        self.kernel = kernel
        self.pid = pid
        self.tgid = pid
        self.ppid = ppid
        self.mm = mm
        self.comm = comm
        self.fds: dict = {}
        self.cred = cred if cred is not None else Cred()
        self.state = RUNNING         # then ZOMBIE after exit, REAPED after wait
        self.exit_status: int | None = None
        self.term_sig = 0            # the signal that killed it (SIGKILL from the OOM killer)
        self.memcg = kernel.root_memcg   # its memory cgroup (Kernel.new_process sets it)
        self.oom_score_adj = 0       # /proc/PID/oom_score_adj
        self.oom_score_adj_min = 0   # the lowest value a writer without CAP_SYS_RESOURCE may set
        self.vfork_parent = None     # the parent a CLONE_VFORK child borrows the mm of
        # The children this process may wait for, by pid (kernel: task->children).
        self.children: dict[int, Process] = {}
        self.pdeath_signal = 0       # PR_SET_PDEATHSIG
        self.no_new_privs = False    # PR_SET_NO_NEW_PRIVS
        self.keepcaps = False        # PR_SET_KEEPCAPS
        self.rlimits: dict = {}      # resource -> (soft, hard), set by Kernel.new_process
        self.cloexec: set = set()    # descriptors with FD_CLOEXEC, closed by execve
        # The working directory, an absolute normalised path: a spawned process starts
        # in the host's (simulator-defined), a child in its parent's.
        self.cwd = _host_cwd()
        if mm is not None and mm.user_ns is None:
            mm.user_ns = self.cred.user_ns

    def __repr__(self):
        return f"<Process {self.pid} {self.comm}>"

    def _repr_html_(self):
        """A notebook's view: identity, memory summary and the VMA table."""
        return notebook.process_html(self)

    # ------------------------------------------------------------------ processes

    @syscall()
    def fork(self) -> Process:
        """fork(2): a child with a copy of this address space; returns the child."""
        mm = dup_mm(self.kernel, self.mm)
        self.kernel.khugepaged.fork(self.mm, mm)
        mm.user_ns = self.mm.user_ns
        child = self.kernel.new_process(mm, parent=self)
        child.fds = dict(self.fds)
        child.cloexec = set(self.cloexec)
        child.cwd = self.cwd
        child.no_new_privs = self.no_new_privs
        return child

    @syscall(flags=ULONG)
    def clone(self, flags: int) -> Process:
        """clone(2) for the flags that matter to memory: CLONE_VM shares the address
        space (mm_users), CLONE_THREAD makes a thread of this thread group.  The flag
        combinations copy_process refuses are EINVAL; other flags are accepted and,
        where they do not touch memory, not modelled."""
        flags &= 0xFFFFFFFF   # the legacy clone reads the low 32 bits only
        if flags & (CLONE_NEWNS | CLONE_FS) == CLONE_NEWNS | CLONE_FS:
            raise error(errno.EINVAL)
        if flags & (CLONE_NEWUSER | CLONE_FS) == CLONE_NEWUSER | CLONE_FS:
            raise error(errno.EINVAL)
        # A thread needs shared signal handlers, which need a shared mm.
        if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
            raise error(errno.EINVAL)
        if flags & CLONE_SIGHAND and not flags & CLONE_VM:
            raise error(errno.EINVAL)
        if flags & CLONE_THREAD and flags & (CLONE_NEWUSER | CLONE_NEWPID):
            raise error(errno.EINVAL)
        if flags & CLONE_PIDFD and flags & (CLONE_DETACHED | CLONE_PARENT_SETTID):
            # The legacy clone returns the pidfd where the parent tid would go.
            raise error(errno.EINVAL)
        if not flags & CLONE_VM:
            return self.fork()
        self.mm.users += 1
        child = self.kernel.new_process(self.mm, parent=self)
        if flags & CLONE_VFORK:
            child.vfork_parent = self
        # CLONE_FILES shares the one table (a descriptor any of them opens or closes is
        # everyone's, close-on-exec flags included); without it the child gets a copy.
        if flags & CLONE_FILES:
            child.fds, child.cloexec = self.fds, self.cloexec
        else:
            child.fds, child.cloexec = dict(self.fds), set(self.cloexec)
        child.cwd = self.cwd
        child.no_new_privs = self.no_new_privs
        if flags & CLONE_THREAD:
            # A thread's parent is the thread group's parent, but only a group leader
            # is on its parent's children list: nobody waits for a thread.
            child.tgid = self.tgid
            del self.children[child.pid]
            child.ppid = self.ppid
        return child

    @syscall()
    def vfork(self) -> Process:
        """vfork(2): a child borrowing this address space until it execs or exits."""
        return self.clone(CLONE_VM | CLONE_VFORK)

    @syscall(path=PATH, argv=STRINGS, envp=ENVIRON)
    def execve(self, path: str, argv: list[str] | None = None,
               envp: list[str] | None = None) -> int:
        """execve(2) of a real ELF file: a fresh address space built the way
        load_elf_binary does, keeping the mm flags that survive exec."""
        held = self._shmem_held()
        result = execve(self, path, argv, envp)
        # unshare_files, then do_close_on_exec: once the new image is in, the FD_CLOEXEC
        # descriptors go from this process' own copy of a table other threads shared.
        self.fds = {fd: f for fd, f in self.fds.items() if fd not in self.cloexec}
        self.cloexec = set()
        self.kernel.release_shmem(held)
        return result

    def _threads(self):
        """The other running threads of this thread group."""
        return [p for p in self.kernel.processes.values()
                if p.tgid == self.tgid and p is not self and p.state == RUNNING]

    @syscall(status=INT)
    def exit(self, status: int = 0) -> None:
        """exit(2): this thread drops the address space and the fd table (the other
        threads keep them) and becomes a zombie until the parent waits; a thread that
        is not the group leader is reaped at once (its exit signal is none), and a
        leader cannot be reaped while another thread of its group runs.  Children go
        to another thread of the group, else to init (pid 1) when it is a running
        simulated process, else they are reaped as init would reap them."""
        held = self._shmem_held()
        if self.mm is not None:
            self.mm.users -= 1
            if self.mm.users == 0:
                self.kernel.khugepaged.exit(self.mm)
                self.mm.unmap(0, self.mm.task_size)   # exit_mmap
            self.mm = None
        # A new empty table, not clear(): a table CLONE_FILES shares stays with the others.
        self.fds = {}
        self.cloexec = set()
        self.kernel.release_shmem(held)
        self.state = ZOMBIE
        self.exit_status = status & 0xFF
        kernel = self.kernel
        threads = self._threads()
        init = threads[0] if threads else kernel.processes.get(1)
        if init is not None and (init is self or init.state != RUNNING):
            init = None
        for child in self.children.values():
            child.ppid = init.pid if init is not None else 1
            if init is not None:
                init.children[child.pid] = child
            elif child.state == ZOMBIE:
                kernel.release(child)
        self.children = {}
        if self.pid != self.tgid:
            kernel.release(self)
            leader = kernel.processes.get(self.tgid)
            if leader is not None and leader.state == ZOMBIE and not threads:
                leader._reap_if_orphan()
            return
        self._reap_if_orphan()

    def _reap_if_orphan(self):
        parent = self.kernel.processes.get(self.ppid)
        if parent is None or parent.state != RUNNING or self.pid not in parent.children:
            # Nobody simulated will wait for it (spawned from outside, or an orphan
            # with no simulated init): reaped at once, as its real parent would.
            self.kernel.release(self)

    @syscall(status=INT)
    def exit_group(self, status: int = 0) -> None:
        """exit_group(2): every thread of the group exits with ``status``."""
        for thread in self._threads():
            if thread.pid != thread.tgid:
                thread.exit(status)
        leader = self.kernel.processes.get(self.tgid)
        if leader is not None and leader is not self and leader.state == RUNNING:
            leader.exit(status)
        elif leader is not None and leader is not self:
            leader.exit_status = status & 0xFF   # the group's status, as wait reports it
        self.exit(status)

    @syscall(pid=INT, options=INT)
    def wait4(self, pid: int = -1, options: int = 0) -> tuple[int, int]:
        """wait4(2): reap an exited child; returns ``(pid, status)`` like os.waitpid,
        ``(0, 0)`` with WNOHANG when no child has exited yet."""
        if options & ~(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WCLONE | WALL):
            raise error(errno.EINVAL)
        if pid == -(1 << 31):
            raise error(errno.ESRCH)   # -INT_MIN is no process group
        # Every thread of the group waits for the children of all of them, unless
        # __WNOTHREAD limits it to its own.
        owners = [self] if options & WNOTHREAD else [self, *self._threads()]
        if pid > 0:
            found = [(o, o.children[pid]) for o in owners if pid in o.children]
            children = found[:1]
        else:
            # -1: any child; 0 and < -1 name process groups, which are all this
            # process' own group in a simulation.
            children = [(o, c) for o in owners for c in o.children.values()]
        if not children:
            raise error(errno.ECHILD)
        for owner, child in children:
            if child.state == ZOMBIE and not child._threads():
                del owner.children[child.pid]
                self.kernel.release(child)
                return child.pid, child.term_sig or child.exit_status << 8
        if options & WNOHANG:
            return 0, 0
        raise error(errno.EDEADLK, "would block forever: no child can exit in a simulation")

    # ------------------------------------------------------------------ credentials

    @syscall(ruid=UINT, euid=UINT, suid=UINT)
    def setresuid(self, ruid: int, euid: int, suid: int) -> int:
        """setresuid(2)."""
        return setresuid(self, ruid, euid, suid)

    @syscall(uid=UINT)
    def setuid(self, uid: int) -> int:
        """setuid(2)."""
        return setuid(self, uid)

    @syscall(rgid=UINT, egid=UINT, sgid=UINT)
    def setresgid(self, rgid: int, egid: int, sgid: int) -> int:
        """setresgid(2)."""
        return setresgid(self, rgid, egid, sgid)

    @syscall(gid=UINT)
    def setgid(self, gid: int) -> int:
        """setgid(2)."""
        return setgid(self, gid)

    @syscall(pid=INT)
    def capget(self, pid: int = 0) -> tuple[int, int, int]:
        """capget(2): ``(effective, permitted, inheritable)`` of ``pid`` (0: the caller)."""
        target = self if not pid else self.kernel.processes.get(pid)
        if target is None or target.state == REAPED:
            raise error(errno.ESRCH)
        return capget(self, target)

    @syscall(effective=UINT, permitted=UINT, inheritable=UINT)
    def capset(self, effective: int, permitted: int, inheritable: int) -> int:
        """capset(2) on the caller."""
        return capset(self, effective, permitted, inheritable)

    @syscall(flags=ULONG)
    def unshare(self, flags: int) -> int:
        """unshare(2): CLONE_NEWUSER is modelled; the other flags unshare(2) accepts
        change nothing memory-related and succeed (docs/processes.md)."""
        clone_newtime = 0x80
        namespaces = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET
                      | CLONE_NEWPID | CLONE_NEWCGROUP | clone_newtime)
        if flags & ~(CLONE_THREAD | CLONE_FS | CLONE_SIGHAND | CLONE_VM | CLONE_FILES
                     | CLONE_SYSVSEM | CLONE_NEWUSER | namespaces):
            raise error(errno.EINVAL)
        # check_unshare_flags: what is shared with other threads cannot be unshared.
        if flags & CLONE_NEWUSER:
            flags |= CLONE_THREAD | CLONE_FS
        if flags & CLONE_VM:
            flags |= CLONE_SIGHAND
        if flags & CLONE_SIGHAND:
            flags |= CLONE_THREAD
        threads = flags & (CLONE_THREAD | CLONE_SIGHAND) and any(
            p.tgid == self.tgid and p is not self and p.state == RUNNING
            for p in self.kernel.processes.values())
        if threads or flags & CLONE_VM and self.mm.users > 1:
            raise error(errno.EINVAL)
        if flags & namespaces and not ns_capable(self.cred, self.cred.user_ns, CAP_SYS_ADMIN):
            raise error(errno.EPERM)
        if flags & CLONE_NEWUSER:
            return unshare_user(self)
        return 0

    # ------------------------------------------------------------------ pidfds

    @syscall(pid=INT, flags=UINT)
    def pidfd_open(self, pid: int, flags: int = 0) -> int:
        """pidfd_open(2): a descriptor for process ``pid`` (a zombie may be opened)."""
        if flags & ~(PIDFD_NONBLOCK | PIDFD_THREAD):
            raise error(errno.EINVAL)
        if pid <= 0:
            raise error(errno.EINVAL)
        target = self.kernel.processes.get(pid)
        if target is None or target.state == REAPED:
            raise error(errno.ESRCH)
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = Pidfd(target, flags)
        return fd

    def _pidfd_task(self, pidfd):
        """pidfd_get_task(): the process behind ``pidfd`` (PIDFD_SELF* included)."""
        if pidfd in (PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP):
            return self
        obj = self.fds.get(pidfd)
        if not isinstance(obj, Pidfd):
            raise error(errno.EBADF)
        if obj.process.state == REAPED:
            raise error(errno.ESRCH)
        return obj.process

    @syscall(pidfd=INT, iovec=IOVEC, advice=INT, flags=UINT)
    def process_madvise(self, pidfd: int, iovec: list[tuple[int, int]], advice: int,
                        flags: int = 0) -> int:
        """process_madvise(2): ``iovec`` is a list of (address, length) pairs.  Returns
        the bytes of the elements fully advised, or raises the first error when none
        were."""
        if flags:
            raise error(errno.EINVAL)
        if isinstance(iovec, OSError):
            raise iovec   # import_iovec refused it
        elements = import_iovec(iovec)
        target = self._pidfd_task(pidfd)
        mm = target.mm
        if mm is None:
            raise error(errno.ESRCH, "the target has no address space")
        if mm is not self.mm and not ptrace_may_access(self, target, PTRACE_MODE_READ_FSCREDS):
            raise error(errno.EACCES)
        if mm is not self.mm:
            if advice not in _madvise.REMOTE_OK:
                raise error(errno.EINVAL, "advice not allowed on another process")
            if not capable(self.cred, CAP_SYS_NICE):
                raise error(errno.EPERM)
        done = 0
        total = sum(n for _, n in elements)
        for i, (addr, length) in enumerate(elements):
            # The iov_iter visits a leading empty element, skips the others, and stops
            # when MAX_RW_COUNT bytes are used up.
            if not length and (i or not total):
                continue
            try:
                _madvise.madvise(mm, addr, length, advice)
            except OSError:
                if done:
                    return done
                raise
            done += length
        return done

    @syscall(pidfd=INT, action=INT, flags=UINT)
    def mctl(self, pidfd: int, action: int, flags: int = 0) -> int:
        """mctl(2), the proposed address-space-wide call (docs/mctl.md)."""
        return mctl(self, pidfd, action, flags)

    @syscall(option=INT, arg2=PRCTL_ARG, arg3=PRCTL_ARG, arg4=PRCTL_ARG, arg5=PRCTL_ARG)
    def prctl(self, option: int, arg2=0, arg3=0, arg4=0, arg5=0) -> int:
        """prctl(2) for the memory-management options and the common harmless ones
        (PR_SET_MM_MAP takes a ``prctl.PrctlMmMap`` where the kernel takes a pointer to
        the struct; PR_SET_NAME may take the name itself)."""
        return prctl(self, option, arg2, arg3, arg4, arg5)

    # ------------------------------------------------------------------ files

    def _alloc_fd(self, file, minfd=0, cloexec=False):
        """alloc_fd: the lowest free descriptor at or above ``minfd`` (and above the
        standard streams, which a simulated process notionally holds: docs/processes.md),
        EMFILE at RLIMIT_NOFILE."""
        fd = self._free_fd(minfd)
        self._install(fd, file, cloexec)
        return fd

    def _free_fd(self, minfd=0, skip=None):
        """The descriptor _alloc_fd would take (``skip``: one about to be taken)."""
        fd = max(minfd, 3)
        while fd in self.fds or fd == skip:
            fd += 1
        if fd >= self.rlimits[RLIMIT_NOFILE][0]:
            raise error(errno.EMFILE)
        return fd

    def _install(self, fd, file, cloexec):
        self.fds[fd] = file
        if cloexec:
            self.cloexec.add(fd)
        else:
            self.cloexec.discard(fd)

    def _file(self, fd):
        """The open file behind ``fd``, or EBADF."""
        f = self.fds.get(fd)
        if f is None:
            raise error(errno.EBADF)
        return f

    @syscall(path=PATH, flags=INT, mode=UINT)
    def open(self, path: str, flags: int = O_RDONLY, mode: int = 0o666) -> int:
        """open(2): openat(AT_FDCWD, ...)."""
        return self.openat(AT_FDCWD, path, flags, mode)

    @syscall(dirfd=INT, path=PATH, flags=INT, mode=UINT)
    def openat(self, dirfd: int, path: str, flags: int = O_RDONLY, mode: int = 0o666) -> int:
        """openat(2) on a simulated file (``Kernel.create_file``), a directory, or, with
        O_CREAT, a new empty simulated file; a relative path resolves against ``dirfd``
        (AT_FDCWD: the working directory).  O_TRUNC empties a regular file."""
        kernel = self.kernel
        name = resolve_at(self, dirfd, path)
        if name == "/dev/tty":
            # Simulator-defined: no simulated process has a controlling terminal, and
            # /dev/tty without one is ENXIO (tty_open_current_tty).
            raise error(errno.ENXIO, name)
        inode = kernel.files.get(name)
        acc = flags & O_ACCMODE
        readable, writable = acc in (O_RDONLY, O_RDWR), acc in (O_WRONLY, O_RDWR)
        created = False
        if inode is None and kernel.is_dir(name):
            if writable or flags & O_CREAT:
                raise error(errno.EISDIR, name)
            inode = kernel.files[name] = Inode(name, 0, dev=(0xFE, 0x00), mode=0o755, kind=DIR)
        if inode is None:
            if not flags & O_CREAT:
                raise error(errno.ENOENT, name)
            if not kernel.is_dir(posixpath.dirname(name)):
                raise error(errno.ENOENT, name)
            created = True
        elif flags & O_CREAT and flags & O_EXCL:
            raise error(errno.EEXIST, name)
        elif inode.kind == DIR and writable:
            raise error(errno.EISDIR, name)
        if not created and inode.kind != DIR and flags & O_DIRECTORY:
            raise error(errno.ENOTDIR, name)
        if not created and not inode_permission(self.cred, inode, readable,
                                                writable or bool(flags & O_TRUNC)):
            raise error(errno.EACCES, name)
        fd = self._free_fd()
        if created:
            # Simulator-defined: no umask; the creator owns the file.
            inode = kernel.create_file(name, 0)
            inode.mode = mode & 0o7777 & ~0o022
            inode.uid, inode.gid = self.cred.fsuid, self.cred.fsgid
        elif flags & O_TRUNC and inode.kind == REG and inode.size:
            inode.size = 0
            pages.truncate_pages(kernel, inode, 0)
        f = kernel.open_file(inode, readable=readable, writable=writable,
                             append=bool(flags & O_APPEND), name=name)
        self._install(fd, f, flags & O_CLOEXEC)
        return fd

    @syscall(fd=INT)
    def close(self, fd: int) -> int:
        """close(2)."""
        f = self.fds.pop(fd, None)
        if f is None:
            raise error(errno.EBADF)
        self.cloexec.discard(fd)
        if getattr(f, "shmem", False):
            self.kernel.release_shmem((f.inode,))
        return 0

    def _shmem_held(self, lo=0, hi=None, fds=True):
        """The shmem files this process holds: by its mappings in ``[lo, hi)`` (all,
        by default) and, with ``fds``, by its descriptors (release_shmem's
        candidates when they go)."""
        if not self.kernel.node.nr_shmem:
            return ()   # no shmem page anywhere: nothing to free
        out = set()
        if fds:
            out.update(f.inode for f in self.fds.values() if getattr(f, "shmem", False))
        mm = self.mm
        if mm is not None:
            if hi is None:
                vmas = mm.vmas()
            else:
                hi = min(hi, 1 << 64)
                vmas = mm.tree.values(lo, hi, False) if lo < hi else ()
            out.update(v.file.inode for v in vmas if v.file is not None and v.file.shmem)
        return out

    def _write_at(self, f, pos, count):
        """What a write of ``count`` bytes at ``pos`` does to the file's size; the
        bytes written (MAX_RW_COUNT at most)."""
        count = min(count, MAX_RW_COUNT)
        inode = f.inode
        if inode.kind == EVENTFD:
            if count < 8:
                raise error(errno.EINVAL, "an eventfd takes 8-byte writes")
            return 8
        if inode.kind != REG:
            return count
        if count and pos >= MAX_LFS_FILESIZE:
            raise error(errno.EFBIG)
        count = min(count, MAX_LFS_FILESIZE - pos)
        if f.shmem:
            if count:
                self._shmem_room(inode, pos, pos + count)
            return shmem.write(self.kernel, self._memcg(), inode, pos, count)
        return filemap.write(self.kernel, self._memcg(), inode, pos, count)

    def _shmem_room(self, inode, start, end):
        """ENOMEM, before anything is allocated, when the pages of bytes ``[start,
        end)`` the shmem file lacks would not fit in memory (shmem is never reclaimed:
        where the kernel would start the OOM killer, as touch does; docs/mm.md)."""
        if self.mm is not None:
            need = shmem.missing(inode, start >> PAGE_SHIFT, -(-end // PAGE_SIZE))
            pages.check_room(self.mm, need, need)

    def _memcg(self):
        """The memory cgroup this process charges page cache to."""
        mm = self.mm
        return mm.memcg if mm is not None else self.kernel.root_memcg

    @syscall(fd=INT, count=ULONG)
    def write(self, fd: int, count: int) -> int:
        """write(2) of ``count`` bytes (their contents are not modelled) at the file
        offset, or at the end with O_APPEND; the offset moves past them."""
        f = self._file(fd)
        if not f.writable:
            raise error(errno.EBADF)
        if isinstance(f, Pidfd):
            raise error(errno.EINVAL, "a pidfd has no write operation")
        if count >> 63:
            raise error(errno.EINVAL, "count above SSIZE_MAX")
        if f.inode.kind not in SEEKABLE:
            return self._write_at(f, 0, count)
        pos = f.inode.size if f.append else f.pos
        n = self._write_at(f, pos, count)
        f.pos = pos + n
        return n

    @syscall(fd=INT, count=ULONG, offset=ULONG)
    def pwrite(self, fd: int, count: int, offset: int) -> int:
        """pwrite64(2): ``count`` bytes at ``offset`` (at the end with O_APPEND, as
        Linux does); the file offset stays."""
        if offset >> 63:
            raise error(errno.EINVAL, "negative offset")
        f = self._file(fd)
        if isinstance(f, Pidfd):
            raise error(errno.EINVAL, "a pidfd has no write operation")
        if f.inode.kind not in SEEKABLE:
            raise error(errno.ESPIPE)
        if not f.writable:
            raise error(errno.EBADF)
        if count >> 63:
            raise error(errno.EINVAL, "count above SSIZE_MAX")
        return self._write_at(f, f.inode.size if f.append else offset, count)

    def _readable(self, fd):
        """The open file behind ``fd`` if it may be read (vfs_read's FMODE_READ check)."""
        f = self._file(fd)
        if not f.readable:
            raise error(errno.EBADF, "not open for reading")
        return f

    def _read_at(self, f, pos, count):
        """What a read of ``count`` bytes at ``pos`` returns: a regular file's bytes up to
        EOF, read through its page cache (a shmem file's without allocating: holes
        read as zeroes); EISDIR for a directory."""
        if isinstance(f, Pidfd):
            raise error(errno.EINVAL, "a pidfd has no read operation")
        count = min(count, MAX_RW_COUNT)
        inode = f.inode
        if inode.kind == DIR:
            raise error(errno.EISDIR)
        if inode.kind == EVENTFD:
            if count < 8:
                raise error(errno.EINVAL, "an eventfd takes 8-byte reads")
            raise error(errno.EAGAIN, "the eventfd counter is not modelled")
        if inode.kind != REG:
            # Simulator-defined: no data is modelled in pipes and sockets.
            return 0
        if f.shmem:
            return max(0, min(count, inode.size - pos))
        return filemap.read(self.kernel, self._memcg(), f, pos, count)

    @syscall(fd=INT, count=ULONG)
    def read(self, fd: int, count: int) -> int:
        """read(2) of ``count`` bytes at the file offset (their contents are not
        modelled), through the page cache with readahead; the offset moves past them."""
        f = self._readable(fd)
        if count >> 63:
            raise error(errno.EINVAL, "count above SSIZE_MAX")
        if isinstance(f, Pidfd) or f.inode.kind not in SEEKABLE:
            return self._read_at(f, 0, count)
        n = self._read_at(f, f.pos, count)
        f.pos += n
        return n

    @syscall(fd=INT, count=ULONG, offset=ULONG)
    def pread(self, fd: int, count: int, offset: int) -> int:
        """pread64(2): ``count`` bytes at ``offset``; the file offset stays."""
        if offset >> 63:
            raise error(errno.EINVAL, "negative offset")
        f = self._file(fd)
        if isinstance(f, Pidfd):
            raise error(errno.EINVAL, "a pidfd has no read operation")
        if f.inode.kind not in SEEKABLE:
            raise error(errno.ESPIPE)
        if not f.readable:
            raise error(errno.EBADF, "not open for reading")
        if count >> 63:
            raise error(errno.EINVAL, "count above SSIZE_MAX")
        return self._read_at(f, offset, count)

    def _advise(self, f, offset, length, advice):
        """vfs_fadvise on ``f``: the checks of generic_fadvise, then the advice on a
        regular file; a file without a real backing device (shmem, sockets, eventfds,
        directories and pidfds here) takes valid advice and ignores it."""
        if not isinstance(f, Pidfd) and f.inode.kind == PIPE:
            raise error(errno.ESPIPE)
        if length >> 63:
            raise error(errno.EINVAL, "negative length")
        if advice not in filemap.FADVICES:
            raise error(errno.EINVAL, "unknown advice")
        if isinstance(f, Pidfd) or f.inode.kind != REG or f.shmem:
            return 0
        if offset >> 63:
            offset -= 1 << 64
        return filemap.fadvise(self.kernel, self._memcg(), f, offset, length, advice)

    @syscall(fd=INT, offset=ULONG, length=ULONG, advice=INT)
    def fadvise(self, fd: int, offset: int, length: int, advice: int) -> int:
        """posix_fadvise (fadvise64): advice on how ``[offset, offset + length)`` of the
        file will be read (length 0: to the end); see ``filemap.fadvise``."""
        return self._advise(self._file(fd), offset, length, advice)

    @syscall(fd=INT, offset=ULONG, count=ULONG)
    def readahead(self, fd: int, offset: int, count: int) -> int:
        """readahead(2): POSIX_FADV_WILLNEED on a regular file open for reading."""
        f = self._readable(fd)
        if isinstance(f, Pidfd) or f.inode.kind != REG:
            raise error(errno.EINVAL, "not a regular file")
        return self._advise(f, offset, count, filemap.POSIX_FADV_WILLNEED)

    @syscall(fd=INT)
    def fsync(self, fd: int) -> int:
        """fsync(2): the file's dirty pages are written back (at once); EINVAL for a
        file without an fsync operation (pipes, sockets, eventfds)."""
        f = self._file(fd)
        kind = None if isinstance(f, Pidfd) else f.inode.kind
        if kind not in (REG, DIR):
            raise error(errno.EINVAL)
        if kind == REG and not f.shmem:
            filemap.writeback(f.inode)
        return 0

    @syscall(fd=INT)
    def fdatasync(self, fd: int) -> int:
        """fdatasync(2): as fsync here (metadata is not modelled)."""
        return self.fsync(fd)

    @syscall(fd=INT, length=ULONG)
    def ftruncate(self, fd: int, length: int) -> int:
        """ftruncate(2): set a regular file's size; pages past a new end leave the page
        cache and every mapping (a later access there is SIGBUS)."""
        if length >> 63:
            raise error(errno.EINVAL, "negative length")
        f = self._file(fd)
        if isinstance(f, Pidfd):
            raise error(errno.EOPNOTSUPP, "pidfs has no setattr of the size")
        if f.inode.kind != REG or not f.writable:
            raise error(errno.EINVAL)
        inode = f.inode
        if length < inode.size:
            pages.truncate_pages(self.kernel, inode, pfn_up(length))
        inode.size = length
        return 0

    @syscall(fd=INT, mode=INT, offset=ULONG, length=ULONG)
    def fallocate(self, fd: int, mode: int, offset: int, length: int) -> int:
        """fallocate(2): mode 0 and FALLOC_FL_ZERO_RANGE extend the file to cover the
        range unless FALLOC_FL_KEEP_SIZE; FALLOC_FL_PUNCH_HOLE (with KEEP_SIZE) drops the
        range's pages.  On a shmem file mode 0 and KEEP_SIZE allocate the range's pages
        (large folios where shmem_enabled allows) and ZERO_RANGE is EOPNOTSUPP, as
        shmem_fallocate has it.  The other modes are not modelled: EOPNOTSUPP."""
        f = self._file(fd)
        if offset >> 63 or length >> 63 or not length:
            raise error(errno.EINVAL)
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            raise error(errno.EOPNOTSUPP)
        if mode & FALLOC_FL_PUNCH_HOLE and mode != FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE:
            raise error(errno.EOPNOTSUPP)
        if not f.writable:
            raise error(errno.EBADF)
        if isinstance(f, Pidfd):
            raise error(errno.EOPNOTSUPP, "a pidfd has no fallocate operation")
        kind = f.inode.kind
        if kind == PIPE:
            raise error(errno.ESPIPE)
        if kind == DIR:
            raise error(errno.EISDIR)
        if kind != REG:
            raise error(errno.ENODEV)
        if offset + length > MAX_LFS_FILESIZE:
            raise error(errno.EFBIG)
        inode = f.inode
        if f.shmem and not mode & FALLOC_FL_PUNCH_HOLE:
            if mode & FALLOC_FL_ZERO_RANGE:
                raise error(errno.EOPNOTSUPP, "shmem_fallocate has no ZERO_RANGE")
            self._shmem_room(inode, offset, offset + length)
            shmem.fallocate(self.kernel, self._memcg(), inode, offset, length,
                            bool(mode & FALLOC_FL_KEEP_SIZE))
        elif mode & FALLOC_FL_PUNCH_HOLE:
            pages.truncate_pages(self.kernel, inode, pfn_up(offset), (offset + length) >> PAGE_SHIFT)
        elif not mode & FALLOC_FL_KEEP_SIZE and offset + length > inode.size:
            inode.size = offset + length
        return 0

    @syscall(fd=INT, offset=ULONG, whence=UINT)
    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """lseek(2): the new file offset; SEEK_DATA and SEEK_HOLE see no holes."""
        f = self._file(fd)
        if isinstance(f, Pidfd) or f.inode.kind not in SEEKABLE:
            raise error(errno.ESPIPE)
        if whence > SEEK_HOLE:
            raise error(errno.EINVAL)
        if offset >> 63:
            offset -= 1 << 64
        size = f.inode.size
        if whence in (SEEK_DATA, SEEK_HOLE):
            if offset < 0 or offset >= size:
                raise error(errno.ENXIO)
            pos = offset if whence == SEEK_DATA else size
        else:
            pos = offset + (0, f.pos, size)[whence]
        if pos < 0 or pos > MAX_LFS_FILESIZE:
            raise error(errno.EINVAL)
        f.pos = pos
        return pos

    @syscall(fd=UINT)
    def dup(self, fd: int) -> int:
        """dup(2): the lowest free descriptor, sharing the open file description."""
        return self._alloc_fd(self._file(fd))

    @syscall(oldfd=UINT, newfd=UINT)
    def dup2(self, oldfd: int, newfd: int) -> int:
        """dup2(2): ``newfd`` (closed first if open) refers to ``oldfd``'s file."""
        if oldfd == newfd:
            self._file(oldfd)
            return newfd
        return self.dup3(oldfd, newfd, 0)

    @syscall(oldfd=UINT, newfd=UINT, flags=INT)
    def dup3(self, oldfd: int, newfd: int, flags: int) -> int:
        """dup3(2): dup2 that refuses ``oldfd == newfd`` and takes O_CLOEXEC."""
        if flags & ~O_CLOEXEC:
            raise error(errno.EINVAL)
        if oldfd == newfd:
            raise error(errno.EINVAL)
        if newfd >= self.rlimits[RLIMIT_NOFILE][0]:
            raise error(errno.EBADF)
        self._install(newfd, self._file(oldfd), flags & O_CLOEXEC)
        return newfd

    @syscall(fd=UINT, cmd=UINT, arg=ULONG)
    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        """fcntl(2) for the descriptor commands: F_DUPFD, F_DUPFD_CLOEXEC, F_GETFD,
        F_SETFD; F_GETFL and F_SETFL for the access mode and O_APPEND.  Other commands
        are not modelled: EINVAL."""
        f = self._file(fd)
        if cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
            if arg & 0xFFFFFFFF >= self.rlimits[RLIMIT_NOFILE][0]:
                raise error(errno.EINVAL)
            return self._alloc_fd(f, arg & 0xFFFFFFFF, cmd == F_DUPFD_CLOEXEC)
        if cmd == F_GETFD:
            return int(fd in self.cloexec)
        if cmd == F_SETFD:
            self._install(fd, f, arg & 1)
            return 0
        if cmd == F_GETFL:
            acc = O_RDWR if f.readable and f.writable else O_WRONLY if f.writable else O_RDONLY
            return acc | (O_APPEND if f.append else 0)
        if cmd == F_SETFL:
            f.append = bool(arg & O_APPEND)
            return 0
        raise error(errno.EINVAL, "fcntl command not modelled")

    @syscall(flags=INT)
    def pipe2(self, flags: int = 0) -> tuple[int, int]:
        """pipe2(2): ``(read end, write end)``, like os.pipe."""
        if flags & ~(O_CLOEXEC | O_NONBLOCK | O_DIRECT | O_NOTIFICATION_PIPE):
            raise error(errno.EINVAL)
        r = self._free_fd()
        w = self._free_fd(skip=r)
        pipe = self.kernel.pseudo_file(PIPE, "pipe:[{ino}]")
        self._install(r, type(pipe)(pipe.inode, readable=True, writable=False), flags & O_CLOEXEC)
        self._install(w, type(pipe)(pipe.inode, readable=False, writable=True), flags & O_CLOEXEC)
        return r, w

    @syscall(family=INT, type=INT, protocol=INT)
    def socket(self, family: int, type: int, protocol: int = 0) -> int:
        """socket(2): a descriptor on a socket (no network is modelled; a socket has no
        mmap, except TCP's, which is not modelled either: docs/processes.md)."""
        if not 0 <= family < AF_MAX:
            raise error(errno.EAFNOSUPPORT)
        if type & ~(SOCK_CLOEXEC | SOCK_NONBLOCK | 0xF) or not 0 < type & 0xF < SOCK_MAX:
            raise error(errno.EINVAL)
        return self._alloc_fd(self.kernel.pseudo_file(SOCKET, "socket:[{ino}]"), 0,
                              type & SOCK_CLOEXEC)

    @syscall(count=UINT, flags=INT)
    def eventfd2(self, count: int = 0, flags: int = 0) -> int:
        """eventfd2(2)."""
        if flags & ~(EFD_SEMAPHORE | O_CLOEXEC | O_NONBLOCK):
            raise error(errno.EINVAL)
        return self._alloc_fd(self.kernel.pseudo_file(EVENTFD, "anon_inode:[eventfd]"), 0,
                              flags & O_CLOEXEC)

    @syscall(name=PATH, flags=UINT)
    def memfd_create(self, name: str, flags: int = 0) -> int:
        """memfd_create(2): an empty shmem file; mmap of it shares its pages, ftruncate
        sizes it.  MFD_HUGETLB (hugetlbfs is not modelled) is EINVAL."""
        if flags & ~(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | MFD_EXEC):
            raise error(errno.EINVAL)
        if flags & MFD_NOEXEC_SEAL and flags & MFD_EXEC:
            raise error(errno.EINVAL)
        if len(os.fsencode(name)) > MFD_NAME_MAX:
            raise error(errno.EINVAL)
        return self._alloc_fd(self.kernel.memfd_file(name), 0, flags & MFD_CLOEXEC)

    @syscall(path=PATH)
    def chdir(self, path: str) -> int:
        """chdir(2) to a directory (a simulated one or the host's)."""
        name = resolve_at(self, AT_FDCWD, path)
        if not self.kernel.is_dir(name):
            inode = self.kernel.files.get(name)
            raise error(errno.ENOTDIR if inode is not None else errno.ENOENT, name)
        self.cwd = name
        return 0

    @syscall(fd=UINT)
    def fchdir(self, fd: int) -> int:
        """fchdir(2) to an open directory."""
        f = self._file(fd)
        if isinstance(f, Pidfd) or f.inode.kind != DIR:
            raise error(errno.ENOTDIR)    # a pidfd's anonymous inode is no directory
        self.cwd = f.path
        return 0

    @syscall()
    def getcwd(self) -> str:
        """getcwd(2): the working directory, like os.getcwd."""
        return self.cwd


    # ------------------------------------------------------------------ memory syscalls

    @syscall(addr=ULONG, length=ULONG, prot=ULONG, flags=ULONG, fd=INT, offset=ULONG)
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0) -> int:
        """mmap(2)."""
        held = (self._shmem_held(addr, addr + length, fds=False)
                if flags & MAP_FIXED and length else ())
        done = fastpath.mmap(self.mm, addr, length, prot, flags, offset)
        if done is not None:
            if done < 0:
                raise error(-done)
        else:
            file = None
            if not flags & MAP_ANONYMOUS:
                file = self.fds.get(fd)
                if file is None:
                    raise error(errno.EBADF)
            done = mman.mmap(self.mm, addr, length, prot, flags, file, offset,
                             self.kernel.thp_pmd_policy, memlock=self._memlock())
        if held:
            self.kernel.release_shmem(held)
        return done

    def _memlock(self):
        """What may be locked: None with CAP_IPC_LOCK (no limit), else the soft
        RLIMIT_MEMLOCK in bytes."""
        if capable(self.cred, CAP_IPC_LOCK):
            return None
        return self.rlimits[RLIMIT_MEMLOCK][0]

    # ------------------------------------------------------------------ resource limits

    @syscall(resource=UINT)
    def getrlimit(self, resource: int) -> tuple[int, int]:
        """getrlimit(2): ``(soft, hard)``; RLIM_INFINITY is 2**64 - 1."""
        return self.prlimit(0, resource)

    @syscall(resource=UINT, limits=RLIMIT)
    def setrlimit(self, resource: int, limits: tuple[int, int]) -> int:
        """setrlimit(2) with ``limits`` = ``(soft, hard)`` (-1 means RLIM_INFINITY)."""
        if limits is None:
            raise error(errno.EFAULT, "limits must be a (soft, hard) pair")
        self.prlimit(0, resource, limits)
        return 0

    @syscall(pid=INT, resource=UINT, limits=RLIMIT)
    def prlimit(self, pid: int, resource: int,
                limits: tuple[int, int] | None = None) -> tuple[int, int]:
        """prlimit64(2): set ``pid``'s limit of ``resource`` (0: the caller) when
        ``limits`` is given; returns the old ``(soft, hard)``, like resource.prlimit."""
        target = self if pid in (0, self.pid) else self.kernel.processes.get(pid)
        if target is None or target.state == REAPED:
            raise error(errno.ESRCH)
        if target is not self:
            # check_prlimit_permission: same real, effective and saved ids, or
            # CAP_SYS_RESOURCE.
            mine, theirs = self.cred, target.cred
            same = (mine.uid == theirs.uid == theirs.euid == theirs.suid
                    and mine.gid == theirs.gid == theirs.egid == theirs.sgid)
            if not same and not capable(mine, CAP_SYS_RESOURCE):
                raise error(errno.EPERM)
        # do_prlimit's checks, in its order.
        if resource >= RLIM_NLIMITS:
            raise error(errno.EINVAL)
        old = target.rlimits[resource]
        if limits is not None:
            soft, hard = limits
            if soft > hard:
                raise error(errno.EINVAL, "soft limit above the hard limit")
            if resource == RLIMIT_NOFILE and hard > 1 << 20:   # fs.nr_open
                raise error(errno.EPERM)
            if hard > old[1] and not capable(self.cred, CAP_SYS_RESOURCE):
                raise error(errno.EPERM, "raising the hard limit needs CAP_SYS_RESOURCE")
            target.rlimits[resource] = (soft, hard)
        return old

    @syscall(addr=ULONG, length=ULONG)
    def munmap(self, addr: int, length: int) -> int:
        """munmap(2)."""
        held = self._shmem_held(addr, addr + length, fds=False) if length else ()
        done = fastpath.munmap(self.mm, addr, length)
        if done is not None:
            if done < 0:
                raise error(-done)
        else:
            done = mman.munmap(self.mm, addr, length)
        if held:
            self.kernel.release_shmem(held)
        return done

    @syscall(addr=ULONG, length=ULONG, prot=ULONG)
    def mprotect(self, addr: int, length: int, prot: int) -> int:
        """mprotect(2)."""
        done = fastpath.mprotect(self.mm, addr, length, prot)
        if done is not None:
            if done < 0:
                raise error(-done)
            return done
        return mman.mprotect(self.mm, addr, length, prot)

    @syscall(addr=ULONG, length=ULONG, advice=INT)
    def madvise(self, addr: int, length: int, advice: int) -> int:
        """madvise(2)."""
        done = fastpath.madvise(self.mm, addr, length, advice)
        if done is not None:
            if done < 0:
                raise error(-done)
            return done
        return _madvise.madvise(self.mm, addr, length, advice)

    @syscall(old_addr=ULONG, old_size=ULONG, new_size=ULONG, flags=ULONG, new_addr=ULONG)
    def mremap(self, old_addr: int, old_size: int, new_size: int, flags: int = 0,
               new_addr: int = 0) -> int:
        """mremap(2)."""
        return mman.mremap(self.mm, old_addr, old_size, new_size, flags, new_addr,
                           memlock=self._memlock())

    @syscall(addr=ULONG, length=ULONG)
    def mlock(self, addr: int, length: int) -> int:
        """mlock(2)."""
        return mman.mlock(self.mm, addr, length, memlock=self._memlock())

    @syscall(addr=ULONG, length=ULONG, flags=UINT)
    def mlock2(self, addr: int, length: int, flags: int) -> int:
        """mlock2(2)."""
        return mman.mlock(self.mm, addr, length, flags, memlock=self._memlock())

    @syscall(addr=ULONG, length=ULONG)
    def munlock(self, addr: int, length: int) -> int:
        """munlock(2)."""
        return mman.munlock(self.mm, addr, length)

    @syscall(flags=INT)
    def mlockall(self, flags: int) -> int:
        """mlockall(2)."""
        return mman.mlockall(self.mm, flags, memlock=self._memlock())

    @syscall()
    def munlockall(self) -> int:
        """munlockall(2)."""
        return mman.munlockall(self.mm)

    @syscall(addr=ULONG)
    def brk(self, addr: int) -> int:
        """brk(2): returns the new (or unchanged) break."""
        return mman.brk(self.mm, addr, memlock=self._memlock())

    @syscall(addr=ULONG, length=ULONG, write=FLAG)
    def touch(self, addr: int, length: int, write: bool = True) -> int:
        """Fault every page of ``[addr, addr + length)`` as a read or write would.

        Raises EFAULT (where the CPU would deliver SIGSEGV or SIGBUS) without touching
        anything if any page is unmapped, lacks the access, is a guard page or lies
        wholly past the end of a mapped file; ENOMEM, also before touching anything,
        when the pages would not fit in the machine's memory (docs/mm.md)."""
        self._touch(page_align_down(addr), page_align(addr + length), write)
        return 0

    @syscall(addrs=ADDRS, write=FLAG)
    def access(self, addrs, write: bool = True) -> int:
        """Access the byte at each address of ``addrs`` in order, as a stream of loads
        (or stores) would, each faulting its page as ``touch`` does; returns how many.

        A run of addresses each on the page of the one before or the next page is
        faulted as one range, so a sequential stream costs what one ``touch`` does.  The
        first access that faults raises (EFAULT, ENOMEM) after every one before it."""
        n = 0
        lo = hi = -1
        it = iter(addrs)
        while True:
            try:
                addr = next(it)
            except StopIteration:
                break
            except OSError:
                if lo >= 0:
                    self._touch_run(lo, hi, write)   # the accesses before the bad element
                raise
            vpn = addr >> PAGE_SHIFT
            if vpn == hi:
                hi += 1
            elif vpn != hi - 1:
                if lo >= 0:
                    self._touch_run(lo, hi, write)
                lo, hi = vpn, vpn + 1
            n += 1
        if lo >= 0:
            self._touch_run(lo, hi, write)
        return n

    def _touch_run(self, lo, hi, write):
        """Fault pages ``lo .. hi-1`` in order: as one range, or, where the range fails,
        page by page so the pages before the failing one still take effect."""
        try:
            self._touch(lo << PAGE_SHIFT, hi << PAGE_SHIFT, write)
        except OSError:
            if hi - lo == 1:
                raise
            for vpn in range(lo, hi):
                self._touch(vpn << PAGE_SHIFT, (vpn + 1) << PAGE_SHIFT, write)

    def _touch(self, start, end, write):
        """touch's work on the page-aligned ``[start, end)``."""
        mm = self.mm
        if end > mm.task_size:
            raise error(errno.EFAULT, "beyond the user address space")
        need = VM_WRITE if write else VM_READ
        pieces = []
        a = start
        while a < end:
            vma = mm.vma_lookup(a)
            if vma is None or not vma.vm_flags & need or vma.special is not None:
                raise error(errno.EFAULT, f"no {'write' if write else 'read'} access at {a:#x}")
            stop = min(vma.end, end)
            if pages.guarded(vma, a, stop):
                raise error(errno.EFAULT, f"guard page in [{a:#x}, {stop:#x})")
            if vma.file is not None and vma.pgoff_at(stop - PAGE_SIZE) << PAGE_SHIFT >= \
                    vma.file.inode.size:
                raise error(errno.EFAULT, f"SIGBUS: page past the end of the file in "
                                          f"[{a:#x}, {stop:#x})")
            pieces.append((vma, a, stop))
            a = stop
        pinned = (sum(pages.pinned_cost(vma, s, e, write) for vma, s, e in pieces)
                  if mm.kernel.swap is not None else 0)
        pages.check_room(mm, sum(pages.populate_cost(vma, s, e, write) for vma, s, e in pieces),
                         pinned)
        for vma, s, e in pieces:
            pages.populate(mm, vma, s, e, write)
