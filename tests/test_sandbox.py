"""The research sandbox: samples and recordings (mmsim.metrics), workloads on the
simulated clock (mmsim.workloads), studies, plots and Dask sweeps."""

import os

import pytest
from hypothesis import given, settings, strategies as st

import mmsim
from mmsim import metrics
from mmsim.procfs import parse_smaps
from mmsim.uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from mmsim.workloads import start
from mmsim.workloads.anon import dense_toucher, sparse_toucher, working_set
from mmsim.workloads.files import file_reader, zipf_cdf
from mmsim.workloads.processes import POLICIES, apply_policy, launcher, storm

MiB = 1 << 20
ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE


# ------------------------------------------------------------------ samples


def test_sample_agrees_with_the_files_it_reads():
    k = mmsim.Kernel(thp="always")
    k.mkdir("/sys/fs/cgroup/box")
    proc = k.spawn(cgroup="box")
    addr = proc.mmap(0, 8 * MiB, RW, ANON)
    proc.touch(addr, 8 * MiB, True)
    s = k.sample()
    assert s == metrics.sample(k)
    assert set(s) == {"time", "vmstat", "meminfo", "cgroups", "processes"}
    assert s["meminfo"]["MemFree"] == int(
        [ln for ln in k.proc_read("/proc/meminfo").splitlines()
         if ln.startswith("MemFree:")][0].split()[1])
    assert s["vmstat"]["nr_anon_pages"] == 2048
    box = s["cgroups"]["box"]
    assert box["current"] == int(k.proc_read("/sys/fs/cgroup/box/memory.current"))
    assert box["anon"] == 8 * MiB and box["max"] is None
    p = s["processes"][proc.pid]
    # The mapping is not 2 MiB aligned everywhere: the huge pages are what fits.
    smaps = k.proc_read(f"/proc/{proc.pid}/smaps")
    huge = sum(int(ln.split()[1]) for ln in smaps.splitlines()
               if ln.startswith("AnonHugePages:"))
    assert p["rss_kb"] == 8192 and p["anon_huge_kb"] == huge > 0
    assert p["thp_coverage"] == huge / 8192
    assert p["tlb_entries"] == huge // 2048 + (8192 - huge) // 4
    assert box["thp_coverage"] == huge / 8192
    assert p["cgroup"] == "box"


def test_sample_of_a_process_without_anonymous_memory_has_zero_coverage():
    k = mmsim.Kernel()
    proc = k.spawn()
    assert metrics.sample(k)["processes"][proc.pid]["thp_coverage"] == 0.0


def test_record_samples_at_every_multiple_of_its_period():
    k = mmsim.Kernel()
    rec = metrics.record(k, every=1.0)
    k.advance(2.5)
    k.advance(2.5)
    assert [s["time"] for s in rec.samples] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    rec.stop()
    k.advance(3)
    assert len(rec.samples) == 6


@settings(max_examples=25, deadline=None)
@given(every=st.sampled_from([0.25, 0.5, 1.0, 3.0]),
       steps=st.lists(st.floats(min_value=0, max_value=4, allow_nan=False), max_size=6))
def test_record_times_are_multiples_of_the_period_however_the_clock_moves(every, steps):
    k = mmsim.Kernel()
    rec = metrics.record(k, every)
    for dt in steps:
        k.advance(dt)
    times = [s["time"] for s in rec.samples]
    assert times == [i * every for i in range(len(times))]
    assert times[-1] <= k.now < times[-1] + every


@pytest.mark.parametrize("every", [0, -1, float("nan"), True, "1"])
def test_record_refuses_a_period_that_is_not_a_positive_number(every):
    with pytest.raises(ValueError):
        metrics.record(mmsim.Kernel(), every)


