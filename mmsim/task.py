"""A process: its address space and file table, and syscall methods named and ordered
like the C calls.  Every method returns what the syscall returns or raises OSError with
the kernel's errno, like Python's ``os`` module."""

import errno

from . import madvise as _madvise
from . import mman, pages
from .cred import CAP_IPC_LOCK, CAP_SYS_RESOURCE, capable
from .mm import error, page_align
from .uapi import O_RDONLY, O_RDWR, O_WRONLY, RLIM_NLIMITS, RLIMIT_MEMLOCK, RLIMIT_NOFILE

O_ACCMODE = 3
from .vma import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, VM_READ, VM_WRITE


U64 = (1 << 64) - 1


def _u64(value):
    """An argument the kernel receives as ``unsigned long``: its low 64 bits."""
    if type(value) is not int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(errno.EINVAL, f"argument must be an int, not {type(value).__name__}")
        value = int(value)
    return value & U64


def _cint(value):
    """An argument the kernel receives as ``int``: its low 32 bits, signed."""
    value = _u64(value) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


UIO_MAXIOV = 1024
MAX_RW_COUNT = 0x7FFFFFFF & PAGE_MASK   # INT_MAX & PAGE_MASK
USER_PTR_MAX = (1 << 47) - PAGE_SIZE   # TASK_SIZE_MAX on x86-64 with 4-level paging


def import_iovec(elements):
    """__import_iovec: EINVAL for too many elements or a negative (ssize_t) length,
    EFAULT for a range access_ok refuses, then every length is cut so the total stays
    within MAX_RW_COUNT (later elements become empty)."""
    if len(elements) > UIO_MAXIOV:
        raise error(errno.EINVAL, "more than UIO_MAXIOV elements")
    if any(n >> 63 for _, n in elements):
        raise error(errno.EINVAL, "negative length")
    out = []
    total = 0
    for base, n in elements:
        # access_ok: the end (base + length, even for an empty element) may not pass
        # USER_PTR_MAX nor wrap.
        if base + n > USER_PTR_MAX:
            raise error(errno.EFAULT, "iovec element outside the user address space")
        n = min(n, MAX_RW_COUNT - total)
        total += n
        out.append((base, n))
    return out


class Pidfd:
    """An open pidfd: a reference to a process that outlives its exit."""

    __slots__ = ("process", "flags")

    def __init__(self, process, flags):
        self.process = process
        self.flags = flags


