"""Traces that cannot break the replayer: whatever the bytes, ``mmsim replay`` replays
them or stops with exit status 2 and ``FILE:LINE: message``, quickly and without a
traceback; and a property test mutating valid traces checks the same."""

import pathlib
import re
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim import cli
from mmsim.strace import TraceError, parse, read_trace

W = 0x200000000000
MAP = f"mmap({W:#x}, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)"


def replay_bytes(tmp_path, capsys, data, *opts):
    path = tmp_path / "t.strace"
    path.write_bytes(data)
    status = cli.main(["replay", str(path), *opts])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    return status, out, err, str(path)


def bad(tmp_path, capsys, data, line, message):
    status, out, err, path = replay_bytes(tmp_path, capsys, data)
    assert status == 2 and out == "", (status, err)
    assert err.startswith(f"mmsim: {path}:{line}: "), err
    assert message in err, err


@pytest.mark.parametrize("data, line, message", [
    # non-UTF-8 bytes: decoded with replacement, then judged like any other text
    (b"brk(NULL)\nmunmap(0x1000\xff\xfe, 4096)\n", 2, "cannot parse the argument"),
    # 08 is no C number; non-ASCII digits are no digits at all
    (b"munmap(08, 4096)\n", 1, "cannot parse the argument '08'"),
    (b"munmap(0x1000, 4096) = 08\n", 1, "cannot parse the result"),
    ("munmap(0x1000, \u0664\u0660\u0669\u0666)\n".encode(), 1, "cannot parse the argument"),
    ("[pid \u0661\u0662] brk(NULL)\n".encode(), 1, "cannot parse"),
    ("munmap(0x1000, 4096) = \u0660\n".encode(), 1, "cannot parse the result"),
    # bad string escapes
    (b'open("\\x", O_RDONLY)\n', 1, "bad escape"),
    (b'open("\\xZZ", O_RDONLY)\n', 1, "bad escape"),
    (b'open("\\9", O_RDONLY)\n', 1, "bad escape"),
    (b'open("ab"cd, O_RDONLY)\n', 1, "after the string"),
    # deeply nested brackets: a limit, not Python's recursion limit
    (b"execve(\"/x\", " + b"[" * 100000 + b"]" * 100000 + b", NULL)\n", 1, "nested too deeply"),
    (b"munmap(0x1000, " + b"(" * 100000 + b"1" + b")" * 100000 + b")\n", 1, "nested too deeply"),
    (b"munmap(0x1000, " + b"~" * 100001 + b"1)\n", 1, "nested too deeply"),
    # absurd shifts and numbers: refused before any big number is built
    (b"munmap(0x1000, 1<<99999999999)\n", 1, "shift"),
    (b"munmap(0x1000, 1<<63<<63<<63)\n", 1, "out of range"),
    (b"munmap(0x1000, " + b"9" * 5000 + b")\n", 1, "out of range"),
    (b"munmap(0x1000, 0x" + b"f" * 100000 + b")\n", 1, "out of range"),
    (b"munmap(0x1000, 4096) = " + b"9" * 5000 + b"\n", 1, "out of range"),
    # unknown names inside structs
    (b"process_madvise(3, [{iov_bose=0x1000, iov_len=4096}], 1, MADV_COLD, 0)\n", 1,
     "struct iovec"),
    (b"prctl(PR_SET_MM, PR_SET_MM_MAP, {start_code=1, brk=FOO}, 104)\n", 1, "unknown constant"),
    # an unterminated comment inside an array
    (b"execve(\"/x\", [\"a\" /* b], NULL)\n", 1, "unterminated comment"),
], ids=lambda v: repr(v[:24]) if isinstance(v, bytes) else None)
def test_hostile_line_is_a_malformed_trace(tmp_path, capsys, data, line, message):
    bad(tmp_path, capsys, data, line, message)


def test_a_form_feed_in_a_comment_is_one_line(tmp_path, capsys):
    # str.splitlines() splits at \f, \v, \x1c..\x1e, \x85, \u2028, \u2029: lines are
    # cut at \n only, so line numbers are an editor's and a comment stays whole.
    text = (f"{MAP} = {W:#x}\nmunmap({W:#x}, /* a\fb\x1cc\u2028d */ 4096) = 0\n"
            "munmap(0x1001, 1) = 0\n")
    status, out, err, path = replay_bytes(tmp_path, capsys, text.encode(), "--check")
    assert status == 1 and f"{path}:3: munmap(0x1001, 1) = -1 EINVAL" in err, err
    assert "setarch" not in err     # an unaligned address is no exec-layout mismatch


