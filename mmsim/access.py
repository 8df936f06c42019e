"""Memory-access traces in: a documented record format and importers for what real
tools record, merged into an strace log so a real program's faults can drive a
replay.

A record is ``(time, pid, addr, length, op)``: seconds (float), the process id as the
strace log names it, the first byte's address, a length in bytes, and ``op`` "r" or
"w".  The files:

* JSONL: one object per line, ``{"time": 12.5, "pid": 4242, "addr": "0x7f00...",
  "length": 4096, "op": "w"}`` (``addr`` an int or a hex string);
* CSV: a header ``time,pid,addr,length,op`` then one record per row;
* ``perf script`` output of ``perf record -e exceptions:page_fault_user`` (the
  tracepoint's ``error_code`` says whether the fault was a write) or of a page-fault
  software event recorded with ``-d`` and printed with an ``addr`` field (no
  read/write bit there: "r");
* ``damo report raw`` output of a DAMON recording: every region with accesses in an
  aggregation interval becomes one read record of the whole region at the interval's
  end (DAMON does not tell reads from writes; ``target_id`` is mapped to a pid by the
  caller).

``merge(trace_text, records, offset)`` puts each record into the log as a
``PID # access ADDR LENGTH r|w`` line before the first call logged after it; the
times must share a clock: give the difference as ``offset`` (added to every
record's time), or None to line the first record up with the log's first timed
line (strace ``-ttt`` prints wall-clock seconds, perf its own clock).  The replayer then faults those pages as ``Process.touch``
does (docs/replay.md, "Access lines").
"""

import bisect
import csv
import io
import json
import re

from .errors import MmsimError

__all__ = ["Access", "AccessFormatError", "read_jsonl", "read_csv", "from_perf_script",
           "from_damon_raw", "merge", "access_line", "logged_pids"]


class AccessFormatError(MmsimError, ValueError):
    """A malformed access record: ``line`` (1-based) and what is wrong."""

    def __init__(self, line, message):
        super().__init__(f"line {line}: {message}")
        self.line = line


class Access(tuple):
    """One access record: ``(time, pid, addr, length, op)``."""

    __slots__ = ()

    def __new__(cls, time, pid, addr, length, op):
        return super().__new__(cls, (time, pid, addr, length, op))

    time = property(lambda self: self[0])
    pid = property(lambda self: self[1])
    addr = property(lambda self: self[2])
    length = property(lambda self: self[3])
    op = property(lambda self: self[4])


def _record(lineno, time, pid, addr, length, op):
    """An Access from loosely typed fields, checked."""
    try:
        time = float(time)
        pid = int(pid)
        addr = int(addr, 0) if isinstance(addr, str) else int(addr)
        length = int(length)
    except (TypeError, ValueError) as e:
        raise AccessFormatError(lineno, f"bad field: {e}") from None
    if op not in ("r", "w"):
        raise AccessFormatError(lineno, f"op must be 'r' or 'w', not {op!r}")
    if not time == time or pid < 0 or addr < 0 or length <= 0 or addr + length > 1 << 64:
        raise AccessFormatError(lineno, "time, pid, addr or length out of range")
    return Access(time, pid, addr, length, op)


