"""Differential tests: the same call sequences on the live kernel and on mmsim.

Every sequence runs twice: on the live kernel in a forked child (``mmsim.live.run``)
and on a fresh simulated process (``Kernel(thp="madvise")``).  The two must agree on
every call's result (an address, 0, or ``-errno``) and, at the end, on every VMA inside
``mmsim.live.WINDOW``: range, permissions, pgoff, VmFlags, THPeligible, and the Rss,
Anonymous, AnonHugePages and Locked sizes.  The simulator's VMAs are read back through
its own /proc/PID/smaps, parsed with the same ``smaps_vmas`` the live side uses, so
procfs is exercised too (and cross-checked against the mm's VMA tree).

The hand-written scenarios below are named after the kernel rule they probe; a
Hypothesis test adds random sequences over a small region of the window.  Everything
is marked ``live``: it skips when the live kernel cannot be used, and the THP
parts (THPeligible, AnonHugePages, and the THP scenarios) only run when the live
machine's /sys/kernel/mm/transparent_hugepage/enabled is ``madvise``, the setting the
simulated kernel is given.
"""

import os
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmsim import live
from mmsim.kernel import Kernel
from mmsim.uapi import (MADV_COLLAPSE, MADV_DODUMP, MADV_DOFORK, MADV_DONTDUMP, MADV_DONTFORK,
                        MADV_DONTNEED, MADV_HUGEPAGE, MADV_KEEPONFORK, MADV_MERGEABLE,
                        MADV_NOHUGEPAGE, MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL,
                        MADV_UNMERGEABLE, MADV_WIPEONFORK, MAP_ANONYMOUS, MAP_FIXED,
                        MAP_FIXED_NOREPLACE, MAP_GROWSDOWN, MAP_LOCKED, MAP_NORESERVE,
                        MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, MLOCK_ONFAULT, MREMAP_FIXED,
                        MREMAP_MAYMOVE, PROT_EXEC, PROT_GROWSDOWN, PROT_GROWSUP, PROT_NONE,
                        PROT_READ, PROT_WRITE)
from mmsim.vma import vmflags_mnemonics

PAGE = 4096
LO, HI = live.WINDOW
WINDOW = (LO, HI)
HUGE = 512                     # pages in a 2 MiB THP

R, RW, RX = PROT_READ, PROT_READ | PROT_WRITE, PROT_READ | PROT_EXEC
PRIV = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
SHARED = MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED
NOREPLACE = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
MOVE = MREMAP_MAYMOVE | MREMAP_FIXED
EFAULT, EEXIST, EINVAL, ENOMEM = 14, 17, 22, 12

THP_FIELDS = ("thp_eligible", "anon_huge_kb")


pytestmark = pytest.mark.live

# THP fields and THP scenarios are compared only when the live setting is the simulated one.
THP_MADVISE = live.host_thp() == "madvise"


# --------------------------------------------------------------------------- call builders
# Addresses are given as page numbers relative to the window start.


def at(page):
    return LO + page * PAGE


def mmap(page, npages, prot=RW, flags=PRIV):
    return ("mmap", at(page), npages * PAGE, prot, flags, -1, 0)


def munmap(page, npages):
    return ("munmap", at(page), npages * PAGE)


def mprotect(page, npages, prot):
    return ("mprotect", at(page), npages * PAGE, prot)


def madvise(page, npages, advice):
    return ("madvise", at(page), npages * PAGE, advice)


def mremap(page, old_pages, new_pages, flags=0, new_page=None):
    return ("mremap", at(page), old_pages * PAGE, new_pages * PAGE, flags,
            0 if new_page is None else at(new_page))


def mlock(page, npages):
    return ("mlock", at(page), npages * PAGE)


def mlock2(page, npages, flags):
    return ("mlock2", at(page), npages * PAGE, flags)


def munlock(page, npages):
    return ("munlock", at(page), npages * PAGE)


def touch(page, npages, write=True):
    return ("touch", at(page), npages * PAGE, write)


# --------------------------------------------------------------------------- running


def run_sim(calls):
    """Run ``calls`` on a fresh simulated process; same shape as ``live.run``."""
    kernel = Kernel(thp="madvise")
    proc = kernel.spawn()
    results = []
    for name, *args in calls:
        try:
            if name == "touch":
                ret = proc.touch(args[0], args[1], bool(args[2]))
            else:
                ret = getattr(proc, name)(*args)
        except OSError as exc:
            ret = -exc.errno
        results.append(ret)
    vmas = live.smaps_vmas(kernel.proc_read(f"/proc/{proc.pid}/smaps"), WINDOW)
    # procfs must show exactly what the mm holds.
    direct = [(v.start, v.end, vmflags_mnemonics(v.vm_flags)) for v in proc.mm.vmas(LO, HI)]
    shown = [(v["start"], v["end"], v["flags"]) for v in vmas]
    assert shown == direct, f"mmsim smaps disagrees with its own mm: {shown} != {direct}"
    return {"results": results, "vmas": vmas}


