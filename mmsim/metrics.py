"""Numbers out of a simulated machine: ``sample(k)`` takes one consistent snapshot
(the system-wide /proc counters, every memory cgroup, every process), and
``record(k, every=SECONDS)`` takes one at every multiple of ``SECONDS`` of simulated
time while the clock moves, for a time series.

The numbers are read from the same files a tool on a real machine would read (the
/proc and cgroup text is rendered and parsed back), so a sample can never disagree
with what ``k.proc_read`` shows; the units are those files' units: meminfo in kB,
vmstat in pages or events, memory.* in bytes.  The per-process figures are
smaps_rollup's sums (kB) plus THP coverage.  pandas is needed only to turn a
recording into a DataFrame (the ``sandbox`` extra).
"""

import os

from . import cgroup
from .defs import PAGE_SHIFT
from .pages import PMD_PAGES
from .procfs import parse_fields, vma_memory

__all__ = ["sample", "record", "Recorder", "process_metrics"]


def _cgroup_metrics(kernel, memcg):
    """The numbers of one cgroup's memory files: memory.stat's fields (bytes, events),
    ``current``, ``swap_current``, ``max`` (None for "max"), memory.events' (as
    ``events.NAME``), and ``thp_coverage`` (anon_thp over anon)."""
    base = cgroup.CGROUP_ROOT + ("" if memcg.parent is None else "/" + memcg.name)
    files = cgroup.files_of(memcg)
    out = parse_fields(cgroup.read(kernel, base + "/memory.stat"))
    if "memory.current" in files:
        out["current"] = int(cgroup.read(kernel, base + "/memory.current"))
        out["swap_current"] = int(cgroup.read(kernel, base + "/memory.swap.current"))
        limit = cgroup.read(kernel, base + "/memory.max").strip()
        out["max"] = None if limit == "max" else int(limit)
        for name, n in parse_fields(cgroup.read(kernel, base + "/memory.events")).items():
            out["events." + name] = n
    out["thp_coverage"] = out["anon_thp"] / out["anon"] if out.get("anon") else 0.0
    return out


def process_metrics(proc):
    """smaps_rollup-like sums for one process (kB), its THP coverage (the share of its
    anonymous memory in PMD-mapped huge pages, 0.0 with none) and ``tlb_entries``, a
    TLB-reach proxy: the translations that map its resident memory, one per
    PMD-mapped huge page and one per other page (simulator-defined)."""
    rss = pss = anon = anon_huge = pmd = 0
    for vma in proc.mm.vmas():
        m = vma_memory(vma)
        rss += m["rss"]
        pss += m["pss_kb"]
        anon += m["anon"]
        anon_huge += m["anon_huge"]
        pmd += m["anon_huge"] + m["shmem_huge"]
    kb = 1 << (PAGE_SHIFT - 10)
    mm = proc.mm
    return {"comm": proc.comm, "cgroup": mm.memcg.path(), "size_kb": mm.total_vm * kb,
            "rss_kb": rss * kb, "pss_kb": pss, "anon_kb": anon * kb,
            "anon_huge_kb": anon_huge * kb, "swap_kb": mm.swap_pages * kb,
            "thp_coverage": anon_huge / anon if anon else 0.0,
            "tlb_entries": pmd // PMD_PAGES + rss - pmd}


def sample(kernel):
    """One snapshot of the machine: ``{"time", "vmstat", "meminfo", "cgroups",
    "processes"}``; cgroups are keyed by path ("/" for the root), processes by pid
    (those alive with an address space).  Reading memory.stat flushes the statistics,
    as it does on Linux."""
    cgroups = {m.path(): _cgroup_metrics(kernel, m) for m in kernel.root_memcg.subtree()
               if not m.dying}
    processes = {pid: process_metrics(p) for pid, p in sorted(kernel.processes.items())
                 if p.state == "running" and p.mm is not None and p.tgid == pid}
    return {"time": kernel.now, "vmstat": parse_fields(kernel.vmstat()),
            "meminfo": parse_fields(kernel.meminfo()), "cgroups": cgroups,
            "processes": processes}


class Recorder:
    """Samples taken by ``record``: ``samples`` (a list of ``sample`` dicts) and tables
    of them for pandas."""

    def __init__(self, kernel, every):
        self.kernel = kernel
        self.every = every
        self.samples = []
        self.stopped = False
        self.start = kernel.now

    def take(self):
        """Take a sample now (``record`` calls this on its timer)."""
        self.samples.append(sample(self.kernel))

    def _tick(self):
        if self.stopped:
            return
        self.take()
        # Absolute times, so that the samples do not drift by rounding.
        self.kernel.call_at(self.start + len(self.samples) * self.every, self._tick,
                            readonly=True)

    def stop(self):
        """Take no more samples."""
        self.stopped = True

    def rows(self):
        """The system-wide table as row dicts: ``time`` plus ``vmstat.*`` and
        ``meminfo.*`` columns."""
        rows = []
        for s in self.samples:
            row = {"time": s["time"]}
            row.update(("vmstat." + k, v) for k, v in s["vmstat"].items())
            row.update(("meminfo." + k, v) for k, v in s["meminfo"].items())
            rows.append(row)
        return rows

    def process_rows(self):
        """One row per process per sample: ``time``, ``pid`` and its metrics."""
        return [{"time": s["time"], "pid": pid, **m}
                for s in self.samples for pid, m in s["processes"].items()]

    def cgroup_rows(self):
        """One row per cgroup per sample: ``time``, ``cgroup`` and its numbers."""
        return [{"time": s["time"], "cgroup": path, **m}
                for s in self.samples for path, m in s["cgroups"].items()]

    def frame(self):
        """The system-wide time series as a pandas DataFrame indexed by time."""
        return _pandas().DataFrame(self.rows()).set_index("time")

    def processes(self):
        """The per-process time series as a long pandas DataFrame."""
        return _pandas().DataFrame(self.process_rows())

    def cgroups(self):
        """The per-cgroup time series as a long pandas DataFrame."""
        return _pandas().DataFrame(self.cgroup_rows())

    def to_csv(self, directory):
        """Write system.csv, processes.csv and cgroups.csv into ``directory``."""
        return self._write(directory, "csv")

    def to_parquet(self, directory):
        """Write system.parquet, processes.parquet and cgroups.parquet (needs pyarrow)."""
        return self._write(directory, "parquet")

    def _write(self, directory, fmt):
        os.makedirs(directory, exist_ok=True)
        paths = []
        for name, df in (("system", self.frame().reset_index()),
                         ("processes", self.processes()), ("cgroups", self.cgroups())):
            path = os.path.join(directory, f"{name}.{fmt}")
            if fmt == "csv":
                df.to_csv(path, index=False)
            else:
                df.to_parquet(path, index=False)
            paths.append(path)
        return paths


def _pandas():
    try:
        import pandas
    except ImportError as e:   # an optional extra, not a kernel error
        raise ImportError("mmsim.metrics tables need pandas: "
                          "pip install 'mmsim[sandbox]'") from e
    return pandas


def record(kernel, every):
    """Sample ``kernel`` now and at every ``every`` seconds of simulated time after,
    as ``kernel.advance`` (or a workload run) moves the clock; returns the Recorder."""
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not every > 0:
        raise ValueError(f"every must be a positive number of seconds, not {every!r}")
    rec = Recorder(kernel, every)
    rec._tick()
    return rec
