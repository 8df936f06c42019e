"""The user-visible interfaces of memory cgroups, the vm sysctls, the THP knobs and the
OOM killer: cgroup v2 files under /sys/fs/cgroup (formats, errnos, moving processes),
/proc/sys/vm/*, /sys/kernel/mm/transparent_hugepage/*, /proc/PID/{cgroup,oom_score,
oom_score_adj}, the OOM killer's choice, and the replayer's report of a kill."""

import errno
import mmap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmsim
from mmsim import Kernel, Killed, oom, pages
from mmsim.memcg import PAGE_COUNTER_MAX
from mmsim.replay import Replayer
from mmsim.strace import parse
from mmsim.testing import errno_of

CG = "/sys/fs/cgroup"
MiB = 1 << 20
ANON = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
RW = mmap.PROT_READ | mmap.PROT_WRITE


def anon(proc, size):
    """Map and touch ``size`` bytes of private anonymous memory; the address."""
    addr = proc.mmap(0, size, RW, ANON, -1, 0)
    proc.touch(addr, size)
    return addr


def box(k, name="box", limit=None):
    k.mkdir(f"{CG}/{name}")
    if limit is not None:
        k.proc_write(f"{CG}/{name}/memory.max", limit)
    return k.memcgs[name]


def read(k, path):
    return k.proc_read(path)


def fields(text):
    return dict((line.split()[0], int(line.split()[1])) for line in text.splitlines())


# ---------------------------------------------------------------------- limits

@pytest.mark.parametrize("text, pages", [
    ("max", PAGE_COUNTER_MAX), ("max\n", PAGE_COUNTER_MAX), ("0", 0), ("4096", 1),
    ("8191", 1), ("1k", 0), ("4K", 1), ("8M", 2048), ("8m\n", 2048), ("  1G  ", 262144),
    ("1T", 1 << 28), ("0x2000", 2), ("020000", 2), ("", 0),
    ("9223372036854775807", PAGE_COUNTER_MAX), ("64E", 0), ("100E", 1 << 50),   # 64 << 60 wraps to 0
])
def test_limit_writes_accept_what_page_counter_memparse_accepts(text, pages):
    k = Kernel()
    cg = box(k)
    k.proc_write(f"{CG}/box/memory.high", text)
    assert cg.high == pages


@pytest.mark.parametrize("text", ["-1", "8MB", "8 M", "1.5G", "abc", "max max", "0x", "09",
                                  "Max"])
def test_limit_writes_refuse_the_rest_with_einval(text):
    k = Kernel()
    cg = box(k)
    assert errno_of(k.proc_write, f"{CG}/box/memory.max", text) == errno.EINVAL
    assert cg.max == PAGE_COUNTER_MAX   # nothing changed


@pytest.mark.parametrize("name, default", [("memory.max", "max\n"), ("memory.high", "max\n"),
                                           ("memory.low", "0\n"), ("memory.min", "0\n"),
                                           ("memory.swap.max", "max\n"),
                                           ("memory.oom.group", "0\n")])
def test_limits_read_back_in_bytes_or_max(name, default):
    k = Kernel()
    box(k)
    path = f"{CG}/box/{name}"
    assert read(k, path) == default
    if name == "memory.oom.group":
        k.proc_write(path, "1\n")
        assert read(k, path) == "1\n"
        assert errno_of(k.proc_write, path, "2") == errno.EINVAL
        return
    k.proc_write(path, "12345678")   # rounds down to pages
    assert read(k, path) == f"{12345678 // 4096 * 4096}\n"
    k.proc_write(path, "max")
    assert read(k, path) == "max\n"


# ---------------------------------------------------------------------- the tree

