"""Memory-pressure scenarios (issue 14) as plain data both sides run, and their runner on
the live kernel: a process in a cgroup v1 memory cgroup reading files with read(2) and
through mmap, competitors streaming other files, anonymous memory beside the page cache,
an anonymous overrun that ends in a cgroup OOM kill, and a control without pressure.

A ``Scenario`` is data only (a name, the cgroup's memory limit, the files, the steps), so
the simulator side can run the same steps with its own Process API without this module's
live machinery.  The step vocabulary (``VOCABULARY``) and its exact meaning:

* Processes.  The steps run in one process at a time, created in the cgroup before it does
  anything.  ``("exit",)`` ends the current process (its mappings and anonymous memory go
  away as at any exit); the next step, if any, runs in a fresh process in the same cgroup.
  The steps of a scenario end with ``("exit",)``.
* Files.  Each file is ``size`` bytes (a multiple of the page size) of non-zero data,
  written and synced before the run; at the start none of its pages is cached and its
  page cache holds no shadow entries.
* ``("read", file, offset, length, bufsize)``: open the file read-only, lseek to
  ``offset``, read(2) ``min(bufsize, left)`` bytes into one buffer until ``length`` bytes
  were read, close.
* ``("pread", file, offset, length, bufsize)``: the same with pread(2) at ``offset + done``
  and no lseek.
* ``("mmap_read", file, offset, length, keep)``: open, mmap ``length`` bytes at ``offset``
  PROT_READ MAP_SHARED, close the fd, read one byte at the start of each page in
  ascending order; then munmap, unless ``keep``: the mapping then stays until the
  process exits.
* ``("anon", nbytes)``: mmap ``nbytes`` PROT_READ|PROT_WRITE MAP_PRIVATE|MAP_ANONYMOUS and
  write one byte at the start of each page in ascending order; kept until exit.
* ``("stream", file, bufsize)``: a competitor: the current process forks a child (so it is
  in the same cgroup) that reads the whole file from offset 0 with read(2) in ``bufsize``
  chunks and exits; the current process waits for it.
* ``("fadvise_dontneed", file)``: open, posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), close.
* ``("exit",)``: the current process exits.

``run_live(scenario, repeats)`` runs a scenario on the live kernel and records, after every
step, the cgroup's memory.stat, usage, failcnt and oom_control, the step's deltas of
``/proc/vmstat`` counters, the step's own major faults (getrusage), and per file the
pages cached and the shadow entries (cachestat(2)).  A run in which pages of the
scenario's files vanished while the cgroup never hit its limit (the host's DAMON
``pageout`` scheme reclaims cold unmapped page cache in the background), or in which
something outside the cgroup refaulted (so ``/proc/vmstat``'s workingset_activate_file is
not the cgroup's alone: cgroup v1's memory.stat lacks it), is marked disturbed and run
again, a bounded number of times.  ``spread(runs)`` gives min/median/max per step and
metric; ``python -m mmsim.live.pressure [--repeats N] [SCENARIO...]`` prints them.
"""

import argparse
import ctypes
import dataclasses
import gc
import json
import mmap
import os
import pickle
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

from .child import available, load_libc

__all__ = ["Scenario", "VOCABULARY", "SCENARIOS", "TOLERANCE", "check_scenario",
           "pressure_available", "run_live", "metrics", "spread", "within", "format_table",
           "main"]

PAGE = mmap.PAGESIZE
MiB = 1 << 20
CGROUP_ROOT = "/sys/fs/cgroup/memory"
NR_CACHESTAT = 451            # x86-64
# How long the runner waits before a settled reading: /proc/vmstat's node counters fold
# their per-CPU deltas once a second and the memcg statistics flush every two seconds.
SETTLE = 2.2
# File refaults elsewhere on the host a run tolerates: each could be an activation
# /proc/vmstat counts that is not the cgroup's.
OUTSIDE_SLACK = 16

# Each step's name and the names of its fields after the name.
VOCABULARY = {
    "read": ("file", "offset", "length", "bufsize"),
    "pread": ("file", "offset", "length", "bufsize"),
    "mmap_read": ("file", "offset", "length", "keep"),
    "anon": ("nbytes",),
    "stream": ("file", "bufsize"),
    "fadvise_dontneed": ("file",),
    "exit": (),
}

