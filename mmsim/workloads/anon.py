"""Anonymous memory: working sets that change with phases, and sparse touchers (the
classic THP-bloat case: a few bytes used in every large stride of a big heap)."""

import random

from ..defs import PAGE_SIZE
from ..uapi import MAP_ANONYMOUS, MAP_PRIVATE, MADV_HUGEPAGE, PROT_READ, PROT_WRITE

ANON = MAP_PRIVATE | MAP_ANONYMOUS
RW = PROT_READ | PROT_WRITE


def _pages(nbytes):
    return max(1, -(-nbytes // PAGE_SIZE))


def working_set(proc, phases, interval=0.01, batch=64, seed=0, hugepage=False):
    """An anonymous heap used in ``phases``: a list of ``(seconds, nbytes, hot)`` where
    for ``seconds`` the process writes ``batch`` random pages every ``interval``
    seconds, a share ``hot`` of them in the first tenth of the first ``nbytes`` and the
    rest anywhere in them.  The heap is as big as the largest phase and is mapped at
    the start (with MADV_HUGEPAGE when ``hugepage``).  Returns the pages written."""
    if not phases:
        return 0
    size = max(_pages(n) for _, n, _ in phases) * PAGE_SIZE
    addr = proc.mmap(0, size, RW, ANON)
    if hugepage:
        proc.madvise(addr, size, MADV_HUGEPAGE)
    rng = random.Random(seed)
    written = 0
    for seconds, nbytes, hot in phases:
        npages = _pages(nbytes)
        hot_pages = max(1, npages // 10)
        steps = max(1, round(seconds / interval)) if interval > 0 else 1
        for _ in range(steps):
            addrs = [addr + (rng.randrange(hot_pages) if rng.random() < hot
                             else rng.randrange(npages)) * PAGE_SIZE for _ in range(batch)]
            addrs.sort()
            proc.access(addrs, True)
            written += batch
            yield interval
    return written


def sparse_toucher(proc, nbytes, stride=64 << 10, interval=0.01, per_step=16,
                   hugepage=False, rounds=1):
    """Map ``nbytes`` of anonymous memory and write one page in every ``stride`` bytes
    of it, ``per_step`` pages every ``interval`` seconds, ``rounds`` times over (a
    Redis-like heap: under THP ``always`` each touched 2 MiB block is a whole huge
    page, the bloat).  Returns the mapping's address."""
    size = _pages(nbytes) * PAGE_SIZE
    addr = proc.mmap(0, size, RW, ANON)
    if hugepage:
        proc.madvise(addr, size, MADV_HUGEPAGE)
    stride = max(PAGE_SIZE, stride // PAGE_SIZE * PAGE_SIZE)
    targets = list(range(addr, addr + size, stride))
    for _ in range(rounds):
        for i in range(0, len(targets), per_step):
            proc.access(targets[i:i + per_step], True)
            yield interval
    return addr


def dense_toucher(proc, nbytes, per_step=2 << 20, interval=0.01, hugepage=False):
    """Map ``nbytes`` and write all of it, ``per_step`` bytes every ``interval``
    seconds (a THP-friendly service: every huge page it gets is used).  Returns the
    mapping's address."""
    size = _pages(nbytes) * PAGE_SIZE
    addr = proc.mmap(0, size, RW, ANON)
    if hugepage:
        proc.madvise(addr, size, MADV_HUGEPAGE)
    step = max(PAGE_SIZE, per_step // PAGE_SIZE * PAGE_SIZE)
    for off in range(0, size, step):
        proc.touch(addr + off, min(step, size - off), True)
        yield interval
    return addr