def test_mkdir_and_rmdir_errnos():
    k = Kernel()
    box(k, "a")
    assert errno_of(k.mkdir, f"{CG}/a") == errno.EEXIST
    assert errno_of(k.mkdir, f"{CG}/a/memory.max") == errno.EEXIST
    assert errno_of(k.mkdir, f"{CG}/missing/b") == errno.ENOENT
    assert errno_of(k.mkdir, f"{CG}/a/memory.max/b") == errno.ENOTDIR
    assert errno_of(k.mkdir, CG) == errno.EEXIST
    assert errno_of(k.mkdir, f"{CG}/a/new\nline") == errno.EINVAL
    k.mkdir(f"{CG}/a/b/")
    assert errno_of(k.rmdir, f"{CG}/a") == errno.EBUSY            # a child
    assert errno_of(k.rmdir, CG) == errno.EBUSY                   # the mount point
    assert errno_of(k.rmdir, f"{CG}/a/memory.max") == errno.ENOTDIR
    assert errno_of(k.rmdir, f"{CG}/nope") == errno.ENOENT
    k.spawn()   # init
    p = k.spawn(cgroup="a/b")
    assert errno_of(k.rmdir, f"{CG}/a/b") == errno.EBUSY          # a process
    p.exit_group(0)
    k.rmdir(f"{CG}/a/b")
    k.rmdir(f"{CG}/a")
    assert "a" not in k.memcgs and errno_of(read, k, f"{CG}/a/cgroup.procs") == errno.ENOENT
    k.mkdir(f"{CG}/a")   # the name is free again


def test_which_files_exist_where():
    k = Kernel()
    for name in ("memory.max", "memory.current", "memory.events", "memory.peak"):
        assert errno_of(read, k, f"{CG}/{name}") == errno.ENOENT   # not on the root
    assert "anon " in read(k, f"{CG}/memory.stat")
    assert read(k, f"{CG}/cgroup.subtree_control") == "memory\n"
    box(k, "a")
    k.mkdir(f"{CG}/a/b")
    assert read(k, f"{CG}/a/memory.max") == "max\n"
    assert read(k, f"{CG}/a/cgroup.controllers") == "memory\n"
    assert read(k, f"{CG}/a/cgroup.subtree_control") == "\n"
    # a's children get memory files once a enables the controller for them
    assert errno_of(read, k, f"{CG}/a/b/memory.max") == errno.ENOENT
    assert read(k, f"{CG}/a/b/cgroup.controllers") == "\n"
    assert errno_of(k.proc_write, f"{CG}/a/cgroup.subtree_control", "+cpu") == errno.EINVAL
    assert errno_of(k.proc_write, f"{CG}/a/b/cgroup.subtree_control", "+memory") == errno.ENOENT
    k.proc_write(f"{CG}/a/cgroup.subtree_control", "+memory")
    k.proc_write(f"{CG}/a/b/memory.max", "1M")
    assert read(k, f"{CG}/a/b/memory.max") == "1048576\n"
    # switching it off and on again gives a fresh controller
    k.proc_write(f"{CG}/a/cgroup.subtree_control", "-memory")
    k.proc_write(f"{CG}/a/cgroup.subtree_control", "+memory")
    assert read(k, f"{CG}/a/b/memory.max") == "max\n"


def test_read_only_files_directories_and_unknown_files():
    k = Kernel()
    box(k)
    for name in ("memory.current", "memory.stat", "memory.events", "memory.events.local",
                 "memory.swap.current", "cgroup.controllers", "cgroup.events"):
        assert errno_of(k.proc_write, f"{CG}/box/{name}", "0") == errno.EACCES, name
    assert errno_of(read, k, f"{CG}/box") == errno.EISDIR
    assert errno_of(k.proc_write, f"{CG}/box", "0") == errno.EISDIR
    assert errno_of(read, k, f"{CG}/box/memory.nope") == errno.ENOENT


# ---------------------------------------------------------------------- processes