# The /proc/vmstat counters recorded as deltas over each step (host-wide).
VMSTAT = ("workingset_refault_file", "workingset_activate_file", "workingset_restore_file",
          "pgmajfault", "pgscan_kswapd", "pgscan_direct", "pgscan_file", "pgsteal_kswapd",
          "pgsteal_direct", "pgsteal_file")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A memory-pressure scenario: the cgroup's limit in bytes (None: no limit, the
    control), the files as (name, size in bytes), and the steps."""

    name: str
    limit: int | None
    files: tuple
    steps: tuple
    about: str = ""

    def processes(self) -> list[list[tuple[int, tuple]]]:
        """The steps as (index, step) grouped by process, each ending with its exit."""
        procs, cur = [], []
        for index, step in enumerate(self.steps):
            cur.append((index, step))
            if step[0] == "exit":
                procs.append(cur)
                cur = []
        return procs


def check_scenario(sc: Scenario) -> None:
    """Raise ValueError unless every step is from the vocabulary and fits the files."""
    sizes = dict(sc.files)
    if len(sizes) != len(sc.files) or not sc.files:
        raise ValueError(f"{sc.name}: file names must be unique and present")
    for name, size in sc.files:
        if not isinstance(name, str) or "/" in name or not name:
            raise ValueError(f"{sc.name}: bad file name {name!r}")
        if not isinstance(size, int) or size <= 0 or size % PAGE:
            raise ValueError(f"{sc.name}: {name}: size must be a positive multiple of a page")
    limit = sc.limit
    if limit is not None and (not isinstance(limit, int) or limit % PAGE or limit <= 0):
        raise ValueError(f"{sc.name}: limit must be None or a positive multiple of a page")
    if not sc.steps or tuple(sc.steps[-1]) != ("exit",):
        raise ValueError(f"{sc.name}: the steps must end with ('exit',)")
    for step in sc.steps:
        if not isinstance(step, tuple) or not step or step[0] not in VOCABULARY:
            raise ValueError(f"{sc.name}: step {step!r} is not in the vocabulary")
        fields = dict(zip(VOCABULARY[step[0]], step[1:]))
        if len(step) - 1 != len(VOCABULARY[step[0]]):
            raise ValueError(f"{sc.name}: step {step!r} needs fields {VOCABULARY[step[0]]}")
        if "file" in fields and fields["file"] not in sizes:
            raise ValueError(f"{sc.name}: step {step!r} names an unknown file")
        for key in ("offset", "length", "bufsize", "nbytes"):
            if key in fields and (not isinstance(fields[key], int) or fields[key] < 0):
                raise ValueError(f"{sc.name}: step {step!r}: {key} must be an int >= 0")
        if "keep" in fields and not isinstance(fields["keep"], bool):
            raise ValueError(f"{sc.name}: step {step!r}: keep must be a bool")
        if step[0] in ("read", "pread", "mmap_read"):
            if fields["offset"] + fields["length"] > sizes[fields["file"]]:
                raise ValueError(f"{sc.name}: step {step!r} goes past the end of the file")
        if step[0] == "mmap_read" and (fields["offset"] % PAGE or fields["length"] == 0):
            raise ValueError(f"{sc.name}: step {step!r}: page-aligned offset, length > 0")
        if step[0] == "anon" and (fields["nbytes"] == 0 or fields["nbytes"] % PAGE):
            raise ValueError(f"{sc.name}: step {step!r}: nbytes must be whole pages")
        if "bufsize" in fields and fields["bufsize"] == 0:
            raise ValueError(f"{sc.name}: step {step!r}: bufsize must be > 0")


def _whole(name, size, bufsize=128 * 1024):
    return ("read", name, 0, size, bufsize)


def _scenarios():
    limit = 64 * MiB
    ws, big = 40 * MiB, 96 * MiB
    small, a, b = 16 * MiB, 16 * MiB, 16 * MiB
    out = [
        Scenario("control", None, (("ws", ws), ("big", big)),
                 (_whole("ws", ws), _whole("ws", ws), ("stream", "big", 128 * 1024),
                  _whole("ws", ws), ("mmap_read", "ws", 0, ws, False),
                  ("fadvise_dontneed", "big"), ("exit",)),
                 "no limit: everything stays cached, nothing refaults"),
        Scenario("read_pressure", limit, (("ws", ws), ("big", big)),
                 (_whole("ws", ws), _whole("ws", ws), ("stream", "big", 128 * 1024),
                  _whole("ws", ws), ("stream", "big", 128 * 1024), _whole("ws", ws),
                  ("exit",)),
                 "a read(2) working set, read twice (active), then a streaming competitor"),
        Scenario("mmap_pressure", limit, (("ws", ws), ("big", big)),
                 (("mmap_read", "ws", 0, ws, False), ("mmap_read", "ws", 0, ws, False),
                  ("stream", "big", 128 * 1024), ("mmap_read", "ws", 0, ws, False),
                  ("stream", "big", 128 * 1024), ("mmap_read", "ws", 0, ws, False),
                  ("exit",)),
                 "the read_pressure working set through MAP_SHARED mappings"),
        Scenario("anon_beside_cache", limit, (("ws", 24 * MiB), ("big", big)),
                 (("anon", 24 * MiB), _whole("ws", 24 * MiB), _whole("ws", 24 * MiB),
                  ("stream", "big", 128 * 1024), _whole("ws", 24 * MiB), ("exit",)),
                 "24 MiB of anon (unreclaimable: no swap) beside a 24 MiB working set"),
        Scenario("anon_oom", limit, (("ws", small),),
                 (_whole("ws", small), ("anon", 96 * MiB), ("exit",)),
                 "an anon overrun past the limit: the cgroup OOM killer kills the process"),
        Scenario("short_readers", limit, (("a", a), ("b", b), ("big", big)),
                 (("mmap_read", "a", 0, a, True), ("mmap_read", "b", 0, b, True), ("exit",),
                  ("mmap_read", "a", 0, a, True), ("mmap_read", "b", 0, b, True), ("exit",),
                  ("stream", "big", 128 * 1024), ("exit",),
                  ("mmap_read", "a", 0, a, True), ("mmap_read", "b", 0, b, True), ("exit",)),
                 "short-lived readers map a shared file set until exit (FADE_ON_DEATH)"),
        Scenario("short_readers_read", limit, (("a", a), ("b", b), ("big", big)),
                 (_whole("a", a), _whole("b", b), ("exit",),
                  _whole("a", a), _whole("b", b), ("exit",),
                  ("stream", "big", 128 * 1024), ("exit",),
                  _whole("a", a), _whole("b", b), ("exit",)),
                 "short-lived readers read(2) a shared file set, then exit"),
    ]
    for sc in out:
        check_scenario(sc)
    return {sc.name: sc for sc in out}


SCENARIOS = _scenarios()


# ---------------------------------------------------------------- live readings

def pressure_available() -> tuple[bool, str]:
    """``(True, "")`` if scenarios can run live: Linux 6.x x86-64, root, cgroup v1 memory."""
    ok, why = available()
    if not ok:
        return ok, why
    if os.geteuid() != 0:
        return False, "memory cgroups need root"
    if not os.path.exists(os.path.join(CGROUP_ROOT, "memory.limit_in_bytes")):
        return False, f"no cgroup v1 memory controller at {CGROUP_ROOT}"
    return True, ""


def _read(path):
    with open(path) as f:
        return f.read()


def _kv(text):
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


class _CacheStatRange(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CacheStat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def _cachestat(libc, fd):
    """(pages cached, shadow entries, recently evicted shadows) of a whole file."""
    rng, cs = _CacheStatRange(0, 0), _CacheStat()
    if libc.syscall(NR_CACHESTAT, fd, ctypes.byref(rng), ctypes.byref(cs), 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cachestat: {os.strerror(err)}")
    return [cs.nr_cache, cs.nr_evicted, cs.nr_recently_evicted]


def _fstype(path):
    """The filesystem type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    path = os.path.realpath(path)
    best, kind = "", ""
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        point = left.split()[4]
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, right.split()[0]
    return kind


