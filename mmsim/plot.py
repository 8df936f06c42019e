"""Pictures of a simulated machine (matplotlib, the ``sandbox`` extra): a process'
address-space map, time series of a recording (RSS and THP coverage, LRU sizes and
refaults), and a sweep's results as a heatmap.  Each function draws on a new figure
and returns it; ``save(fig, path)`` writes PNG or SVG by the path's suffix."""

from .defs import PAGE_SHIFT
from .procfs import vma_name
from .vma import VM_EXEC, VM_SHARED, VM_WRITE

MiB = 1 << 20

# VMA kinds and their colours (the mapping itself; resident and huge ranges are
# drawn over it).
KINDS = {"anon": "#9ecae1", "file": "#c7e9c0", "exec": "#fdd0a2", "stack": "#dadaeb",
         "heap": "#fcbba1", "special": "#d9d9d9", "shared": "#bcbddc"}
RESIDENT = "#2171b5"
HUGE = "#cb181d"


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:   # an optional extra, not a kernel error
        raise ImportError("mmsim.plot needs matplotlib: pip install 'mmsim[sandbox]'") from e
    return plt


def vma_kind(mm, vma):
    """The colour class of a VMA: stack, heap, special, exec, shared, file or anon."""
    name = vma_name(mm, vma)
    if name == "[stack]":
        return "stack"
    if name == "[heap]":
        return "heap"
    if vma.special is not None:
        return "special"
    if vma.vm_flags & VM_EXEC:
        return "exec"
    if vma.vm_flags & VM_SHARED:
        return "shared"
    return "file" if vma.file is not None else "anon"


def vma_table(proc):
    """One dict per VMA: start, end, size_kb, perms, name, kind, rss_kb, huge_kb and
    the resident and PMD-mapped ranges as (first, last) offsets in bytes."""
    mm = proc.mm
    rows = []
    for vma in mm.vmas():
        resident, huge = [], []
        rss = pmd = 0
        if vma.pages:
            for lo, hi, span in vma.pages.items():
                a = (lo << PAGE_SHIFT) - vma.start
                b = (hi << PAGE_SHIFT) - vma.start
                resident.append((a, b))
                rss += hi - lo
                if span.pmd:
                    huge.append((a, b))
                    pmd += hi - lo
        flags = vma.vm_flags
        perms = ("r" if flags & 1 else "-") + ("w" if flags & VM_WRITE else "-") + \
                ("x" if flags & VM_EXEC else "-") + ("s" if flags & VM_SHARED else "p")
        rows.append({"start": vma.start, "end": vma.end,
                     "size_kb": (vma.end - vma.start) >> 10, "perms": perms,
                     "name": vma_name(mm, vma) or "", "kind": vma_kind(mm, vma),
                     "rss_kb": rss << (PAGE_SHIFT - 10), "huge_kb": pmd << (PAGE_SHIFT - 10),
                     "resident": resident, "huge": huge})
    return rows


def _short(name, width=28):
    """A VMA's name for a label: a file's base name, cut to ``width``."""
    base = name.rsplit("/", 1)[-1] if name.startswith("/") else name
    return base if len(base) <= width else base[:width - 1] + "~"


def _largest(rows, max_vmas):
    """The ``max_vmas`` largest VMAs of ``rows``, in address order."""
    if len(rows) <= max_vmas:
        return rows
    return sorted(sorted(rows, key=lambda r: r["end"] - r["start"])[-max_vmas:],
                  key=lambda r: r["start"])


