"""The simulated machine: sysfs/sysctl knobs, the pid table, simulated files, process
creation, and /proc reads."""

from __future__ import annotations

import errno
import itertools
import os
import posixpath
import random

from . import overcommit, procfs
from .cred import Cred
from .files import DIR, REG, Inode, OpenFile
from .fork_exec import mm_init
from .pagecache import FileLru
from .defs import (ELF_ET_DYN_BASE, MMAP_RND_BITS, PAGE_SHIFT, PAGE_SIZE, RLIMIT_STACK_DEFAULT,
                   SIZE_128M, STACK_GUARD_GAP, STACK_RND_PAGES, STACK_TOP, TASK_SIZE, error,
                   page_align, page_align_down)
from .mm import MMF_DUMP_FILTER_DEFAULT, MMF_TOPDOWN, Mm
from .task import Process
from .thp import MODES
from .uapi import (RLIM_INFINITY, RLIMIT_AS, RLIMIT_CORE, RLIMIT_CPU, RLIMIT_DATA, RLIMIT_FSIZE,
                   RLIMIT_LOCKS, RLIMIT_MEMLOCK, RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_NOFILE,
                   RLIMIT_NPROC, RLIMIT_RSS, RLIMIT_RTPRIO, RLIMIT_RTTIME, RLIMIT_SIGPENDING,
                   RLIMIT_STACK)

# The synthetic program's first page: where a PIE with page-aligned segments is loaded.
IMAGE_BASE = page_align_down(ELF_ET_DYN_BASE)