def _snapshot(cg, libc, fds):
    oom = _kv(_read(os.path.join(cg, "memory.oom_control")))
    vm = _kv(_read("/proc/vmstat"))
    return {"stat": _kv(_read(os.path.join(cg, "memory.stat"))),
            "usage": int(_read(os.path.join(cg, "memory.usage_in_bytes"))),
            "kmem": int(_read(os.path.join(cg, "memory.kmem.usage_in_bytes"))),
            "failcnt": int(_read(os.path.join(cg, "memory.failcnt"))),
            "oom_kill": oom.get("oom_kill", 0), "under_oom": oom.get("under_oom", 0),
            "vm": {key: vm.get(key, 0) for key in VMSTAT},
            "files": {name: _cachestat(libc, fd) for name, fd in fds.items()},
            "time": time.monotonic()}


# The metrics that are counts of events over an interval (the rest are sizes after it).
COUNTERS = ("refault", "pgmajfault", "majflt", "activate", "restore", "host_refault",
            "failcnt", "oom_kill")
# The metrics read from /proc/vmstat, which other processes on the host move too.
HOST_WIDE = ("activate", "restore", "host_refault")


def metrics(prev: dict, cur: dict) -> dict:
    """The compared metrics between two snapshots: sizes in pages after, counters as deltas."""
    st, ps = cur["stat"], prev["stat"]
    out = {key: st.get(key, 0) // PAGE
           for key in ("cache", "active_file", "inactive_file", "mapped_file", "rss")}
    out["refault"] = st.get("workingset_refault_file", 0) - ps.get("workingset_refault_file", 0)
    out["pgmajfault"] = st.get("pgmajfault", 0) - ps.get("pgmajfault", 0)
    vm, pv = cur["vm"], prev["vm"]
    out["activate"] = vm["workingset_activate_file"] - pv["workingset_activate_file"]
    out["restore"] = vm["workingset_restore_file"] - pv["workingset_restore_file"]
    out["host_refault"] = vm["workingset_refault_file"] - pv["workingset_refault_file"]
    out["usage"] = cur["usage"] // PAGE
    out["kmem"] = cur.get("kmem", 0) // PAGE
    out["failcnt"] = cur["failcnt"] - prev["failcnt"]
    out["oom_kill"] = cur["oom_kill"] - prev["oom_kill"]
    for name, (cached, shadows, _) in cur["files"].items():
        out[f"cached:{name}"] = cached
        out[f"shadows:{name}"] = shadows
    return out


