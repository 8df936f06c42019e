"""The memory-pressure scenarios of mmsim.live.pressure (docs/pressure.md): the scenario
data is plain and from the documented vocabulary, and, on the live kernel, the runner's
structural results hold (no refaults without pressure, the cache within the limit and
refaults under it, the OOM kill by SIGKILL) and it removes its cgroup and files."""

import dataclasses
import json
import os
import signal

import pytest

from mmsim.live import pressure
from mmsim.live.pressure import (MiB, PAGE, SCENARIOS, VOCABULARY, Scenario, check_scenario,
                                 run_live, spread, within)

LIVE_OK, LIVE_WHY = pressure.pressure_available()
live = pytest.mark.live


# ---------------------------------------------------------------- the data alone

@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_step_is_from_the_vocabulary(name):
    sc = SCENARIOS[name]
    sizes = dict(sc.files)
    for step in sc.steps:
        assert step[0] in VOCABULARY and len(step) == 1 + len(VOCABULARY[step[0]]), step
        fields = dict(zip(VOCABULARY[step[0]], step[1:]))
        if "file" in fields:
            assert fields["file"] in sizes
        if "length" in fields:
            assert fields["offset"] + fields["length"] <= sizes[fields["file"]]
    assert sc.steps[-1] == ("exit",)
    assert all(size % PAGE == 0 for _, size in sc.files)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_are_plain_data(name):
    # A simulator runner needs nothing of the live machinery: the scenario survives JSON.
    sc = SCENARIOS[name]
    back = json.loads(json.dumps(dataclasses.asdict(sc)))
    again = Scenario(back["name"], back["limit"], tuple(tuple(f) for f in back["files"]),
                     tuple(tuple(s) for s in back["steps"]), back["about"])
    assert again == sc


def test_the_issue_s_scenarios_are_there():
    kinds = {name: {step[0] for step in sc.steps} for name, sc in SCENARIOS.items()}
    assert SCENARIOS["control"].limit is None
    assert {"read", "stream"} <= kinds["read_pressure"]
    assert {"mmap_read", "stream"} <= kinds["mmap_pressure"]
    assert {"anon", "read"} <= kinds["anon_beside_cache"]
    oom = SCENARIOS["anon_oom"]
    assert sum(s[1] for s in oom.steps if s[0] == "anon") > oom.limit
    assert len(SCENARIOS["short_readers"].processes()) >= 3


def test_processes_split_at_each_exit():
    sc = Scenario("x", None, (("f", PAGE),),
                  (("read", "f", 0, PAGE, PAGE), ("exit",), ("fadvise_dontneed", "f"),
                   ("exit",)))
    assert [[i for i, _ in p] for p in sc.processes()] == [[0, 1], [2, 3]]


@pytest.mark.parametrize("steps", [
    (("read", "f", 0, PAGE, PAGE),),                          # no exit at the end
    (("write", "f", 0, PAGE, PAGE), ("exit",)),               # not in the vocabulary
    (("read", "f", 0, PAGE), ("exit",)),                      # a field missing
    (("read", "g", 0, PAGE, PAGE), ("exit",)),                # an unknown file
    (("read", "f", PAGE, PAGE, PAGE), ("exit",)),             # past the end of the file
    (("mmap_read", "f", 1, PAGE, False), ("exit",)),          # an unaligned offset
    (("mmap_read", "f", 0, PAGE, 1), ("exit",)),              # keep is not a bool
    (("anon", 100), ("exit",)),                               # not whole pages
    (("stream", "f", 0), ("exit",)),                          # an empty buffer
])
def test_check_scenario_rejects(steps):
    with pytest.raises(ValueError):
        check_scenario(Scenario("bad", None, (("f", PAGE),), steps))


def test_within_and_spread():
    runs = [{"records": [{"index": 0, "m": {"refault": v}}], "total": {"refault": v}}
            for v in (100, 120, 110)]
    sp = spread(runs)
    assert sp[0]["refault"] == (100, 110, 120) == sp["total"]["refault"]
    rel, slack = pressure.TOLERANCE["refault"]
    assert within("refault", 100, 120, 120 * (1 + rel) + slack)
    assert not within("refault", 100, 120, 120 * (1 + rel) + slack + 1)
    assert not within("refault", 100, 120, 0)       # zero against a non-zero spread
    assert within("refault", 0, 0, 0)
    assert not within("refault", 0, 0, 1)          # an event where live had none
    assert within("cache", 0, 0, 10)               # a size: the slack applies
    # /proc/vmstat's counters are host-wide: a few events elsewhere still count as zero
    assert within("activate", 0, 0, pressure.OUTSIDE_SLACK)
    assert not within("activate", 0, 0, pressure.OUTSIDE_SLACK + 1)
    assert within("cached:ws", 10, 10, 10)


def test_every_metric_has_a_tolerance():
    snap = {"stat": {}, "usage": 0, "kmem": 0, "failcnt": 0, "oom_kill": 0,
            "vm": dict.fromkeys(pressure.VMSTAT, 0), "files": {"ws": [1, 2, 3]}}
    for metric in pressure.metrics(snap, snap):
        assert within(metric, 0, 0, 0), metric


def _snap(failcnt, cached):
    return {"failcnt": failcnt, "files": {"f": [cached, 0, 0]},
            "stat": {"workingset_refault_file": 0}, "vm": {"workingset_refault_file": 0}}


