"""The strace-syntax parser: every syntax form a trace may use, and every kind of bad
input, which must stop with the file, the line and what is wrong."""

import errno

import pytest

from mmsim.strace import Raw, Str, TraceError, parse, parse_line
from mmsim.uapi import (CLONE_CHILD_CLEARTID, CLONE_CHILD_SETTID, MAP_ANONYMOUS,
                        MAP_HUGE_SHIFT, MAP_PRIVATE, PROT_READ, PROT_WRITE, SIGCHLD)


def one(text):
    return parse_line(text, 1, "t", {})


def test_numbers_null_and_constants():
    ev = one("mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
             " = 0x7f7c1e0a5000")
    assert ev.kind == "call" and ev.name == "mmap" and ev.prefix is None
    assert ev.args == [0, 0x2000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0]
    assert ev.result == 0x7f7c1e0a5000


def test_shift_not_and_parentheses_in_constants():
    ev = one("mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|21<<MAP_HUGE_SHIFT, -1, 0)")
    assert ev.args[3] == MAP_PRIVATE | MAP_ANONYMOUS | (21 << MAP_HUGE_SHIFT)
    assert one("mprotect(0x1000, 4096, ~(PROT_WRITE))").args[2] == ~PROT_WRITE
    assert one("mmap(0, 010, 0, 0, -1, 0)").args[1] == 8      # C octal


def test_strings_arrays_structs_and_comments():
    ev = one(r'execve("/bin/\x74rue", ["true", "a\"b"], 0x7ffc /* 30 vars */) = 0')
    assert ev.args == [Str("/bin/true"), [Str("true"), Str('a"b')], 0x7ffc]
    ev = one(r'read(3, "\177ELF\2\1"..., 832) = 832')
    assert ev.args[1] == Str("\x7fELF\x02\x01", truncated=True)
    ev = one("fstat(3, {st_mode=S_IFREG|0644, st_size=22459, ...}) = 0")
    assert ev.args[1] == Raw("{st_mode=S_IFREG|0644, st_size=22459, ...}")
    assert one("access(\"/x\", R_OK) = 0").args[1] == Raw("R_OK")   # ignored call: kept


def test_named_arguments():
    ev = one("clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD,"
             " child_tidptr=0x7f0000) = 12346")
    assert ev.kwargs == {"child_stack": 0,
                         "flags": CLONE_CHILD_CLEARTID | CLONE_CHILD_SETTID | SIGCHLD,
                         "child_tidptr": 0x7f0000}
    assert ev.result == 12346


@pytest.mark.parametrize("text, result", [
    ("munmap(0x1000, 4096) = 0", 0),
    ("munmap(0x1000, 4096)", None),
    ("munmap(0x1000, 4096)                  = -1 EINVAL (Invalid argument)", -errno.EINVAL),
    ("munmap(0x1000, 4096) = -1 ENOMEM", -errno.ENOMEM),
    ("exit_group(0) = ?", "?"),
    ("openat(AT_FDCWD, \"/x\", O_RDONLY) = 3</x>", 3),
    ("munmap(0x1000, 4096) = 0 <0.000012>", 0),
])
def test_results(text, result):
    assert one(text).result == result


def test_prefix_dump_and_strace_lines():
    assert one("[pid 12] munmap(0x1000, 4096) = 0").prefix == 12
    assert one("# dump after the mmap").kind == "dump"
    assert one("# dump").text == ""
    assert one("[pid 7] # dump").prefix == 7
    assert one("dump()").kind == "dump"
    assert one("# any other comment") is None and one("   ") is None
    assert one("+++ exited with 0 +++").kind == "exit"
    assert one("+++ killed by SIGKILL +++").text == "killed by SIGKILL"
    assert one("--- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---").kind == "signal"
    assert one("strace: Process 12346 attached").kind == "note"


def test_unfinished_and_resumed_join():
    events = parse("clone(child_stack=NULL, flags=SIGCHLD) = 11\n"
                   "[pid 10] wait4(-1,  <unfinished ...>\n"
                   "[pid 11] exit_group(0) = ?\n"
                   "[pid 11] +++ exited with 0 +++\n"
                   "[pid 10] <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL)"
                   " = 11\n", "t")
    wait = events[-1]
    assert wait.name == "wait4" and wait.line == 5 and wait.result == 11
    assert wait.args[0] == -1 and wait.args[2:] == [0, 0]
    assert wait.pid is None and wait.prefix == 10    # the initial process, named late


def test_pids_follow_forks():
    events = parse("fork() = 5\n[pid 5] brk(NULL) = 0x1000\n[pid 4] brk(NULL) = 0x2000\n"
                   "brk(NULL) = 0x2000\n")
    assert [e.pid for e in events] == [None, 5, None, None]