def address_space(procs, max_vmas=40, title=None, labels=None):
    """The address space of a process (or of each of a list of processes, one panel
    each): one bar per VMA (the largest ``max_vmas``, in address order), its length
    in MiB, coloured by kind, with its resident ranges and its PMD-mapped (huge)
    ranges drawn over it; ``labels`` name the panels (default: pid and comm).  The
    scale is logarithmic past 1 MiB when the VMAs' sizes differ by more than 1000
    times."""
    plt = _pyplot()
    from matplotlib.patches import Patch
    procs = list(procs) if isinstance(procs, (list, tuple)) else [procs]
    tables = [(p, vma_table(p)) for p in procs]
    shown = [(p, rows, _largest(rows, max_vmas)) for p, rows in tables]
    heights = [max(1, len(keep)) for _, _, keep in shown]
    fig, axes = plt.subplots(len(shown), 1, squeeze=False, sharex=True,
                             gridspec_kw={"height_ratios": heights},
                             figsize=(10, 0.32 * sum(heights) + 1.2 * len(shown) + 0.8))
    sizes = [(r["end"] - r["start"]) / MiB for _, _, keep in shown for r in keep]
    log = bool(sizes) and max(sizes) > 1000 * min(sizes)
    kinds = set()
    labels = labels or [f"pid {p.pid}" for p in procs]
    for ax, label, (proc, rows, keep) in zip(axes[:, 0], labels, shown):
        for y, r in enumerate(keep):
            kinds.add(r["kind"])
            ax.barh(y, (r["end"] - r["start"]) / MiB, color=KINDS[r["kind"]],
                    edgecolor="none", height=0.8)
            for part, colour, h in ((r["resident"], RESIDENT, 0.45), (r["huge"], HUGE, 0.25)):
                if part:
                    ax.broken_barh([(a / MiB, (b - a) / MiB) for a, b in part],
                                   (y - h / 2, h), color=colour, edgecolor="none")
        ax.set_yticks(range(len(keep)))
        ax.set_yticklabels([f"{r['start']:x} {r['perms']} {_short(r['name'])}" for r in keep],
                           fontsize=7, family="monospace")
        ax.set_ylim(max(len(keep), 1) - 0.5, -0.5)
        more = "" if len(keep) == len(rows) else f", largest {len(keep)} of {len(rows)} VMAs"
        ax.set_title(f"{label} ({proc.comm}{more})", fontsize=9)
        if log:
            ax.set_xscale("symlog", linthresh=1.0)
    axes[-1, 0].set_xlabel("offset in the VMA (MiB)")
    handles = [Patch(color=c, label=k) for k, c in KINDS.items() if k in kinds]
    handles += [Patch(color=RESIDENT, label="resident"), Patch(color=HUGE, label="huge (PMD)")]
    axes[0, 0].legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def thp_over_time(processes, title="RSS and THP coverage"):
    """From a recording's per-process table (``Recorder.processes()``): each process'
    RSS (MiB) and THP coverage over simulated time."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for (pid, comm), group in processes.groupby(["pid", "comm"]):
        label = f"{comm} ({pid})"
        top.plot(group["time"], group["rss_kb"] / 1024, label=label)
        bottom.plot(group["time"], group["thp_coverage"], label=label)
    top.set_ylabel("RSS (MiB)")
    bottom.set_ylabel("THP coverage")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("simulated time (s)")
    top.legend(fontsize=7)
    top.set_title(title)
    fig.tight_layout()
    return fig


def lru_over_time(system, title="LRU lists and refaults"):
    """From a recording's system table (``Recorder.frame()``): the four LRU lists
    (MiB) and the file and anon refaults per sample interval."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for name in ("nr_active_file", "nr_inactive_file", "nr_active_anon", "nr_inactive_anon"):
        col = "vmstat." + name
        if col in system:
            top.plot(system.index, system[col] * 4 / 1024, label=name[3:])
    for name in ("workingset_refault_file", "workingset_refault_anon"):
        col = "vmstat." + name
        if col in system:
            bottom.plot(system.index, system[col].diff().fillna(0), label=name)
    top.set_ylabel("MiB")
    bottom.set_ylabel("refaults per interval")
    bottom.set_xlabel("simulated time (s)")
    top.legend(fontsize=7)
    bottom.legend(fontsize=7)
    top.set_title(title)
    fig.tight_layout()
    return fig


def _number(v):
    """A heatmap cell's text: whole numbers with thousands separators, others to 3
    significant digits."""
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.3g}"


def heatmap(table, rows, cols, value, title=None):
    """A sweep's results: the mean of ``value`` for each (``rows``, ``cols``) pair
    of a pandas table, as a labelled heatmap (``rows``/``cols``: a column name or a
    list of them)."""
    plt = _pyplot()
    grid = table.pivot_table(index=rows, columns=cols, values=value, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.4 * len(grid.columns) + 3, 0.6 * len(grid.index) + 2))
    im = ax.imshow(grid.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid.columns)))
    ax.set_xticklabels([" ".join(map(str, c)) if isinstance(c, tuple) else str(c)
                        for c in grid.columns], rotation=30, ha="right")
    ax.set_yticks(range(len(grid.index)))
    ax.set_yticklabels([str(i) for i in grid.index])
    ax.set_xlabel(cols if isinstance(cols, str) else " / ".join(cols))
    ax.set_ylabel(rows if isinstance(rows, str) else " / ".join(rows))
    lo, hi = im.get_clim()
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid.values[i, j]
            if v == v:   # not NaN
                # Dark text on the bright (high) end of viridis, light on the dark end.
                light = hi == lo or (v - lo) / (hi - lo) < 0.6
                ax.text(j, i, _number(v), ha="center", va="center", fontsize=8,
                        color="white" if light else "black")
    fig.colorbar(im, ax=ax, label=value)
    ax.set_title(title or value)
    fig.tight_layout()
    return fig


def save(fig, path):
    """Write ``fig`` to ``path`` (PNG, SVG or PDF, by its suffix) and close it."""
    plt = _pyplot()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
