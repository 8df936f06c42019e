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
from .pages import PMD_PAGES, folio_order, span_pieces
from .procfs import parse_fields, vma_memory
from .thp import ANON_ORDERS, PMD_ORDER, size_kb

#: The anonymous folio sizes a per-size figure is kept for, as hugepages-<N>kB names them.
SIZES = tuple(f"{size_kb(o)}kB" for o in ANON_ORDERS)

__all__ = ["sample", "record", "Recorder", "process_metrics", "SIZES"]


def _cgroup_metrics(kernel, memcg, members=()):
    """The numbers of one cgroup's memory files: memory.stat's fields (bytes, events),
    ``current``, ``swap_current``, ``max`` (None for "max"), memory.events' (as
    ``events.NAME``), ``thp_coverage`` (anon_thp over anon), ``collapsed_kb``
    (memory.stat's thp_collapse_alloc in kB), and the per-size figures of
    ``members`` (the ``process_metrics`` of the live processes in its subtree),
    summed: ``anon_kb.<N>kB``, ``thp_coverage.<N>kB``, ``mthp_coverage`` and
    ``bloat_kb``."""
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
    out["collapsed_kb"] = out.get("thp_collapse_alloc", 0) * size_kb(PMD_ORDER)
    sizes = {name: sum(m["anon_kb." + name] for m in members) for name in SIZES}
    out.update(_size_figures(sum(m["anon_kb"] for m in members), sizes))
    out["bloat_kb"] = sum(m["bloat_kb"] for m in members)
    return out


def _size_figures(anon_kb, sizes):
    """``anon_kb.<N>kB`` and ``thp_coverage.<N>kB`` for the kB of anonymous memory in
    folios of each size (``sizes``: name -> kB) out of ``anon_kb``, and
    ``mthp_coverage``, the share in large folios of any size."""
    out = {}
    for name in SIZES:
        out["anon_kb." + name] = sizes[name]
    for name in SIZES:
        out["thp_coverage." + name] = sizes[name] / anon_kb if anon_kb else 0.0
    out["mthp_coverage"] = sum(sizes.values()) / anon_kb if anon_kb else 0.0
    return out


def _anon_by_order(vma):
    """The anonymous pages of ``vma`` by the order of their folio (0: base pages),
    PMD-mapped or not; how many of them the program wrote (not in ``vma.unwritten``);
    and how many pages of large folios it did not (zero-filled)."""
    by = {}
    hit = fill = 0
    pm = vma.pages
    if not pm:
        return by, hit, fill
    unwritten = vma.unwritten
    for x, y, span in pm.items():
        order = folio_order(span.pmd)
        for a, b, _mapcount, is_anon, _dirty, _ref in span_pieces(span, x, y):
            if is_anon:
                by[order] = by.get(order, 0) + b - a
                zeroed = unwritten.count(a, b) if unwritten else 0
                hit += b - a - zeroed
                if order:
                    fill += zeroed
    return by, hit, fill


def process_metrics(proc):
    """smaps_rollup-like sums for one process (kB); its THP coverage (the share of its
    anonymous memory in PMD-mapped huge pages, 0.0 with none); per folio size N
    (16kB .. 2048kB), ``anon_kb.<N>kB`` and ``thp_coverage.<N>kB``, its anonymous
    memory in folios of that size, PMD- or PTE-mapped, and their share, and
    ``mthp_coverage`` the share in large folios of any size; ``tlb_entries``, a
    TLB-reach proxy: the translations that map its resident memory, one per
    PMD-mapped huge page and one per other page (x86-64 has no contiguous-PTE
    entries, so a PTE-mapped large folio takes one per page); ``written_kb``, its
    resident anonymous memory it stored data in (touch, access with a write), and
    ``bloat_kb``, the pages of its large anonymous folios it never wrote (zero-filled,
    there because the folio filled them in at a fault or a collapse: what the kernel's
    thp_underused counts; without THP a read of them maps the zero page);
    ``collapsed_kb`` (with
    ``collapsed_khugepaged`` and ``collapsed_madvise``, in huge pages): the huge
    pages collapse made for it (simulator-defined, docs/thp.md)."""
    rss = pss = anon = anon_huge = pmd = written = bloat = 0
    orders = {}
    mm = proc.mm
    for vma in mm.vmas():
        m = vma_memory(vma)
        rss += m["rss"]
        pss += m["pss_kb"]
        anon += m["anon"]
        anon_huge += m["anon_huge"]
        pmd += m["anon_huge"] + m["shmem_huge"] + m["file_huge"]
        if m["anon"]:
            by, hit, fill = _anon_by_order(vma)
            written += hit
            bloat += fill
            for order, n in by.items():
                orders[order] = orders.get(order, 0) + n
    kb = 1 << (PAGE_SHIFT - 10)
    out = {"comm": proc.comm, "cgroup": mm.memcg.path(), "size_kb": mm.total_vm * kb,
           "rss_kb": rss * kb, "pss_kb": pss, "anon_kb": anon * kb,
           "anon_huge_kb": anon_huge * kb, "swap_kb": mm.swap_pages * kb,
           "thp_coverage": anon_huge / anon if anon else 0.0,
           "tlb_entries": pmd // PMD_PAGES + rss - pmd,
           "written_kb": written * kb, "bloat_kb": bloat * kb}
    out.update(_size_figures(anon * kb, {name: orders.get(o, 0) * kb
                                         for name, o in zip(SIZES, ANON_ORDERS)}))
    khugepaged, madvise = mm.thp_collapsed
    out.update(collapsed_khugepaged=khugepaged, collapsed_madvise=madvise,
               collapsed_kb=(khugepaged + madvise) * size_kb(PMD_ORDER))
    return out


def sample(kernel):
    """One snapshot of the machine: ``{"time", "vmstat", "meminfo", "cgroups",
    "processes"}``; cgroups are keyed by path ("/" for the root), processes by pid
    (those alive with an address space).  Reading memory.stat flushes the statistics,
    as it does on Linux."""
    processes = {pid: process_metrics(p) for pid, p in sorted(kernel.processes.items())
                 if p.state == "running" and p.mm is not None and p.tgid == pid}
    cgroups = {}
    for m in kernel.root_memcg.subtree():
        if m.dying:
            continue
        path = m.path()
        members = [pm for pm in processes.values() if m.parent is None
                   or pm["cgroup"] == path or pm["cgroup"].startswith(path + "/")]
        cgroups[path] = _cgroup_metrics(kernel, m, members)
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
