"""Replay of traces and the ``mmsim`` command: results, dumps, --check, --follow,
--json, exit statuses, and real strace -f logs of real programs reproduced exactly."""

import json
import os
import pathlib

import pytest

from mmsim import cli
from mmsim.kernel import Kernel
from mmsim.replay import replay_trace as replay

DATA = pathlib.Path(__file__).parent / "data" / "strace"
W = 0x200000000000


def run(tmp_path, capsys, text, *opts):
    path = tmp_path / "t.strace"
    path.write_text(text)
    status = cli.main(["replay", str(path), *opts])
    out, err = capsys.readouterr()
    return status, out, err


def test_results_are_the_simulators():
    text = (f"mmap({W:#x}, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
            f"mprotect({W + 4096:#x}, 4096, PROT_READ) = 0\n"
            f"munmap({W + 1:#x}, 4096) = 0\n")
    outs = replay(text, Kernel())
    assert [o.result for o in outs] == [W, 0, -22]
    assert outs[0].line().endswith(f"= {W:#x}")
    assert outs[2].line() == f"munmap({W + 1:#x}, 4096) = -1 EINVAL (Invalid argument)"
    assert [o.matches() for o in outs] == [True, True, False]


def test_dump_prints_smaps_and_thp_line(tmp_path, capsys):
    text = (f"mmap({W:#x}, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
            "prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) = 0\n# dump\n")
    status, out, _ = run(tmp_path, capsys, text)
    lines = out.splitlines()
    assert status == 0
    assert lines[2].startswith("# dump pid ")
    assert lines[3].startswith(f"{W:x}-{W + 8192:x} r--p")
    assert lines[-1] == "THP_enabled:\t0"


def test_check_fails_on_a_different_result(tmp_path, capsys):
    good = f"mmap({W:#x}, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = {W:#x}\n"
    assert run(tmp_path, capsys, good, "--check")[0] == 0
    bad = good + f"munmap({W:#x}, 4096) = -1 EINVAL (Invalid argument)\n"
    status, out, err = run(tmp_path, capsys, bad, "--check")
    # as strace prints results: the actual line, then the recorded result
    assert status == 1 and ("t.strace:2: munmap(0x200000000000, 4096) = 0, but the trace "
                            "recorded -1 EINVAL (Invalid argument)") in err
    assert run(tmp_path, capsys, bad)[0] == 0          # without --check: just printed


def test_follow_places_mappings_at_recorded_addresses(tmp_path, capsys):
    text = ("mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n"
            "mremap(0x7f0000000000, 8192, 16384, MREMAP_MAYMOVE) = 0x7f1000000000\n")
    status, out, _ = run(tmp_path, capsys, text, "--check")
    assert status == 1                                   # the simulator picks its own
    status, out, _ = run(tmp_path, capsys, text, "--check", "--follow")
    assert status == 0 and out.splitlines()[1].endswith("= 0x7f1000000000")


def test_json_document(tmp_path, capsys):
    text = (f"mmap({W:#x}, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
            "fork() = 77\n[pid 77] munmap(0, 4096) = 0\n[pid 77] # dump\n")
    status, out, _ = run(tmp_path, capsys, text, "--json")
    doc = json.loads(out)
    ev = doc["events"]
    assert [e["type"] for e in ev] == ["call", "call", "call", "dump"]
    assert ev[1]["result"] == 77 and ev[2]["pid"] == 77
    # smaps parsed into numbers: the VMA, then the vsyscall gate area
    assert ev[3]["smaps"][0]["start"] == W and ev[3]["smaps"][0]["Size"] == 4
    assert ev[3]["smaps"][-1]["name"] == "[vsyscall]" and ev[3]["thp_enabled"] == 1
    assert doc["mismatches"] == 0


def test_fork_children_and_pidfds_use_the_traces_numbers():
    text = ("fork() = 4242\n[pid 4242] pidfd_open(4242, 0) = 9\n"
            "[pid 4242] mctl(9, MCTL_SET_NOHUGEPAGE, 0) = 0\n"
            "[pid 4242] mctl(PIDFD_SELF, MCTL_GET, 0) = 1\n"
            "[pid 4242] exit_group(0) = ?\nwait4(-1, NULL, 0, NULL) = 4242\n")
    outs = replay(text, Kernel())
    assert all(o.matches() for o in outs), [o.line() for o in outs]