def test_recording_tables_and_files(tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    k = mmsim.Kernel(thp="always")
    proc = k.spawn()
    rec = metrics.record(k, every=0.5)
    start(k, dense_toucher(proc, 8 * MiB, per_step=2 * MiB, interval=0.5), proc=proc)
    k.advance(3)
    df = rec.frame()
    assert list(df.index) == [0.5 * i for i in range(7)]
    # The first sample is taken before the toucher starts; it writes 2 MiB each half
    # second, and a sample due at the same instant as its step runs first (set first).
    assert list(df["vmstat.nr_anon_pages"]) == [0, 512, 1024, 1536, 2048, 2048, 2048]
    procs = rec.processes()
    mine = procs[procs["pid"] == proc.pid]
    assert list(mine["rss_kb"]) == [0, 2048, 4096, 6144, 8192, 8192, 8192]
    paths = rec.to_parquet(tmp_path / "pq") + rec.to_csv(tmp_path / "csv")
    import pandas
    back = pandas.read_parquet(tmp_path / "pq" / "system.parquet")
    assert list(back["vmstat.nr_anon_pages"]) == list(df["vmstat.nr_anon_pages"])
    assert all(os.path.getsize(p) > 0 for p in paths)


# ------------------------------------------------------------------ workloads


def test_a_workload_runs_in_time_order_with_others():
    k = mmsim.Kernel()
    log = []

    def ticker(name, period, n):
        for i in range(n):
            log.append((k.now, name))
            yield period

    a = start(k, ticker("a", 1.0, 3))
    b = start(k, ticker("b", 0.75, 4), delay=0.5)
    k.advance(10)
    assert log == [(0.0, "a"), (0.5, "b"), (1.0, "a"), (1.25, "b"), (2.0, "a"),
                   (2.0, "b"), (2.75, "b")]
    assert a.done and b.done and not a.killed


def test_a_workload_that_yields_nonsense_is_an_error():
    k = mmsim.Kernel()

    def bad():
        yield "soon"

    start(k, bad())
    with pytest.raises(ValueError):
        k.advance(1)


def test_file_reader_reads_through_the_page_cache():
    k = mmsim.Kernel()
    k.create_file("/data", 4 * MiB)
    proc = k.spawn()
    task = start(k, file_reader(proc, "/data", "sequential", "read", chunk=1 * MiB,
                                interval=0.1, ops=4), proc=proc)
    k.advance(1)
    assert task.done and task.result == 4
    assert metrics.sample(k)["meminfo"]["Cached"] >= 4096


@pytest.mark.parametrize("pattern", ["random", "zipf"])
@pytest.mark.parametrize("method", ["read", "mmap"])
def test_file_reader_patterns_are_deterministic(pattern, method):
    def run(seed):
        k = mmsim.Kernel()
        k.create_file("/data", 8 * MiB)
        proc = k.spawn()
        start(k, file_reader(proc, "/data", pattern, method, chunk=64 << 10, interval=0.01,
                             ops=50, seed=seed), proc=proc)
        k.advance(1)
        return metrics.sample(k)["vmstat"]

    assert run(3) == run(3)


def test_file_reader_refuses_unknown_patterns():
    k = mmsim.Kernel()
    k.create_file("/data", MiB)
    with pytest.raises(ValueError):
        next(file_reader(k.spawn(), "/data", pattern="backwards"))


@given(n=st.integers(1, 200), s=st.floats(0.5, 3.0))
def test_zipf_cdf_is_a_distribution_with_decreasing_weights(n, s):
    cdf = zipf_cdf(n, s)
    assert len(cdf) == n and cdf[-1] == pytest.approx(1.0)
    steps = [cdf[0]] + [b - a for a, b in zip(cdf, cdf[1:])]
    assert all(x >= y - 1e-12 for x, y in zip(steps, steps[1:]))


def test_working_set_phases_grow_the_heap():
    from mmsim.plot import vma_table
    k = mmsim.Kernel()
    proc = k.spawn()
    start(k, working_set(proc, [(0.5, 1 * MiB, 0.9), (0.5, 8 * MiB, 0.5)], interval=0.1,
                         batch=32), proc=proc)

    def highest_resident():
        return max(b for row in vma_table(proc) for _, b in row["resident"])

    k.advance(0.45)
    assert 0 < highest_resident() <= 1 * MiB
    k.advance(1)
    assert 1 * MiB < highest_resident() <= 8 * MiB


def test_sparse_toucher_bloats_under_thp_always_and_not_with_mctl():
    def rss(policy):
        k = mmsim.Kernel(thp="always")
        parent = k.spawn()
        apply_policy(parent, policy)
        proc = parent.fork()
        start(k, sparse_toucher(proc, 16 * MiB, stride=1 * MiB, per_step=4), proc=proc)
        k.advance(1)
        return metrics.process_metrics(proc)

    always, off = rss("none"), rss("mctl-nohugepage")
    # 16 pages touched; under "always" each aligned 2 MiB block touched is a THP.
    assert off["rss_kb"] == 16 * 4 and off["anon_huge_kb"] == 0
    assert always["anon_huge_kb"] >= 14 * 1024 and always["thp_coverage"] > 0.9


@pytest.mark.parametrize("policy", POLICIES)
def test_launcher_policies_reach_the_services(policy):
    k = mmsim.Kernel(thp="always")
    root = k.spawn()
    services = [("dense", lambda p: dense_toucher(p, 4 * MiB, interval=0.1)),
                ("advised", lambda p: dense_toucher(p, 4 * MiB, interval=0.1, hugepage=True))]
    task = start(k, launcher(root, services, policy), proc=root)
    k.advance(2)
    kids = task.result
    huge = {name: metrics.process_metrics(child)["anon_huge_kb"] > 0
            for name, (child, _) in kids.items()}
    expected = {"none": {"dense": True, "advised": True},
                # mctl's NOHUGEPAGE is a default a service's MADV_HUGEPAGE overrides.
                "mctl-nohugepage": {"dense": False, "advised": True},
                "prctl-thp-disable": {"dense": False, "advised": False},
                "prctl-except-advised": {"dense": False, "advised": True}}[policy]
    assert huge == expected


def test_storm_reaps_every_child():
    k = mmsim.Kernel()
    parent = k.spawn()

    def job(child):
        addr = child.mmap(0, MiB, RW, ANON)
        child.touch(addr, MiB, True)
        yield 0.01

    task = start(k, storm(parent, job, 5, interval=0.1), proc=parent)
    k.advance(2)
    assert task.done and task.result == 5
    assert [p for p in k.processes.values() if p.ppid == parent.pid] == []
    assert metrics.sample(k)["vmstat"]["nr_anon_pages"] == 0


def test_a_workload_killed_by_the_oom_killer_ends_as_killed():
    k = mmsim.Kernel()
    k.mkdir("/sys/fs/cgroup/small")
    k.proc_write("/sys/fs/cgroup/small/memory.max", str(8 * MiB))
    proc = k.spawn(cgroup="small")
    task = start(k, dense_toucher(proc, 32 * MiB, per_step=1 * MiB, interval=0.1), proc=proc)
    k.advance(5)
    assert task.done and task.killed
    assert proc.state != "running"


# ------------------------------------------------------------------ studies and sweeps


def test_fade_study_directions_at_a_small_size():
    from mmsim.studies import fade
    off = fade({"workload": "readers", "fade": False, "scale": 4})
    on = fade({"workload": "readers", "fade": True, "scale": 4})
    assert on["workingset_refault_file"] > off["workingset_refault_file"]
    off = fade({"workload": "killed_app", "fade": False, "scale": 4})
    on = fade({"workload": "killed_app", "fade": True, "scale": 4})
    assert on["workingset_refault_file"] < off["workingset_refault_file"]


def test_sweep_cells_and_ids(tmp_path):
    from mmsim import sweep
    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nstudy = "thp_bloat"\n[grid]\nthp = ["always", "never"]\n'
                    'seed = [0, 1]\n[params]\nsize_mib = 8\n')
    s = sweep.load_spec(spec)
    cells = sweep.cells(s)
    assert cells == [{"size_mib": 8, "thp": t, "seed": n}
                     for t in ("always", "never") for n in (0, 1)]
    ids = {sweep.cell_id("thp_bloat", c) for c in cells}
    assert len(ids) == 4
    assert sweep.cell_id("thp_bloat", {"seed": 0, "thp": "always", "size_mib": 8}) in ids


