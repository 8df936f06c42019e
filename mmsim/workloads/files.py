"""File readers: sequential, random and zipf-distributed reads of one file, through
read(2) (pread at the chosen offset) or through a shared read-only mapping."""

import bisect
import os
import random

from ..defs import PAGE_SIZE
from ..uapi import MAP_SHARED, PROT_READ

PATTERNS = ("sequential", "random", "zipf")
METHODS = ("read", "mmap")


def zipf_cdf(n, s):
    """The cumulative distribution of a zipf law of exponent ``s`` over ``n`` ranks."""
    acc, cdf = 0.0, []
    for rank in range(1, n + 1):
        acc += rank ** -s
        cdf.append(acc)
    return [c / acc for c in cdf]


def _chunks(pattern, nchunks, rng, s):
    """Chunk numbers in the order the pattern reads them, without end."""
    if pattern == "sequential":
        while True:
            yield from range(nchunks)
    elif pattern == "random":
        while True:
            yield rng.randrange(nchunks)
    else:
        # Rank r is chunk r-1 shuffled, so the hot chunks are spread over the file.
        order = list(range(nchunks))
        rng.shuffle(order)
        cdf = zipf_cdf(nchunks, s)
        while True:
            yield order[min(bisect.bisect_left(cdf, rng.random()), nchunks - 1)]


def file_reader(proc, path, pattern="sequential", method="read", chunk=128 << 10,
                interval=0.01, ops=None, seed=0, zipf_s=1.1):
    """Read ``chunk`` bytes of the file at ``path`` every ``interval`` seconds, at the
    offsets ``pattern`` picks ("sequential" wraps at the end), ``ops`` times (None: for
    ever), by ``method`` "read" (pread) or "mmap" (touching a shared mapping of the
    whole file).  Returns the number of reads."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, not {pattern!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    chunk = max(PAGE_SIZE, chunk // PAGE_SIZE * PAGE_SIZE)
    fd = proc.open(path)
    size = proc.lseek(fd, 0, os.SEEK_END)
    nchunks = max(1, -(-size // chunk))
    addr = None
    if method == "mmap":
        addr = proc.mmap(0, size, PROT_READ, MAP_SHARED, fd, 0)
    rng = random.Random(seed)
    done = 0
    for c in _chunks(pattern, nchunks, rng, zipf_s):
        if ops is not None and done >= ops:
            break
        off = c * chunk
        n = min(chunk, size - off)
        if method == "read":
            proc.pread(fd, n, off)
        else:
            proc.touch(addr + off, n, write=False)
        done += 1
        yield interval
    if addr is not None:
        proc.munmap(addr, size)
    proc.close(fd)
    return done