class Kernel:
    """A simulated Linux 6.18 x86-64 machine.

    ``thp`` is /sys/kernel/mm/transparent_hugepage/enabled; ``seed`` makes layout
    randomisation repeatable; ``randomize`` is kernel.randomize_va_space != 0;
    ``max_map_count`` is vm.max_map_count; ``mctl_policy`` chooses mctl's permission
    rule (docs/mctl.md).  ``memory`` is the RAM in bytes (MemTotal; no swap);
    ``overcommit_memory``, ``overcommit_ratio`` and ``overcommit_kbytes`` are the
    vm.* sysctls of the same names (docs/mm.md, "Overcommit").
    """

    def __init__(self, thp: str = "madvise", seed: int = 0, max_map_count: int = 65530,
                 randomize: bool = True, mctl_policy: str = "strict", memory: int = 16 << 30,
                 overcommit_memory: int = 0, overcommit_ratio: int = 50,
                 overcommit_kbytes: int = 0) -> None:
        if thp not in MODES:
            raise ValueError(f"thp must be one of {MODES}, not {thp!r}")
        if mctl_policy not in ("strict", "relaxed"):
            raise ValueError(f"mctl_policy must be 'strict' or 'relaxed', not {mctl_policy!r}")
        if type(memory) is not int or memory < PAGE_SIZE:
            raise ValueError(f"memory must be an int of at least one page, not {memory!r}")
        if overcommit_memory not in (0, 1, 2):
            raise ValueError(f"overcommit_memory must be 0, 1 or 2, not {overcommit_memory!r}")
        if type(overcommit_ratio) is not int or overcommit_ratio < 0:
            raise ValueError(f"overcommit_ratio must be an int >= 0, not {overcommit_ratio!r}")
        if type(overcommit_kbytes) is not int or overcommit_kbytes < 0:
            raise ValueError(f"overcommit_kbytes must be an int >= 0, not {overcommit_kbytes!r}")
        self.memory = memory & ~(PAGE_SIZE - 1)
        self.overcommit_memory = overcommit_memory
        self.overcommit_ratio = overcommit_ratio
        self.overcommit_kbytes = overcommit_kbytes
        self.admin_reserve_kbytes, self.user_reserve_kbytes = overcommit.default_reserves(
            self.memory)
        self.committed_as = 0   # vm_committed_as, in pages
        self.shmem_committed = {}   # shmem inode -> pages charged for it (shmem_acct_size)
        self.nr_resident = 0   # the RSS of every address space, summed (pages.machine_resident)
        self.thp = thp
        # mctl's permission rule: the proposal's ("strict") or the relaxed alternative.
        self.mctl_policy = mctl_policy
        self.max_map_count = max_map_count
        self.randomize = randomize
        self.rng = random.Random(seed)
        # Called by exec as exec_layout(bprm, drawn) -> ExecDraws or None: the draws
        # to use instead of the random ones (replay --follow sets it; None: random).
        self.exec_layout = None
        # The pid table: every process not yet reaped (a reaped one lives on only
        # through the pidfds that still refer to it).
        self.processes: dict[int, Process] = {}
        self.files: dict[str, Inode] = {}
        # Directories that exist only in the simulation (the host's count too, looked
        # up under ``root`` first: a sysroot for a log of another machine).
        self.dirs: set[str] = {"/"}
        self.root: str | None = None
        self._pseudo_ino = itertools.count(200000)
        self._pids = itertools.count(1)
        self._shmem_ino = itertools.count(4)
        self.file_lru = FileLru()   # the page cache's LRU lists and vmstat counters

    # ------------------------------------------------------------------ files

    def create_file(self, path: str, size: int, dev: tuple[int, int] = (0xFE, 0x00)) -> Inode:
        """Make a simulated regular file of ``size`` bytes at ``path``."""
        inode = self.files[path] = Inode(path, size, dev)
        return inode

    def open_file(self, inode: Inode, readable: bool = True, writable: bool = False,
                  append: bool = False, name: str | None = None) -> OpenFile:
        """A new open file description for ``inode`` (``name``: the path it was opened by)."""
        return OpenFile(inode, readable, writable, shmem=inode.dev == (0x00, 0x01),
                        append=append, name=name)

    def host_path(self, path: str) -> str | None:
        """Where the absolute ``path`` is on the host: under ``root`` when it exists
        there, else ``path`` itself when it exists, else None."""
        if self.root is not None:
            under = self.root.rstrip("/") + path
            if os.path.lexists(under):
                return under
        return path if os.path.lexists(path) else None

    def is_dir(self, path: str) -> bool:
        """Whether the absolute, normalised ``path`` names a directory: a simulated one,
        the parent of a simulated file, or one on the host (under ``root`` first)."""
        inode = self.files.get(path)
        if inode is not None:
            return inode.kind == DIR
        if path in self.dirs:
            return True
        host = self.host_path(path)
        return host is not None and os.path.isdir(host)

    def make_dirs(self, path: str) -> None:
        """Simulated directories for ``path`` and every parent of it that is missing."""
        while path not in self.dirs and path != "/":
            self.dirs.add(path)
            path = posixpath.dirname(path)

    def pseudo_file(self, kind: str, name: str) -> OpenFile:
        """An open file on an inode no path names (a pipe, a socket, an eventfd), named
        in /proc/PID/fd as ``name`` with its inode number in brackets."""
        ino = next(self._pseudo_ino)
        inode = Inode(name.format(ino=ino), 0, dev=(0x00, 0x0E), ino=ino, kind=kind)
        return OpenFile(inode, readable=True, writable=True)

    def memfd_file(self, name: str) -> OpenFile:
        """memfd_create's file: an empty, unlinked shmem file named ``/memfd:NAME``."""
        inode = Inode("/memfd:" + name, 0, dev=(0x00, 0x01), ino=next(self._shmem_ino),
                      deleted=True, mode=0o777, kind=REG)
        return OpenFile(inode, readable=True, writable=True, shmem=True)

    def shmem_file(self, length: int) -> OpenFile:
        """The shmem file behind a shared anonymous mapping (shmem_zero_setup)."""
        inode = Inode("/dev/zero", length, dev=(0x00, 0x01), ino=next(self._shmem_ino),
                      deleted=True)
        return OpenFile(inode, readable=True, writable=True, shmem=True)

    # ------------------------------------------------------------------ processes

    def new_mm(self, old: Mm | None = None, rlimit_stack: int = RLIMIT_STACK_DEFAULT) -> Mm:
        """A fresh address space laid out the way arch_pick_mmap_layout does it; with
        ``old`` (exec), its flags come through mm_init's mask."""
        if old is None:
            mm = Mm(self, flags=MMF_DUMP_FILTER_DEFAULT | 1)
        else:
            mm = mm_init(self, old)
        mm.flags |= MMF_TOPDOWN
        pad = STACK_GUARD_GAP
        rnd = 0
        if self.randomize:
            pad += STACK_RND_PAGES << PAGE_SHIFT
            rnd = self.rng.getrandbits(MMAP_RND_BITS) << PAGE_SHIFT
        gap = min(max(rlimit_stack + pad, SIZE_128M), TASK_SIZE // 6 * 5)
        mm.mmap_base = page_align(TASK_SIZE - gap - rnd)
        # Until exec, a synthetic program: a notional image (a page of code, data up to
        # the break) and notional arguments just below the stack top.  No VMA backs them.
        mm.start_code, mm.end_code = IMAGE_BASE, IMAGE_BASE + PAGE_SIZE
        mm.start_data = mm.end_data = IMAGE_BASE + 4 * PAGE_SIZE
        brk = IMAGE_BASE + 5 * PAGE_SIZE
        if self.randomize:
            brk += (self.rng.getrandbits(18) + 1) << PAGE_SHIFT
        mm.start_brk = mm.brk = brk
        mm.start_stack = mm.arg_start = mm.arg_end = mm.env_start = mm.env_end = (
            STACK_TOP - PAGE_SIZE)
        return mm

    def new_process(self, mm: Mm | None, parent: Process | None = None, comm: str | None = None,
                    cred=None) -> Process:
        """Register a process around ``mm`` with the next pid, as a child of ``parent``
        (a child shares its parent's credentials until either changes them)."""
        pid = next(self._pids)
        if cred is None and parent is not None:
            cred = parent.cred
        proc = Process(self, pid, mm, comm or (parent.comm if parent else "sim"),
                       ppid=parent.pid if parent else 0, cred=cred)
        # Resource limits: a child inherits its parent's (copy_process), the first
        # process gets the boot defaults.
        proc.rlimits = dict(parent.rlimits if parent is not None else self.init_rlimits())
        self.processes[pid] = proc
        if parent is not None:
            parent.children[pid] = proc
        return proc

    def release(self, proc: Process) -> None:
        """release_task(): ``proc`` is reaped and leaves the pid table."""
        proc.state = "reaped"
        if self.processes.get(proc.pid) is proc:
            del self.processes[proc.pid]

    def init_rlimits(self) -> dict:
        """INIT_RLIMITS as boot leaves them: RLIMIT_NPROC and RLIMIT_SIGPENDING are
        half of max_threads, which fork_init sizes from the memory (16 KiB stacks may
        use an eighth of it)."""
        inf = RLIM_INFINITY
        threads = min(max((self.memory // PAGE_SIZE) // (8 * 4), 20), 0x3FFFFFFF) // 2
        return {RLIMIT_CPU: (inf, inf), RLIMIT_FSIZE: (inf, inf), RLIMIT_DATA: (inf, inf),
                RLIMIT_STACK: (RLIMIT_STACK_DEFAULT, inf), RLIMIT_CORE: (0, inf),
                RLIMIT_RSS: (inf, inf), RLIMIT_NPROC: (threads, threads),
                RLIMIT_NOFILE: (1024, 4096), RLIMIT_MEMLOCK: (8 << 20, 8 << 20),
                RLIMIT_AS: (inf, inf), RLIMIT_LOCKS: (inf, inf),
                RLIMIT_SIGPENDING: (threads, threads), RLIMIT_MSGQUEUE: (819200, 819200),
                RLIMIT_NICE: (0, 0), RLIMIT_RTPRIO: (0, 0), RLIMIT_RTTIME: (inf, inf)}

    def spawn(self, path: str | None = None, argv: list[str] | None = None,
              envp: list[str] | None = None, uid: int = 0, gid: int = 0) -> Process:
        """A new process running as ``uid``/``gid`` (root by default): exec of the real
        ELF file ``path``, or, without a path, a synthetic empty address space."""
        proc = self.new_process(self.new_mm(), cred=Cred(uid, gid))
        if path is not None:
            try:
                proc.execve(path, argv, envp)
            except OSError:
                del self.processes[proc.pid]
                raise
        return proc

    # ------------------------------------------------------------------ /proc

    def meminfo(self) -> str:
        """/proc/meminfo: the lines this model keeps, in the kernel's order and format."""
        rows = [("MemTotal:", self.memory >> 12)]
        rows += self.file_lru.meminfo_rows()
        rows[4:4] = [("SwapTotal:", 0), ("SwapFree:", 0)]
        rows += [("CommitLimit:", overcommit.commit_limit(self)),
                 ("Committed_AS:", overcommit.committed(self))]
        return "".join(f"{name:<16}{n * 4:8d} kB\n" for name, n in rows)

    def proc_read(self, path: str) -> str:
        """The text of ``/proc/PID/{maps,smaps,status}``, or of the page-cache lines
        of ``/proc/meminfo`` and ``/proc/vmstat``, in the kernel's format."""
        if not isinstance(path, str):
            raise error(errno.EFAULT, "a path must be a str")
        if path == "/proc/meminfo":
            return self.meminfo()
        if path == "/proc/vmstat":
            return self.file_lru.vmstat()
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "proc":
            raise error(errno.ENOENT, path)
        pid = parts[1]
        proc = (self.processes.get(int(pid)) if pid.isascii() and pid.isdigit() and len(pid) < 20
                else None)
        if proc is None:
            raise error(errno.ENOENT, path)
        view = {"maps": procfs.maps, "smaps": procfs.smaps, "status": procfs.status}.get(parts[2])
        if view is None:
            raise error(errno.ENOENT, path)
        return view(proc)