def test_cgroup_procs_moves_the_whole_thread_group():
    k = Kernel()
    init = k.spawn()
    box(k)
    thread = init.clone(0x00010000 | 0x00000800 | 0x00000100)   # THREAD|SIGHAND|VM
    k.proc_write(f"{CG}/box/cgroup.procs", f"{thread.pid}\n")   # a thread's pid moves its group
    assert read(k, f"{CG}/box/cgroup.procs") == f"{init.pid}\n"
    assert read(k, f"{CG}/cgroup.procs") == ""
    assert read(k, f"/proc/{thread.pid}/cgroup") == "0::/box\n"
    assert read(k, f"/proc/{init.pid}/cgroup") == "0::/box\n"
    child = init.fork()
    assert read(k, f"/proc/{child.pid}/cgroup") == "0::/box\n"   # inherited
    assert read(k, f"{CG}/box/cgroup.procs") == f"{init.pid}\n{child.pid}\n"
    assert errno_of(k.proc_write, f"{CG}/box/cgroup.procs", "999") == errno.ESRCH
    assert errno_of(k.proc_write, f"{CG}/box/cgroup.procs", "-5") == errno.ESRCH
    assert errno_of(k.proc_write, f"{CG}/box/cgroup.procs", "x") == errno.EINVAL
    assert errno_of(k.proc_write, f"{CG}/box/cgroup.procs", "0") == errno.ESRCH
    k.proc_write(f"{CG}/cgroup.procs", "0", writer=child)   # 0: the writer itself
    assert read(k, f"/proc/{child.pid}/cgroup") == "0::/\n"


def test_no_internal_processes():
    k = Kernel()
    k.spawn()
    box(k, "a")
    p = k.spawn(cgroup="a")
    # a holds a process: it cannot enable memory for children ...
    assert errno_of(k.proc_write, f"{CG}/a/cgroup.subtree_control", "+memory") == errno.EBUSY
    k.proc_write(f"{CG}/cgroup.procs", str(p.pid))
    k.proc_write(f"{CG}/a/cgroup.subtree_control", "+memory")
    # ... and once it does, it cannot take one
    assert errno_of(k.proc_write, f"{CG}/a/cgroup.procs", str(p.pid)) == errno.EBUSY
    with pytest.raises(OSError) as e:
        k.spawn(cgroup="a")
    assert e.value.errno == errno.EBUSY
    k.mkdir(f"{CG}/a/leaf")
    k.proc_write(f"{CG}/a/leaf/cgroup.procs", str(p.pid))
    assert read(k, f"/proc/{p.pid}/cgroup") == "0::/a/leaf\n"
    assert errno_of(k.spawn, None, None, None, 0, 0, "nowhere") == errno.ENOENT


def test_moving_takes_the_anon_charge_and_leaves_the_page_cache():
    k = Kernel()
    k.spawn()
    p = k.spawn()
    anon(p, 4 * MiB)
    inode = k.create_file("/data", 2 * MiB)
    f = k.open_file(inode)
    p.fds[3] = f
    addr = p.mmap(0, 2 * MiB, mmap.PROT_READ, mmap.MAP_SHARED, 3, 0)
    p.touch(addr, 2 * MiB, write=False)
    root_file = k.root_memcg.stat["file"]
    assert root_file == 512
    cg = box(k)
    k.proc_write(f"{CG}/box/cgroup.procs", str(p.pid))
    assert int(read(k, f"{CG}/box/memory.current")) == 4 * MiB
    st_ = fields(read(k, f"{CG}/box/memory.stat"))
    assert st_["anon"] == 4 * MiB and st_["file"] == 0 and st_["inactive_anon"] == 4 * MiB
    assert k.root_memcg.stat["anon"] == 0 and k.root_memcg.stat["file"] == root_file
    assert cg.current == 1024 and k.root_memcg.current == 1024 + 512
    p.munmap(addr, 2 * MiB)
    p.exit_group(0)
    assert cg.current == 0 and int(read(k, f"{CG}/box/memory.peak")) == 4 * MiB


