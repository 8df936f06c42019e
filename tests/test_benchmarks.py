"""Smoke tests of the benchmark harness: it runs, its peers agree, its numbers are sane.

These assert no times; performance lives in BENCHMARKS.md."""

import os

import pytest

from benchmarks import reclaim, store
from benchmarks.peers import PlainListFloor, TreePeer
from benchmarks.workload import HOLE_PAGES, PAGE, Workload


def test_workload_shape():
    w = Workload(500)
    assert len(w.starts) == len(w.ends) == 500
    assert all(s < e for s, e in zip(w.starts, w.ends))
    assert all(e < s for e, s in zip(w.ends, w.starts[1:]))
    assert w.starts[1] - w.ends[0] == HOLE_PAGES * PAGE
    assert sorted(w.order) == list(range(500))


def test_tree_peer_answers_like_a_plain_list():
    w = Workload(2000)
    tree = TreePeer(16)
    tree.build(w.starts, w.ends, w.order)
    tree.t.check()
    floor = PlainListFloor(tree.t.values())
    assert [v.start for v in floor.vs] == w.starts
    hits = sum(any(s <= a < e for s, e in zip(w.starts, w.ends)) for a in w.lookups[:300])
    assert tree.lookup(w.lookups[:300]) == hits
    assert tree.split(w.split_mids) == 2000 + len(w.split_mids)
    tree.t.check()
    ranges = [(w.starts[i], w.ends[i]) for i in w.erase_idx]
    assert tree.erase(ranges) == 2000 + len(w.split_mids) - len(ranges)
    tree.t.check()
    # The only fit for half the hole is the hole itself, at the bottom.
    size = HOLE_PAGES // 2 * PAGE
    assert tree.gap(w.low, [w.top], size) == [w.starts[1] - size]
    assert tree.gap(w.hole_end, [w.top], size) == [None]


def test_walk_pairs_and_memory_run():
    tree_ns, floor_ns, ratio = store.walk_pairs(1000, 1)
    assert tree_ns > 0 and floor_ns > 0 and ratio > 0
    assert store.memory_per_entry(1000, TreePeer()) > 0


def test_full_runner_with_every_peer():
    pytest.importorskip("sortedcontainers", reason="benchmark peers need '.[bench]'")
    pytest.importorskip("intervaltree", reason="benchmark peers need '.[bench]'")
    result = store.run([300], repeats=1, budget=0.2, log=lambda msg: None)
    # run_size() raises if any peer disagrees with VmaTree on any answer.
    assert {row["phase"] for row in result["rows"]} == set(store.PHASES) - {"walk"}
    text = store.table(result)
    assert "| build | 300 |" in text


def test_mm_memory_runs():
    from benchmarks import mm_memory
    result = mm_memory.alternating_mmaps(300)
    assert result["vmas"] == 300 and result["peak_bytes_per_vma"] > 0


def test_fork_benchmark_runs():
    from benchmarks import fork
    assert fork._sim_fork_seconds(50, 1) > 0


@pytest.mark.live
def test_fork_benchmark_runs_on_the_live_kernel():
    from benchmarks import fork
    assert fork._live_fork_seconds(50, 1) > 0


def _fake_cpu_clock(monkeypatch, costs):
    """time.process_time as a counter that each patched Process method advances by its
    cost, so a benchmark's result says which calls it timed and on which clock."""
    from mmsim.task import Process
    clock = [0.0]
    monkeypatch.setattr("time.process_time", lambda: clock[0])
    for name, cost in costs.items():
        real = getattr(Process, name)

        def timed(self, *args, _real=real, _cost=cost, **kwargs):
            clock[0] += _cost
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(Process, name, timed)


def test_fork_benchmark_times_fork_exit_and_wait_in_cpu_time(monkeypatch):
    from benchmarks import fork
    _fake_cpu_clock(monkeypatch, {"fork": 1, "exit": 10, "wait4": 100, "mmap": 1000})
    assert fork._sim_fork_seconds(3, 3) == 111


def test_mctl_walk_benchmark_times_mctl_in_cpu_time(monkeypatch):
    from benchmarks import mctl_walk
    _fake_cpu_clock(monkeypatch, {"mctl": 1, "mmap": 1000})
    assert mctl_walk._sim(3, 3) == (1, 1)


def test_mctl_walk_benchmark_runs():
    from benchmarks import mctl_walk
    first, again = mctl_walk._sim(50, 1)
    assert first > 0 and again > 0


def test_replay_floor_does_the_replays_address_space_work():
    from benchmarks import replay, replay_floor
    text, _ = replay.workload(3000, seed=5)
    assert replay_floor.same_as_mmsim(text)


