"""``mmsim diff``: the scenarios in tests/data/diff run in the simulator and on the live
kernel (one real helper process per trace pid) with no difference, and a difference,
when there is one, is reported."""

import pathlib

import pytest

from mmsim import cli
from mmsim.live import diff_trace

SCENARIOS = sorted((pathlib.Path(__file__).parent / "data" / "diff").glob("*.strace"))


def test_there_are_at_least_ten_scenarios():
    assert len(SCENARIOS) >= 10


@pytest.mark.live
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_has_no_difference(path, capsys):
    status = cli.main(["diff", str(path)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.endswith("no difference from the live kernel\n")


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_results_are_the_recorded_ones(path):
    assert cli.main(["replay", str(path), "--check"]) == 0


W = 0x200000000000
MAP = f"mmap({W:#x}, 0x4000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE, -1, 0)\n"


@pytest.mark.live
def test_a_vma_difference_is_reported():
    # mctl has no live counterpart: the simulator's VMAs get nh, the live ones do not.
    diffs, skipped = diff_trace(MAP + "mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, 0) = 0\n# dump\n", "t")
    assert skipped == ["t:2: mctl() not comparable"]
    assert diffs[0].startswith("t:3 dump pid ") and diffs[0].endswith("the VMAs in the window differ")
    assert any(line.startswith("  - simulator") and " nh]" in line for line in diffs)
    assert any(line.startswith("  + live") and " nh]" not in line for line in diffs)


@pytest.mark.live
def test_a_result_difference_is_reported(monkeypatch):
    from mmsim.task import Process

    def broken(self, addr, length):
        raise OSError(22, "injected")
    monkeypatch.setattr(Process, "munmap", broken)
    diffs, _ = diff_trace(MAP + f"munmap({W:#x}, 4096) = 0\n", "t")
    assert diffs[0] == (f"t:2: munmap({W:#x}, 4096) = -1 EINVAL (Invalid argument) "
                        "but the live kernel returned 0")


@pytest.mark.parametrize("line", [
    "close(0xffffffffffffffff)",
    "pidfd_open(0xffffffffffffffff, 0xffffffffffffffff)",
    "setresuid(-1, -1, 0xffffffffffffffff)",
    "unshare(0xffffffffffffffff)",
    "process_madvise(0xffffffffffffffff, [{iov_base=0xffffffffffffffff, "
    "iov_len=0xffffffffffffffff}], 1, 0xffffffffffffffff, 0xffffffffffffffff)",
])
def test_a_value_beyond_an_int_does_not_kill_a_helper(line):
    # The helpers pass every argument as a full register, as the kernel receives it:
    # os.close(2**64 - 1) raised OverflowError and the helper went away.
    assert diff_trace(line + "\n", "t") == ([], [])


@pytest.mark.parametrize("line", [
    'open("/etc/hostname", 0xffffffffffffffff)',
    "setuid(0xffffffffffffffff)",
    "wait4(0xffffffffffffffff, NULL, 0xffffffffffffffff, NULL)",
])
def test_the_live_side_answers_values_beyond_an_int(line, tmp_path, capsys):
    # Whatever mmsim answers, the live side answers too: a difference, never exit 3.
    path = tmp_path / "t.strace"
    path.write_text(line + "\n")
    assert cli.main(["diff", str(path)]) in (0, 1)
    assert "internal error" not in capsys.readouterr().err