def test_memory_stat_names_order_and_units():
    k = Kernel()
    k.spawn()
    p = k.spawn(cgroup=box(k).name)
    anon(p, 3 * MiB)
    names = [line.split()[0] for line in read(k, f"{CG}/box/memory.stat").splitlines()]
    assert names[:4] == ["anon", "file", "kernel", "kernel_stack"]
    assert names.index("slab") == names.index("slab_unreclaimable") + 1
    assert names.index("workingset_refault_anon") == names.index("slab") + 1
    assert names.index("pgscan") == names.index("pgpromote_success") + 1
    assert names[names.index("pgsteal") + 1:names.index("pgsteal") + 3] == ["pswpin", "pswpout"]
    assert names[-3:] == ["numa_pages_migrated", "numa_pte_updates", "numa_hint_faults"]
    assert len(names) == len(set(names)) == 27 + 12 + 31
    st_ = fields(read(k, f"{CG}/box/memory.stat"))
    assert st_["anon"] == 3 * MiB and st_["inactive_anon"] == 3 * MiB
    assert int(read(k, f"{CG}/box/memory.current")) == st_["anon"] + st_["file"]


# ---------------------------------------------------------------------- OOM

def test_a_process_over_its_cgroup_limit_is_oom_killed():
    k = Kernel()
    parent = k.spawn()
    box(k, "box", "8M")
    k.proc_write(f"{CG}/box/cgroup.procs", str(parent.pid))
    child = parent.fork()
    with pytest.raises(Killed) as e:
        anon(child, 64 * MiB)
    assert e.value.pid == child.pid and e.value.signal == 9
    assert parent.wait4(child.pid, 0) == (child.pid, 9)
    ev = fields(read(k, f"{CG}/box/memory.events"))
    assert ev["oom_kill"] == 1 and ev["oom"] == 1 and ev["max"] >= 1
    assert fields(read(k, f"{CG}/box/memory.events.local"))["oom_kill"] == 1
    assert int(read(k, f"{CG}/box/memory.current")) < 64 * 1024
    assert fields(read(k, "/proc/vmstat"))["oom_kill"] == 1
    assert parent.state == "running"


def test_lowering_memory_max_below_usage_oom_kills_in_that_cgroup():
    k = Kernel()
    k.spawn()
    box(k, "a")
    k.proc_write(f"{CG}/a/cgroup.subtree_control", "+memory")
    box(k, "a/b")
    small, big = k.spawn(cgroup="a/b"), k.spawn(cgroup="a/b")
    anon(small, 2 * MiB)
    anon(big, 16 * MiB)
    k.proc_write(f"{CG}/a/b/memory.max", "4M")   # the writer is not the victim
    assert big.state == "zombie" or big.state == "reaped"
    assert small.state == "running"
    assert int(read(k, f"{CG}/a/b/memory.current")) == 2 * MiB
    assert fields(read(k, f"{CG}/a/b/memory.events"))["oom_kill"] == 1
    # hierarchical in the parent, not local to it
    assert fields(read(k, f"{CG}/a/memory.events"))["oom_kill"] == 1
    assert fields(read(k, f"{CG}/a/memory.events.local"))["oom_kill"] == 0


def test_oom_group_kills_the_whole_cgroup():
    k = Kernel()
    k.spawn()
    box(k, "g", "8M")
    k.proc_write(f"{CG}/g/memory.oom.group", "1")
    a, b, spared = (k.spawn(cgroup="g") for _ in range(3))
    k.proc_write(f"/proc/{spared.pid}/oom_score_adj", "-1000")
    anon(a, 2 * MiB)
    with pytest.raises(Killed):
        anon(b, 16 * MiB)
    assert a.state != "running" and b.state != "running" and spared.state == "running"
    ev = fields(read(k, f"{CG}/g/memory.events"))
    assert ev["oom_group_kill"] == 1 and ev["oom_kill"] == 2


@pytest.mark.parametrize("adj, score", [(0, 708), (-1000, 0), (1000, 1374), (-500, 375),
                                        (500, 1041)])
