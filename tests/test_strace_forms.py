"""strace's output forms: timestamps (-t, -tt, -ttt, -r), durations (-T), instruction
pointers (-i), syscall numbers (-n), decorated descriptors (-y, -yy), stack traces (-k),
-X raw and -X verbose, filtered logs (-e trace=memory, --seccomp-bpf), with and
without -f; and strace -c / -C summary tables.

The fixtures in data/strace/forms/ are real logs (record.sh) of the same program under
setarch -R, one per form: each must parse to the events of the plain log."""

import json
import os
import pathlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim import cli
from mmsim.strace import EXECUTED, FORKS, TraceError, parse, read_trace
from test_hostile_traces import replay_bytes as replay_cli

FORMS = pathlib.Path(__file__).parent / "data" / "strace" / "forms"


def load(name):
    path = FORMS / name
    return parse(read_trace(str(path)), str(path))


def normal(events, names=None):
    """What a log says, without what differs between two recordings of one program:
    pids are numbered in order of appearance, and the arguments of calls that are not
    run are left out (their text is what the forms change)."""
    ids = {}

    def who(pid):
        return ids.setdefault(pid, len(ids))

    out = []
    for ev in events:
        if ev.kind == "exit":
            out.append((who(ev.prefix), "exit", ev.text))
        if ev.kind != "call" or (names is not None and ev.name not in names):
            continue
        result = ev.result
        if ev.name in PID_RESULTS and isinstance(result, int) and result > 0:
            result = ("pid", who(result))
        args = kwargs = None
        if ev.name in EXECUTED:
            args, kwargs = ev.args, ev.kwargs
            if ev.name == "execve":
                args = args[:2]          # envp: a stack address
            elif ev.name == "wait4":
                args = [args[0], args[2]]    # the status and rusage pointers
            elif ev.name == "clone":
                kwargs = {k: v for k, v in kwargs.items() if k != "child_tidptr"}
        out.append((who(ev.prefix), ev.name, args, kwargs, result))
    return out


PID_RESULTS = FORKS + ("wait4", "set_tid_address", "getpid", "gettid", "getppid")
TRUE_FORMS = ["t", "tt", "ttt", "r", "rt", "T", "i", "n", "Y", "y", "yy", "xraw", "xverbose"]


@pytest.mark.parametrize("form", TRUE_FORMS)
def test_a_form_parses_to_the_plain_events(form):
    plain = normal(load("true_plain.strace"))
    assert len(plain) > 20
    assert normal(load(f"true_{form}.strace")) == plain


@pytest.mark.parametrize("form, names", [
    ("memory", None), ("seccomp", None), ("k", {"brk", "mprotect", "munmap"})])
def test_a_filtered_form_parses_to_the_plain_events_it_kept(form, names):
    events = load(f"true_{form}.strace")
    kept = names or {ev.name for ev in events if ev.kind == "call"}
    plain = normal(load("true_plain.strace"), kept)
    assert len(plain) > 5
    assert normal(events, kept) == plain


@pytest.mark.parametrize("form, names", [
    ("all", None),
    ("every", None),
    ("tt_k", {"brk", "munmap", "clone", "wait4", "openat"}),
    ("memory", "memory"),
    ("seccomp_r", "memory"),
    ("C", None),
])
def test_f_prefixes_with_forms_parse_to_the_plain_events(form, names):
    events = load(f"fork_{form}.strace")
    if names == "memory":
        names = {ev.name for ev in events if ev.kind == "call"}
    plain = normal(load("fork_plain.strace"), names)
    assert len({p for p, *_ in plain}) == 2 and len(plain) > 10
    # Two processes interleave as they raced in each recording: compare each one's.
    assert sorted(normal(events, names), key=lambda e: e[0]) == sorted(plain, key=lambda e: e[0])


def one(text):
    events = parse(text, "t")
    assert len(events) == 1
    return events[0]