# ---------------------------------------------------------------- the child side

def _read_range(path, offset, length, bufsize, positional):
    buf = memoryview(bytearray(bufsize))
    fd = os.open(path, os.O_RDONLY)
    try:
        if not positional:
            os.lseek(fd, offset, os.SEEK_SET)
        done = 0
        while done < length:
            want = min(bufsize, length - done)
            got = (os.preadv(fd, [buf[:want]], offset + done) if positional
                   else os.readv(fd, [buf[:want]]))
            if got <= 0:
                break
            done += got
    finally:
        os.close(fd)


def _do_step(step, paths, sizes, kept):
    op = step[0]
    if op in ("read", "pread"):
        _, name, offset, length, bufsize = step
        _read_range(paths[name], offset, length, bufsize, op == "pread")
    elif op == "mmap_read":
        _, name, offset, length, keep = step
        fd = os.open(paths[name], os.O_RDONLY)
        try:
            m = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ,
                          offset=offset)
        finally:
            os.close(fd)
        for at in range(0, length, PAGE):
            m[at]
        if keep:
            kept.append(m)
        else:
            m.close()
    elif op == "anon":
        m = mmap.mmap(-1, step[1], flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                      prot=mmap.PROT_READ | mmap.PROT_WRITE)
        for at in range(0, step[1], PAGE):
            m[at] = 1
        kept.append(m)
    elif op == "stream":
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _read_range(paths[step[1]], 0, sizes[step[1]], step[2], False)
                code = 0
            finally:
                os._exit(code)
        os.waitpid(pid, 0)
    elif op == "fadvise_dontneed":
        fd = os.open(paths[step[1]], os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _child(steps, paths, sizes, go_r, rep_w):
    """One scenario process: wait for each go, run the step, report its major faults."""
    gc.disable()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    kept = []
    for _, step in steps:
        if os.read(go_r, 1) != b"g":
            return
        r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        try:
            _do_step(step, paths, sizes, kept)
        except OSError:
            # A failed syscall is the scenario's fault or the host's, not a kill: say so.
            os.write(rep_w, (json.dumps({"error": traceback.format_exc()}) + "\n").encode())
            return
        r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        majflt = r1.ru_majflt - r0.ru_majflt + c1.ru_majflt - c0.ru_majflt
        os.write(rep_w, (json.dumps({"majflt": majflt}) + "\n").encode())
        if step[0] == "exit":
            return


# ---------------------------------------------------------------- the runner

def _make_files(folder, files):
    block = b"\x5a" * MiB
    paths = {}
    for name, size in files:
        path = os.path.join(folder, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            left = size
            while left:
                left -= os.write(fd, block[:min(left, len(block))])
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        paths[name] = path
    return paths


def _run_process(cg, steps, paths, sizes, libc, fds, prev, records, settle_steps):
    """Fork one scenario process into the cgroup and record a snapshot after each step."""
    go_r, go_w = os.pipe()
    rep_r, rep_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(go_w)
            os.close(rep_r)
            _child(steps, paths, sizes, go_r, rep_w)
            status = 0
        finally:
            os._exit(status)
    os.close(go_r)
    os.close(rep_w)
    reaped = False
    reports = os.fdopen(rep_r, "rb")
    try:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        for index, step in steps:
            os.write(go_w, b"g")
            line = reports.readline()
            if line and "error" in json.loads(line):
                raise RuntimeError(f"scenario process failed in step {index} {step!r}:\n"
                                   f"{json.loads(line)['error']}")
            killed = 0
            if not line or step[0] == "exit":
                _, status = os.waitpid(pid, 0)
                reaped = True
                if os.WIFSIGNALED(status):
                    killed = os.WTERMSIG(status)
                elif not line or os.WEXITSTATUS(status):
                    raise RuntimeError(f"scenario process failed in step {index} {step!r}: "
                                       f"exit status {os.waitstatus_to_exitcode(status)}")
            if settle_steps:
                time.sleep(SETTLE)
            snap = _snapshot(cg, libc, fds)
            majflt = json.loads(line)["majflt"] if line else None
            m = metrics(prev, snap)
            if majflt is not None:
                m["majflt"] = majflt
            records.append({"index": index, "op": list(step), "majflt": majflt,
                            "killed": killed, "after": snap, "m": m})
            prev = snap
            if killed:
                break
        return prev
    finally:
        os.close(go_w)
        reports.close()
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def _disturbances(sc, start, records, final):
    """Why this run's numbers are not the scenario's own, if they are not."""
    why = []
    prev = start
    for rec in records:
        cur = rec["after"]
        if cur["failcnt"] == prev["failcnt"]:
            for name, (cached, _, _) in cur["files"].items():
                lost = prev["files"][name][0] - cached
                if lost > 0 and rec["op"] != ["fadvise_dontneed", name]:
                    why.append(f"step {rec['index']} {rec['op'][0]}: {name} lost {lost} "
                               f"pages without the cgroup reaching its limit")
        prev = cur
    own = final["stat"].get("workingset_refault_file", 0) - start["stat"].get(
        "workingset_refault_file", 0)
    host = final["vm"]["workingset_refault_file"] - start["vm"]["workingset_refault_file"]
    if host - own > OUTSIDE_SLACK:
        why.append(f"{host - own} file refaults outside the cgroup during the run "
                   f"(workingset_activate_file is host-wide)")
    return why


def _cleanup_cgroup(cg):
    for _ in range(50):
        try:
            os.rmdir(cg)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    os.rmdir(cg)


def _run_once(sc, settle_steps, workdir):
    libc = load_libc()
    folder = tempfile.mkdtemp(prefix=f"mmsim-pressure-{sc.name}-", dir=workdir)
    cg = os.path.join(CGROUP_ROOT, f"mmsim-{sc.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    fds, paths = {}, {}
    try:
        if _fstype(folder) in ("tmpfs", "ramfs", "shmem"):
            raise RuntimeError(f"{folder} is on {_fstype(folder)}: its pages are not "
                               f"reclaimable without swap; use a disk-backed workdir")
        paths = _make_files(folder, sc.files)
        fds = {name: os.open(path, os.O_RDONLY) for name, path in paths.items()}
        os.mkdir(cg)
        if sc.limit is not None:
            with open(os.path.join(cg, "memory.limit_in_bytes"), "w") as f:
                f.write(str(sc.limit))
        time.sleep(SETTLE)
        start = prev = _snapshot(cg, libc, fds)
        dirty = [f"{n}: {c} pages cached, {s} shadows at the start"
                 for n, (c, s, _) in start["files"].items() if c or s]
        records = []
        sizes = dict(sc.files)
        for steps in sc.processes():
            prev = _run_process(cg, steps, paths, sizes, libc, fds, prev, records,
                                settle_steps)
        time.sleep(SETTLE)
        final = _snapshot(cg, libc, fds)
        # Counters come from the settled reading; sizes from the last step's, as DAMON
        # may take unmapped pages while the runner waits.
        total = metrics(start, final)
        total.update({k: v for k, v in metrics(start, prev).items() if k not in COUNTERS})
        return {"scenario": sc.name, "records": records, "start": start, "final": final,
                "total": total,
                "lost_while_settling": {n: prev["files"][n][0] - c
                                        for n, (c, _, _) in final["files"].items()},
                "killed": max([r["killed"] for r in records] or [0]),
                "disturbed": dirty + _disturbances(sc, start, records, final)}
    finally:
        for fd in fds.values():
            os.close(fd)
        for path in paths.values():
            os.unlink(path)
        os.rmdir(folder)
        if os.path.isdir(cg):
            _cleanup_cgroup(cg)


def run_live(sc: Scenario, repeats: int = 5, retries: int = 3, settle_steps: bool = False,
             workdir: str | None = None) -> list[dict]:
    """Run ``sc`` ``repeats`` times on the live kernel, each disturbed run again up to
    ``retries`` times; one dict per kept run (``records`` per step, ``total``, ``killed``,
    ``disturbed`` reasons of the kept run, ``attempts``, ``discarded``: the reasons of
    the runs run again)."""
    check_scenario(sc)
    ok, why = pressure_available()
    if not ok:
        raise RuntimeError(why)
    runs = []
    for _ in range(repeats):
        discarded = []
        for attempt in range(1, retries + 2):
            run = _run_once(sc, settle_steps, workdir)
            run["attempts"], run["discarded"] = attempt, list(discarded)
            if not run["disturbed"]:
                break
            discarded.append(run["disturbed"])
        runs.append(run)
    return runs


_FRESH = ("import pickle, sys\n"
          "from mmsim.live.pressure import run_live\n"
          "args = pickle.loads(sys.stdin.buffer.read())\n"
          "sys.stdout.buffer.write(pickle.dumps(run_live(*args)))\n")


def run_live_fresh(sc: Scenario, repeats: int = 5, retries: int = 3,
                   settle_steps: bool = False, workdir: str | None = None) -> list[dict]:
    """``run_live`` in a fresh interpreter.  The scenario process is forked from the
    caller, and every page it copies on write is charged to its cgroup: under a
    caller with a big heap (a test runner that loaded pandas and matplotlib, a
    notebook) that shifts ``usage`` by hundreds of pages.  A fresh interpreter with
    only mmsim loaded gives the figures the tolerance was measured with."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", _FRESH], env=env, capture_output=True,
                          input=pickle.dumps((sc, repeats, retries, settle_steps, workdir)))
    if done.returncode:
        raise RuntimeError("run_live in a fresh interpreter failed:\n"
                           + done.stderr.decode(errors="replace")[-2000:])
    return pickle.loads(done.stdout)


# ---------------------------------------------------------------- spread and tolerance

# The metrics in the table, in order (per-file metrics follow, as cached:NAME).
SHOWN = ("cache", "active_file", "inactive_file", "mapped_file", "rss", "refault",
         "activate", "restore", "pgmajfault", "failcnt", "oom_kill")

# The tolerance proposed from the live spread (docs/pressure.md): a simulated value v
# agrees with the live runs' [lo, hi] for a metric when
# lo * (1 - rel) - slack <= v <= hi * (1 + rel) + slack, with (rel, slack) below, in pages
# or events; and, for the event counts (``COUNTERS``), zero when every live run had zero
# and non-zero when every live run had some: whether an event happens at all is a
# decision of reclaim, not noise.  The host-wide counters of /proc/vmstat count as zero
# up to the refaults a run tolerates outside the cgroup (``OUTSIDE_SLACK``).
TOLERANCE = {
    "cache": (0.05, 160), "active_file": (0.15, 160), "inactive_file": (0.15, 160),
    "mapped_file": (0.0, 16), "rss": (0.05, 256), "usage": (0.05, 256),
    "kmem": (1.0, 256),
    "refault": (0.10, 128), "activate": (0.25, 80), "restore": (0.25, 80),
    "pgmajfault": (1.0, 2), "majflt": (1.0, 2), "failcnt": (1.0, 64), "oom_kill": (0.0, 0),
    "host_refault": (0.10, 128), "cached": (0.10, 160), "shadows": (0.25, 160),
}


def within(metric: str, lo: float, hi: float, value: float) -> bool:
    """Whether ``value`` agrees with a live spread [lo, hi] of ``metric`` (``TOLERANCE``)."""
    rel, slack = TOLERANCE[metric.split(":", 1)[0]]
    if metric in COUNTERS:
        noise = OUTSIDE_SLACK if metric in HOST_WIDE else 0
        if hi <= noise < value or value <= noise < lo:
            return False
    return lo * (1 - rel) - slack <= value <= hi * (1 + rel) + slack


def spread(runs: list[dict]) -> dict:
    """{step index or "total": {metric: (min, median, max)}} over the runs' records."""
    values = {}
    for run in runs:
        for rec in run["records"]:
            for key, val in rec["m"].items():
                values.setdefault(rec["index"], {}).setdefault(key, []).append(val)
        for key, val in run["total"].items():
            values.setdefault("total", {}).setdefault(key, []).append(val)
    return {step: {key: (min(v), statistics.median(v), max(v)) for key, v in per.items()}
            for step, per in values.items()}


def _cell(lo, med, hi):
    med = int(med) if float(med).is_integer() else med
    return f"{med}" if lo == hi else f"{med} [{lo}..{hi}]"


def format_table(sc: Scenario, runs: list[dict]) -> str:
    """A plain-text table of a scenario's spread: median [min..max] per step and metric."""
    sp = spread(runs)
    files = [f"cached:{name}" for name, _ in sc.files]
    cols = list(SHOWN) + files
    limit = "none" if sc.limit is None else f"{sc.limit // MiB} MiB"
    disturbed = sum(1 for r in runs if r["disturbed"])
    killed = sorted({r["killed"] for r in runs})
    head = [f"{sc.name}: {sc.about}",
            f"limit {limit}; files " + ", ".join(f"{n} {s // MiB} MiB" for n, s in sc.files)
            + f"; {len(runs)} runs ({sum(r['attempts'] for r in runs)} attempts, "
            f"{disturbed} kept disturbed); killed by signal {killed}; sizes in pages"]
    lost = sum(1 for r in runs for d in r.get("discarded", []) if any("lost" in w for w in d))
    outside = sum(1 for r in runs for d in r.get("discarded", [])
                  if any("outside" in w for w in d))
    if lost or outside:
        head.append(f"run again: {lost} for pages lost below the limit (DAMON), "
                    f"{outside} for file refaults outside the cgroup")
    rows = [["step"] + [c.replace("_file", "") for c in cols]]
    for step in [s for s in sp if s != "total"] + ["total"]:
        name = "total" if step == "total" else f"{step} {sc.steps[step][0]}"
        rows.append([name] + [_cell(*sp[step][c]) if c in sp[step] else "-" for c in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols) + 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(head + lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m mmsim.live.pressure [--repeats N] [--json FILE] [SCENARIO...]``."""
    ap = argparse.ArgumentParser(prog="python -m mmsim.live.pressure",
                                 description="run the memory-pressure scenarios live")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--json", help="also write every run's records to this file")
    ap.add_argument("--settle-steps", action="store_true",
                    help=f"wait {SETTLE} s before each step's reading (folded counters)")
    ap.add_argument("--load", action="append", default=[], metavar="JSON",
                    help="print the runs saved by --json in these files instead of running")
    ap.add_argument("scenario", nargs="*",
                    help=f"scenarios to run (default: all): {', '.join(SCENARIOS)}")
    args = ap.parse_args(argv)
    unknown = [name for name in args.scenario if name not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.load:
        saved = {}
        for path in args.load:
            with open(path) as f:
                for name, runs in json.load(f).items():
                    saved.setdefault(name, []).extend(runs)
        for name in args.scenario or [n for n in SCENARIOS if n in saved]:
            print(format_table(SCENARIOS[name], saved[name]), end="\n\n")
        return 0
    ok, why = pressure_available()
    if not ok:
        print(f"cannot run live: {why}", file=sys.stderr)
        return 2
    every = {}
    for name in args.scenario or list(SCENARIOS):
        runs = run_live(SCENARIOS[name], repeats=args.repeats, retries=args.retries,
                        settle_steps=args.settle_steps)
        every[name] = runs
        print(format_table(SCENARIOS[name], runs), end="\n\n", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(every, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