def test_pages_lost_below_the_limit_disturb_a_run():
    sc = Scenario("x", None, (("f", 8 * PAGE),), (("fadvise_dontneed", "f"), ("exit",)))
    start = _snap(0, 8)
    lost = [{"index": 0, "op": ["read"], "after": _snap(0, 5)}]
    reclaimed = [{"index": 0, "op": ["read"], "after": _snap(3, 5)}]
    advised = [{"index": 0, "op": ["fadvise_dontneed", "f"], "after": _snap(0, 0)}]
    assert pressure._disturbances(sc, start, lost, lost[-1]["after"])
    assert not pressure._disturbances(sc, start, reclaimed, reclaimed[-1]["after"])
    assert not pressure._disturbances(sc, start, advised, advised[-1]["after"])
    outside = dict(lost[-1]["after"], vm={"workingset_refault_file": 1000})
    assert any("outside" in w for w in pressure._disturbances(sc, start, [], outside))


# ---------------------------------------------------------------- the live kernel

def _leftovers(name):
    prefix = f"mmsim-{name}-{os.getpid()}-"
    return [d for d in os.listdir(pressure.CGROUP_ROOT) if d.startswith(prefix)]


@pytest.fixture
def workdir(tmp_path):
    if not LIVE_OK:
        pytest.skip(f"cannot run pressure scenarios live: {LIVE_WHY}")
    if pressure._fstype(str(tmp_path)) in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is not disk-backed")
    return str(tmp_path)


LIMIT = 32 * MiB
SMALL = {
    "control": Scenario("t_control", None, (("ws", 8 * MiB),),
                        (("read", "ws", 0, 8 * MiB, 65536), ("read", "ws", 0, 8 * MiB, 65536),
                         ("mmap_read", "ws", 0, 8 * MiB, False), ("exit",))),
    "pressure": Scenario("t_pressure", LIMIT, (("ws", 16 * MiB), ("big", 48 * MiB)),
                         (("read", "ws", 0, 16 * MiB, 65536), ("stream", "big", 65536),
                          ("mmap_read", "ws", 0, 16 * MiB, False), ("exit",))),
    "oom": Scenario("t_oom", LIMIT, (("ws", 4 * MiB),),
                    (("read", "ws", 0, 4 * MiB, 65536), ("anon", 48 * MiB), ("exit",))),
}


@live
def test_control_keeps_everything_cached_without_refaults(workdir):
    sc = SMALL["control"]
    [run] = run_live(sc, repeats=1, retries=2, workdir=workdir)
    pages = 8 * MiB // PAGE
    assert run["killed"] == 0 and not run["disturbed"], run["disturbed"]
    assert run["total"]["refault"] == 0 and run["total"]["failcnt"] == 0
    first, second, mapped, _ = (r["m"] for r in run["records"])
    assert first["cached:ws"] == second["cached:ws"] == pages
    # A second read(2) of every page moves it to the active list (a few may still sit
    # in a per-CPU LRU batch when memory.stat is read).
    assert first["active_file"] == 0 and second["active_file"] > pages - 64
    assert mapped["pgmajfault"] == 0        # all cached: the faults are minor
    assert _leftovers(sc.name) == [] and os.listdir(workdir) == []


@live
def test_pressure_keeps_the_cache_within_the_limit_and_refaults(workdir):
    sc = SMALL["pressure"]
    [run] = run_live(sc, repeats=1, retries=2, workdir=workdir)
    assert run["killed"] == 0
    for rec in run["records"]:
        assert rec["after"]["stat"]["cache"] <= LIMIT
        assert rec["after"]["usage"] <= LIMIT
    read, stream, mapped, _ = (r["m"] for r in run["records"])
    assert stream["failcnt"] > 0 and stream["shadows:ws"] > 0
    assert stream["cached:ws"] + stream["cached:big"] == stream["cache"]
    assert mapped["refault"] > 0 and mapped["pgmajfault"] > 0
    assert run["total"]["refault"] >= mapped["refault"]
    assert _leftovers(sc.name) == [] and os.listdir(workdir) == []


@live
def test_anon_overrun_is_oom_killed(workdir):
    sc = SMALL["oom"]
    [run] = run_live(sc, repeats=1, retries=2, workdir=workdir)
    assert run["killed"] == signal.SIGKILL
    read, anon = run["records"]          # the exit step never ran
    assert anon["killed"] == signal.SIGKILL and anon["op"][0] == "anon"
    assert anon["after"]["oom_kill"] == 1 and anon["m"]["failcnt"] > 0
    assert read["m"]["oom_kill"] == 0
    assert anon["m"]["rss"] == 0         # the killed process' memory is gone
    assert _leftovers(sc.name) == [] and os.listdir(workdir) == []


@live
def test_a_failing_runner_still_removes_what_it_made(workdir, monkeypatch):
    sc = SMALL["control"]
    calls = []

    def failing(prev, cur):
        calls.append(1)
        if len(calls) == 2:           # after the first step, with the process alive
            raise RuntimeError("injected")
        return real(prev, cur)

    real = pressure.metrics
    monkeypatch.setattr(pressure, "metrics", failing)
    with pytest.raises(RuntimeError, match="injected"):
        run_live(sc, repeats=1, retries=0, workdir=workdir)
    assert _leftovers(sc.name) == [] and os.listdir(workdir) == []


@live
def test_a_failing_step_is_reported_and_cleaned_up(workdir, monkeypatch):
    sc = SMALL["control"]
    real = pressure._do_step

    def failing(step, *args):
        # Runs in the forked scenario process, which inherits the patch.
        if step[0] == "mmap_read":
            raise OSError(12, "injected")
        return real(step, *args)

    monkeypatch.setattr(pressure, "_do_step", failing)
    with pytest.raises(RuntimeError, match=r"(?s)step 2 .*injected"):
        run_live(sc, repeats=1, retries=0, workdir=workdir)
    assert _leftovers(sc.name) == [] and os.listdir(workdir) == []
