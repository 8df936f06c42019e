"""Issue 11: every public syscall method of Process (and Kernel.proc_read) called with
hostile arguments: huge and negative integers, 2**64 - 1, unaligned addresses, None,
floats, strings, bytes, lists, NUL-containing paths, bogus descriptors and pidfds, and
processes that have exited or been reaped.

For every call: only OSError escapes; and a call that fails leaves the simulated machine
as it was (maps, smaps and status of every process, the process table, the page-cache
counters), except where the kernel itself stops part-way (PARTIAL below).

Bounded work: each example runs one call on a fresh, small machine, so every range the
call walks is bounded by the fixture's few small VMAs, and populating a mapping the call
itself creates is bounded by the machine's memory (checked before any page is faulted);
every length, up to 2**64 and beyond, is passed as drawn.
"""

import errno
import inspect

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim import procfs
from mmsim.kernel import Kernel
from mmsim.prctl import PrctlMmMap
from mmsim.task import SYSCALLS, Process
from mmsim import uapi
from mmsim.uapi import (MAP_ANONYMOUS, MAP_FIXED, MAP_LOCKED, MAP_POPULATE, MAP_PRIVATE,
                        MAP_SHARED, PROT_READ, PROT_WRITE)

P = 4096
BASE = 0x200000000000

HUGE = [0, 1, -1, 2**64 - 1, 2**64, 2**63, 2**63 - 1, 2**32, 2**32 - 1, 2**31, -2**31,
        1 << 47, (1 << 47) - P, 2**100, -2**100, P - 1, P + 1, 0x10000]
NOT_INTS = [None, 1.5, float("nan"), float("inf"), "12", "", "a\0b", b"x", [1], (), {},
            [(1, 2)], object(), True, False]


def _names(prefix):
    return [getattr(uapi, n) for n in dir(uapi) if n.startswith(prefix)
            and isinstance(getattr(uapi, n), int)]


def ints():
    """Integers a fuzzer would try, addresses near the fixture's mappings included."""
    near = st.builds(lambda page, off: BASE + page * P + off,
                     st.integers(-4, 40), st.sampled_from([0, 0, 0, 1, P - 1]))
    return st.one_of(st.sampled_from(HUGE), near, st.integers(-2**70, 2**70),
                     st.integers(0, 64 * P))


def anything():
    return st.one_of(ints(), ints(), st.sampled_from(NOT_INTS))


def flag_bits(prefix):
    known = _names(prefix)
    combos = st.lists(st.sampled_from(known), max_size=4).map(
        lambda bits: sum(set(bits)))
    return st.one_of(combos, combos, anything())


PATHS = st.sampled_from(["/f", b"/f", "/f\0", "", "/", "/nonexistent", "/etc/hostname",
                         "/bin/true", "x" * 5000, None, 3, 1.5, ["/f"], b"\xff\xfe"])
FDS = st.one_of(st.sampled_from([3, 4, 5, 0, -1, -10000, -10001, 9999, 2**31, 2**32 + 3]),
                anything())
IOVECS = st.one_of(
    st.lists(st.tuples(ints(), ints()), max_size=4),
    st.lists(st.tuples(ints(), ints()), min_size=1025, max_size=1025),
    st.sampled_from([None, 5, "x", [1], [(1,)], [(1, 2, 3)], [(None, P)], [("a", P)]]))
ADDR_STREAMS = st.one_of(
    st.lists(ints(), max_size=8), st.lists(st.one_of(ints(), st.sampled_from(NOT_INTS)),
                                           max_size=4),
    st.sampled_from([None, 5, "x", b"x", 1.5, object()]))
PRCTL_ARGS = st.one_of(anything(), st.sampled_from(["name", b"n\0x", PrctlMmMap()]))

