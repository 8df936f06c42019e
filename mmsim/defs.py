"""The bottom layer: machine constants (page and PMD sizes, the x86-64 4-level address
space layout), page arithmetic, and ``error()``.

Every other module takes these from here, so each value and each rounding rule is
written once (``arch/x86/include/asm/page_types.h``, ``page_64_types.h``,
``processor.h``, ``elf.h``; ``include/linux/mm.h``: ``PAGE_ALIGN``,
``PAGE_ALIGN_DOWN``, ``offset_in_page``, ``PFN_UP``).  It imports nothing from mmsim.
Beside them, ``bulk_build()``: how fork's copy and the trace parser keep CPython's
cyclic collector from walking the many objects they make.
"""

import contextlib
import gc
import os

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
PMD_SHIFT = 21
PMD_SIZE = 1 << PMD_SHIFT
HPAGE_PMD_NR = PMD_SIZE // PAGE_SIZE

#: One past the largest unsigned long, and the mask that wraps a value into one.
U64 = (1 << 64) - 1

# x86-64 layout with 4-level page tables.
DEFAULT_MAP_WINDOW = (1 << 47) - PAGE_SIZE
TASK_SIZE = DEFAULT_MAP_WINDOW
STACK_TOP = TASK_SIZE
# Where a PIE program is loaded: two thirds of the window.  The raw value is not page
# aligned (0x555555554aaa): a PIE base is aligned down to its segment alignment, while a
# static PIE's break is page-aligned up from it (0x555555555000).
ELF_ET_DYN_BASE = DEFAULT_MAP_WINDOW // 3 * 2
# The effective mmap_min_addr on the reference machine is 64 KiB (LSM_MMAP_MIN_ADDR),
# although /proc/sys/vm/mmap_min_addr shows 4096.
MMAP_MIN_ADDR = 0x10000
STACK_GUARD_GAP = 256 << PAGE_SHIFT
STACK_RND_PAGES = 0x3FFFFF                 # STACK_RND_MASK: up to 16 GiB of stack offset
MMAP_RND_BITS = 28                         # vm.mmap_rnd_bits on the reference machine
SIZE_128M = 128 << 20
RLIMIT_STACK_DEFAULT = 8 << 20


def page_align(n):
    """Round ``n`` up to a page boundary (PAGE_ALIGN), without wrapping at 2**64."""
    return (n + PAGE_SIZE - 1) & PAGE_MASK


def page_align_down(n):
    """Round ``n`` down to a page boundary (PAGE_ALIGN_DOWN, ELF_PAGESTART)."""
    return n & PAGE_MASK


def offset_in_page(n):
    """``n``'s offset within its page (offset_in_page, ELF_PAGEOFFSET)."""
    return n & ~PAGE_MASK


def align_up(n, size):
    """Round ``n`` up to a multiple of the power of two ``size`` (ALIGN)."""
    return (n + size - 1) & -size


def align_down(n, size):
    """Round ``n`` down to a multiple of the power of two ``size`` (ALIGN_DOWN)."""
    return n & -size


def pfn_up(n):
    """The number of pages ``n`` bytes occupy (PFN_UP)."""
    return (n + PAGE_SIZE - 1) >> PAGE_SHIFT


TASK_UNMAPPED_BASE = page_align(TASK_SIZE // 3)


def error(code, what=""):
    """An OSError carrying ``code``, worded like the os module's."""
    msg = os.strerror(code)
    return OSError(code, f"{msg}: {what}" if what else msg)


@contextlib.contextmanager
def bulk_build():
    """Pause the cyclic collector while a block makes many objects that will live on
    (fork's VMA copies, a parsed trace's events), then hand every object it tracks as
    young to its oldest generation in O(1) (a freeze then an unfreeze).  Otherwise the
    first collections after the block walk all of them once or twice as young objects:
    about a fifth of a large fork and of a long trace's parse and replay.  Young cyclic
    garbage, if any, then waits for the next full collection.  Nothing is aged when the
    collector was off already, or when the program froze objects itself (an unfreeze
    would release them)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()
