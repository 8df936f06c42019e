"""Sweep throughput: cells per minute of a sweep spec on a dask.distributed
LocalCluster of 1 and of 2 workers (wall time, cluster start included, each run into
a fresh output directory so no cell is skipped)."""

import os
import tempfile
import time

from mmsim import sweep

DEFAULT_SPEC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "examples", "sweep_fade.toml")


def run(spec=DEFAULT_SPEC, workers=(1, 2)):
    """``{workers: (cells, wall seconds, CPU seconds of the cells)}``."""
    out = {}
    for n in workers:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            table, ran, _ = sweep.sweep(spec, os.path.join(tmp, "out"), workers=n,
                                        progress=False, log=lambda msg: None)
            out[n] = (ran, time.perf_counter() - t0, float(table["cpu_seconds"].sum()))
    return out


def table(result, spec):
    """A Markdown table of the result."""
    lines = [f"spec: {os.path.relpath(spec)}", "",
             "| workers | cells | wall s | cells per minute | CPU s in cells |",
             "|---:|---:|---:|---:|---:|"]
    for n, (cells, wall, cpu) in sorted(result.items()):
        lines.append(f"| {n} | {cells} | {wall:.1f} | {60 * cells / wall:.1f} | {cpu:.1f} |")
    if 1 in result and 2 in result:
        lines.append("")
        lines.append(f"speed-up with 2 workers: {result[1][1] / result[2][1]:.2f}x")
    return "\n".join(lines)