def test_oom_score_follows_proc_oom_score(adj, score):
    k = Kernel(memory=1 << 30)   # 262144 pages: one adj point is 262 pages
    k.spawn()
    p = k.spawn()
    anon(p, 64 * MiB)   # 16384 pages and 32 page tables: badness 16416 + adj * 262
    k.proc_write(f"/proc/{p.pid}/oom_score_adj", str(adj))
    # (1000 + badness * 1000 / totalpages) * 2 / 3 in C: -500 truncates -437.1 to -437
    assert read(k, f"/proc/{p.pid}/oom_score") == f"{score}\n"
    assert read(k, f"/proc/{p.pid}/oom_score_adj") == f"{adj}\n"


def test_init_exited_processes_and_vfork_children_score_zero():
    k = Kernel()
    init = k.spawn()
    anon(init, MiB)
    assert read(k, f"/proc/{init.pid}/oom_score") == "0\n"
    p = init.fork()   # a child of a running parent stays a zombie until reaped
    anon(p, MiB)
    child = p.vfork()   # borrows p's address space until it execs or exits
    assert read(k, f"/proc/{child.pid}/oom_score") == "0\n"
    assert int(read(k, f"/proc/{p.pid}/oom_score")) > 0
    child.exit(0)
    p.exit_group(0)
    assert read(k, f"/proc/{p.pid}/oom_score") == "0\n"   # a zombie


def test_cgroup_events_populated():
    k = Kernel()
    k.spawn()
    box(k, "a")
    k.proc_write(f"{CG}/a/cgroup.subtree_control", "+memory")
    box(k, "a/b")
    assert read(k, f"{CG}/a/cgroup.events") == "populated 0\nfrozen 0\n"
    p = k.spawn(cgroup="a/b")
    assert read(k, f"{CG}/a/cgroup.events") == "populated 1\nfrozen 0\n"
    assert errno_of(read, k, f"{CG}/cgroup.events") == errno.ENOENT
    p.exit_group(0)
    assert read(k, f"{CG}/a/b/cgroup.events") == "populated 0\nfrozen 0\n"


def test_victim_choice():
    k = Kernel()
    k.spawn()
    cg = box(k)
    p1, p2, p3 = (k.spawn(cgroup="box") for _ in range(3))
    anon(p1, 4 * MiB)
    anon(p2, 4 * MiB)
    anon(p3, MiB)
    total = oom.totalpages_of(k, cg)
    assert oom.select_bad_process(k, cg, total) is p2          # a tie: the later one
    k.proc_write(f"/proc/{p2.pid}/oom_score_adj", "-1000")
    assert oom.select_bad_process(k, cg, total) is p1          # -1000 is skipped
    k.proc_write(f"/proc/{p3.pid}/oom_score_adj", "1000")
    assert oom.select_bad_process(k, cg, total) is p3
    for p in (p1, p3):
        k.proc_write(f"/proc/{p.pid}/oom_score_adj", "-1000")
    assert oom.select_bad_process(k, cg, total) is None
    assert oom.select_bad_process(k, None, oom.totalpages_of(k, None)) is None   # init


def test_oom_score_adj_writes():
    k = Kernel()
    k.spawn()
    p = k.spawn(uid=1000, gid=1000)
    path = f"/proc/{p.pid}/oom_score_adj"
    for text, want in [("1001", errno.EINVAL), ("-1001", errno.EINVAL), ("x", errno.EINVAL),
                       ("", errno.EINVAL), ("99999999999", errno.ERANGE)]:
        assert errno_of(k.proc_write, path, text) == want, text
    k.proc_write(path, "500", writer=p)
    k.proc_write(path, "0", writer=p)                 # back to its minimum: allowed
    assert errno_of(k.proc_write, path, "-1", p) == errno.EACCES
    k.proc_write(path, " -300\n")                      # root: allowed, sets the minimum
    k.proc_write(path, "-300", writer=p)
    assert errno_of(k.proc_write, path, "-301", p) == errno.EACCES
    other = k.spawn(uid=2000, gid=2000)
    assert errno_of(k.proc_write, path, "100", other) == errno.EACCES   # not its file
    child = p.fork()
    assert read(k, f"/proc/{child.pid}/oom_score_adj") == "-300\n"   # inherited
    assert errno_of(k.proc_write, f"/proc/{child.pid}/oom_score_adj", "-301", child) \
        == errno.EACCES   # and so is the minimum
    assert errno_of(k.proc_write, f"/proc/{p.pid}/oom_score", "1") == errno.EACCES


