"""A bug in mmsim is never reported as kernel behaviour: an exception from inside the
simulator (not an OSError) stops ``replay``, ``diff`` and ``conform`` with exit status 3
and ``mmsim: internal error ...``, and ``--debug`` prints the traceback."""

import pytest

from mmsim import cli, fastpath, live, mman
from mmsim.kernel import Kernel
from mmsim.replay import Replayer
from mmsim.strace import parse

W = 0x200000000000
TRACE = (f"mmap({W:#x}, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)"
         f" = {W:#x}\n"
         f"mprotect({W:#x}, 4096, PROT_READ) = 0\n")


class PlantedBug(TypeError):
    """The kind of exception Replayer.call used to turn into -EFAULT."""


@pytest.fixture
def planted(monkeypatch):
    def broken(*args, **kwargs):
        raise PlantedBug("planted in mprotect")
    monkeypatch.setattr(mman, "mprotect", broken)
    # The fused fast path runs first for the commonest mprotect calls: planted there too.
    monkeypatch.setattr(fastpath, "mprotect", broken)


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "t.strace"
    path.write_text(TRACE)
    return str(path)


def test_replayer_lets_the_bug_through(planted):
    with pytest.raises(PlantedBug):
        Replayer(Kernel()).run(parse(TRACE))


def test_replay_exits_3(planted, trace, capsys):
    assert cli.main(["replay", trace]) == 3
    err = capsys.readouterr().err
    assert err.startswith("mmsim: internal error")
    assert "planted in mprotect" in err and "Traceback" not in err


def test_debug_prints_the_traceback(planted, trace, capsys):
    assert cli.main(["replay", "--debug", trace]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "PlantedBug" in err
    assert cli.main(["--debug", "replay", trace]) == 3
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_without_the_bug_the_same_trace_replays(trace, capsys):
    assert cli.main(["replay", "--check", trace]) == 0


OK, WHY = live.available()
needs_live = pytest.mark.skipif(not OK, reason=WHY or "live kernel available")


@needs_live
def test_diff_exits_3(planted, trace, capsys):
    assert cli.main(["diff", trace]) == 3
    assert capsys.readouterr().err.startswith("mmsim: internal error")


@needs_live
def test_conform_exits_3(planted, tmp_path, capsys):
    out = tmp_path / "d.strace"
    status = cli.main(["conform", "--examples", "3", "--seed", "1", "--calls", "mmap",
                       "mprotect", "--out", str(out)])
    assert status == 3
    err = capsys.readouterr().err
    assert "mmsim: internal error" in err and "planted in mprotect" in err
    assert not out.exists()


# What used to be caught as an "argument of the wrong shape" is now decided explicitly:
# a malformed trace before anything runs, or the kernel's EFAULT for a pointer strace
# could not read (printed as a number).

@pytest.mark.parametrize("text, message", [
    ('mmap("x", 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)', "argument 1 of mmap()"),
    ("munmap([1], 4096)", "argument 1 of munmap() must be a number"),
    ("mprotect(0x1000, 4096, {a=1})", "argument 3 of mprotect()"),
    ('clone(child_stack=NULL, flags="x") = 5', "flags of clone() must be a number"),
    ("prctl(PR_SET_MM, PR_SET_MM_MAP, {start_code=0x1000, bogus=1}, 104)",
     "struct prctl_mm_map has no field 'bogus'"),
    ("prctl(PR_SET_MM, PR_SET_MM_MAP, {start_code=PROT_NOPE}, 104)", "unknown constant"),
])
def test_a_misplaced_argument_is_a_malformed_trace(tmp_path, capsys, text, message):
    path = tmp_path / "t.strace"
    path.write_text("brk(NULL)\n" + text + "\n")
    assert cli.main(["replay", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"mmsim: {path}:2: ") and message in err


@pytest.mark.parametrize("text", [
    "open(0x7ffc0000, O_RDONLY) = -1 EFAULT (Bad address)",
    "openat(AT_FDCWD, NULL, O_RDONLY) = -1 EFAULT (Bad address)",
    "execve(NULL, NULL, NULL) = -1 EFAULT (Bad address)",
    'execve("/usr/bin/true", 0x10, NULL) = -1 EFAULT (Bad address)',
    'execve("/usr/bin/true", ["true", 0x10], NULL) = -1 EFAULT (Bad address)',
])
def test_an_unreadable_pointer_is_efault(text):
    out, = Replayer(Kernel()).run(parse(text))
    assert out.matches(), out.line()


def test_a_cut_argv_execs_with_the_strings_shown():
    out, = Replayer(Kernel()).run(parse('execve("/usr/bin/true", ["true", "a", ...], NULL) = 0'))
    assert out.result == 0