def map_flags():
    """A mapping type (mostly a valid one) with a few other MAP_* bits."""
    kind = st.sampled_from([MAP_PRIVATE, MAP_PRIVATE, MAP_SHARED, uapi.MAP_SHARED_VALIDATE,
                            uapi.MAP_DROPPABLE, 0, 0xF])
    others = st.lists(st.sampled_from([n for n in _names("MAP_") if n & ~0xF]), max_size=3)
    anon = st.sampled_from([0, MAP_ANONYMOUS, MAP_ANONYMOUS])
    valid = st.builds(lambda k, a, o: k | a | sum(set(o)), kind, anon, others)
    return st.one_of(valid, valid, valid, anything())


LENGTHS = st.one_of(st.integers(0, 24).map(lambda n: n * P), st.integers(0, 24 * P), ints())

# Argument strategies by parameter name; any other parameter is anything().
BY_NAME = {
    "prot": flag_bits("PROT_"), "flags": flag_bits("MAP_"), "advice": st.one_of(
        st.sampled_from(_names("MADV_")), anything()),
    "option": st.one_of(st.sampled_from(_names("PR_")), anything()),
    "arg2": PRCTL_ARGS, "arg3": PRCTL_ARGS, "arg4": PRCTL_ARGS, "arg5": PRCTL_ARGS,
    "fd": FDS, "pidfd": FDS, "path": PATHS,
    "argv": st.sampled_from([None, [], ["a"], "a", [None], ["a\0"], 5]),
    "envp": st.sampled_from([None, [], ["A=1"], 5]), "iovec": IOVECS, "addrs": ADDR_STREAMS,
    "options": flag_bits("W"), "write": anything(),
    "length": LENGTHS, "old_size": LENGTHS, "new_size": LENGTHS,
}
FLAGS_BY_METHOD = {"mmap": map_flags(), "clone": flag_bits("CLONE_"), "unshare": flag_bits("CLONE_"),
                   "mremap": flag_bits("MREMAP_"), "pidfd_open": flag_bits("PIDFD_"),
                   "mlock2": flag_bits("MLOCK_"), "mctl": flag_bits("MCTL_")}

# Calls the kernel may leave half done when they fail (and the errnos it then gives):
# mprotect changes VMAs up to a hole or a refusal; madvise and process_madvise advise
# the mapped parts before reporting a hole or a refusal; mlock locks up to a hole;
# mremap with MREMAP_FIXED unmaps the destination before it can fail; mctl walks.
PARTIAL = {"mprotect": {errno.ENOMEM, errno.EACCES, errno.EPERM},
           "madvise": None, "process_madvise": None, "mctl": None,
           "mlock": {errno.ENOMEM, errno.EAGAIN}, "mlock2": {errno.ENOMEM, errno.EAGAIN},
           "munlock": {errno.ENOMEM}, "mremap": {errno.ENOMEM, errno.EFAULT},
           "access": {errno.EFAULT, errno.ENOMEM}}

METHODS = sorted(set(SYSCALLS) | {"exit_group"})