@pytest.mark.parametrize("text", ['[grid]\na = [1]\n', '[sweep]\nstudy = "fade"\n',
                                  '[sweep]\nstudy = "fade"\n[grid]\na = []\n',
                                  '[sweep]\nstudy = "fade"\n[grid]\na = [1]\n[params]\na = 2\n'])
def test_sweep_refuses_a_bad_spec(tmp_path, text):
    from mmsim import sweep
    spec = tmp_path / "s.toml"
    spec.write_text(text)
    with pytest.raises(ValueError):
        sweep.load_spec(spec)


def test_sweep_on_a_two_worker_local_cluster(tmp_path):
    pytest.importorskip("dask.distributed")
    from mmsim import sweep
    spec = tmp_path / "s.toml"
    spec.write_text('[sweep]\nstudy = "thp_bloat"\n[grid]\nthp = ["always", "never"]\n'
                    'policy = ["none", "mctl-nohugepage"]\n[params]\nsize_mib = 16\n'
                    'stride_kb = 1024\nseconds = 1\n'
                    '[plot]\nrows = "policy"\ncols = "thp"\nvalue = "bloat_kb"\n')
    out = tmp_path / "out"
    logs = []
    table, ran, skipped = sweep.sweep(spec, out, workers=2, progress=False, log=logs.append)
    assert (ran, skipped, len(table)) == (4, 0, 4)
    assert (out / "results.parquet").exists() and (out / "heatmap.png").stat().st_size > 0
    bloat = {(r.thp, r.policy): r.bloat_kb for r in table.itertuples()}
    assert bloat[("always", "none")] > 0
    assert bloat[("always", "mctl-nohugepage")] == bloat[("never", "none")] == 0
    table2, ran, skipped = sweep.sweep(spec, out, workers=2, progress=False, log=logs.append)
    assert (ran, skipped) == (0, 4)
    assert sorted(table2["cell"]) == sorted(table["cell"])