@pytest.mark.parametrize("head", [
    "", "7 ", "[pid 7] ", "12:34:56 ", "12:34:56.123456 ", "1700000000.123456 ",
    "     0.000123 ", "12:34:56 (+     0.000123) ", "[00007f0123456789] ", "[  12] ",
    "7 1700000000.123456 [00007f0123456789] ", "[pid 7] 12:34:56.123456 [  12] ",
    "7      0.000123 [????????????????] ", "7 12:34:56 [  59] [00007ffff7e86ad7] ",
    "[pid 7] 12:34:56 (+     0.000575) [  12] [00007ffff7fe9c47] ", "7<sh> ", "[pid 7<a b>] ",
    "7<strace> 12:34:56.123456 ",
])
def test_each_prefix_combination(head):
    ev = one(f"{head}brk(NULL) = 0x1000")
    assert (ev.name, ev.args, ev.result) == ("brk", [0], 0x1000)
    assert ev.prefix == (7 if re.match(r"(\[pid )?7\b", head) else None)


@pytest.mark.parametrize("text", [
    "7 8 brk(NULL)", "12:34 brk(NULL)", "[zz] brk(NULL)", "1.5e3 brk(NULL)", "> brk(NULL) = 0\n7 x",
])
def test_what_is_no_prefix_is_still_an_error(text):
    with pytest.raises(TraceError) as info:
        parse(text, "t")
    assert str(info.value).startswith("t:")


def test_stack_lines_of_k_belong_to_no_event():
    events = parse("brk(NULL) = 0x1000\n"
                   " > /usr/lib/libc.so.6(brk+0xb) [0x10e0b]\n"
                   " > unexpected_backtracing_error [0x7f0000001234]\n"
                   "brk(0x2000) = 0x2000\n", "t")
    assert [(e.line, e.args) for e in events] == [(1, [0]), (4, [0x2000])]


@pytest.mark.parametrize("decorated, plain", [
    ('openat(AT_FDCWD</home/u>, "/etc/x", O_RDONLY) = 3</etc/x>',
     'openat(AT_FDCWD, "/etc/x", O_RDONLY) = 3'),
    ("mmap(NULL, 5, PROT_READ, MAP_SHARED, 8</tmp/a\\76b\\74c d>, 0) = 0x7f0000000000",
     "mmap(NULL, 5, PROT_READ, MAP_SHARED, 8, 0) = 0x7f0000000000"),
    ('openat(AT_FDCWD</>, "/dev/null", O_RDONLY) = 11</dev/null<char 1:3>>',
     'openat(AT_FDCWD, "/dev/null", O_RDONLY) = 11'),
    ("close(4<TCP:[127.0.0.1:41234->127.0.0.1:80]>) = 0", "close(4) = 0"),
    ("close(5<UNIX-STREAM:[244161->244160]>) = 0 <0.000053>", "close(5) = 0"),
    ("pipe2([6<pipe:[244162]>, 7<pipe:[244162]>], O_CLOEXEC) = 0", "pipe2([6, 7], O_CLOEXEC) = 0"),
    ("close(3<anon_inode:[eventpoll]>) = 0", "close(3) = 0"),
    ("mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|1<<MAP_HUGE_SHIFT, 3</x>, 0) = 0x1000 <0.000010>",
     "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|1<<MAP_HUGE_SHIFT, 3, 0) = 0x1000"),
    ('write(1</dev/pts/0<char 136:0>>, "a<b>c\\n", 6) = 6', 'write(1, "a<b>c\\n", 6) = 6'),
    ("rt_sigsuspend([], 8) = ? ERESTARTNOHAND (To be restarted if no handler) <0.002075>",
     "rt_sigsuspend([], 8) = ? ERESTARTNOHAND (To be restarted if no handler)"),
    ("munmap(0x1000, 4096) = -1 EINVAL (Invalid argument) <0.000004>",
     "munmap(0x1000, 4096) = -1 EINVAL (Invalid argument)"),
])
def test_decorations_and_durations_parse_as_the_plain_line(decorated, plain):
    assert one(decorated) == one(plain)