def read_jsonl(text):
    """The records of a JSONL text, one object per line (blank lines skipped)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise AccessFormatError(lineno, f"not JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise AccessFormatError(lineno, "not a JSON object")
        missing = {"time", "pid", "addr", "length", "op"} - set(obj)
        if missing:
            raise AccessFormatError(lineno, f"missing {sorted(missing)}")
        out.append(_record(lineno, obj["time"], obj["pid"], obj["addr"], obj["length"],
                           obj["op"]))
    return out


def read_csv(text):
    """The records of a CSV text with the header ``time,pid,addr,length,op``."""
    rows = csv.DictReader(io.StringIO(text))
    if rows.fieldnames is None or set(rows.fieldnames) != {"time", "pid", "addr", "length",
                                                           "op"}:
        raise AccessFormatError(1, "the header must be time,pid,addr,length,op")
    return [_record(i, r["time"], r["pid"], r["addr"], r["length"], r["op"])
            for i, r in enumerate(rows, 2)]


# "comm pid[/tid] [cpu] time: [period] event: rest" as perf script prints a sample.
_PERF = re.compile(r"^\s*\S.*?\s+(?P<pid>\d+)(?:/\d+)?\s+(?:\[\d+\]\s+)?(?P<time>\d+\.\d+):"
                   r"\s+(?:\d+\s+)?(?P<event>[\w:.-]+):\s*(?P<rest>.*)$")
_FIELD = re.compile(r"(\w+)=(0x[0-9a-fA-F]+|\d+)")
_FAULT_EVENTS = ("page-faults", "faults", "major-faults", "minor-faults")
PAGE = 4096


def from_perf_script(text):
    """Records of ``perf script`` page-fault samples (one page each); lines of other
    events are skipped."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _PERF.match(line)
        if m is None:
            continue
        event, rest = m.group("event"), m.group("rest")
        if event.endswith("page_fault_user"):
            fields = dict(_FIELD.findall(rest))
            if "address" not in fields:
                raise AccessFormatError(lineno, "page_fault_user without address=")
            addr = int(fields["address"], 0)
            op = "w" if int(fields.get("error_code", "0"), 0) & 2 else "r"
        elif event in _FAULT_EVENTS:
            word = rest.split(None, 1)[0] if rest.split() else ""
            try:
                addr = int(word, 16)
            except ValueError:
                raise AccessFormatError(lineno, "a fault sample without an addr field "
                                                "(perf record -d, perf script -F ...,addr)") from None
            op = "r"
        else:
            continue
        out.append(_record(lineno, m.group("time"), m.group("pid"), addr & ~(PAGE - 1),
                           PAGE, op))
    return out


_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
_REGION = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+)\s*\([^)]*\):\s*(\d+)")


def _duration(lineno, words):
    try:
        return float(words[0]) * _UNITS[words[1]]
    except (IndexError, KeyError, ValueError):
        raise AccessFormatError(lineno, f"bad time {' '.join(words)!r}") from None


def from_damon_raw(text, pids):
    """Records of ``damo report raw`` output: ``pids`` maps each ``target_id`` to the
    pid of the log (a target not in it is skipped); times are the intervals' ends in
    seconds from the recording's start."""
    out = []
    end = None
    target = None
    for lineno, line in enumerate(text.splitlines(), 1):
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "monitoring_end":
            end = _duration(lineno, value.split())
        elif key == "target_id":
            target = int(value)
        else:
            m = _REGION.match(line)
            if m is None:
                continue
            if end is None or target is None:
                raise AccessFormatError(lineno, "a region before monitoring_end and target_id")
            start, stop, hits = int(m.group(1), 16), int(m.group(2), 16), int(m.group(3))
            if hits and target in pids and stop > start:
                out.append(_record(lineno, end, pids[target], start, stop - start, "r"))
    return out


def access_line(rec):
    """The trace line of one record: ``PID # access ADDR LENGTH r|w``."""
    return f"{rec.pid} # access {rec.addr:#x} {rec.length} {rec.op}"


# strace -f -o writes "PID " first; -ttt then the wall-clock seconds.
_TIME = re.compile(r"^(?:\[pid\s+\d+\]|\d+)?\s*(\d{9,}\.\d+)\s")


_PID = re.compile(r"^(?:\[pid\s+(\d+)\]|(\d+))\s")


def logged_pids(trace_text):
    """The pids the log's lines name (``strace -f -o`` gives every line one)."""
    pids = set()
    for line in trace_text.splitlines():
        m = _PID.match(line)
        if m:
            pids.add(int(m.group(1) or m.group(2)))
    return pids


def merge(trace_text, records, offset=0.0):
    """The trace text with every record (time + ``offset``) as an access line before
    the first logged line whose ``-ttt`` time is later; records after the last
    timed line go at the end.  Lines without a time keep their place.  ``offset``
    None lines the first record up with the first timed line (for clocks that
    differ, such as perf's default one and strace's wall clock).  Records of a pid
    the log never names (strace's own faults, other programs) are left out."""
    pids = logged_pids(trace_text)
    recs = sorted((r for r in records if not pids or r.pid in pids), key=lambda r: r.time)
    if offset is None:
        first = next((m for m in map(_TIME.match, trace_text.splitlines()) if m), None)
        offset = float(first.group(1)) - recs[0].time if first and recs else 0.0
    times = [r.time + offset for r in recs]
    out = []
    i = 0
    for line in trace_text.splitlines():
        m = _TIME.match(line)
        if m is not None:
            t = float(m.group(1))
            j = bisect.bisect_right(times, t, lo=i)
            out.extend(access_line(r) for r in recs[i:j])
            i = j
        out.append(line)
    out.extend(access_line(r) for r in recs[i:])
    return "".join(line + "\n" for line in out)