def _addr(x):
    if isinstance(x, int) and LO <= x < HI:
        off = x - LO
        return f"A+{off // PAGE}p" + (f"+{off % PAGE}" if off % PAGE else "")
    return f"{x:#x}" if isinstance(x, int) and not isinstance(x, bool) else repr(x)


def _len(x):
    if isinstance(x, int) and x % PAGE == 0 and x:
        return f"{x // PAGE}p"
    return str(x)


def fmt_call(call):
    name, *args = call
    if name == "mmap":
        shown = [_addr(args[0]), _len(args[1]), hex(args[2]), hex(args[3])]
    elif name == "mremap":
        shown = [_addr(args[0]), _len(args[1]), _len(args[2]), hex(args[3]), _addr(args[4])]
    elif name in ("madvise", "mprotect", "mlock2"):
        shown = [_addr(args[0]), _len(args[1]), hex(args[2])]
    elif name == "touch":
        shown = [_addr(args[0]), _len(args[1]), "write" if args[2] else "read"]
    else:
        shown = [_addr(a) for a in args[:1]] + [_len(a) for a in args[1:]]
    return f"{name}({', '.join(shown)})"


def fmt_result(ret):
    if isinstance(ret, int) and ret < 0:
        return str(ret)
    return _addr(ret)


def fmt_vma(v):
    return (f"{_addr(v['start'])}-{_addr(v['end'])} {v['perms']} pgoff={v['pgoff']:#x} "
            f"[{' '.join(v['flags'])}] thp={v['thp_eligible']} rss={v['rss_kb']} "
            f"anon={v['anon_kb']} anonhuge={v['anon_huge_kb']} locked={v['locked_kb']}")


def _view(vmas, thp):
    if thp:
        return vmas
    return [{k: val for k, val in v.items() if k not in THP_FIELDS} for v in vmas]


def diff_message(calls, kern, sim):
    lines = ["live kernel and mmsim disagree", "calls:"]
    lines += [f"  {i}: {fmt_call(c)}" for i, c in enumerate(calls)]
    lines.append("results (kernel | mmsim):")
    for i, (a, b) in enumerate(zip(kern["results"], sim["results"])):
        mark = "" if a == b else "   <-- differs"
        lines.append(f"  {i}: {fmt_result(a)} | {fmt_result(b)}{mark}")
    lines.append("kernel VMAs:")
    lines += [f"  {fmt_vma(v)}" for v in kern["vmas"]] or ["  (none)"]
    lines.append("mmsim VMAs:")
    lines += [f"  {fmt_vma(v)}" for v in sim["vmas"]] or ["  (none)"]
    return "\n".join(lines)


def compare(calls, thp=True):
    """Run ``calls`` on both sides; return None if they agree, else a readable diff."""
    kern = live.run(calls)
    try:
        sim = run_sim(calls)
    except Exception:  # noqa: BLE001 - any non-OSError escape is a simulator failure
        return ("mmsim raised a non-OSError exception\ncalls:\n"
                + "\n".join(f"  {i}: {fmt_call(c)}" for i, c in enumerate(calls))
                + "\n" + traceback.format_exc())
    if kern["results"] == sim["results"] and _view(kern["vmas"], thp) == _view(sim["vmas"], thp):
        return None
    return diff_message(calls, kern, sim)


def check(calls, thp=True):
    msg = compare(calls, thp)
    assert msg is None, msg


# --------------------------------------------------------------------------- scenarios

