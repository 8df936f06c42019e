"""HTML views for notebooks (``_repr_html_`` of Kernel and Process, and a VMA
table): the /proc numbers a researcher looks at first, as small tables.  Only
reads; built on procfs, so every number matches the /proc text."""

from html import escape

from . import procfs

_STYLE = "border-collapse:collapse;font-family:monospace;font-size:12px"


def _table(header, rows):
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{escape(str(h))}</th>"
                   for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{escape(str(c))}</td>"
                                    for c in row) + "</tr>" for row in rows)
    return f"<table style='{_STYLE}'><tr>{head}</tr>{body}</table>"


def vma_rows(proc, limit=None):
    """One row per VMA: the maps line's range, perms and name, size, Rss and
    AnonHugePages (kB), and THPeligible."""
    mm = proc.mm
    rows = []
    for vma in mm.vmas():
        m = procfs.vma_memory(vma)
        rows.append((f"{vma.start:x}-{vma.end:x}", procfs.maps_line(mm, vma).split()[1],
                     (vma.end - vma.start) >> 10, m["rss"] * 4, m["anon_huge"] * 4,
                     procfs.thp_eligible(mm, vma), procfs.vma_name(mm, vma) or ""))
        if limit is not None and len(rows) >= limit:
            break
    return rows


VMA_HEADER = ("range", "perms", "size kB", "Rss kB", "AnonHuge kB", "THPeligible", "name")


def vma_table_html(proc, limit=200):
    """The VMAs of ``proc`` as an HTML table (the first ``limit``)."""
    if proc.mm is None:
        return "<i>no address space</i>"
    rows = vma_rows(proc, limit)
    more = proc.mm.map_count - len(rows)
    tail = f"<div><i>... and {more} more VMAs</i></div>" if more > 0 else ""
    return _table(VMA_HEADER, rows) + tail


def process_html(proc):
    """A process: identity, the status file's memory lines, and its VMA table."""
    head = f"<b>Process {proc.pid}</b> ({escape(proc.comm)}), {escape(proc.state)}"
    if proc.mm is None or proc.state != "running":
        return f"<div>{head}</div>"
    fields = procfs.parse_fields(procfs.status(proc))
    keep = [(k, fields[k]) for k in ("VmSize", "VmRSS", "RssAnon", "RssFile", "VmSwap")
            if k in fields]
    summary = ", ".join(f"{k} {v}" for k, v in keep)
    return f"<div>{head}: {escape(summary)}</div>" + vma_table_html(proc)


def kernel_html(kernel):
    """A kernel: its memory summary (meminfo, kB) and its live processes."""
    info = procfs.parse_fields(kernel.meminfo())
    mem = ", ".join(f"{k} {info[k]}" for k in ("MemTotal", "MemFree", "Cached", "AnonPages",
                                                "SwapTotal") if k in info)
    procs = [(p.pid, p.ppid, p.comm, p.state,
              p.mm.map_count if p.mm is not None else 0,
              (p.mm.rss_anon + p.mm.rss_file + p.mm.rss_shmem) * 4 if p.mm is not None else 0)
             for p in kernel.processes.values() if p.tgid == p.pid]
    return (f"<div><b>Kernel</b> at t={kernel.now:g} s, THP {escape(kernel.thp)}: "
            f"{escape(mem)}</div>"
            + _table(("pid", "ppid", "comm", "state", "VMAs", "Rss kB"), procs))