# ---------------------------------------------------------------------- sysctls

@pytest.mark.parametrize("name, good, bad", [
    ("swappiness", ["0", "200", " 60\n", "0x10", "100 7"], ["201", "-1", "abc", "", "6x"]),
    ("watermark_scale_factor", ["1", "3000"], ["0", "3001"]),
    ("min_free_kbytes", ["0", "2147483647"], ["-1", "2147483648"]),
    ("overcommit_memory", ["0", "1", "2"], ["3", "-1"]),
    ("overcommit_ratio", ["0", "-5", "1000"], ["2147483648", "1.5"]),
    ("overcommit_kbytes", ["0", "18446744073709551615"], ["-1", "18446744073709551616"]),
    ("max_map_count", ["0", "100000"], ["-1"]),
    ("admin_reserve_kbytes", ["0", "8192"], ["-8"]),
    ("user_reserve_kbytes", ["0", "131072"], ["x"]),
])
def test_vm_sysctls(name, good, bad):
    k = Kernel()
    path = f"/proc/sys/vm/{name}"
    for text in good:
        k.proc_write(path, text)
        assert read(k, path) == f"{int(text.split()[0], 0)}\n", text
    before = read(k, path)
    for text in bad:
        assert errno_of(k.proc_write, path, text) == errno.EINVAL, text
    assert read(k, path) == before


def test_sysctls_change_the_machine():
    k = Kernel(memory=1 << 30)
    k.proc_write("/proc/sys/vm/min_free_kbytes", "40960")
    assert k.watermarks()[0] == 10240
    wmin, low, _ = k.watermarks()
    k.proc_write("/proc/sys/vm/watermark_scale_factor", "1000")
    assert k.watermarks()[1] - wmin == 262144 // 10 > low - wmin
    k.proc_write("/proc/sys/vm/overcommit_kbytes", "1024")
    assert read(k, "/proc/sys/vm/overcommit_ratio") == "0\n"
    k.proc_write("/proc/sys/vm/overcommit_ratio", "50")
    assert read(k, "/proc/sys/vm/overcommit_kbytes") == "0\n"
    p = k.spawn()
    p.mmap(0, 4096, mmap.PROT_READ, ANON, -1, 0)
    k.proc_write("/proc/sys/vm/max_map_count", str(p.mm.map_count - 1))
    assert errno_of(p.mmap, 0, 4096, mmap.PROT_WRITE, ANON, -1, 0) == errno.ENOMEM
    k.proc_write("/proc/sys/vm/max_map_count", "65530")
    p.mmap(0, 4096, mmap.PROT_WRITE, ANON, -1, 0)


def test_thp_knobs():
    k = Kernel(thp="never", memory=1 << 30)
    base = "/sys/kernel/mm/transparent_hugepage/"
    assert read(k, base + "enabled") == "always madvise [never]\n"
    assert read(k, base + "defrag") == "always defer defer+madvise [madvise] never\n"
    assert read(k, base + "shmem_enabled") == "always within_size advise [never] deny force\n"
    before = k.min_free_kbytes
    k.proc_write(base + "enabled", "always\n")
    assert k.thp == "always" and read(k, base + "enabled") == "[always] madvise never\n"
    assert k.min_free_kbytes > before   # khugepaged started: its recommendation
    for text in (" always", "alwaysx", "[always]", "inherit", ""):
        assert errno_of(k.proc_write, base + "enabled", text) == errno.EINVAL, text
    k.proc_write(base + "defrag", "defer+madvise")
    assert read(k, base + "defrag") == "always defer [defer+madvise] madvise never\n"
    k.proc_write(base + "shmem_enabled", "force")
    assert k.shmem_enabled == "force"
    assert errno_of(k.proc_write, base + "shmem_enabled", "madvise") == errno.EINVAL
    k.proc_write("/proc/sys/vm/min_free_kbytes", "1024")
    k.proc_write(base + "enabled", "madvise")   # written again: raised again
    assert k.min_free_kbytes > 1024