@pytest.mark.parametrize("text, message", [
    ("frobnicate(1, 2) = 0", "unknown call frobnicate()"),
    ("mmap(NULL, 4096, PROT_READ|PROT_BOGUS, MAP_PRIVATE, -1, 0)", "unknown constant PROT_BOGUS"),
    ("mmap(NULL, 4096, PROT_READ|, MAP_PRIVATE, -1, 0)", "cannot parse the argument"),
    ("munmap(0x1000, 4096 = 0", "unbalanced brackets"),
    ("execve(\"/x\", [\"a\"}, NULL) = 0", "unbalanced"),
    ("execve(\"/x, NULL, NULL) = 0", "unterminated string"),
    ("munmap(0x1000, 4096) = banana", "cannot parse the result"),
    ("munmap(0x1000, 4096) = -1 ENOTANERRNO (x)", "unknown errno ENOTANERRNO"),
    ("munmap(0x1000, , 4096) = 0", "an empty argument"),
    ("this is not a call", "cannot parse"),
    ("+++ exited with 0", "unterminated +++"),
    ("[pid 3] <... wait4 resumed>, 0, NULL) = 3", "never left unfinished"),
    ("wait4(-1,  <unfinished ...>", "never resumed"),
    ("fork() = 5\n[pid 4] brk(NULL) = 0\n[pid 9] brk(NULL) = 0", "pid 9 was never created"),
    ("fork() = 5\n[pid 5] exit_group(0) = ?\n[pid 5] brk(NULL) = 0", "pid 5 has exited"),
    ("exit_group(0) = ?\nbrk(NULL) = 0", "the initial process has exited"),
])
def test_bad_input_names_file_line_and_problem(text, message):
    with pytest.raises(TraceError) as info:
        parse(text, "scenario.strace")
    err = info.value
    assert err.file == "scenario.strace"
    assert message in err.message
    assert str(err).startswith(f"scenario.strace:{err.line}: ")
    assert err.line == text.count("\n") + 1 or message == "never resumed"


def test_fast_path_parses_like_the_general_parser(monkeypatch):
    from benchmarks.replay import workload
    from mmsim import strace
    text, _ = workload(3000, seed=7)
    text += "brk(NULL) = 0x1000\nmunmap(0x1000, 010)\nexit_group(0) = ?\n"
    fast = parse(text)
    monkeypatch.setattr(strace, "_fast_call", lambda *a: None)
    assert parse(text) == fast


def test_plain_line_path_parses_as_parse_line(monkeypatch):
    """iter_parse hands a line with no prefix, decoration or blank at its ends straight
    to _fast_call: every trace under tests/data, the replay benchmark's and lines made to
    sit at the edges of that shortcut parse to the same events with it turned off."""
    import glob
    import os

    import attrs

    from benchmarks import replay as replay_bench
    from mmsim import strace
    here = os.path.dirname(__file__)
    texts = [replay_bench.workload(300)[0],
             "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n"
             "munmap(0x7f0000000000, 4096) =  0\n"
             "munmap(0x7f0000000000, 4096)  = 0\n"
             "madvise(0x7f0000000000, 4096, MADV_DONTNEED) = -1 ENOMEM (Cannot allocate memory)\n"
             "exit_group(0) = ?\n"]
    for path in sorted(glob.glob(os.path.join(here, "data", "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, errors="replace") as f:
                texts.append(f.read())
    compared = 0
    for text in texts:
        try:
            fast = strace.parse(text)
        except TraceError:
            continue
        monkeypatch.setattr(strace, "_PLAIN_STARTS", frozenset())
        plain = strace.parse(text)
        monkeypatch.undo()
        assert ([attrs.asdict(e, recurse=False) for e in fast]
                == [attrs.asdict(e, recurse=False) for e in plain])
        compared += 1
    assert compared > 100


def test_the_constant_cache_stays_bounded_over_ever_new_addresses():
    """A trace of ever-new addresses keeps the parser's value cache (and so memory)
    bounded, and every value is still read right."""
    from mmsim import strace
    n = strace._VALUES_MAX + 100
    text = "".join(f"munmap({0x100000000 + 4096 * i:#x}, 4096) = 0\n" for i in range(n))
    events = strace.parse(text, "t")
    assert len(strace._VALUES) <= strace._VALUES_MAX
    assert [e.args[0] for e in events[-3:]] == [0x100000000 + 4096 * i
                                               for i in range(n - 3, n)]


def test_the_argument_tail_cache_stays_bounded_over_ever_new_tails():
    """The parser's cache of argument lists' tails (third argument on) stays bounded
    over a trace whose tails are all new, and every value is still read right."""
    from mmsim import strace
    n = strace._VALUES_MAX + 100
    # Each line twice: a tail is kept once every argument in it is known.
    text = "".join(f"mprotect(0x100000000, 4096, {i}) = 0\n" * 2 for i in range(n))
    events = strace.parse(text, "t")
    assert len(strace._TAILS) <= strace._VALUES_MAX
    assert [e.args for e in events[-3:]] == [[0x100000000, 4096, i]
                                             for i in (n - 2, n - 1, n - 1)]
    # A tail seen before is read from the cache, to the same values.
    again = strace.parse(f"mprotect(0x200000000, 8192, {n - 1}) = 0\n", "t")
    assert again[0].args == [0x200000000, 8192, n - 1]