def test_an_unterminated_decoration_is_a_malformed_line():
    with pytest.raises(TraceError, match="t:1: unterminated descriptor decoration"):
        parse("close(3</etc/x) = 0", "t")


def test_decorated_resumed_and_unfinished_lines_join():
    events = parse("7 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3</x>,  <unfinished ...>\n"
                   "7 <... mmap resumed>0) = 0x7f0000000000</x> <0.000010>\n", "t")
    assert one("mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f0000000000").args == events[0].args


def test_a_decoration_after_a_verbose_comment():
    assert one('openat(-100 /* AT_FDCWD */</home>, "/x", 0 /* O_RDONLY */) = 3</x> <0.00001>') \
        == one('openat(-100 /* AT_FDCWD */, "/x", 0 /* O_RDONLY */) = 3')


def test_a_c_summary_table_is_rejected_as_no_log(tmp_path, capsys):
    status, out, err, path = replay_cli(tmp_path, capsys, (FORMS / "c.strace").read_bytes())
    assert status == 2 and out == ""
    assert err.startswith(f"mmsim: {path}:1: a strace -c summary table, not a log"), err


@pytest.mark.parametrize("table", [
    "syscall              calls    errors\n---------------- --------- ---------\n"
    "read                     1          \n---------------- --------- ---------\n"
    "total                   29         1\n",
    "System call usage summary for 32 bit mode:\n"
    "% time     seconds  usecs/call     calls    errors syscall\n"
    "------ ----------- ----------- --------- --------- ----------------\n",
])
def test_other_summary_tables_are_rejected(table):
    with pytest.raises(TraceError, match="t:1: a strace -c summary table"):
        parse(table, "t")


def test_a_C_log_replays_and_its_table_is_ignored(tmp_path, capsys):
    data = (FORMS / "fork_C.strace").read_bytes()
    assert b"% time" in data and b"total" in data
    status, out, err, _ = replay_cli(tmp_path, capsys, data)
    assert status == 0, err
    calls = [ev for ev in load("fork_C.strace") if ev.kind == "call"]
    assert len(out.splitlines()) == len(calls) and "total" not in out
    # a log line after the table is read as a log line
    with pytest.raises(TraceError, match=r":\d+: unknown call bogus\(\)"):
        parse(data.decode() + "bogus()\n")


def test_a_table_without_its_rule_is_no_table():
    with pytest.raises(TraceError, match="t:2: cannot parse '% time"):
        parse("brk(NULL) = 0x1000\n% time     seconds  usecs/call     calls    errors syscall\n", "t")


def test_a_log_without_forks_names_each_new_pid_a_process():
    events = parse("7 brk(NULL) = 0x1000\n8 brk(NULL) = 0x2000\n8 +++ exited with 0 +++\n"
                   "9 brk(NULL) = 0x3000\n7 brk(NULL) = 0x1000\n", "t")
    assert [e.pid for e in events] == [None, 8, 8, 9, None]
    with pytest.raises(TraceError, match="t:3: pid 8 has exited"):
        parse("7 brk(NULL) = 0x1000\n8 +++ exited with 0 +++\n8 brk(NULL) = 0\n", "t")


@pytest.mark.parametrize("log", ["fork_memory.strace", "true_seccomp.strace", "fork_seccomp_r.strace"])
def test_a_filtered_log_replays(tmp_path, capsys, log):
    data = (FORMS / log).read_bytes()
    status, out, err, _ = replay_cli(tmp_path, capsys, data)
    assert status == 0, err
    calls = [ev for ev in load(log) if ev.kind == "call"]
    assert len(out.splitlines()) == len(calls)
    # Each process' first brk(NULL) sets its own break under --follow: a hidden child
    # run in its parent's address space would answer the parent's.
    status, out, err, path = replay_cli(tmp_path, capsys, data, "--follow", "--check")
    brks = [ev.line for ev in load(log) if ev.kind == "call" and ev.name == "brk"]
    assert len(brks) >= (2 if log.startswith("fork") else 1)
    for line in brks:
        assert f"{path}:{line}: " not in err, err