# ---------------------------------------------------------------------- replay

TRACE = """\
1000  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f1234567a10) = 1001
1001  mmap(NULL, 16777216, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE, -1, 0) = 0x7f0000000000
1000  mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f1000000000
1001  +++ killed by SIGKILL +++
1000  +++ exited with 0 +++
"""


def test_replay_reports_an_oom_kill_and_goes_on():
    k = Kernel()
    k.spawn()   # init, which the OOM killer spares
    box(k, "box", "8M")
    r = Replayer(k)
    r.cgroup = "box"
    lines = [o.line() for o in r.run(parse(TRACE, "t"))]
    assert lines[1].startswith("[pid 1001] mmap(NULL, 16777216") and lines[1].endswith(" = ?")
    assert lines[2] == "[pid 1001] +++ killed by SIGKILL +++"
    assert lines[3].startswith("[pid 1000] mmap(NULL, 4096") and not lines[3].endswith("?")
    assert len(lines) == 4
    assert fields(read(k, f"{CG}/box/memory.events"))["oom_kill"] == 1


# ---------------------------------------------------------------------- invariants

OPS = st.lists(st.one_of(
    st.tuples(st.just("mkdir"), st.integers(0, 5), st.sampled_from("xyz")),
    st.tuples(st.just("max"), st.integers(0, 5), st.integers(0, 600)),
    st.tuples(st.just("subtree"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("spawn"), st.integers(0, 5)),
    st.tuples(st.just("fork"), st.integers(0, 9)),
    st.tuples(st.just("move"), st.integers(0, 9), st.integers(0, 5)),
    st.tuples(st.just("touch"), st.integers(0, 9), st.integers(1, 300)),
    st.tuples(st.just("file"), st.integers(0, 9), st.integers(1, 100)),
    st.tuples(st.just("munmap"), st.integers(0, 9)),
    st.tuples(st.just("exit"), st.integers(0, 9)),
    st.tuples(st.just("rmdir"), st.integers(0, 5)),
), max_size=30)


def _all_memcgs(k):
    return k.root_memcg.subtree()   # the removed ones still charged included


def _check(k, before):
    live_mms = {id(p.mm): p.mm for p in k.processes.values() if p.mm is not None}
    # Each anonymous page is charged once: a private one to its mm's cgroup, one shared
    # since a fork to its pool's.
    charged, pools = {}, {}
    for mm in live_mms.values():
        key = id(mm.memcg)
        charged[key] = charged.get(key, 0) + pages.private_anon_pages(mm)
        for vma in mm.vmas():
            for _, _, span in (vma.pages.items() if vma.pages else ()):
                if span.kind == pages.POOLED:
                    pools[id(span.pool)] = span.pool
    for pool in pools.values():
        key = id(pool.memcg)
        charged[key] = charged.get(key, 0) + sum(y - x for x, y, st in pool.items() if st[1])
    for m in _all_memcgs(k):
        sub = m.subtree()
        assert m.current == sum(c.stat["anon"] + c.stat["file"] for c in sub), m.name
        assert m.current >= 0 and all(v >= 0 for v in m.stat.values()), m.name
        assert all(n >= 0 for n in m.lruvec.nr), m.name
        assert m.stat["anon"] == charged.get(id(m), 0), m.name
        for c in m.children.values():
            assert c.current <= m.current
        if m.parent is not None and not m.dying:
            text = k.proc_read(f"{CG}/{m.name}/cgroup.procs")
            assert int(k.proc_read(f"{CG}/{m.name}/memory.current")
                       if m.parent.subtree_memory else m.current * 4096) == m.current * 4096
            assert all(k.processes[int(pid)].memcg is m for pid in text.split())
        old = before.get(id(m))
        if old is not None:
            assert all(m.events[e] >= old[0][e] and m.local_events[e] >= old[1][e]
                       for e in m.events)
        before[id(m)] = (dict(m.events), dict(m.local_events))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_cgroup_accounting_stays_consistent(ops):
    k = Kernel(memory=64 * MiB, randomize=False)
    k.spawn()   # init
    inode = k.create_file("/f", 1 * MiB)
    names = [""]
    procs = []
    maps = {}
    before = {}

    def cg(i):
        return names[i % len(names)]

    def path(name):
        return f"{CG}/{name}".rstrip("/")

    def proc(i):
        running = [p for p in procs if p.state == "running"]
        return running[i % len(running)] if running else None

    for op in ops:
        kind = op[0]
        try:
            if kind == "mkdir":
                name = f"{cg(op[1])}/{op[2]}".lstrip("/")
                k.mkdir(path(name))
                names.append(name)
            elif kind == "max" and cg(op[1]):
                k.proc_write(path(cg(op[1])) + "/memory.max", str(op[2] * 4096))
            elif kind == "subtree":
                k.proc_write(path(cg(op[1])) + "/cgroup.subtree_control",
                             "+memory" if op[2] else "-memory")
            elif kind == "spawn":
                procs.append(k.spawn(cgroup=cg(op[1]) or None))
            elif kind == "rmdir" and cg(op[1]):
                k.rmdir(path(cg(op[1])))
                names.remove(cg(op[1]))
            elif (p := proc(op[1])) is None:
                pass
            elif kind == "fork":
                procs.append(p.fork())
            elif kind == "move":
                k.proc_write(path(cg(op[2])) + "/cgroup.procs", str(p.pid))
            elif kind == "touch":
                maps.setdefault(p.pid, []).append((anon(p, op[2] * 4096), op[2] * 4096))
            elif kind == "file":
                p.fds[10] = k.open_file(inode)
                addr = p.mmap(0, op[2] * 4096, mmap.PROT_READ, mmap.MAP_SHARED, 10, 0)
                p.touch(addr, op[2] * 4096, write=False)
            elif kind == "munmap" and maps.get(p.pid):
                p.munmap(*maps[p.pid].pop())
            elif kind == "exit":
                p.exit_group(0)
        except Killed:
            pass
        except OSError as e:
            assert e.errno in (errno.EBUSY, errno.EEXIST, errno.ENOENT, errno.ENOMEM,
                               errno.ESRCH), (op, e)
        _check(k, before)


def test_killed_is_public():
    assert mmsim.Killed is Killed and issubclass(Killed, mmsim.MmsimError)


KNOB_PATHS = ([f"/proc/sys/vm/{n}" for n in ("swappiness", "min_free_kbytes", "overcommit_kbytes")]
              + ["/sys/kernel/mm/transparent_hugepage/enabled"]
              + [f"{CG}/box/{n}" for n in ("memory.max", "memory.high", "memory.oom.group",
                                           "cgroup.procs", "cgroup.subtree_control",
                                           "memory.stat")]
              + ["/proc/2/oom_score_adj", f"{CG}/box/../box/memory.low", f"{CG}/\0"])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(KNOB_PATHS), st.text(max_size=40))
def test_any_text_written_is_taken_or_refused_with_an_errno(path, text):
    k = Kernel()
    k.spawn()
    box(k)
    k.spawn(cgroup="box")
    try:
        k.proc_write(path, text)
    except OSError as e:
        assert e.errno in (errno.EINVAL, errno.ERANGE, errno.ESRCH, errno.EBUSY, errno.ENOENT,
                           errno.EACCES), e
    for p in KNOB_PATHS[:4] + KNOB_PATHS[4:9]:
        k.proc_read(p)