SCENARIOS = {
    # ---- mmap and merging of new mappings
    "mmap_adjacent_same_prot_merges": [mmap(0, 2), mmap(2, 2)],
    "mmap_adjacent_other_prot_stays_apart": [mmap(0, 2), mmap(2, 2, R)],
    "mmap_noreserve_not_merged_with_accounted": [mmap(0, 2), mmap(2, 2, RW, PRIV | MAP_NORESERVE)],
    "mmap_noreserve_merges_with_noreserve": [mmap(0, 2, RW, PRIV | MAP_NORESERVE),
                                             mmap(2, 2, RW, PRIV | MAP_NORESERVE)],
    "mmap_readonly_noreserve_not_merged_with_readonly": [mmap(0, 2, R),
                                                         mmap(2, 2, R, PRIV | MAP_NORESERVE)],
    "mmap_fixed_noreplace_eexist": [mmap(0, 3), mmap(1, 1, RW, NOREPLACE),
                                    mmap(3, 1, RW, NOREPLACE)],
    "mmap_fixed_replaces_middle": [mmap(0, 3), touch(0, 3), mmap(1, 1, R)],
    "mmap_fixed_over_two_vmas_and_hole": [mmap(0, 2), mmap(3, 2, R), touch(0, 2),
                                          mmap(1, 3, RX)],
    "mmap_length_zero_einval": [mmap(0, 0)],
    "mmap_unaligned_fixed_einval": [("mmap", at(0) + 1, PAGE, RW, PRIV, -1, 0)],
    "mmap_populate_rss": [mmap(0, 4, RW, PRIV | MAP_POPULATE)],
    "mmap_populate_readonly_maps_zero_page": [mmap(0, 4, R, PRIV | MAP_POPULATE)],
    "mmap_locked": [mmap(0, 3, RW, PRIV | MAP_LOCKED)],
    "mmap_growsdown_flags": [mmap(0, 4, RW, PRIV | MAP_GROWSDOWN)],
    "mmap_remap_hole_merges_back": [mmap(0, 3), munmap(1, 1), mmap(1, 1)],
    "mmap_remap_hole_between_faulted": [mmap(0, 3), touch(0, 3), munmap(1, 1), mmap(1, 1)],
    # ---- mprotect: splits and merges (tools/testing/selftests/mm/merge.c shapes)
    "mprotect_middle_splits": [mmap(0, 3), mprotect(1, 1, R)],
    "mprotect_split_and_restore_merges_back": [mmap(0, 3), mprotect(1, 1, R),
                                               mprotect(1, 1, RW)],
    "mprotect_faulted_split_and_restore_merges_back": [mmap(0, 3), touch(0, 3),
                                                       mprotect(1, 1, R), mprotect(1, 1, RW)],
    "mprotect_unfaulted_left": [mmap(1, 10, RW, PRIV | MAP_NORESERVE), mprotect(1, 5, R),
                                touch(6, 1), mprotect(6, 5, R)],
    "mprotect_unfaulted_right": [mmap(1, 10, RW, PRIV | MAP_NORESERVE), mprotect(6, 5, R),
                                 touch(1, 1), mprotect(1, 5, R)],
    "mprotect_unfaulted_both": [mmap(2, 9, RW, PRIV | MAP_NORESERVE), mprotect(2, 3, R),
                                mprotect(8, 3, R), touch(5, 1), mprotect(5, 3, R)],
    "mprotect_faulted_left_unfaulted_right": [mmap(2, 9, RW, PRIV | MAP_NORESERVE),
                                              mprotect(8, 3, R), touch(2, 1), mprotect(2, 3, R),
                                              mprotect(5, 3, R)],
    "mprotect_unfaulted_left_faulted_right": [mmap(2, 9, RW, PRIV | MAP_NORESERVE),
                                              mprotect(2, 3, R), touch(5, 1), mprotect(8, 3, R),
                                              mprotect(5, 3, R)],
    "mprotect_unfaulted_left_accounted": [mmap(1, 10), mprotect(1, 5, R), touch(6, 1),
                                          mprotect(6, 5, R)],
    "mprotect_readonly_to_rw_gains_account_and_merges": [mmap(0, 1), mmap(1, 1, R),
                                                         mprotect(1, 1, RW)],
    "mprotect_faulted_readonly_keeps_account": [mmap(0, 4), touch(0, 1), mprotect(0, 4, R)],
    "mprotect_none_unfaulted_drops_account": [mmap(0, 4), mprotect(0, 4, PROT_NONE)],
    "mprotect_exec": [mmap(0, 3), mprotect(0, 2, RX)],
    # do_mprotect_pkey continues from vma_iter_end() after each fixup, so a change that
    # merges the first VMA forward into the next one does not stop the walk.
    "mprotect_change_merges_forward_into_next": [mmap(0, 3, R), mmap(3, 3), mprotect(0, 5, RW)],
    "mprotect_none_merges_forward_then_continues": [mmap(0, 5, R, PRIV | MAP_NORESERVE),
                                                    mprotect(1, 2, PROT_NONE),
                                                    mprotect(0, 4, PROT_NONE)],
    "mprotect_over_hole_enomem_first_part_changed": [mmap(0, 2), mmap(3, 2),
                                                     mprotect(0, 5, R)],
    "mprotect_starting_in_hole_enomem": [mmap(1, 2), mprotect(0, 3, R)],
    "mprotect_ending_in_hole_enomem": [mmap(0, 2), mprotect(0, 3, R)],
    "mprotect_validation": [mmap(0, 1), mprotect(0, 0, R), ("mprotect", at(0) + 1, PAGE, R),
                            mprotect(0, 1, 0x10), mprotect(10, 1, 0x10), mprotect(10, 0, R),
                            mprotect(10, 1, R)],
    "mprotect_unaligned_length_rounds_up": [mmap(0, 3), ("mprotect", at(0), PAGE + 1, R)],
    "mprotect_growsdown_on_growsdown_mapping": [mmap(0, 4, RW, PRIV | MAP_GROWSDOWN),
                                                mprotect(2, 1, R | PROT_GROWSDOWN)],
    "mprotect_growsdown_range_below_vma": [mmap(4, 4, RW, PRIV | MAP_GROWSDOWN),
                                           mprotect(2, 3, R | PROT_GROWSDOWN)],
    "mprotect_growsdown_second_vma": [mmap(0, 2), mmap(2, 4, RW, PRIV | MAP_GROWSDOWN),
                                      mprotect(4, 1, R | PROT_GROWSDOWN)],
    "mprotect_growsdown_on_normal_mapping_einval": [mmap(0, 4),
                                                    mprotect(2, 1, R | PROT_GROWSDOWN)],
    "mprotect_growsup_einval": [mmap(0, 4), mprotect(1, 1, R | PROT_GROWSUP)],
    # ---- munmap
    "munmap_middle": [mmap(0, 3), munmap(1, 1)],
    "munmap_edges": [mmap(0, 4), munmap(0, 1), munmap(3, 1)],
    "munmap_across_vmas_and_holes": [mmap(0, 2), mmap(3, 2, R), mmap(6, 2), touch(0, 2),
                                     munmap(1, 6)],
    "munmap_unaligned_addr_einval": [mmap(0, 2), ("munmap", at(0) + 1, PAGE)],
    "munmap_unaligned_length_rounds_up": [mmap(0, 3), ("munmap", at(0), PAGE + 1)],
    "munmap_length_zero_einval": [mmap(0, 2), munmap(0, 0)],
    "munmap_unmapped_is_fine": [munmap(0, 4)],
    # ---- madvise: flag advice
    "madvise_dontfork_dofork_roundtrip_merges": [mmap(0, 4), madvise(1, 2, MADV_DONTFORK),
                                                 madvise(1, 2, MADV_DOFORK)],
    "madvise_hugepage_then_nohugepage": [mmap(0, 4), madvise(1, 2, MADV_HUGEPAGE),
                                         madvise(0, 2, MADV_NOHUGEPAGE)],
    "madvise_dontdump_dodump": [mmap(0, 4), madvise(0, 4, MADV_DONTDUMP),
                                madvise(2, 2, MADV_DODUMP)],
    "madvise_wipeonfork_private_then_keeponfork": [mmap(0, 4), madvise(1, 2, MADV_WIPEONFORK),
                                                   madvise(2, 1, MADV_KEEPONFORK)],
    "madvise_wipeonfork_shared_einval": [mmap(0, 2, RW, SHARED), madvise(0, 2, MADV_WIPEONFORK)],
    "madvise_mergeable_unmergeable": [mmap(0, 4), madvise(0, 2, MADV_MERGEABLE),
                                      madvise(1, 1, MADV_UNMERGEABLE)],
    "madvise_mergeable_shared_ignored": [mmap(0, 2, RW, SHARED), madvise(0, 2, MADV_MERGEABLE)],
    "madvise_random_sequential_normal": [mmap(0, 6), madvise(0, 2, MADV_RANDOM),
                                         madvise(4, 2, MADV_SEQUENTIAL),
                                         madvise(1, 4, MADV_NORMAL)],
    "madvise_over_hole_enomem_mapped_part_changed": [mmap(0, 2), mmap(3, 2),
                                                     madvise(0, 5, MADV_DONTFORK)],
    "madvise_starting_in_hole_enomem_rest_changed": [mmap(1, 2), madvise(0, 3, MADV_DONTDUMP)],
    "madvise_validation_order": [mmap(0, 1), ("madvise", at(0) + 1, PAGE, 99),
                                 ("madvise", at(0) + 1, PAGE, MADV_DONTFORK),
                                 madvise(10, 0, 99), madvise(10, 0, MADV_DONTFORK),
                                 madvise(10, 1, MADV_DONTFORK), madvise(0, 1, 99)],
    "madvise_on_prot_none": [mmap(0, 3, PROT_NONE), madvise(1, 1, MADV_DONTDUMP)],
    # ---- madvise: DONTNEED zaps
    "madvise_dontneed_zaps_rss": [mmap(0, 4), touch(0, 4), madvise(1, 2, MADV_DONTNEED)],
    "madvise_dontneed_over_hole": [mmap(0, 2), mmap(3, 2), touch(0, 2), touch(3, 2),
                                   madvise(0, 5, MADV_DONTNEED)],
    "madvise_dontneed_locked_einval": [mmap(0, 2), mlock(0, 2), madvise(0, 2, MADV_DONTNEED)],
    "madvise_dontneed_shared_anon": [mmap(0, 3, RW, SHARED), touch(0, 3),
                                     madvise(0, 1, MADV_DONTNEED)],
    # ---- mlock
    "mlock_middle_page": [mmap(0, 3), mlock(1, 1)],
    "munlock_middle_merges_back": [mmap(0, 3), mlock(0, 3), munlock(1, 1), munlock(0, 3)],
    "mlock2_onfault_then_touch": [mmap(0, 3), mlock2(0, 3, MLOCK_ONFAULT), touch(1, 1)],
    "mlock2_bad_flags_einval": [mmap(0, 3), mlock2(0, 3, 2)],
    "mlock_over_hole_enomem": [mmap(0, 1), mmap(2, 1), mlock(0, 3)],
    # mlock() populates with errors not ignored: PROT_NONE gives EFAULT -> ENOMEM.
    "mlock_prot_none": [mmap(0, 2, PROT_NONE), mlock(0, 2)],
    "mlock_partly_prot_none": [mmap(0, 2), mmap(2, 2, PROT_NONE), mlock(0, 4)],
    "mlock2_onfault_prot_none": [mmap(0, 2, PROT_NONE), mlock2(0, 2, MLOCK_ONFAULT)],
    "mmap_locked_prot_none": [mmap(0, 2, PROT_NONE, PRIV | MAP_LOCKED)],
    "mlock_shared_readonly": [mmap(0, 3, R, SHARED), mlock(0, 3)],
    "mlock_readonly_maps_zero_page": [mmap(0, 2, R), mlock(0, 2)],
    "mlock_then_mprotect_write_populates": [mmap(0, 2, R), mlock(0, 2), mprotect(0, 2, RW)],
    # populate_vma_page_range() does nothing for VM_LOCKONFAULT VMAs.
    "mlock_onfault_then_mprotect_write_does_not_populate": [mmap(0, 3, PROT_NONE),
                                                            mlock2(0, 3, MLOCK_ONFAULT),
                                                            mprotect(0, 3, RW)],
    "mlock_unmapped_enomem": [mlock(0, 1)],
    # ---- mremap
    "mremap_grow_in_place": [mmap(0, 2), touch(0, 1), mremap(0, 2, 4)],
    "mremap_grow_in_place_merges_with_next": [mmap(0, 2), mmap(4, 2), mremap(0, 2, 4)],
    "mremap_grow_in_place_faulted_next": [mmap(0, 2), mmap(4, 2), touch(4, 1), mremap(0, 2, 4)],
    "mremap_shrink": [mmap(0, 4), touch(0, 4), mremap(0, 4, 1)],
    "mremap_grow_blocked_enomem": [mmap(0, 2), mmap(2, 1, R), mremap(0, 2, 4)],
    "mremap_old_unmapped_efault": [mremap(0, 1, 2, MREMAP_MAYMOVE)],
    "mremap_fixed_overlap_einval": [mmap(0, 4), mremap(0, 2, 2, MOVE, 1)],
    "mremap_fixed_without_maymove_einval": [mmap(0, 2), mremap(0, 2, 2, MREMAP_FIXED, 10)],
    # 6.17+: a move-only MREMAP_FIXED (old_len == new_len) may span several VMAs and the
    # gaps between them; each piece keeps its offset, only the pieces' targets are unmapped.
    "mremap_move_only_spans_two_vmas": [mmap(0, 2), mmap(2, 2, R), mremap(0, 4, 4, MOVE, 20)],
    "mremap_move_only_gap_at_end": [mmap(0, 3, R), mremap(0, 5, 5, MOVE, 20)],
    "mremap_move_only_gap_at_start_efault": [mmap(1, 3, R), mremap(0, 4, 4, MOVE, 20)],
    "mremap_move_only_faulted_pieces": [mmap(0, 2), mmap(3, 2, R), touch(0, 2),
                                        mremap(0, 5, 5, MOVE, 20)],
    "mremap_move_only_target_gaps_left_mapped": [mmap(6, 3, R), mremap(8, 4, 4, MOVE, 4)],
    # A shrinking move only needs [addr, addr + new_len) inside one VMA.
    "mremap_shrink_move_tail_crosses_vma_end": [mmap(0, 2), mremap(0, 5, 1, MOVE, 20)],
    # Source checks come before the target (or the shrunk tail) is unmapped.
    "mremap_efault_leaves_target_alone": [mmap(0, 2), mmap(10, 2), mremap(10, 4, 6, MOVE, 0)],
    "mremap_efault_leaves_tail_alone": [mmap(2, 6, RX), madvise(4, 1, MADV_RANDOM),
                                        mremap(4, 7, 3, MOVE, 26)],
    # The copy may merge with (part of) its own source VMA (copy_vma's "source vma may
    # have been merged into new_vma"); only the old range is unmapped afterwards.
    "mremap_target_adjacent_after_source": [mmap(0, 5, R), mremap(0, 5, 5, MOVE, 5)],
    "mremap_grow_target_adjacent_after_source": [mmap(0, 6, RX), mremap(5, 1, 8, MOVE, 6)],
    "mremap_target_inside_source_vma": [mmap(10, 8, RX), mremap(14, 1, 1, MOVE, 15)],
    "mremap_target_adjacent_before_source": [mmap(5, 5, R), mremap(5, 5, 5, MOVE, 0)],
    "mremap_grow_across_end_efault": [mmap(0, 2), mmap(2, 2, R), mremap(0, 4, 6, MOVE, 20)],
    "mremap_fixed_grow": [mmap(0, 2), touch(0, 2), mremap(0, 2, 4, MOVE, 20)],
    "mremap_fixed_shrink": [mmap(0, 4), touch(0, 4), mremap(0, 4, 2, MOVE, 20)],
    "mremap_fixed_middle_out": [mmap(0, 3), touch(0, 3), mremap(1, 1, 1, MOVE, 20)],
    "mremap_fixed_move_out_and_back_merges": [mmap(0, 15), touch(0, 1),
                                              mremap(5, 5, 5, MOVE, 100),
                                              mremap(100, 5, 5, MOVE, 5)],
    "mremap_unfaulted_to_faulted": [mmap(1, 5), mmap(7, 5), mremap(7, 5, 5, MOVE, 1007),
                                    touch(1, 1), mremap(1007, 5, 5, MOVE, 6)],
    "mremap_unfaulted_behind_faulted": [mmap(6, 5), mmap(14, 5), mremap(14, 5, 5, MOVE, 1014),
                                        touch(6, 1), mremap(1014, 5, 5, MOVE, 1)],
    "mremap_unfaulted_between_faulted": [mmap(1, 5), mmap(7, 5), mmap(14, 5),
                                         mremap(14, 5, 5, MOVE, 2014),
                                         mremap(7, 5, 5, MOVE, 1007), touch(1, 1),
                                         touch(2014, 1), mremap(2014, 5, 5, MOVE, 11),
                                         mremap(1007, 5, 5, MOVE, 6)],
    "mremap_unfaulted_between_faulted_unfaulted": [mmap(1, 5), mmap(7, 5), mmap(14, 5),
                                                   mremap(14, 5, 5, MOVE, 2014),
                                                   mremap(7, 5, 5, MOVE, 1007), touch(1, 1),
                                                   mremap(2014, 5, 5, MOVE, 11),
                                                   mremap(1007, 5, 5, MOVE, 6)],
    "mremap_unfaulted_between_correctly_placed_faulted": [mmap(1, 15), touch(1, 1),
                                                          munmap(6, 5), mmap(20, 5),
                                                          mremap(20, 5, 5, MOVE, 6)],
    "mremap_dontunmap": [mmap(0, 2), touch(0, 2), mremap(0, 2, 2, MOVE | 4, 10)],
    "mremap_zero_old_len_private_einval": [mmap(0, 2), mremap(0, 0, 2, MREMAP_MAYMOVE)],
    "mremap_zero_old_len_shared_duplicates": [mmap(0, 2, RW, SHARED), mremap(0, 0, 2, MOVE, 10)],
    "mremap_grow_from_middle_enomem": [mmap(0, 4), mremap(0, 2, 3)],
    "mremap_bad_flags_einval": [mmap(0, 2), mremap(0, 2, 2, 8)],
    "mremap_shared_anon_move_and_back": [mmap(0, 4, RW, SHARED), mremap(1, 2, 2, MOVE, 20),
                                         mremap(20, 2, 2, MOVE, 1)],
    "mremap_shared_anon_grow": [mmap(0, 2, RW, SHARED), touch(0, 2), mremap(0, 2, 4)],
    "mremap_locked_grow_populates": [mmap(0, 2, RW, PRIV | MAP_LOCKED), mremap(0, 2, 4)],
    "mremap_locked_move_grow_populates": [mmap(0, 2, RW, PRIV | MAP_LOCKED),
                                          mremap(0, 2, 4, MOVE, 20)],
    "mremap_lockonfault_grow_does_not_populate": [mmap(0, 2), mlock2(0, 2, MLOCK_ONFAULT),
                                                  mremap(0, 2, 4)],
    # ---- shared anonymous mappings
    "shared_anon_flags": [mmap(0, 3, RW, SHARED), mmap(4, 2, R, SHARED)],
    "shared_anon_touch_rss": [mmap(0, 3, RW, SHARED), touch(0, 2), touch(2, 1, False)],
    "shared_anon_adjacent_do_not_merge": [mmap(0, 2, RW, SHARED), mmap(2, 2, RW, SHARED)],
    "shared_anon_mprotect_split": [mmap(0, 3, RW, SHARED), mprotect(1, 1, R)],
    "shared_anon_munmap_middle": [mmap(0, 3, RW, SHARED), touch(0, 3), munmap(1, 1)],
    "shared_anon_populate": [mmap(0, 3, RW, SHARED | MAP_POPULATE)],
    "shared_anon_readonly_to_rw": [mmap(0, 3, R, SHARED), mprotect(0, 3, RW), touch(0, 1)],
    "shared_anon_dontfork_roundtrip": [mmap(0, 3, RW, SHARED), madvise(1, 1, MADV_DONTFORK),
                                       madvise(1, 1, MADV_DOFORK)],
    "shared_anon_growsdown_einval": [mmap(0, 2, RW, SHARED | MAP_GROWSDOWN)],
    "shared_anon_next_to_private_no_merge": [mmap(0, 2), mmap(2, 2, RW, SHARED)],
    # ---- touches
    "touch_read_maps_zero_page": [mmap(0, 2), touch(0, 2, False)],
    "touch_refused_on_prot_none": [mmap(0, 2, PROT_NONE), touch(0, 1, False)],
    "touch_write_on_readonly_refused": [mmap(0, 2, R), touch(0, 1)],
}