def fixture():
    """A small machine: a process with anonymous, file and shared mappings (some pages
    resident), a file open, a pidfd for a live child, a zombie and a reaped child."""
    k = Kernel(seed=1)
    k.create_file("/f", 16 * P)
    proc = k.spawn()
    fd = proc.open("/f")                                                     # 3
    proc.mmap(BASE, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    proc.touch(BASE, 4 * P)
    proc.mmap(BASE + 10 * P, 4 * P, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0)
    proc.touch(BASE + 10 * P, 2 * P, write=False)
    proc.mmap(BASE + 16 * P, 4 * P, PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED)
    child = proc.fork()
    proc.pidfd_open(child.pid)                                               # 4
    zombie = proc.fork()
    reaped = proc.fork()
    proc.pidfd_open(reaped.pid)                                              # 5
    zombie.exit(1)
    reaped.exit(2)
    proc.wait4(reaped.pid)
    return k, {"main": proc, "child": child, "zombie": zombie, "reaped": reaped}


def snapshot(k, procs):
    """Everything a failed call must leave as it was."""
    out = {"table": sorted(k.processes), "lru": (k.meminfo(), k.vmstat()),
           "cache": sorted((path, sorted(ino.cache)) for path, ino in k.files.items())}
    for who, p in procs.items():
        cred = p.cred
        out[who] = (p.state, p.ppid, p.tgid, p.comm, sorted(p.fds), sorted(p.children),
                    p.exit_status, tuple(getattr(cred, n) for n in type(cred).__slots__),
                    p.pdeath_signal, p.no_new_privs, p.keepcaps)
        mm = p.mm
        if mm is not None:
            out[who + "/mm"] = (procfs.maps(p), procfs.smaps(p), procfs.status(p), mm.flags,
                                mm.def_flags, mm.brk, mm.start_brk, mm.users)
    return out


@st.composite
def calls(draw):
    name = draw(st.sampled_from(METHODS))
    who = draw(st.sampled_from(["main", "main", "main", "child", "zombie", "reaped"]))
    params = list(inspect.signature(getattr(Process, name)).parameters.values())[1:]
    required = sum(1 for p in params if p.default is inspect.Parameter.empty)
    n = draw(st.integers(required, len(params)))
    args = []
    for param in params[:n]:
        strat = BY_NAME.get(param.name, anything())
        if param.name == "flags":
            strat = FLAGS_BY_METHOD.get(name, strat)
        args.append(draw(strat))
    return name, who, args


def _refused_up_front(args):
    """Whether madvise's own argument checks (madvise_should_skip) refuse ``args``."""
    from mmsim.madvise import check_range
    from mmsim.task import INT, ULONG
    try:
        check_range(ULONG(args[0]), ULONG(args[1]), INT(args[2]))
    except OSError:
        return True
    return False


def run(k, procs, name, who, args):
    """The call; its errno when it fails with OSError (any other exception escapes)."""
    try:
        getattr(procs[who], name)(*args)
    except OSError as exc:
        assert exc.errno, f"{name}{tuple(args)!r}: an OSError without an errno"
        return exc.errno
    return 0


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(calls())
def test_hostile_syscall_arguments(call):
    name, who, args = call
    k, procs = fixture()
    before = snapshot(k, procs)
    err = run(k, procs, name, who, args)
    for p in procs.values():
        if p.mm is not None:
            p.mm.check()
    if err:
        partial = PARTIAL.get(name, set())
        if name == "madvise" and who in ("main", "child") and _refused_up_front(args):
            partial = set()   # refused before any VMA is visited: nothing may change
        if partial is None or err in partial:
            return
        after = snapshot(k, procs)
        assert after == before, f"{name}{tuple(args)!r} failed with " \
            f"{errno.errorcode[err]} but changed the machine"


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.one_of(PATHS, st.text(max_size=40).map(lambda t: "/proc/" + t),
                 st.sampled_from(["/proc/1/maps", "/proc/1/smaps", "/proc/1/status",
                                  "/proc/3/status", "/proc/9/maps", "/proc/meminfo",
                                  "/proc/vmstat", "/proc/1/", "/proc//maps", "/proc/-1/maps",
                                  "/proc/\u0661/maps", "/proc/" + "9" * 5000 + "/maps"])))
def test_hostile_proc_read(path):
    k, procs = fixture()
    before = snapshot(k, procs)
    try:
        text = k.proc_read(path)
        assert isinstance(text, str)
    except OSError as exc:
        assert exc.errno in (errno.ENOENT, errno.EFAULT, errno.EINVAL)
    assert snapshot(k, procs) == before


def test_every_syscall_method_is_fuzzed():
    """A method added to Process without an @syscall declaration would escape this test."""
    public = {n for n, v in vars(Process).items() if not n.startswith("_") and callable(v)}
    assert public == set(METHODS)