@pytest.mark.parametrize("data, message", [
    (b"brk(NULL) <" + b" " * 500000 + b"x>\n", "cannot parse the result"),
    (b"brk(3<" + b"<a" * 100000 + b")\n", "unterminated descriptor decoration"),
    (b"close(3<" + b"[" * 100000 + b") = 0\n", "unterminated descriptor decoration"),
    (b'close(3<"\\") = 0\n', "unterminated"),
    (b"brk(NULL) = 0x1000</x\n", "unterminated descriptor decoration"),
    (b"brk(NULL) = 0x1000 <0.1> <0.2>\n", "cannot parse the result"),
    (b"12:34:56.1 [00007f0000000000]\n", "cannot parse"),
    (b"x\n------ ---\n", "cannot parse 'x'"),
    (b"% time\n", "cannot parse '% time'"),
], ids=lambda v: repr(v[:24]) if isinstance(v, bytes) else None)
def test_hostile_forms_are_malformed_lines(tmp_path, capsys, data, message):
    status, out, err, path = replay_cli(tmp_path, capsys, data)
    assert status == 2 and out == "", err
    assert err.startswith(f"mmsim: {path}:1: "), err
    assert message in err, err


SEEDS = [(FORMS / n).read_bytes() for n in
         ("true_tt.strace", "true_yy.strace", "true_k.strace", "true_xverbose.strace",
          "true_i.strace", "fork_seccomp_r.strace", "c.strace")]
SNIPPETS = [b"<", b">", b"<<", b"</x>", b"<pipe:[1]>", b"<TCP:[1->2]>", b" <0.000012>",
            b"<unavailable>", b"[00007f0000001000] ", b"[????????????????] ", b"[  9] ",
            b"12:34:56.123456 ", b"(+ 0.1) ", b"1700000000.1 ", b"\n > /lib/x.so(f+0x1) [0x1]\n",
            b"/* x */", b"\n------ ---\n", b"% time calls syscall\n", b"\\76", b'"', b"\n",
            b"7 ", b"fork() = 9\n", b"+++ exited with 0 +++\n", b"<unfinished ...>"]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()):
            data[at:at] = draw(st.sampled_from(SNIPPETS))
        else:
            data[at:at + draw(st.integers(1, 12))] = draw(st.sampled_from(SNIPPETS))
    return bytes(data)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=mutated())
def test_mutated_form_logs_replay_or_exit_2(tmp_path, capsys, data):
    status, out, err, path = replay_cli(tmp_path, capsys, data)
    assert status in (0, 2), err
    if status == 2:
        assert re.match(rf"mmsim: {re.escape(path)}:\d+: ", err), err


MANIFEST = json.loads((FORMS.parent / "manifest.json").read_text())


@pytest.mark.parametrize("log", [f"true_{f}.strace" for f in ["plain"] + TRUE_FORMS]
                         + [f"fork_{f}.strace" for f in ("plain", "all", "every", "C")])
def test_each_form_reproduces_every_recorded_result(log, capsys):
    # The same programs as ../true.strace and ../sh_fork.strace: the same files opened.
    for path, size in MANIFEST["true.strace" if log.startswith("true") else "sh_fork.strace"].items():
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            pytest.skip(f"{path} differs from the machine the log was recorded on")
    status = cli.main(["replay", str(FORMS / log), "--norandmaps", "--follow", "--check"])
    err = capsys.readouterr().err
    assert status == 0, err


def test_comments_exits_and_signals_keep_their_angle_brackets_as_text():
    events = parse("# a<b comment\n7 # dump x<y\n7 brk(NULL) = 0x1000\n"
                   "7 --- SIGSEGV {si_addr=0x1<2} ---\n7 +++ exited with 0 <x +++\n", "t")
    assert [(e.kind, e.text) for e in events] == [
        ("dump", "x<y"), ("call", "NULL"), ("signal", "SIGSEGV {si_addr=0x1<2}"),
        ("exit", "exited with 0 <x")]
