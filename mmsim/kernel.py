"""The simulated machine: sysfs/sysctl knobs, the pid table, simulated files, process
creation, and /proc reads."""

from __future__ import annotations

import errno
import heapq
import itertools
import os
import posixpath
import random
from math import isqrt

from . import memcg as memcg_mod
from . import cgroup as cgroup_mod
from . import metrics, notebook
from . import oom, overcommit, pages, procfs, sysctl, vmscan
from . import shmem as shmem_mod
from . import thp as thp_mod
from .khugepaged import Khugepaged
from .cred import CAP_DAC_OVERRIDE, CAP_SYS_RESOURCE, Cred, capable
from .files import DIR, REG, Inode, OpenFile
from .fork_exec import mm_init
from .errors import Killed
from .kstrtox import kstrtoint, strstrip
from .memcg import MemCgroup
from .pagecache import Node
from .defs import (ELF_ET_DYN_BASE, MMAP_RND_BITS, PAGE_SHIFT, PAGE_SIZE, RLIMIT_STACK_DEFAULT,
                   SIZE_128M, STACK_GUARD_GAP, STACK_RND_PAGES, STACK_TOP, TASK_SIZE, error,
                   page_align, page_align_down)
from .mm import MMF_DUMP_FILTER_DEFAULT, MMF_TOPDOWN, Mm
from .task import Process
from . import thp as thp_mod
from .thp import MODES, recommended_min_free_kbytes
from .uapi import (RLIM_INFINITY, RLIMIT_AS, RLIMIT_CORE, RLIMIT_CPU, RLIMIT_DATA, RLIMIT_FSIZE,
                   RLIMIT_LOCKS, RLIMIT_MEMLOCK, RLIMIT_MSGQUEUE, RLIMIT_NICE, RLIMIT_NOFILE,
                   RLIMIT_NPROC, RLIMIT_RSS, RLIMIT_RTPRIO, RLIMIT_RTTIME, RLIMIT_SIGPENDING,
                   RLIMIT_STACK)

# The synthetic program's first page: where a PIE with page-aligned segments is loaded.
IMAGE_BASE = page_align_down(ELF_ET_DYN_BASE)


def default_min_free_kbytes(memory: int, thp: str) -> int:
    """vm.min_free_kbytes after boot: sqrt(16 x RAM in KiB) clamped to [128, 262144]
    (calculate_min_free_kbytes); with THP enabled khugepaged raises it to eleven
    pageblocks per zone for three zones (set_recommended_min_free_kbytes), capped at
    5% of RAM.  Simulator-defined: three zones (DMA, DMA32, Normal), as on the
    reference machine."""
    kbytes = min(max(isqrt((memory >> 10) * 16), 128), 262144)
    if thp != "never":
        kbytes = max(kbytes, recommended_min_free_kbytes(memory))
    return kbytes


