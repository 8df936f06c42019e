"""Reclaim throughput: a process in a memory cgroup limited to 1 GiB reads a 4 GiB
file once, so three quarters of what it reads must be reclaimed on the way.  Reports
the pages scanned and reclaimed per second of CPU for mmsim and, where it can run,
for the live kernel doing the same (a cgroup v1 memory controller, a sparse file read
with read(2) so no disk I/O is involved; the scan counts come from /proc/vmstat's
pgscan_file/pgsteal_file)."""

import os
import resource
import time

from mmsim.kernel import Kernel
from mmsim.memcg import MemCgroup
from mmsim.uapi import MAP_SHARED, PROT_READ

PAGE = 4096
CHUNK = 16 << 20
CGROUP_V1 = "/sys/fs/cgroup/memory"


def _cgroup(k, name, limit):
    if hasattr(k, "mkdir"):
        k.mkdir(f"/sys/fs/cgroup/{name}")
        k.proc_write(f"/sys/fs/cgroup/{name}/memory.max", str(limit))
        return k.memcgs[name]
    m = MemCgroup(name, parent=k.root_memcg)
    k.memcgs[name] = m
    m.max = limit // PAGE
    return m


def sim_run(cache_bytes, limit_bytes):
    """mmsim: read ``cache_bytes`` of one file inside a cgroup of ``limit_bytes``."""
    k = Kernel(randomize=False)
    proc = k.spawn()
    memcg = _cgroup(k, "bench", limit_bytes)
    proc.memcg = proc.mm.memcg = memcg
    k.create_file("/data", cache_bytes)
    fd = proc.open("/data")
    t0 = time.process_time()
    if hasattr(proc, "read"):
        while proc.read(fd, 1 << 20):
            pass
        how = "read(2), 1 MiB at a time"
    else:
        for off in range(0, cache_bytes, CHUNK):
            n = min(CHUNK, cache_bytes - off)
            a = proc.mmap(0, n, PROT_READ, MAP_SHARED, fd, off)
            proc.touch(a, n, write=False)
            proc.munmap(a, n)
        how = "mmap + touch + munmap, 16 MiB at a time"
    cpu = time.process_time() - t0
    return {"side": "mmsim", "how": how, "cpu_s": cpu, "scanned": memcg.stat["pgscan"],
            "reclaimed": memcg.stat["pgsteal"], "cached_at_end": memcg.stat["file"]}


def _vmstat():
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            name, value = line.split()
            out[name] = int(value)
    return out


def live_available():
    """Why the live side cannot run here, or None."""
    if os.uname().sysname != "Linux" or os.geteuid() != 0:
        return "needs Linux and root"
    if not os.path.exists(os.path.join(CGROUP_V1, "memory.limit_in_bytes")):
        return "needs the cgroup v1 memory controller"
    return None


def live_run(cache_bytes, limit_bytes, directory="/var/tmp"):
    """The live kernel: a child in a new v1 memory cgroup reads a sparse file of
    ``cache_bytes`` with 1 MiB read(2) calls; its CPU time and the direct-reclaim
    counters of /proc/vmstat around it (pgscan_file and pgsteal_file: the
    per-reclaimer ones leave out reclaim at a cgroup's limit)."""
    name = f"mmsim-bench-{os.getpid()}"
    cg = os.path.join(CGROUP_V1, name)
    path = os.path.join(directory, name)
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit_bytes))
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, cache_bytes)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        before = _vmstat()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            os.lseek(fd, 0, 0)
            while os.read(fd, 1 << 20):
                pass
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
            os.write(w, repr(cpu).encode())
            os._exit(0)
        os.close(w)
        cpu = float(os.read(r, 100).decode())
        os.close(r)
        os.waitpid(pid, 0)
        after = _vmstat()
        with open(os.path.join(cg, "memory.stat")) as f:
            cached = int(dict(line.split() for line in f)["cache"]) // PAGE
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)
    delta = {k: after[k] - before.get(k, 0) for k in after}
    return {"side": "kernel", "how": "read(2), 1 MiB at a time", "cpu_s": cpu,
            "scanned": delta["pgscan_file"] + delta["pgscan_anon"],
            "reclaimed": delta["pgsteal_file"] + delta["pgsteal_anon"],
            "cached_at_end": cached}


def run(cache_bytes=4 << 30, limit_bytes=1 << 30, live=True):
    """Both sides (the live one where available); a list of result dicts."""
    rows = [sim_run(cache_bytes, limit_bytes)]
    why = live_available()
    if live and why is None:
        rows.append(live_run(cache_bytes, limit_bytes))
    return rows, why


def table(rows, cache_bytes, limit_bytes):
    """A markdown table of the rows."""
    out = [f"{cache_bytes >> 20} MiB read through a cgroup limited to {limit_bytes >> 20} MiB",
           "", "| side | how | CPU s | pages scanned | pages reclaimed | scanned per CPU s "
           "| reclaimed per CPU s | cached at the end |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        cpu = r["cpu_s"] or 1e-9
        out.append(f"| {r['side']} | {r['how']} | {r['cpu_s']:.2f} | {r['scanned']:,} | "
                   f"{r['reclaimed']:,} | {r['scanned'] / cpu:,.0f} | {r['reclaimed'] / cpu:,.0f} "
                   f"| {r['cached_at_end']:,} |")
    if len(rows) == 2 and rows[1]["reclaimed"] and rows[0]["reclaimed"]:
        sim = rows[0]["cpu_s"] / rows[0]["reclaimed"]
        kern = rows[1]["cpu_s"] / rows[1]["reclaimed"]
        out.append("")
        out.append(f"CPU per page reclaimed (read included): mmsim {sim * 1e6:.2f} us, "
                   f"kernel {kern * 1e6:.2f} us, ratio {sim / kern:.1f}x")
    return "\n".join(out)
