"""Reading /proc/PID/smaps (or maps) text: the VMAs inside an address window, as
dicts both the simulator's and the live kernel's output are compared by."""

import re

__all__ = ["WINDOW", "VMA_FIELDS", "smaps_vmas", "smaps_blocks"]

#: Default address window (half-open): far above where CPython's allocator, shared
#: libraries and the stack live, so the child can clear it and own it outright.
WINDOW = (0x200000000000, 0x300000000000)

#: The fields of a parsed VMA that comparisons look at.
VMA_FIELDS = ("start", "end", "perms", "flags", "rss_kb", "anon_kb", "anon_huge_kb",
              "locked_kb", "thp_eligible")

_HEADER = re.compile(r"([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) ")
_KB_FIELDS = {"Rss": "rss_kb", "Anonymous": "anon_kb", "AnonHugePages": "anon_huge_kb",
              "Locked": "locked_kb"}


def smaps_vmas(text: str, window: tuple[int, int]) -> list[dict]:
    """Parse smaps (or maps) text into the VMAs overlapping ``window``, in address order."""
    lo, hi = window
    vmas = []
    vma = None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            start, end = int(header[1], 16), int(header[2], 16)
            vma = {"start": start, "end": end, "perms": header[3], "pgoff": int(header[4], 16),
                   "flags": [], "thp_eligible": 0, "rss_kb": 0, "anon_kb": 0,
                   "anon_huge_kb": 0, "locked_kb": 0}
            if start < hi and end > lo:
                vmas.append(vma)
            continue
        if vma is None or ":" not in line:
            continue
        key, value = line.split(":", 1)
        if key == "VmFlags":
            vma["flags"] = value.split()
        elif key == "THPeligible":
            vma["thp_eligible"] = int(value)
        elif key in _KB_FIELDS:
            vma[_KB_FIELDS[key]] = int(value.split()[0])
    vmas.sort(key=lambda v: v["start"])
    return vmas


def smaps_blocks(text: str, window: tuple[int, int]) -> str:
    """The raw smaps text of the VMAs overlapping ``window``, header lines included."""
    lo, hi = window
    out = []
    keep = False
    for line in text.splitlines(keepends=True):
        header = _HEADER.match(line)
        if header:
            keep = int(header[1], 16) < hi and int(header[2], 16) > lo
        if keep:
            out.append(line)
    return "".join(out)