THP_SCENARIOS = {
    "thp_hugepage_write_fault": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                                 touch(0, 1)],
    "thp_no_advice_no_thp": [mmap(0, 2 * HUGE), touch(0, 1)],
    "thp_read_fault_huge_zero_page": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                                      touch(0, 1, False)],
    "thp_eligible_small_vma": [mmap(0, 16), madvise(0, 16, MADV_HUGEPAGE)],
    "thp_eligible_readonly": [mmap(0, 2 * HUGE, R), madvise(0, 2 * HUGE, MADV_HUGEPAGE)],
    "thp_unaligned_vma": [mmap(1, 2 * HUGE), madvise(1, 2 * HUGE, MADV_HUGEPAGE),
                          touch(1, 1), touch(HUGE, 1)],
    "thp_nohugepage_half": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                            madvise(HUGE, HUGE, MADV_NOHUGEPAGE), touch(0, 1), touch(HUGE, 1)],
    "thp_collapse_all_blocks": [mmap(0, 2 * HUGE), touch(0, 1), touch(HUGE, 1),
                                madvise(0, 2 * HUGE, MADV_COLLAPSE)],
    "thp_collapse_empty_block_einval": [mmap(0, 2 * HUGE), touch(0, 1),
                                        madvise(0, 2 * HUGE, MADV_COLLAPSE)],
    "thp_collapse_aligned_range_inside_one_pmd": [mmap(0, 2 * HUGE), touch(0, 4),
                                                  madvise(0, 2, MADV_COLLAPSE)],
    # madvise_collapse: hstart rounds up, hend down; an inverted range is EINVAL.
    "thp_collapse_unaligned_range_inside_one_pmd_einval": [mmap(0, 2 * HUGE), touch(0, 4),
                                                           madvise(1, 2, MADV_COLLAPSE)],
    # Forced collapse ignores shmem_enabled=never for shmem (shared anonymous) VMAs.
    "thp_collapse_shmem_empty_range": [mmap(0, 2 * HUGE, RW, SHARED),
                                       madvise(0, 2, MADV_COLLAPSE)],
    "thp_collapse_shmem": [mmap(0, 2 * HUGE, RW, SHARED), touch(0, 1),
                           madvise(0, HUGE, MADV_COLLAPSE)],
    "thp_collapse_nohugepage_einval": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_NOHUGEPAGE),
                                       touch(0, 1), madvise(0, 2 * HUGE, MADV_COLLAPSE)],
    "thp_collapse_already_huge": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                                  touch(0, 1), touch(HUGE, 1),
                                  madvise(0, 2 * HUGE, MADV_COLLAPSE)],
    "thp_mprotect_splits_pmd": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                                touch(0, 1), mprotect(1, 1, R)],
    "thp_dontneed_one_page": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                              touch(0, 1), madvise(3, 1, MADV_DONTNEED)],
    "thp_dontneed_whole_pmd": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                               touch(0, 1), madvise(0, HUGE, MADV_DONTNEED)],
    "thp_munmap_one_page": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                            touch(0, 1), munmap(HUGE - 1, 1)],
    "thp_mremap_move_huge": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                             touch(0, 1), mremap(0, HUGE, HUGE, MOVE, 4 * HUGE)],
    "thp_shared_anon_not_eligible": [mmap(0, 2 * HUGE, RW, SHARED),
                                     madvise(0, 2 * HUGE, MADV_HUGEPAGE), touch(0, 1)],
    "thp_mlock_hugepage": [mmap(0, 2 * HUGE), madvise(0, 2 * HUGE, MADV_HUGEPAGE),
                           mlock(0, HUGE)],
}