def test_non_utf8_in_comments_and_strings_replays(tmp_path, capsys):
    # A call that is not run keeps what it cannot read as written (a huge number too).
    data = (b"# caf\xe9 \xff\n" + MAP.encode() + b"\n"
            b'read(3, "\xff\xfe\\377", ' + b"9" * 5000 + b") = 3\n")
    status, out, err, _ = replay_bytes(tmp_path, capsys, data)
    assert status == 0 and out.count("\n") == 2


def test_a_path_with_a_nul_is_cut_there_as_the_kernel_reads_it(tmp_path, capsys):
    here = pathlib.Path(__file__).resolve()
    text = f'open("{here}\\0junk", O_RDONLY) = 3\nopenat(AT_FDCWD, "\\0", O_RDONLY) = -1 ENOENT (x)\n'
    status, out, err, _ = replay_bytes(tmp_path, capsys, text.encode(), "--check")
    assert status == 0, err


@pytest.mark.parametrize("path", ["/dev/zero", "DIR"])
def test_dev_zero_or_a_directory_as_the_trace(tmp_path, capsys, path):
    path = str(tmp_path) if path == "DIR" else path
    status = cli.main(["replay", path])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and "internal error" not in err
    assert err.startswith(f"mmsim: {path}"), err


def test_dev_zero_stops_at_the_line_limit():
    with pytest.raises(TraceError, match="longer than"):
        read_trace("/dev/zero")


def test_parse_keeps_the_line_numbers_of_the_file():
    events = parse("brk(NULL)\n\fbrk(NULL)\r\n\x85\nbrk(NULL)\n")
    assert [e.line for e in events] == [1, 2, 4]


# ---------------------------------------------------------------- mutated traces

DATA = pathlib.Path(__file__).parent / "data"
SEEDS = [p.read_bytes() for p in sorted((DATA / "diff").glob("*.strace"))] + [cli.DEMO.encode()]
SNIPPETS = [b"(", b")", b"[", b"]", b"{", b"}", b'"', b"\\", b"\\x", b"/*", b"*/", b",", b"|",
            b"<<", b"~", b"=", b"-1", b"08", b"0x", b"9" * 30, b"1<<99999999999", b"\n",
            b"\f", b"\x00", b"\xff", "\u0664".encode(), b"<unfinished ...>", b"resumed>",
            b"[pid 7] ", b"+++", b"---", b"# dump", b"NULL", b"...", b"MAP_FIXED",
            b"fork() = 77\n", b"exit_group(0) = ?\n", b"PR_SET_MM_MAP", b"iov_base=", b"?"]


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "byte", "lines"]))
        if kind == "insert":
            data[at:at] = draw(st.sampled_from(SNIPPETS)) * draw(st.integers(1, 3))
        elif kind == "replace":
            end = min(len(data), at + draw(st.integers(1, 8)))
            data[at:end] = draw(st.sampled_from(SNIPPETS))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 40))]
        elif kind == "byte":
            data[at:at + 1] = bytes([draw(st.integers(0, 255))])
        else:
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


# No deadline on a time: a replay here takes milliseconds, and one that hangs fails the
# run on its own; what this checks is the answer's kind.
@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=mutated(), check=st.booleans())
def test_mutated_traces_replay_or_exit_2(tmp_path, capsys, data, check):
    opts = ["--check"] if check else []
    status, out, err, path = replay_bytes(tmp_path, capsys, data, *opts)
    assert status in (0, 1, 2), err
    if status == 2:
        assert re.match(rf"mmsim: {re.escape(path)}:\d+: ", err), err


@pytest.mark.parametrize("text", [
    "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0xfffffffffffff000",
    "mmap(NULL, 0xffffffffffff0000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x1000",
    "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffffffff000",
])
def test_follow_ignores_a_recorded_address_past_task_size(tmp_path, capsys, text):
    status, out, err, _ = replay_bytes(tmp_path, capsys, text.encode(), "--follow")
    assert status == 0
    addr = out.split(" = ")[-1].strip()
    assert addr.startswith("-1 ") or int(addr, 16) < 1 << 47


def test_standard_input_is_read_as_a_file_is():
    import os
    import subprocess
    root = pathlib.Path(__file__).parent.parent
    run = subprocess.run([sys.executable, "-m", "mmsim.cli", "replay", "-"],
                         input=b"# \xff\nbrk(NULL)\nmunmap(08, 1)\n", capture_output=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert run.returncode == 2 and run.stdout == b""
    assert run.stderr == b"mmsim: -:3: cannot parse the argument '08'\n"
