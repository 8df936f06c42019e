"""A process: its address space and file table, and syscall methods named and ordered
like the C calls.  Every method returns what the syscall returns or raises OSError with
the kernel's errno, like Python's ``os`` module."""

import errno

from . import madvise as _madvise
from . import mman, pages
from .mm import error, page_align
from .uapi import O_RDONLY, O_RDWR, O_WRONLY

O_ACCMODE = 3
from .vma import PAGE_MASK, PAGE_SIZE, VM_READ, VM_WRITE


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


class Process:
    """A simulated process (one thread for now)."""

    def __init__(self, kernel, pid, mm, comm="sim", ppid=0):
        self.kernel = kernel
        self.pid = pid
        self.ppid = ppid
        self.mm = mm
        self.comm = comm
        self.fds = {}

    def __repr__(self):
        return f"<Process {self.pid} {self.comm}>"

    # ------------------------------------------------------------------ processes

    def fork(self):
        """fork(2): a child with a copy of this address space; returns the child."""
        from .fork_exec import dup_mm
        child = self.kernel.new_process(dup_mm(self.kernel, self.mm), parent=self)
        child.fds = dict(self.fds)
        return child

    def prctl(self, option, arg2=0, arg3=0, arg4=0, arg5=0):
        """prctl(2) for the memory-management options."""
        from .prctl import prctl
        return prctl(self, _cint(option), *map(_u64, (arg2, arg3, arg4, arg5)))

    # ------------------------------------------------------------------ files

    def open(self, path, flags=O_RDONLY):
        """open(2) on a simulated file created with ``Kernel.create_file``."""
        inode = self.kernel.files.get(path)
        if inode is None:
            raise error(errno.ENOENT, path)
        acc = flags & O_ACCMODE
        f = self.kernel.open_file(inode, readable=acc in (O_RDONLY, O_RDWR),
                                  writable=acc in (O_WRONLY, O_RDWR))
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
        return mman.mmap(self.mm, addr, length, prot, flags, file, offset, self.kernel.thp)

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
        return mman.mremap(self.mm, *map(_u64, (old_addr, old_size, new_size, flags, new_addr)))

    def mlock(self, addr, length):
        """mlock(2)."""
        return mman.mlock(self.mm, _u64(addr), _u64(length))

    def mlock2(self, addr, length, flags):
        """mlock2(2)."""
        return mman.mlock(self.mm, _u64(addr), _u64(length), _u64(flags) & 0xFFFFFFFF)

    def munlock(self, addr, length):
        """munlock(2)."""
        return mman.munlock(self.mm, _u64(addr), _u64(length))

    def brk(self, addr):
        """brk(2): returns the new (or unchanged) break."""
        return mman.brk(self.mm, _u64(addr))

    def touch(self, addr, length, write=True):
        """Fault every page of ``[addr, addr + length)`` as a read or write would.

        Raises EFAULT (where the CPU would deliver SIGSEGV) without touching anything
        if any page is unmapped or lacks the access."""
        mm = self.mm
        addr, length = _u64(addr), _u64(length)
        start = addr & PAGE_MASK
        end = page_align(addr + length)
        if end > mm.task_size:
            raise error(errno.EFAULT, "beyond the user address space")
        need = VM_WRITE if write else VM_READ
        a = start
        while a < end:
            vma = mm.vma_lookup(a)
            if vma is None or not vma.vm_flags & need or vma.special is not None:
                raise error(errno.EFAULT, f"no {'write' if write else 'read'} access at {a:#x}")
            if pages.guarded(vma, max(a, start), min(vma.end, end)):
                raise error(errno.EFAULT, f"guard page in [{a:#x}, {vma.end:#x})")
            a = vma.end
        for page in range(start, end, PAGE_SIZE):
            pages.fault(mm, mm.vma_lookup(page), page, write, self.kernel.thp)
        return 0