# ------------------------------------------------------------------ plots


def test_address_space_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from mmsim import plot
    k = mmsim.Kernel(thp="always")
    proc = k.spawn()
    addr = proc.mmap(0, 8 * MiB, RW, ANON)
    proc.touch(addr, 3 * MiB, True)
    rows = plot.vma_table(proc)
    smaps = [v for v in parse_smaps(k.proc_read(f"/proc/{proc.pid}/smaps"))
             if v["name"] != "[vsyscall]"]
    assert len(rows) == len(smaps) == 1
    assert rows[0]["rss_kb"] == smaps[0]["Rss"] and rows[0]["huge_kb"] == smaps[0]["AnonHugePages"]
    assert rows[0]["huge_kb"] > 0 and rows[0]["resident"][0][0] == 0
    path = plot.save(plot.address_space(proc), tmp_path / "map.png")
    assert path.stat().st_size > 1000


def test_heatmap_plot(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    from mmsim import plot
    table = pd.DataFrame({"a": [1, 1, 2, 2], "b": ["x", "y", "x", "y"], "v": [1., 2., 3., 4.]})
    path = plot.save(plot.heatmap(table, "a", "b", "v"), tmp_path / "h.svg")
    assert path.read_text().startswith("<?xml")


# ------------------------------------------------------------------ notebook views and CLI


def test_html_views_show_the_proc_numbers():
    k = mmsim.Kernel(thp="always")
    proc = k.spawn()
    addr = proc.mmap(0, 4 * MiB, RW, ANON)
    proc.touch(addr, 4 * MiB, True)
    page = proc._repr_html_()
    assert f"<b>Process {proc.pid}</b>" in page and "VmRSS 4096" in page
    assert f"<td style='padding:2px 8px'>{addr:x}-{addr + 4 * MiB:x}</td>" in page
    assert "<td style='padding:2px 8px'>4096</td>" in page   # Rss and AnonHugePages
    top = k._repr_html_()
    assert "AnonPages 4096" in top and f"<td style='padding:2px 8px'>{proc.pid}</td>" in top


def test_cli_plot_demo_and_trace(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from mmsim.cli import main
    assert main(["plot", "--demo", "-o", str(tmp_path / "demo.png")]) == 0
    assert (tmp_path / "demo.png").stat().st_size > 1000
    trace = tmp_path / "t.strace"
    trace.write_text("mmap(0x200000000000, 4194304, PROT_READ|PROT_WRITE, "
                     "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x200000000000\n"
                     "madvise(0x200000000000, 4194304, MADV_POPULATE_WRITE) = 0\n")
    assert main(["plot", str(trace), "--thp", "always", "-o", str(tmp_path / "t.svg")]) == 0
    assert "1 address spaces drawn" in capsys.readouterr().out
    assert main(["plot", "-o", str(tmp_path / "x.png")]) == 2


def test_cli_sweep_refuses_a_bad_spec(tmp_path, capsys):
    from mmsim.cli import main
    spec = tmp_path / "bad.toml"
    spec.write_text("[grid]\na = [1]\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "needs a study" in capsys.readouterr().err


def test_cli_sweep_of_the_fade_example_on_two_workers(tmp_path, capsys):
    """The README's sweep: 8 cells on a 2-worker LocalCluster, a Parquet table and a
    heatmap; FADE_ON_DEATH raises the readers' refaults and lowers the survivors';
    a re-run finds every cell done."""
    pytest.importorskip("dask.distributed")
    import pandas
    from mmsim.cli import main
    spec = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples",
                        "sweep_fade.toml")
    out = tmp_path / "fade"
    assert main(["sweep", spec, "--workers", "2", "--out", str(out)]) == 0
    assert "8 cells run, 0 already done" in capsys.readouterr().out
    table = pandas.read_parquet(out / "results.parquet")
    assert len(table) == 8 and (out / "heatmap.png").stat().st_size > 0
    mean = table.groupby(["workload", "fade"])["workingset_refault_file"].mean()
    assert mean["readers", True] > mean["readers", False]
    assert mean["killed_app", True] < mean["killed_app", False]
    assert main(["sweep", spec, "--workers", "2", "--out", str(out)]) == 0
    assert "0 cells run, 8 already done" in capsys.readouterr().out


def test_api_reference_generator_covers_every_module():
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools", "apidoc.py")
    spec = importlib.util.spec_from_file_location("apidoc", path)
    apidoc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(apidoc)
    text = apidoc.render()
    for name in ("mmsim.metrics", "mmsim.workloads.anon", "mmsim.sweep", "mmsim.kernel"):
        assert f"## `{name}`" in text
    assert "### `sample(kernel)`" in text and "- `advance(self, seconds: 'float') -> 'None'`" in text


def test_time_series_plots_of_a_recording(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("pandas")
    from mmsim import plot
    from mmsim.workloads.fade import new_cgroup
    k = mmsim.Kernel(thp="always")
    k.create_file("/data", 16 * MiB)
    new_cgroup(k, "box", 8 * MiB)
    proc = k.spawn(cgroup="box")
    rec = metrics.record(k, every=0.5)
    start(k, file_reader(proc, "/data", chunk=1 * MiB, interval=0.1, ops=32), proc=proc)
    start(k, dense_toucher(k.spawn(), 4 * MiB, interval=0.5))
    k.advance(4)
    frame = rec.frame()
    # The reader's cgroup is smaller than the file: reclaim worked, and the plots have
    # something to show.
    assert frame["vmstat.pgsteal_file"].iloc[-1] > 0
    for fig, name in ((plot.lru_over_time(frame), "lru.png"),
                      (plot.thp_over_time(rec.processes()), "thp.png")):
        assert plot.save(fig, tmp_path / name).stat().st_size > 1000


def test_the_thp_bloat_sweep_example(tmp_path):
    """Study 3: bloat only under THP always without a policy, growing with the stride."""
    pytest.importorskip("dask.distributed")
    from mmsim import sweep
    spec = os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples",
                        "sweep_thp_bloat.toml")
    table, ran, _ = sweep.sweep(spec, tmp_path / "out", workers=1, progress=False,
                                log=lambda msg: None)
    assert ran == len(table) == 12
    bloat = {(r.thp, r.policy, r.stride_kb): r.bloat_kb for r in table.itertuples()}
    assert {key for key, b in bloat.items() if b} == {("always", "none", 64),
                                                      ("always", "none", 512)}
    assert bloat["always", "none", 512] > bloat["always", "none", 64]
