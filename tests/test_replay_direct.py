"""The replayer's direct handlers for mmap, munmap, mprotect and madvise restate, for
speed, the argument conversions their @syscall declarations make: pinned here to the
declarations, and checked to answer exactly as the Process methods do."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mmsim import replay
from mmsim.kernel import Kernel
from mmsim.strace import Event
from mmsim.task import INT, SYSCALLS, ULONG
from mmsim.uapi import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE

# What each direct handler assumes of its call's declaration.
ASSUMED = {"mmap": (ULONG, ULONG, ULONG, ULONG, INT, ULONG), "munmap": (ULONG, ULONG),
           "mprotect": (ULONG, ULONG, ULONG), "madvise": (ULONG, ULONG, INT)}
P = 4096
BASE = 0x200000000000


def test_direct_handlers_match_the_declarations():
    assert set(replay._DIRECT) == set(ASSUMED)
    for name, types in ASSUMED.items():
        assert tuple(SYSCALLS[name].values()) == types, name


def _answer(fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        return -exc.errno


def _machine():
    kernel = Kernel(seed=4)
    proc = kernel.spawn()
    proc.mmap(BASE, 64 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    return kernel, proc


edge = st.sampled_from([0, -1, 1 << 31, -(1 << 31) - 1, (1 << 64) - 1, 1 << 64, 1 << 70,
                        BASE, BASE + 3 * P, P, 3])
numbers = st.one_of(edge, st.integers(0, 80).map(lambda n: BASE + n * P), st.integers(0, 40 * P))
calls = st.one_of(
    st.tuples(st.just("mmap"), st.tuples(numbers, numbers, st.integers(0, 7),
                                         st.sampled_from([MAP_PRIVATE | MAP_ANONYMOUS,
                                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                                                          MAP_ANONYMOUS, 0xFFFF]),
                                         st.one_of(edge, st.just(-1)), numbers)),
    st.tuples(st.just("munmap"), st.tuples(numbers, numbers)),
    st.tuples(st.just("mprotect"), st.tuples(numbers, numbers, st.integers(0, 7))),
    st.tuples(st.just("madvise"), st.tuples(numbers, numbers, st.one_of(st.integers(0, 30),
                                                                         edge))))


@settings(max_examples=150, deadline=None)
@given(st.lists(calls, max_size=12))
def test_direct_handlers_answer_as_the_methods_do(seq):
    k1, fast = _machine()
    k2, slow = _machine()
    replayer = replay.Replayer(k1)
    for name, args in seq:
        handler = replayer._handler(name)
        ev = Event(1, "call", name=name, args=list(args))
        got = _answer(lambda: handler(fast, ev, *args))
        want = _answer(getattr(slow, name), *args)
        assert got == want, (name, args)
        assert k1.proc_read(f"/proc/{fast.pid}/smaps") == k2.proc_read(f"/proc/{slow.pid}/smaps")