class Process:
    """A simulated process (one thread for now)."""

    def __init__(self, kernel, pid, mm, comm="sim", ppid=0, cred=None):
        from .cred import Cred
        self.kernel = kernel
        self.pid = pid
        self.tgid = pid
        self.ppid = ppid
        self.mm = mm
        self.comm = comm
        self.fds = {}
        self.cred = cred if cred is not None else Cred()
        self.state = "running"       # then "zombie" after exit, "reaped" after wait
        self.exit_status = None
        if mm is not None and getattr(mm, "user_ns", None) is None:
            mm.user_ns = self.cred.user_ns

    def __repr__(self):
        return f"<Process {self.pid} {self.comm}>"

    # ------------------------------------------------------------------ processes

    def fork(self):
        """fork(2): a child with a copy of this address space; returns the child."""
        from .fork_exec import dup_mm
        self._alive()
        mm = dup_mm(self.kernel, self.mm)
        mm.user_ns = self.mm.user_ns
        child = self.kernel.new_process(mm, parent=self)
        child.fds = dict(self.fds)
        return child

    def clone(self, flags):
        """clone(2) for the flags that matter to memory: CLONE_VM shares the address
        space (mm_users), CLONE_THREAD makes a thread of this thread group."""
        from .uapi import CLONE_SIGHAND, CLONE_THREAD, CLONE_VM
        flags = _u64(flags)
        # copy_process(): a thread needs shared signal handlers, which need a shared mm.
        if flags & CLONE_THREAD and not flags & CLONE_SIGHAND:
            raise error(errno.EINVAL)
        if flags & CLONE_SIGHAND and not flags & CLONE_VM:
            raise error(errno.EINVAL)
        if not flags & CLONE_VM:
            return self.fork()
        self._alive()
        self.mm.users += 1
        child = self.kernel.new_process(self.mm, parent=self)
        child.fds = dict(self.fds)
        if flags & CLONE_THREAD:
            child.tgid = self.tgid
            child.ppid = self.ppid
        return child

    def vfork(self):
        """vfork(2): a child borrowing this address space until it execs or exits."""
        from .uapi import CLONE_VFORK, CLONE_VM
        return self.clone(CLONE_VM | CLONE_VFORK)

    def execve(self, path, argv=None, envp=None):
        """execve(2) of a real ELF file: a fresh address space built the way
        load_elf_binary does, keeping the mm flags that survive exec."""
        from .fork_exec import execve
        self._alive()
        return execve(self, path, argv, envp)

    def _alive(self):
        if self.state != "running":
            raise error(errno.ESRCH, "the process has exited")

    def exit(self, status=0):
        """exit(2) / exit_group(2): drop the address space and become a zombie until the
        parent waits; children go to init."""
        self._alive()
        if self.mm is not None:
            self.mm.users -= 1
            if self.mm.users == 0:
                self.mm.unmap(0, self.mm.task_size)   # exit_mmap
            self.mm = None
        self.fds.clear()
        self.state = "zombie"
        self.exit_status = status & 0xFF
        for child in self.kernel.processes.values():
            if child.ppid == self.pid and child is not self:
                child.ppid = 1

    exit_group = exit

    def wait4(self, pid=-1, options=0):
        """wait4(2): reap an exited child; returns ``(pid, status)`` like os.waitpid,
        ``(0, 0)`` with WNOHANG when no child has exited yet."""
        from .uapi import WNOHANG
        children = [p for p in self.kernel.processes.values()
                    if p.ppid == self.pid and p.state != "reaped" and (pid == -1 or p.pid == pid)]
        if not children:
            raise error(errno.ECHILD)
        for child in children:
            if child.state == "zombie":
                child.state = "reaped"
                return child.pid, child.exit_status << 8
        if options & WNOHANG:
            return 0, 0
        raise error(errno.EDEADLK, "would block forever: no child can exit in a simulation")

    # ------------------------------------------------------------------ credentials

    def setresuid(self, ruid, euid, suid):
        """setresuid(2)."""
        from .cred import setresuid
        return setresuid(self, _cint(ruid), _cint(euid), _cint(suid))

    def setuid(self, uid):
        """setuid(2)."""
        from .cred import setuid
        return setuid(self, _cint(uid))

    def setresgid(self, rgid, egid, sgid):
        """setresgid(2)."""
        from .cred import setresgid
        return setresgid(self, _cint(rgid), _cint(egid), _cint(sgid))

    def setgid(self, gid):
        """setgid(2)."""
        from .cred import setgid
        return setgid(self, _cint(gid))

    def capget(self, pid=0):
        """capget(2): ``(effective, permitted, inheritable)`` of ``pid`` (0: the caller)."""
        from .cred import capget
        target = self if not pid else self.kernel.processes.get(_cint(pid))
        if target is None or target.state == "reaped":
            raise error(errno.ESRCH)
        return capget(self, target)

    def capset(self, effective, permitted, inheritable):
        """capset(2) on the caller."""
        from .cred import capset
        return capset(self, _u64(effective), _u64(permitted), _u64(inheritable))

    def unshare(self, flags):
        """unshare(2); only CLONE_NEWUSER is modelled."""
        from .cred import unshare_user
        from .uapi import CLONE_NEWUSER
        if _u64(flags) != CLONE_NEWUSER:
            raise error(errno.EINVAL, "only CLONE_NEWUSER is simulated")
        return unshare_user(self)

    # ------------------------------------------------------------------ pidfds

    def pidfd_open(self, pid, flags=0):
        """pidfd_open(2): a descriptor for process ``pid`` (a zombie may be opened)."""
        from .uapi import PIDFD_NONBLOCK, PIDFD_THREAD
        pid, flags = _cint(pid), _u64(flags) & 0xFFFFFFFF
        if flags & ~(PIDFD_NONBLOCK | PIDFD_THREAD):
            raise error(errno.EINVAL)
        if pid <= 0:
            raise error(errno.EINVAL)
        target = self.kernel.processes.get(pid)
        if target is None or target.state == "reaped":
            raise error(errno.ESRCH)
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = Pidfd(target, flags)
        return fd

    def _pidfd_task(self, pidfd):
        """pidfd_get_task(): the process behind ``pidfd`` (PIDFD_SELF* included)."""
        from .uapi import PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP
        if pidfd in (PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP):
            return self
        obj = self.fds.get(pidfd)
        if not isinstance(obj, Pidfd):
            raise error(errno.EBADF)
        if obj.process.state == "reaped":
            raise error(errno.ESRCH)
        return obj.process

    def process_madvise(self, pidfd, iovec, advice, flags=0):
        """process_madvise(2): ``iovec`` is a list of (address, length) pairs.  Returns
        the bytes of the elements fully advised, or raises the first error when none
        were."""
        from .cred import CAP_SYS_NICE, PTRACE_MODE_READ_FSCREDS, capable, ptrace_may_access
        # The kernel's flags argument is an unsigned int: bits above 31 never arrive.
        if _u64(flags) & 0xFFFFFFFF:
            raise error(errno.EINVAL)
        try:
            elements = [(_u64(a), _u64(n)) for a, n in iovec]
        except (TypeError, ValueError):
            raise error(errno.EFAULT, "iovec is not a list of (address, length) pairs") from None
        elements = import_iovec(elements)
        advice = _cint(advice)
        target = self._pidfd_task(_cint(pidfd))
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

    def mctl(self, pidfd, action, flags=0):
        """mctl(2), the proposed address-space-wide call (docs/mctl.md)."""
        from .mctl import mctl
        self._alive()
        return mctl(self, _cint(pidfd), _cint(action), _u64(flags) & 0xFFFFFFFF)

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0):
        """prctl(2) for the memory-management options (PR_SET_MM_MAP takes a
        ``prctl.PrctlMmMap`` where the kernel takes a pointer to the struct)."""
        from .prctl import PrctlMmMap, prctl
        args = [a if isinstance(a, PrctlMmMap) else _u64(a) for a in (arg2, arg3, arg4, arg5)]
        return prctl(self, _cint(option), *args)

    # ------------------------------------------------------------------ files

    def open(self, path, flags=O_RDONLY):
        """open(2) on a simulated file created with ``Kernel.create_file``."""
        inode = self.kernel.files.get(path)
        if inode is None:
            raise error(errno.ENOENT, path)
        from .cred import inode_permission
        acc = flags & O_ACCMODE
        readable, writable = acc in (O_RDONLY, O_RDWR), acc in (O_WRONLY, O_RDWR)
        if not inode_permission(self.cred, inode, readable, writable):
            raise error(errno.EACCES, path)
        f = self.kernel.open_file(inode, readable=readable, writable=writable)
        fd = next(n for n in range(len(self.fds) + 1) if n + 3 not in self.fds) + 3
        self.fds[fd] = f
        return fd

    def close(self, fd):
        """close(2)."""
        if self.fds.pop(fd, None) is None:
            raise error(errno.EBADF)
        return 0

    # ------------------------------------------------------------------ memory syscalls

    def mmap(self, addr, length, prot, flags, fd=-1, offset=0):
        """mmap(2)."""
        from .uapi import MAP_ANONYMOUS
        addr, length, prot, flags, offset = map(_u64, (addr, length, prot, flags, offset))
        fd = _cint(fd)
        file = None
        if not flags & MAP_ANONYMOUS:
            file = self.fds.get(fd)
            if file is None:
                raise error(errno.EBADF)
        return mman.mmap(self.mm, addr, length, prot, flags, file, offset, self.kernel.thp,
                         memlock=self._memlock())

    def _memlock(self):
        """What may be locked: None with CAP_IPC_LOCK (no limit), else the soft
        RLIMIT_MEMLOCK in bytes."""
        if capable(self.cred, CAP_IPC_LOCK):
            return None
        return self.rlimits[RLIMIT_MEMLOCK][0]

    # ------------------------------------------------------------------ resource limits

    def getrlimit(self, resource):
        """getrlimit(2): ``(soft, hard)``; RLIM_INFINITY is 2**64 - 1."""
        return self.prlimit(0, resource)

    def setrlimit(self, resource, limits):
        """setrlimit(2) with ``limits`` = ``(soft, hard)`` (-1 means RLIM_INFINITY)."""
        self.prlimit(0, resource, limits)
        return 0

    def prlimit(self, pid, resource, limits=None):
        """prlimit64(2): set ``pid``'s limit of ``resource`` (0: the caller) when
        ``limits`` is given; returns the old ``(soft, hard)``, like resource.prlimit."""
        pid, resource = _cint(pid), _u64(resource) & 0xFFFFFFFF
        if limits is not None:
            try:
                soft, hard = (_u64(v) for v in limits)
            except (TypeError, ValueError):
                raise error(errno.EFAULT, "limits must be a (soft, hard) pair") from None
            if soft > hard:
                raise error(errno.EINVAL, "soft limit above the hard limit")
        target = self if pid in (0, self.pid) else self.kernel.processes.get(pid)
        if target is None or target.state == "reaped":
            raise error(errno.ESRCH)
        if target is not self:
            # check_prlimit_permission: same real, effective and saved ids, or
            # CAP_SYS_RESOURCE.
            mine, theirs = self.cred, target.cred
            same = (mine.uid == theirs.uid == theirs.euid == theirs.suid
                    and mine.gid == theirs.gid == theirs.egid == theirs.sgid)
            if not same and not capable(mine, CAP_SYS_RESOURCE):
                raise error(errno.EPERM)
        if resource >= RLIM_NLIMITS:
            raise error(errno.EINVAL)
        old = target.rlimits[resource]
        if limits is not None:
            if resource == RLIMIT_NOFILE and hard > 1 << 20:   # fs.nr_open
                raise error(errno.EPERM)
            if hard > old[1] and not capable(self.cred, CAP_SYS_RESOURCE):
                raise error(errno.EPERM, "raising the hard limit needs CAP_SYS_RESOURCE")
            target.rlimits[resource] = (soft, hard)
        return old

    def munmap(self, addr, length):
        """munmap(2)."""
        return mman.munmap(self.mm, _u64(addr), _u64(length))

    def mprotect(self, addr, length, prot):
        """mprotect(2)."""
        return mman.mprotect(self.mm, _u64(addr), _u64(length), _u64(prot))

    def madvise(self, addr, length, advice):
        """madvise(2)."""
        return _madvise.madvise(self.mm, _u64(addr), _u64(length), _cint(advice))

    def mremap(self, old_addr, old_size, new_size, flags=0, new_addr=0):
        """mremap(2)."""
        return mman.mremap(self.mm, *map(_u64, (old_addr, old_size, new_size, flags, new_addr)),
                           memlock=self._memlock())

    def mlock(self, addr, length):
        """mlock(2)."""
        return mman.mlock(self.mm, _u64(addr), _u64(length), memlock=self._memlock())

    def mlock2(self, addr, length, flags):
        """mlock2(2)."""
        return mman.mlock(self.mm, _u64(addr), _u64(length), _u64(flags) & 0xFFFFFFFF,
                          memlock=self._memlock())

    def munlock(self, addr, length):
        """munlock(2)."""
        return mman.munlock(self.mm, _u64(addr), _u64(length))

    def mlockall(self, flags):
        """mlockall(2)."""
        return mman.mlockall(self.mm, _cint(flags), memlock=self._memlock())

    def munlockall(self):
        """munlockall(2)."""
        return mman.munlockall(self.mm)

    def brk(self, addr):
        """brk(2): returns the new (or unchanged) break."""
        return mman.brk(self.mm, _u64(addr), memlock=self._memlock())

    def touch(self, addr, length, write=True):
        """Fault every page of ``[addr, addr + length)`` as a read or write would.

        Raises EFAULT (where the CPU would deliver SIGSEGV or SIGBUS) without touching
        anything if any page is unmapped, lacks the access, is a guard page or lies
        wholly past the end of a mapped file; ENOMEM, also before touching anything,
        when the pages would not fit in the machine's memory (docs/mm.md)."""
        mm = self.mm
        addr, length = _u64(addr), _u64(length)
        start = addr & PAGE_MASK
        end = page_align(addr + length)
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
        pages.check_room(mm, sum(pages.populate_cost(vma, s, e, write) for vma, s, e in pieces))
        for vma, s, e in pieces:
            pages.populate(mm, vma, s, e, write)
        return 0
