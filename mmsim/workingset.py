"""Workingset detection (mm/workingset.c): the shadow entry an evicted page-cache
folio leaves behind, and the refault distance that decides, when the page is read
again, whether it would have stayed resident had the active list given it room.

The clock is ``Lruvec.nonresident_age``: it ticks once per page evicted and once
per page activated, in the cgroup and every ancestor.  A shadow is the tuple
``(reclaim target, its clock at eviction, PG_workingset)``: distances and the
workingset are measured on the cgroup whose reclaim evicted the page (the root for
the machine's reclaim).  On a refault the distance is the
clock's advance since the eviction; the page is activated when the distance is at
most the workingset it competed with: the active file list, plus the anon lists
when anon can be swapped (and the inactive file list for an anon refault).
"""

from .memcg import (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE, LRU_INACTIVE_ANON, LRU_INACTIVE_FILE,
                    count_event, lru_note_cost)


def age_nonresident(memcg, nr):
    """workingset_age_nonresident: advance the clock of ``memcg`` and its ancestors."""
    m = memcg
    while m is not None:
        m.lruvec.nonresident_age += nr
        m = m.parent


def eviction(target, nr, workingset):
    """workingset_eviction: the shadow of ``nr`` pages evicted by reclaim of ``target``'s
    subtree: the target's clock before this eviction ticks it."""
    when = target.lruvec.nonresident_age
    age_nonresident(target, nr)
    return (target, when, workingset)


def refault(memcg, nr, shadow, file, can_swap):
    """workingset_refault: count a refault of ``nr`` pages charged to ``memcg`` whose
    eviction left ``shadow``; returns ``(activate, restore)``: whether the folio goes
    straight to the active list, and whether it was in the workingset when evicted."""
    evicted_in, when, workingset = shadow
    kind = "file" if file else "anon"
    count_event(memcg, "workingset_refault_" + kind, nr)
    distance = evicted_in.lruvec.nonresident_age - when
    size = evicted_in.lru_total(LRU_ACTIVE_FILE)
    if not file:
        size += evicted_in.lru_total(LRU_INACTIVE_FILE)
    if can_swap:
        size += evicted_in.lru_total(LRU_ACTIVE_ANON)
        if file:
            size += evicted_in.lru_total(LRU_INACTIVE_ANON)
    if distance > size:
        return False, False
    age_nonresident(memcg, nr)
    count_event(memcg, "workingset_activate_" + kind, nr)
    if workingset:
        lru_note_cost(memcg, file, nr, 0)   # lru_note_cost_refault
        count_event(memcg, "workingset_restore_" + kind, nr)
    return True, bool(workingset)


__all__ = ["age_nonresident", "eviction", "refault"]