@pytest.mark.parametrize("text, message", [
    ("munmap(0x1000)\n", "t.strace:1: munmap() takes 2 arguments, not 1"),
    ("brk(NULL) = 0\nfrob(1)\n", "t.strace:2: unknown call frob()"),
    ("mmap(0, 1, PROT_NOPE, 0, -1, 0)\n", "t.strace:1: unknown constant PROT_NOPE"),
])
def test_bad_input_exits_2_before_running_anything(tmp_path, capsys, text, message):
    status, out, err = run(tmp_path, capsys, text)
    assert status == 2 and out == "" and message in err


def test_missing_file_exits_2(capsys):
    assert cli.main(["replay", "/nonexistent/trace"]) == 2


def test_demo_shows_mctl(capsys):
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    # each dump ends with the vsyscall gate area, which has none
    huge = [ln for ln in out.splitlines() if ln.startswith("AnonHugePages:")]
    assert huge == ["AnonHugePages:      4096 kB"] + ["AnonHugePages:         0 kB"] * 3
    assert out.rstrip().endswith("= -1 EPERM (Operation not permitted)")
    assert cli.main(["demo", "--show-trace"]) == 0
    assert capsys.readouterr().out == cli.DEMO


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["replay", "--help"])
    out = capsys.readouterr().out
    for opt in ("--thp", "--seed", "--check", "--follow", "--json", "--norandmaps",
                "--dump-at-exit", "--before", "--prctl", "--mctl"):
        assert opt in out


# ---------------------------------------------------------------- real logs

MANIFEST = json.loads((DATA / "manifest.json").read_text())


def _host_differs(log):
    for path, size in MANIFEST[log].items():
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return f"{path} differs from the machine the log was recorded on"
    return None


@pytest.mark.parametrize("log", sorted(MANIFEST))
def test_real_log_reproduces_every_recorded_result(log, capsys):
    reason = _host_differs(log)
    if reason:
        pytest.skip(reason)
    status = cli.main(["replay", str(DATA / log), "--norandmaps", "--follow", "--check"])
    err = capsys.readouterr().err
    assert status == 0, err


def test_open_and_openat_map_trace_descriptors():
    here = pathlib.Path(__file__).resolve()
    text = (f'open("{here}", O_RDONLY) = 7\n'
            f'openat(AT_FDCWD, "{here}", O_RDONLY|O_CLOEXEC) = 9\n'
            f"mmap({W:#x}, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED, 7, 0) = {W:#x}\n"
            f"mmap({W + 4096:#x}, 4096, PROT_READ, MAP_SHARED|MAP_FIXED, 9, 0) = {W + 4096:#x}\n"
            "close(7) = 0\nclose(9) = 0\nclose(9) = -1 EBADF (Bad file descriptor)\n"
            f'open("/nonexistent/file", O_RDONLY) = -1 ENOENT (No such file or directory)\n')
    outs = replay(text, Kernel())
    assert all(o.matches() for o in outs), [o.line() for o in outs]


def test_call_outcome_is_the_outcome_the_class_makes():
    """_run_plain's Outcome, built field by field (no class call), has every field of
    Outcome set as Outcome(ev, result, "", "", label) sets it: a field added to Outcome
    and not to _call_outcome fails here."""
    import attrs

    from mmsim.replay import Outcome, _call_outcome
    from mmsim.strace import Event
    ev = Event(3, "call", None, "munmap", [0x1000, 4096], {}, 0, "0x1000, 4096")
    made = _call_outcome(ev, -12, 41)
    want = Outcome(ev, -12, "", "", 41)
    # asdict reads every field (AttributeError for one left unset).
    assert attrs.asdict(made, recurse=False) == attrs.asdict(want, recurse=False)
    assert made == want and made.line() == want.line()