def test_replay_benchmark_runs_and_agrees_with_the_api():
    from benchmarks import replay
    r = replay.run(lines=500, repeats=1)
    assert r["calls"] == 500 and r["same_layout"]
    assert "calls/s" in replay.table(r)


def test_store_floors_keep_ranges_in_order_and_the_checked_one_refuses_overlap():
    from benchmarks.store_floor import CheckedFloor, Floor, run, table
    w = Workload(300)
    for cls in (Floor, CheckedFloor):
        f = cls()
        for i in w.order:
            f.store(w.starts[i], w.ends[i], i)
        assert f.b[0::2] == w.starts and f.b[1::2] == w.ends and f.v == list(range(300))
        f.erase(w.starts[5], w.ends[5])
        assert len(f) == 299 and w.starts[5] not in f.b
    f = CheckedFloor()
    f.store(10, 20, "a")
    for start, end in ((15, 25), (5, 11), (12, 13)):
        with pytest.raises(NotImplementedError):
            f.store(start, end, "x")
    with pytest.raises(NotImplementedError):
        f.erase(10, 15)
    assert f.b == [10, 20] and f.v == ["a"]
    result = run(200, repeats=1)
    assert set(result) == {"SortedDict", "VmaTree", "floor", "checked floor"}
    assert "checked floor ratio" in table(result, 200)


def test_store_mmap_peers_place_every_mapping_alike():
    from benchmarks import store_mmap
    from benchmarks.peers import ListPeer, SortedDictPeer

    ops = store_mmap.operations(400)
    assert {op for op, _ in ops} == {"map", "unmap"}
    placed = store_mmap.replay(TreePeer(8), ops)
    assert placed == store_mmap.replay(SortedDictPeer(), ops)
    assert placed == store_mmap.replay(ListPeer(), ops)
    # Top-down: the first mappings stack downwards from mmap_base.
    assert placed[0] < store_mmap.MMAP_BASE and placed[1] < placed[0]
    rows = store_mmap.run(sizes=(300,), repeats=1, tree_only_sizes=(500,))
    assert [r["n"] for r in rows] == [300, 500]
    assert "VmaTree / SortedDict" in store_mmap.table(rows)


def test_kernel_benchmark_quick_prints_every_goal_row(capsys):
    from benchmarks import __main__ as bench_main
    from benchmarks import kernel
    if kernel.find_compiler() is None:
        pytest.skip("no C compiler for the live side's helper")
    assert bench_main.main(["kernel", "--quick", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| work")]
    works = ["write-fault touch", "fork, per resident page", "exit teardown, per page",
             "fork, per VMA", "mctl SET walk", "/proc/PID/smaps, per VMA", "replay of a mixed",
             "fork + exec + exit + wait", "Python memory per resident base page",
             "64 GiB private memory"]
    assert len(rows) == len(works)
    for work, line in zip(works, rows):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 6 and cells[0].startswith(work) and cells[5] in ("yes", "no")
        sim = float(cells[1].split()[0].replace(",", ""))
        # The per-VMA rows are slopes between 1 and N VMAs: at quick sizes noise may
        # push them below zero, so only their sign is left unchecked.
        slope = work in ("fork, per VMA", "mctl SET walk")
        assert slope or sim > 0
        if work != "64 GiB private memory":
            live = float(cells[2].split()[0].replace(",", ""))
            assert slope or live > 0
            assert cells[3].endswith("x")


def test_reclaim_benchmark_reclaims_what_the_limit_leaves_out():
    rows, _ = reclaim.run(8 << 20, 2 << 20, live=False)
    (sim,) = rows
    assert sim["reclaimed"] >= (6 << 20) // 4096 - 64
    assert sim["cached_at_end"] <= (2 << 20) // 4096
    assert "mmsim" in reclaim.table(rows, 8 << 20, 2 << 20)


@pytest.mark.live
def test_reclaim_benchmark_runs_on_the_live_kernel():
    if reclaim.live_available():
        pytest.skip(reclaim.live_available())
    row = reclaim.live_run(64 << 20, 16 << 20)
    assert row["reclaimed"] > 0 and row["cached_at_end"] <= (16 << 20) // 4096


def test_sweep_benchmark_runs_every_cell_on_one_and_two_workers():
    pytest.importorskip("dask.distributed")
    from benchmarks import sweep as sweep_bench
    spec = os.path.join(os.path.dirname(sweep_bench.DEFAULT_SPEC), "sweep_thp_bloat.toml")
    result = sweep_bench.run(spec)
    assert sorted(result) == [1, 2] and all(cells == 12 for cells, _, _ in result.values())
    assert "| 2 | 12 |" in sweep_bench.table(result, spec)