def test_scenario_count():
    assert len(SCENARIOS) + len(THP_SCENARIOS) >= 25


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(name):
    check(SCENARIOS[name], thp=THP_MADVISE)


@pytest.mark.parametrize("name", sorted(THP_SCENARIOS))
def test_thp_scenario(name):
    if not THP_MADVISE:
        pytest.skip(f"live THP setting is {live.host_thp()!r}, not 'madvise'")
    check(THP_SCENARIOS[name], thp=True)


# --------------------------------------------------------------------------- random sequences

REGION = 32                                  # pages at the start of the window
PROTS = [PROT_NONE, R, RW, RX]
ADVICE = [MADV_NORMAL, MADV_RANDOM, MADV_SEQUENTIAL, MADV_DONTFORK, MADV_DOFORK,
          MADV_DONTDUMP, MADV_DODUMP, MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE,
          MADV_UNMERGEABLE, MADV_WIPEONFORK, MADV_KEEPONFORK, MADV_DONTNEED]


@st.composite
def a_call(draw):
    page = draw(st.integers(0, REGION - 1))
    n = draw(st.integers(1, 8))
    kind = draw(st.sampled_from(["mmap", "mmap", "mmap", "munmap", "mprotect", "mprotect",
                                 "madvise", "madvise", "mremap", "mlock", "munlock", "touch",
                                 "touch"]))
    if kind == "mmap":
        prot = draw(st.sampled_from(PROTS))
        flags = draw(st.sampled_from([PRIV, PRIV, PRIV | MAP_NORESERVE, SHARED, NOREPLACE]))
        return mmap(page, n, prot, flags)
    if kind == "munmap":
        return munmap(page, n)
    if kind == "mprotect":
        return mprotect(page, n, draw(st.sampled_from(PROTS)))
    if kind == "madvise":
        return madvise(page, n, draw(st.sampled_from(ADVICE)))
    if kind == "mremap":
        new = draw(st.integers(1, 8))
        if draw(st.booleans()):
            return mremap(page, n, new)                       # in place: shrink or grow
        return mremap(page, n, new, MOVE, draw(st.integers(0, REGION - 1)))
    if kind == "mlock":
        if draw(st.booleans()):
            return mlock(page, n)
        return mlock2(page, n, MLOCK_ONFAULT)
    if kind == "munlock":
        return munlock(page, n)
    return touch(page, n, draw(st.booleans()))


@st.composite
def call_sequences(draw):
    return draw(st.lists(a_call(), min_size=1, max_size=12))


# MMSIM_DIFF_EXAMPLES raises the count for a long search (CI keeps the default).
@settings(max_examples=int(os.environ.get("MMSIM_DIFF_EXAMPLES", "60")), deadline=None,
          database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(calls=call_sequences())
def test_random_sequences(calls):
    check(calls, thp=THP_MADVISE)