# flush_memcg_stats_dwork's period: the memory cgroup statistics are folded every 2 s.
STATS_FLUSH_NS = 2_000_000_000
# The tmpfs at /dev/shm and its device (0:27, as on the reference machine).
TMPFS_SHM = "/dev/shm"
TMPFS_SHM_DEV = (0x00, 0x1B)


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
        # The node's page counts and vm events, and the memory cgroup tree (its root
        # first: every address space is charged to a cgroup from its creation).
        self.node = Node()
        self.root_memcg = MemCgroup("", node=self.node)
        self.memcgs: dict[str, MemCgroup] = {"": self.root_memcg}
        self.pressure = False   # an allocation went past a limit or a watermark
        self.current = None     # the process whose syscall runs (set by @syscall)
        # vm.min_free_kbytes as boot sets it (and khugepaged raises it while THP is
        # enabled), vm.watermark_scale_factor, vm.swappiness.
        self.min_free_kbytes = default_min_free_kbytes(self.memory, thp)
        self.watermark_scale_factor = 10
        self.swappiness = 60
        self.page_cluster = 3   # vm.page-cluster: swap readahead of 2**3 pages
        self.swap = None        # a pages.SwapDevice once swapon adds swap space
        self.overcommit_memory = overcommit_memory
        self.overcommit_ratio = overcommit_ratio
        self.overcommit_kbytes = overcommit_kbytes
        self.admin_reserve_kbytes, self.user_reserve_kbytes = overcommit.default_reserves(
            self.memory)
        self.committed_as = 0   # vm_committed_as, in pages
        self.shmem_committed = {}   # shmem inode -> pages charged for it (shmem_acct_size)
        self.nr_resident = 0   # the RSS of every address space, summed (pages.machine_resident)
        self.thp = thp
        # hugepages-<N>kB/enabled per anonymous order, and the per-size statistics
        # (hugepages-<N>kB/stats/*): order -> {name: count}.  shmem_enabled and the
        # per-size hugepages-<N>kB/shmem_enabled (order -> mode) rule shmem THP
        # (mmsim.shmem).
        self.thp_sizes = thp_mod.default_sizes()
        self.mthp_stats = thp_mod.new_stats()
        self.shrink_underused = 1
        # transparent_hugepage/use_zero_page, and whether the huge zero folio exists
        # (allocated at its first use; simulator-defined: never freed, and its 2 MiB
        # is not taken from MemFree).
        self.use_zero_page = 1
        self.huge_zero_folio = False
        # The deferred split queue (pages.folios_unmapped): partially mapped large folios.
        self.deferred_split = {}
        self.underused = {}   # THPs queued whole, for the underused test (pages.queue_underused)
        self.hold_folios = False   # munmap holds partial-unmap decisions (pages.hold_folios)
        self.pending_folios = []
        # /sys/kernel/mm/transparent_hugepage/defrag: whether a PMD fault's THP
        # allocation may reclaim (pages._pmd_alloc_fails).
        self.thp_defrag = "madvise"
        self.shmem_enabled = "never"
        self.shmem_size_modes = shmem_mod.default_size_modes()
        self.oom_killed: list[int] = []   # pids of the groups the OOM killer killed, in order
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
        # tmpfs mounts: mount point -> device.  Simulator-defined: /dev/shm alone, as
        # the distributions mount it (huge=never, the default; no mount(2) here).
        self.tmpfs = {TMPFS_SHM: TMPFS_SHM_DEV}
        self.dirs.add(TMPFS_SHM)
        # The simulated clock (ns since boot): it moves only in ``advance``, which runs
        # the background work due on the way (docs/thp.md).
        self.now_ns = 0
        self._next_flush_ns = STATS_FLUSH_NS
        self.khugepaged = Khugepaged(self)
        self._timers = []      # heap of (when_ns, seq, callback, readonly)
        self._timer_seq = 0
        self.node.events.update(dict.fromkeys(thp_mod.VM_EVENTS, 0))

    # ------------------------------------------------------------------ files

    def create_file(self, path: str, size: int, dev: tuple[int, int] = (0xFE, 0x00)) -> Inode:
        """Make a simulated regular file of ``size`` bytes at ``path``: on a tmpfs
        mount (``Kernel.tmpfs``) a shmem file, whose pages are shmem (and ``dev`` is
        the mount's)."""
        mount = self.tmpfs_of(path)
        if mount is not None:
            inode = Inode(path, 0, dev=self.tmpfs[mount], ino=next(self._shmem_ino),
                          kind=REG)
            inode.tmpfs = True
            self.files[path] = inode
            if size:
                inode.size = size   # a hole: pages come from faults and writes
            return inode
        inode = self.files[path] = Inode(path, size, dev)
        return inode

    def tmpfs_of(self, path: str) -> str | None:
        """The tmpfs mount point ``path`` lies under, or None."""
        for mount in self.tmpfs:
            if path.startswith(mount + "/"):
                return mount
        return None

    def open_file(self, inode: Inode, readable: bool = True, writable: bool = False,
                  append: bool = False, name: str | None = None) -> OpenFile:
        """A new open file description for ``inode`` (``name``: the path it was opened by)."""
        return OpenFile(inode, readable, writable,
                        shmem=inode.dev == (0x00, 0x01) or inode.tmpfs,
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

    def release_shmem(self, inodes) -> None:
        """shmem_evict_inode for each shmem file of ``inodes`` that no descriptor and
        no mapping of a process holds any more: its pages leave the cache and give
        their charge back.  The kernel does it at the file's last reference; the
        simulator looks when a descriptor or a mapping of a shmem file goes (close,
        munmap, mmap over it, exec, exit)."""
        # A linked tmpfs file keeps its pages (its name holds it) until unlinked.
        inodes = {i for i in inodes if i.cache and not i.tmpfs}
        if not inodes:
            return
        for proc in self.processes.values():
            for f in proc.fds.values():
                inodes.discard(getattr(f, "inode", None))
            mm = proc.mm
            if mm is not None:
                for vma in mm.vmas():
                    if vma.file is not None:
                        inodes.discard(vma.file.inode)
            if not inodes:
                return
        for inode in inodes:
            pages.truncate_pages(self, inode, 0)

    def shmem_vma_orders(self, vma, mm_flags: int, forced: bool) -> int:
        """The folio orders shmem allows the shmem VMA ``vma`` outside a fault (smaps'
        THPeligible, MADV_COLLAPSE), as a bitmap (mmsim.shmem.vma_orders)."""
        return shmem_mod.vma_orders(self, vma, mm_flags, forced)

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
            proc.memcg = parent.memcg
            # copy_signal: the OOM adjustment is inherited.
            proc.oom_score_adj = parent.oom_score_adj
            proc.oom_score_adj_min = parent.oom_score_adj_min
        proc.memcg.procs.add(pid)
        if mm is not None and parent is None:
            mm.memcg = proc.memcg
        return proc

    def release(self, proc: Process) -> None:
        """release_task(): ``proc`` is reaped and leaves the pid table."""
        proc.state = "reaped"
        proc.memcg.procs.discard(proc.pid)
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
              envp: list[str] | None = None, uid: int = 0, gid: int = 0,
              cgroup: str | None = None) -> Process:
        """A new process running as ``uid``/``gid`` (root by default), in the cgroup
        ``cgroup`` ("NAME" below /sys/fs/cgroup; None: the root): exec of the real ELF
        file ``path``, or, without a path, a synthetic empty address space."""
        target = None if cgroup is None else cgroup_mod.find(self, cgroup)
        proc = self.new_process(self.new_mm(), cred=Cred(uid, gid))
        if target is not None:
            try:
                cgroup_mod.attach(self, proc, target)
            except OSError:
                self.release(proc)
                raise
        if path is not None:
            try:
                proc.execve(path, argv, envp)
            except OSError:
                del self.processes[proc.pid]
                raise
        return proc

    # ------------------------------------------------------------------ memory

    def free_pages(self) -> int:
        """NR_FREE_PAGES: RAM not holding anonymous or page-cache pages."""
        node = self.node
        return (self.memory >> PAGE_SHIFT) - node.nr_anon - node.nr_file_pages

    def watermarks(self) -> tuple[int, int, int]:
        """The zone's (min, low, high) watermarks in pages (__setup_per_zone_wmarks,
        one zone holding all the memory)."""
        wmin = self.min_free_kbytes >> (PAGE_SHIFT - 10)
        step = max(wmin >> 2, (self.memory >> PAGE_SHIFT) * self.watermark_scale_factor // 10000)
        return wmin, wmin + step, wmin + 2 * step

    def swap_total_pages(self) -> int:
        """total_swap_pages (no swap device until swapon)."""
        return 0 if self.swap is None else self.swap.total

    def swap_free_pages(self) -> int:
        """get_nr_swap_pages: swap slots not in use."""
        return 0 if self.swap is None else self.swap.free()

    def swapon(self, nbytes: int) -> int:
        """Add a swap device of ``nbytes`` bytes (simulator-only: the host's swap is never
        touched).  Its first page is the swap header, as mkswap writes it, so it adds
        ``nbytes // PAGE_SIZE - 1`` slots; every device adds to one pool of slots.
        Returns the slots added."""
        if type(nbytes) is not int or nbytes < 2 * PAGE_SIZE:
            raise ValueError(f"a swap device needs an int of at least two pages, not {nbytes!r}")
        slots = (nbytes >> PAGE_SHIFT) - 1
        if self.swap is None:
            self.swap = pages.SwapDevice(slots)
        else:
            self.swap.total += slots
        return slots

    def note_alloc(self, memcg: MemCgroup) -> None:
        """Pages were charged to ``memcg`` without a check: balance at the call's end
        when that took it past a limit or the machine below its low watermark."""
        if (memcg_mod.first_over(memcg, 0) is not None or memcg_mod.over_high(memcg)
                or self.free_pages() < self.watermarks()[1]):
            self.pressure = True

    def try_charge(self, memcg: MemCgroup, nr: int) -> None:
        """Charge ``nr`` new pages to ``memcg``, reclaiming first where its limits or
        the min watermark require, and OOM-killing when reclaim cannot make room."""
        self._limit(memcg, nr)
        wmin, low, _ = self.watermarks()
        free = self.free_pages() - nr
        if free < low:
            self.pressure = True
            if free < wmin:
                self._direct_reclaim(nr)
        memcg_mod.charge(memcg, nr)
        if memcg_mod.over_high(memcg):
            self.pressure = True   # memory.high is enforced at the call's end

    def costly_alloc_fails(self, memcg: MemCgroup, nr: int) -> str | None:
        """A large folio of ``nr`` pages whose gfp may reclaim (a THP fault under
        defrag): None if it can be allocated and charged to ``memcg``, after reclaim
        where needed, else the failing step ("alloc" or "charge")."""
        if self.costly_page_alloc_fails(nr, True):
            return "alloc"
        if self.costly_charge_fails(memcg, nr, True):
            return "charge"
        return None

    def costly_page_alloc_fails(self, nr: int, may_reclaim: bool) -> bool:
        """Whether ``nr`` pages in one costly allocation cannot be had: below the low
        watermark kswapd is woken; below the min one the machine is reclaimed once if
        ``may_reclaim``.  Simulator-defined: memory is never fragmented."""
        wmin, low, _ = self.watermarks()
        if self.free_pages() - nr < low:
            self.pressure = True   # the slow path wakes kswapd
        if self.free_pages() - nr >= wmin:
            return False
        if may_reclaim:
            vmscan.try_to_free_pages(self, nr)
        return self.free_pages() - nr < wmin

    def costly_charge_fails(self, memcg: MemCgroup, nr: int, may_reclaim: bool) -> bool:
        """try_charge_memcg of a costly folio: past memory.max (a ``max`` event each
        try) reclaim the cgroup up to MAX_RECLAIM_RETRIES times if ``may_reclaim``,
        then fail rather than OOM-kill (mem_cgroup_oom refuses costly orders)."""
        retries = vmscan.MAX_RECLAIM_RETRIES
        while True:
            over = memcg_mod.first_over(memcg, nr)
            if over is None:
                return False
            memcg_mod.memory_event(over, "max")
            if not may_reclaim or retries < 0:
                return True
            vmscan.try_to_free_mem_cgroup_pages(self, over, max(nr, over.current + nr - over.max))
            retries -= 1

    def uncharge(self, memcg: MemCgroup, nr: int) -> None:
        """Give ``nr`` pages back to ``memcg`` (the node's counts are the caller's)."""
        memcg_mod.uncharge(memcg, nr)

    def _limit(self, memcg, nr):
        """try_charge_memcg's loop: reclaim the cgroup whose memory.max ``nr`` pages
        would pass, up to MAX_RECLAIM_RETRIES times, then its OOM killer."""
        retries = vmscan.MAX_RECLAIM_RETRIES
        while True:
            over = memcg_mod.first_over(memcg, nr)
            if over is None:
                return
            memcg_mod.memory_event(over, "max")
            got = vmscan.try_to_free_mem_cgroup_pages(self, over,
                                                      max(nr, over.current + nr - over.max))
            if memcg_mod.first_over(memcg, nr) is None:
                return
            if got and nr <= 8:
                continue   # progress on a small charge: retry without counting it
            if retries:
                retries -= 1
                continue
            memcg_mod.memory_event(over, "oom")
            self._oom(over)
            retries = vmscan.MAX_RECLAIM_RETRIES

    def _oom(self, memcg):
        """Run the OOM killer for ``memcg`` (None: the machine); raise Killed when the
        current process is the victim, ENOMEM when nobody can be killed."""
        victim = oom.out_of_memory(self, memcg)
        if victim is None:
            raise error(errno.ENOMEM, "out of memory and no process to kill")
        current = self.current
        if current is not None and current.state != "running":
            # Killed as the victim, as a member of its oom.group cgroup, or as a
            # process sharing its address space.
            raise Killed(current.pid, oom.SIGKILL)

    def _direct_reclaim(self, nr):
        """__alloc_pages_slowpath: reclaim the machine until free memory is back above
        the min watermark; the OOM killer when that fails."""
        wmin = self.watermarks()[0]
        retries = vmscan.MAX_RECLAIM_RETRIES
        while self.free_pages() - nr < wmin:
            if vmscan.try_to_free_pages(self, nr):
                continue
            if retries:
                retries -= 1
                continue
            self._oom(None)
            retries = vmscan.MAX_RECLAIM_RETRIES

    def flush_stats(self) -> None:
        """The memory cgroup statistics' periodic flush (every two seconds on Linux:
        flush_memcg_stats_dwork), which ``advance`` runs every 2 s of simulated time."""
        memcg_mod.flush_stats(self.root_memcg)

    def balance(self, proc=None) -> None:
        """What waits for a call's end: reclaim and OOM for cgroups past memory.max,
        reclaim above memory.high, direct reclaim below the min watermark, and kswapd
        below the low one."""
        self.pressure = False
        memcg = proc.memcg if proc is not None else self.root_memcg
        mm = proc.mm if proc is not None else None
        if mm is not None:
            memcg = mm.memcg
        self._limit(memcg, 0)
        for m in memcg_mod.over_high(memcg):
            memcg_mod.memory_event(m, "high")
            vmscan.try_to_free_mem_cgroup_pages(self, m, max(vmscan.SWAP_CLUSTER_MAX,
                                                             m.current - m.high))
        wmin, low, _ = self.watermarks()
        if self.free_pages() < wmin:
            self._direct_reclaim(0)
        if self.free_pages() < low:
            vmscan.balance_pgdat(self)

    # ------------------------------------------------------------------ time

    @property
    def thp_pmd_policy(self) -> str:
        """The PMD size's effective THP mode: its per-size knob, ``inherit`` being the
        global ``enabled``."""
        return thp_mod.pmd_policy(self)

    @property
    def now(self) -> float:
        """The simulated time in seconds since boot (0 at start; only ``advance``
        moves it)."""
        return self.now_ns / 1e9

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass, running in time order what the
        kernel runs in the background meanwhile: khugepaged's scans, the memory
        cgroup statistics flush every 2 s, and kswapd whenever free memory is below
        the low watermark (as the allocation that took it there woke it: when
        ``advance`` starts, and after khugepaged's allocations).  Deterministic;
        system calls take no simulated time.  Stretches where nothing changes are
        skipped in one step: flushes with nothing new to fold, and whole repeats of a
        khugepaged cycle that collapses nothing (``Khugepaged.fast_forward``), so a
        long advance costs what its events cost.  Timers (``call_at``: workloads,
        recorders) run in the same time order; an exception from one leaves the
        clock at its time and is raised from here."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be an int or a float, not {seconds!r}")
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError(f"seconds must be finite and >= 0, not {seconds!r}")
        end = self.now_ns + round(seconds * 1e9)
        previous, self.current = self.current, None   # daemons run for nobody
        try:
            self._kswapd()
            khugepaged = self.khugepaged
            if khugepaged.running != khugepaged.pmd_enabled():
                khugepaged.start_stop()   # ``thp`` was set without the sysfs write
            khugepaged.forget()
            timers = self._timers
            while True:
                wake = khugepaged.wake_at if khugepaged.running else None
                flush = self._next_flush_ns
                timer = timers[0][0] if timers else None
                # Nothing may be skipped past the next timer: it may change anything.
                horizon = end if timer is None else min(end, timer)
                if timer is not None and timer <= horizon and (
                        wake is None or timer < wake) and timer < flush:
                    self.now_ns = max(self.now_ns, timer)
                    _, _, callback, readonly = heapq.heappop(timers)
                    callback()
                    self.current = None
                    if not readonly:
                        if khugepaged.running != khugepaged.pmd_enabled():
                            khugepaged.start_stop()
                        khugepaged.forget()
                    continue
                if wake is not None and wake <= flush:
                    if wake > end:
                        break
                    self.now_ns = max(self.now_ns, wake)
                    khugepaged.fast_forward(horizon)
                    self.pressure = False
                    khugepaged.run()
                    if self.pressure:
                        self._kswapd()
                else:
                    if flush > end:
                        break
                    self.now_ns = max(self.now_ns, flush)
                    memcg_mod.flush_stats(self.root_memcg)
                    # The flushes before the next event would fold the same numbers
                    # again: the next one that can matter is the first at or after it.
                    nxt = min(wake if wake is not None else end, horizon)
                    self._next_flush_ns = max(-(-nxt // STATS_FLUSH_NS) * STATS_FLUSH_NS,
                                              flush + STATS_FLUSH_NS)
            self.now_ns = end
        finally:
            self.current = previous

    def sample(self) -> dict:
        """One consistent snapshot of the machine's numbers: vmstat, meminfo, every
        cgroup's memory files and every process' memory (mmsim.metrics.sample)."""
        return metrics.sample(self)

    def _repr_html_(self):
        """A notebook's view: the memory summary and the processes."""
        return notebook.kernel_html(self)

    def call_later(self, delay: float, callback, readonly: bool = False) -> None:
        """Run ``callback()`` when ``delay`` more seconds of simulated time have passed
        (see ``call_at``)."""
        if isinstance(delay, bool) or not isinstance(delay, (int, float)):
            raise TypeError(f"delay must be an int or a float, not {delay!r}")
        if not delay >= 0 or delay == float("inf"):
            raise ValueError(f"delay must be finite and >= 0, not {delay!r}")
        self._push_timer(self.now_ns + round(delay * 1e9), callback, readonly)

    def call_at(self, when: float, callback, readonly: bool = False) -> None:
        """Run ``callback()`` at simulated time ``when`` (seconds; now if it has
        passed), inside ``advance`` and in time order with the daemons: after a
        khugepaged wake-up or a stats flush due at the same instant, and after the
        timers set earlier for that instant.  ``readonly`` promises the callback
        changes nothing (a sampler), so khugepaged's skipping of repeated stretches
        goes on across it.  Workloads (mmsim.workloads) and recorders
        (mmsim.metrics) run this way."""
        if isinstance(when, bool) or not isinstance(when, (int, float)):
            raise TypeError(f"when must be an int or a float, not {when!r}")
        if when != when or when == float("inf"):
            raise ValueError(f"when must be a finite time, not {when!r}")
        self._push_timer(max(self.now_ns, round(when * 1e9)), callback, readonly)

    def _push_timer(self, when_ns, callback, readonly):
        self._timer_seq += 1
        heapq.heappush(self._timers, (when_ns, self._timer_seq, callback, readonly))

    def _kswapd(self):
        """kswapd, woken below the low watermark: reclaim up to the high one (taking
        no simulated time)."""
        self.pressure = False
        if self.free_pages() < self.watermarks()[1]:
            vmscan.balance_pgdat(self)

    # ------------------------------------------------------------------ /proc

    def meminfo(self) -> str:
        """/proc/meminfo: the lines this model keeps, in the kernel's order and format."""
        node = self.node
        root = self.root_memcg
        locked = [sum(row[i] for row in pages.mlocked_lru(self).values()) for i in range(4)]
        from_lru = [root.lru_total(lru) - locked[lru] for lru in range(4)]
        ia, aa, if_, af = from_lru
        free = self.free_pages()
        wmin, low, high = self.watermarks()
        cache = if_ + af
        available = max(0, free - high + cache - min(cache // 2, low))
        rows = [("MemTotal", self.memory >> PAGE_SHIFT), ("MemFree", free),
                ("MemAvailable", available), ("Buffers", 0), ("Cached", node.nr_file_pages),
                ("SwapCached", sum(pages.swap_cached(self).values())),
                ("Active", aa + af), ("Inactive", ia + if_),
                ("Active(anon)", aa), ("Inactive(anon)", ia), ("Active(file)", af),
                ("Inactive(file)", if_), ("Unevictable", sum(locked)),
                ("Mlocked", sum(locked)), ("SwapTotal", self.swap_total_pages()),
                ("SwapFree", self.swap_free_pages()), ("Dirty", node.nr_dirty),
                ("Writeback", node.nr_writeback), ("AnonPages", node.nr_anon),
                ("Mapped", node.nr_mapped), ("Shmem", node.nr_shmem),
                ("CommitLimit", overcommit.commit_limit(self)),
                ("Committed_AS", overcommit.committed(self)),
                ("AnonHugePages", pages.anon_pmd_mapped(self) * pages.PMD_PAGES),
                ("ShmemHugePages", node.nr_shmem_thps << 9),
                ("ShmemPmdMapped", node.nr_shmem_pmdmapped << 9),
                ("FileHugePages", node.nr_file_thps << 9),
                ("FilePmdMapped", node.nr_file_pmdmapped << 9)]
        return "".join(f"{name + ':':<16}{n * 4:8d} kB\n" for name, n in rows)

    def vmstat(self) -> str:
        """/proc/vmstat: the counters this model keeps, in the kernel's order."""
        node = self.node
        root = self.root_memcg
        ev = node.events
        locked = [sum(row[i] for row in pages.mlocked_lru(self).values()) for i in range(4)]
        lru = [root.lru_total(i) - locked[i] for i in range(4)]
        rows = [("nr_free_pages", self.free_pages()), ("nr_mlock", sum(locked)),
                ("nr_inactive_anon", lru[0]), ("nr_active_anon", lru[1]),
                ("nr_inactive_file", lru[2]), ("nr_active_file", lru[3]),
                ("nr_unevictable", sum(locked)), ("workingset_nodes", len(node.shadow_nodes))]
        rows += [(name, ev[name]) for name in (
            "workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
            "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
            "workingset_nodereclaim")]
        rows += [("nr_anon_pages", node.nr_anon), ("nr_mapped", node.nr_mapped),
                 ("nr_file_pages", node.nr_file_pages), ("nr_dirty", node.nr_dirty),
                 ("nr_writeback", node.nr_writeback), ("nr_shmem", node.nr_shmem),
                 ("nr_dirtied", ev["nr_dirtied"]), ("nr_written", ev["nr_written"])]
        rows += [(name, ev[name]) for name in (
            "pgpgin", "pswpin", "pswpout", "pgactivate", "pgdeactivate", "pglazyfree",
            "pgfault", "pgmajfault", "pglazyfreed", "pgrefill", "pgsteal_kswapd",
            "pgsteal_direct", "pgsteal_khugepaged", "pgsteal_proactive", "pgscan_kswapd",
            "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive")]
        rows += [("pgscan_anon", ev["pgscan_anon"]), ("pgscan_file", ev["pgscan_file"]),
                 ("pgsteal_anon", ev["pgsteal_anon"]),
                 ("pgsteal_file", ev["pgsteal_file"]), ("pgrotated", ev["pgrotated"]),
                 ("oom_kill", ev["oom_kill"])]
        rows += [(name, ev[name]) for name in (
            "thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
            "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_file_alloc",
            "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped",
            "thp_split_page", "thp_split_page_failed", "thp_deferred_split_page",
            "thp_underused_split_page", "thp_split_pmd", "thp_scan_exceed_none_pte",
            "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte", "thp_zero_page_alloc",
            "thp_zero_page_alloc_failed", "thp_swpout",
            "thp_swpout_fallback", "swap_ra", "swap_ra_hit")]
        return "".join(f"{name} {n}\n" for name, n in rows)

    def proc_read(self, path: str) -> str:
        """The text of ``/proc/PID/{maps,smaps,status,cgroup,oom_score,oom_score_adj}``,
        of the page-cache lines of ``/proc/meminfo`` and ``/proc/vmstat``, of the vm
        sysctls and THP knobs, and of the cgroup files under /sys/fs/cgroup, in the
        kernel's format."""
        if not isinstance(path, str):
            raise error(errno.EFAULT, "a path must be a str")
        if path == "/proc/meminfo":
            return self.meminfo()
        if path == "/proc/vmstat":
            return self.vmstat()
        if sysctl.is_knob(path):
            return sysctl.read(self, path)
        if cgroup_mod.is_cgroupfs(path):
            return cgroup_mod.read(self, path)
        proc, name = self._proc_file(path)
        if name == "cgroup":
            return cgroup_mod.proc_cgroup(proc)
        if name == "oom_score":
            return f"{oom.oom_score(proc, oom.totalpages_of(self, None))}\n"
        if name == "oom_score_adj":
            return f"{proc.oom_score_adj}\n"
        view = {"maps": procfs.maps, "smaps": procfs.smaps, "status": procfs.status}.get(name)
        if view is None:
            raise error(errno.ENOENT, path)
        return view(proc)

    def _proc_file(self, path):
        """(process, file name) for /proc/PID/NAME; ENOENT when there is no such pid."""
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "proc":
            raise error(errno.ENOENT, path)
        pid = parts[1]
        proc = (self.processes.get(int(pid)) if pid.isascii() and pid.isdigit() and len(pid) < 20
                else None)
        if proc is None:
            raise error(errno.ENOENT, path)
        return proc, parts[2]

    def proc_write(self, path: str, text: str, writer: Process | None = None) -> None:
        """Write ``text`` to a vm sysctl, a THP knob, a cgroup file or
        /proc/PID/oom_score_adj, as the kernel's handler takes it (OSError with its
        errno otherwise).  ``writer`` is the simulated process writing (its
        credentials decide what is allowed); None is root outside the simulation."""
        if not isinstance(path, str):
            raise error(errno.EFAULT, "a path must be a str")
        if not isinstance(text, str):
            raise error(errno.EINVAL, "the text must be a str")
        if sysctl.is_knob(path):
            sysctl.write(self, path, text)
            return
        if cgroup_mod.is_cgroupfs(path):
            cgroup_mod.write(self, path, text, writer)
            return
        proc, name = self._proc_file(path)
        if name == "oom_score_adj":
            self._oom_score_adj_write(proc, text, writer)
            return
        if name in ("maps", "smaps", "status", "cgroup", "oom_score"):
            raise error(errno.EACCES, f"/proc/PID/{name} is read-only")
        raise error(errno.ENOENT, path)

    def _oom_score_adj_write(self, proc, text, writer):
        """oom_score_adj_write: an int in -1000..1000 (of the first 12 bytes written);
        going below the group's oom_score_adj_min needs CAP_SYS_RESOURCE (EACCES), and
        a writer with it sets that minimum too.  Every thread of the group and every
        process sharing its address space gets the value."""
        cred = writer.cred if writer is not None else Cred()
        if cred.fsuid != proc.cred.euid and not capable(cred, CAP_DAC_OVERRIDE):
            raise error(errno.EACCES, "the file is 0644, owned by the process' user")
        value = kstrtoint(strstrip(text[:12]), 0)
        if not oom.OOM_SCORE_ADJ_MIN <= value <= oom.OOM_SCORE_ADJ_MAX:
            raise error(errno.EINVAL, "oom_score_adj is in -1000..1000")
        privileged = capable(cred, CAP_SYS_RESOURCE)
        if value < proc.oom_score_adj_min and not privileged:
            raise error(errno.EACCES, "lowering oom_score_adj needs CAP_SYS_RESOURCE")
        mm = oom.task_mm(proc)
        for p in self.processes.values():
            if p.tgid == proc.tgid or (mm is not None and p.mm is mm):
                p.oom_score_adj = value
                if privileged:
                    p.oom_score_adj_min = value

    def mkdir(self, path: str) -> None:
        """mkdir under /sys/fs/cgroup: a new cgroup (EEXIST, ENOENT, ENOTDIR as the
        kernel answers)."""
        cgroup_mod.mkdir(self, path)

    def rmdir(self, path: str) -> None:
        """rmdir under /sys/fs/cgroup: remove a cgroup without processes or children
        (EBUSY otherwise)."""
        cgroup_mod.rmdir(self, path)
