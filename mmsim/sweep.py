"""Sweeps: run a study over a grid of configurations on dask.distributed and collect
one table.

A spec is a TOML file:

    [sweep]
    study = "fade"                  # a name in mmsim.studies.STUDIES, or "module:function"
    [grid]                          # every combination is one cell
    workload = ["readers", "killed_app"]
    fade = [false, true]
    seed = [0, 1]
    [params]                        # passed to every cell as they are
    scale = 4
    [plot]                          # the heatmap written beside the table
    rows = "workload"
    cols = "fade"
    value = "workingset_refault_file"

A study is a function of one cell's parameters (a dict) returning a flat dict of
numbers.  Each cell runs in a worker of a LocalCluster (``workers`` processes, one
thread each) or of the cluster at ``scheduler``; its row (parameters, results and
the cell's CPU seconds) is written to ``OUT/cells/ID.parquet`` as soon as it ends, so
a re-run skips the cells already done; then ``OUT/results.parquet`` holds every row
and ``OUT/heatmap.png`` the plot.  Needs the ``sandbox`` extra (dask, pandas,
pyarrow, matplotlib, tqdm).
"""

import hashlib
import importlib
import itertools
import json
import os
import time
import tomllib

from . import plot
from .studies import STUDIES

__all__ = ["load_spec", "cells", "cell_id", "run_cell", "sweep"]


def load_spec(path):
    """The spec at ``path`` as a dict, checked: ``sweep.study`` and a ``grid`` of
    non-empty lists (ValueError otherwise)."""
    with open(path, "rb") as f:
        spec = tomllib.load(f)
    study = spec.get("sweep", {}).get("study")
    if not isinstance(study, str):
        raise ValueError(f"{path}: [sweep] needs a study name")
    grid = spec.get("grid", {})
    if not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(f"{path}: [grid] needs at least one key, each a non-empty list")
    params = spec.get("params", {})
    clash = set(grid) & set(params)
    if clash:
        raise ValueError(f"{path}: {sorted(clash)} both in [grid] and [params]")
    return spec


def cells(spec):
    """Every cell of the spec's grid, as parameter dicts (``params`` included), in
    the grid's order."""
    grid = spec["grid"]
    keys = list(grid)
    fixed = spec.get("params", {})
    return [{**fixed, **dict(zip(keys, values))}
            for values in itertools.product(*(grid[k] for k in keys))]


def cell_id(study, params):
    """A stable name for a cell: a hash of the study and its parameters."""
    text = json.dumps([study, params], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_study(name):
    """The study function called ``name``: a key of mmsim.studies.STUDIES or
    ``module:function``."""
    if ":" in name:
        module, func = name.split(":", 1)
        return getattr(importlib.import_module(module), func)
    try:
        return STUDIES[name]
    except KeyError:
        raise ValueError(f"unknown study {name!r}; known: {sorted(STUDIES)}") from None


def run_cell(study, params):
    """Run one cell (in a worker): the row of its parameters, results and CPU time."""
    fn = resolve_study(study)
    t0 = time.process_time()
    result = fn(dict(params))
    row = {**params, **result}
    row["cpu_seconds"] = time.process_time() - t0
    row["cell"] = cell_id(study, params)
    return row


def _write_row(out, row):
    import pandas
    path = os.path.join(out, "cells", row["cell"] + ".parquet")
    tmp = path + ".tmp"
    pandas.DataFrame([row]).to_parquet(tmp, index=False)
    os.replace(tmp, path)   # a cell file is whole or absent, even after a crash


def _client(workers, scheduler):
    from dask.distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)
    return Client(cluster), cluster


def sweep(spec_path, out, workers=2, scheduler=None, progress=True, log=print):
    """Run every cell of the spec at ``spec_path`` not yet in ``out`` and write the
    table and heatmap; returns ``(table, ran, skipped)``."""
    import pandas
    from tqdm import tqdm
    spec = load_spec(spec_path)
    study = spec["sweep"]["study"]
    resolve_study(study)   # an unknown study fails before any worker starts
    os.makedirs(os.path.join(out, "cells"), exist_ok=True)
    todo = [p for p in cells(spec)
            if not os.path.exists(os.path.join(out, "cells", cell_id(study, p) + ".parquet"))]
    skipped = len(cells(spec)) - len(todo)
    if todo:
        from dask.distributed import as_completed
        client, cluster = _client(workers, scheduler)
        try:
            futures = [client.submit(run_cell, study, p, pure=False) for p in todo]
            # tqdm shows a bar with an ETA on a terminal and nothing otherwise.
            with tqdm(total=len(todo), desc="cells", unit="cell",
                      disable=None if progress else True) as bar:
                for fut in as_completed(futures):
                    _write_row(out, fut.result())
                    bar.update(1)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    files = sorted(os.listdir(os.path.join(out, "cells")))
    wanted = {cell_id(study, p) + ".parquet" for p in cells(spec)}
    table = pandas.concat([pandas.read_parquet(os.path.join(out, "cells", f))
                           for f in files if f in wanted], ignore_index=True)
    table.to_parquet(os.path.join(out, "results.parquet"), index=False)
    shape = spec.get("plot")
    if shape:
        plot.save(plot.heatmap(table, shape["rows"], shape["cols"], shape["value"],
                               title=shape.get("title")),
              os.path.join(out, "heatmap.png"))
    log(f"{len(todo)} cells run, {skipped} already done; {len(table)} rows in "
        f"{os.path.join(out, 'results.parquet')}")
    if shape:
        summary = table.pivot_table(index=shape["rows"], columns=shape["cols"],
                                    values=shape["value"], aggfunc="mean")
        log(f"mean {shape['value']}:\n{summary.to_string()}")
    return table, len(todo), skipped
