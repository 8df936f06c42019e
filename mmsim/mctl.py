"""mctl(pidfd, action, flags): the proposed address-space-wide call (linux-mm, 2025-05-29;
never merged), with the semantics mmsim defines for it (docs/mctl.md).

Each property (NOHUGEPAGE, HUGEPAGE, FADE_ON_DEATH) is, per mm, off, on, or on and
persistent.  Setting a THP property walks every VMA through the same flag change and
merge engine as madvise, and puts the flag into the mm's def_flags so that every VMA
created later starts with it.  Persistent properties are carried into a fork child's
mm and a freshly exec'd one; a secure exec drops the ones that enable something.
"""

import errno
from operator import attrgetter

from . import madvise as _madvise
from .cred import CAP_SYS_ADMIN, PTRACE_MODE_ATTACH_REALCREDS, ns_capable, ptrace_may_access
from .defs import error
from .uapi import (MCTL_CLEAR_FADE_ON_DEATH, MCTL_CLEAR_HUGEPAGE,
                   MCTL_CLEAR_NOHUGEPAGE, MCTL_GET, MCTL_SET_DEFAULT_EXEC, MCTL_SET_FADE_ON_DEATH,
                   MCTL_SET_HUGEPAGE, MCTL_SET_NOHUGEPAGE)
from .vma import VM_HUGEPAGE, VM_NOHUGEPAGE, MergeProposal

# Property states, and how MCTL_GET packs them: two bits per property.
OFF, ON, PERSISTENT = 0, 1, 2
NOHUGEPAGE, HUGEPAGE, FADE_ON_DEATH = "nohugepage", "hugepage", "fade_on_death"
GET_SHIFT = {NOHUGEPAGE: 0, HUGEPAGE: 2, FADE_ON_DEATH: 4}

# action -> (property, turns it on?)
ACTIONS = {
    MCTL_SET_NOHUGEPAGE: (NOHUGEPAGE, True), MCTL_CLEAR_NOHUGEPAGE: (NOHUGEPAGE, False),
    MCTL_SET_HUGEPAGE: (HUGEPAGE, True), MCTL_CLEAR_HUGEPAGE: (HUGEPAGE, False),
    MCTL_SET_FADE_ON_DEATH: (FADE_ON_DEATH, True), MCTL_CLEAR_FADE_ON_DEATH: (FADE_ON_DEATH, False),
}
# The VMA flag each THP property stands for, and the one setting it switches off.
VM_FLAG = {NOHUGEPAGE: VM_NOHUGEPAGE, HUGEPAGE: VM_HUGEPAGE}
OPPOSITE = {NOHUGEPAGE: HUGEPAGE, HUGEPAGE: NOHUGEPAGE}
# Properties a secure exec turns off: those that enable something.
ENABLING = (HUGEPAGE, FADE_ON_DEATH)

POLICIES = ("strict", "relaxed")


def states(mm):
    """The mm's property states (created on first use)."""
    if mm.mctl is None:
        mm.mctl = {NOHUGEPAGE: OFF, HUGEPAGE: OFF, FADE_ON_DEATH: OFF}
    return mm.mctl


def query_value(mm):
    """MCTL_GET's result: two bits per property, off 0, on 1, on and persistent 2."""
    st = states(mm)
    return sum(st[p] << shift for p, shift in GET_SHIFT.items())


def mctl(proc, pidfd, action, flags):
    """mctl(2) as mmsim defines it; returns 0, or the query's value."""
    # Argument checks come before anything else.
    if action != MCTL_GET and action not in ACTIONS:
        raise error(errno.EINVAL, "unknown action")
    if flags & ~MCTL_SET_DEFAULT_EXEC:
        raise error(errno.EINVAL, "unknown flags")
    if action == MCTL_GET and flags:
        raise error(errno.EINVAL, "the query takes no flag")
    target = proc._pidfd_task(pidfd)
    mm = target.mm
    if mm is None:
        raise error(errno.ESRCH, "the target has exited")
    _check_permission(proc, target, action, flags)
    if action == MCTL_GET:
        return query_value(mm)
    prop, turn_on = ACTIONS[action]
    apply(mm, prop, turn_on, persistent=bool(flags & MCTL_SET_DEFAULT_EXEC))
    return 0


def _check_permission(proc, target, action, flags):
    cred = proc.cred
    remote = target.mm is not proc.mm
    policy = proc.kernel.mctl_policy
    if policy == "strict":
        # The proposal: another mm, or persistence, needs CAP_SYS_ADMIN.
        if remote and not ns_capable(cred, target.mm.user_ns or target.cred.user_ns,
                                     CAP_SYS_ADMIN):
            raise error(errno.EPERM, "acting on another process needs CAP_SYS_ADMIN")
        if flags & MCTL_SET_DEFAULT_EXEC and not ns_capable(cred, cred.user_ns, CAP_SYS_ADMIN):
            raise error(errno.EPERM, "MCTL_SET_DEFAULT_EXEC needs CAP_SYS_ADMIN")
        return
    # Relaxed: whom you may ptrace-attach to; persisting NOHUGEPAGE needs no privilege.
    if remote and not ptrace_may_access(proc, target, PTRACE_MODE_ATTACH_REALCREDS):
        raise error(errno.EPERM, "no ptrace access to the target")
    prop = ACTIONS[action][0] if action in ACTIONS else None
    if (flags & MCTL_SET_DEFAULT_EXEC and ACTIONS.get(action, (None, False))[1]
            and prop != NOHUGEPAGE and not ns_capable(cred, cred.user_ns, CAP_SYS_ADMIN)):
        raise error(errno.EPERM, "persisting this property needs CAP_SYS_ADMIN")


def apply(mm, prop, turn_on, persistent=False):
    """Set or clear ``prop`` on ``mm``: the state, the def_flags default, and every VMA."""
    st = states(mm)
    if turn_on:
        st[prop] = PERSISTENT if persistent else ON
        if prop in OPPOSITE:
            st[OPPOSITE[prop]] = OFF
    else:
        st[prop] = OFF
    sync_def_flags(mm)
    if prop in VM_FLAG:
        walk(mm, prop, turn_on)
        if turn_on == (prop == HUGEPAGE):
            # As MADV_HUGEPAGE over every VMA would: an eligible VMA registers the mm
            # with khugepaged (simulator-defined, docs/thp.md).
            mm.kernel.khugepaged.enter_vmas(mm)


def sync_def_flags(mm, inherited=0):
    """The THP defaults for VMAs created from now on follow the properties that are on.
    Only the bits mctl itself put into def_flags (``mm.mctl_bits``, or ``inherited``
    from the mm this one was made from) are taken back, so a def_flags VM_NOHUGEPAGE
    of the kernel's own stays."""
    st = states(mm)
    bits = (VM_NOHUGEPAGE if st[NOHUGEPAGE] else 0) | (VM_HUGEPAGE if st[HUGEPAGE] else 0)
    ours = mm.mctl_bits | inherited
    mm.def_flags = (mm.def_flags & ~ours) | bits
    mm.mctl_bits = bits
    mm.fade_on_death = bool(st[FADE_ON_DEATH])


_vm_flags = attrgetter("vm_flags")


def walk(mm, prop, turn_on):
    """Change every VMA: what MADV_[NO]HUGEPAGE over the whole VMA would give, or, to
    clear, the flag taken off.

    MADV_[NO]HUGEPAGE refuses no VMA (hugepage_madvise has no type check), so each is
    a plain bit change.  The tree keeps an OR/AND summary of its VMAs' flags per node,
    so subtrees with nothing to change are skipped without reading them, and a leaf
    whose every VMA changed the same way gets its summary from the old one.  Each leaf's
    changes go to the engine's set_flags_until_merge: up to the first change that may
    merge with a neighbour, vma_modify would neither merge nor split, so the flags
    change in place.  The first change that may merge ends the fast walk: from there on
    every VMA goes the way madvise would, through the merge engine."""
    flag = VM_FLAG[prop]
    if turn_on:
        clear, add = VM_FLAG[OPPOSITE[prop]], flag
    else:
        clear, add = flag, 0
    keep = ~clear
    tree = mm.tree
    sweep = tree.summarized_walk(_vm_flags, lambda o, a: a & add == add and not o & clear)
    for leaf in sweep:
        stop = mm.set_flags_until_merge(leaf, keep, add, mm.prev_of(leaf[0].start),
                                        mm.next_of(leaf[-1].end))
        if stop < len(leaf):
            sweep.close()
            _walk_merging(mm, leaf[stop].start, keep, add)
            return
        # Every flag of the leaf went the same way: its summary follows without a reread.
        tree.keys_mapped(keep, add)


def _walk_merging(mm, start, keep, add):
    """The rest of the walk, from ``start``, for when merges may reshape the tree."""
    vmas = mm.vmas(start)
    last = len(vmas) - 1
    prev = mm.prev_of(start)
    maybe_gone = False
    for i, vma in enumerate(vmas):
        old = vma.vm_flags
        new = (old & keep) | add
        if new == old:
            prev = vma
            continue
        if maybe_gone:
            maybe_gone = False
            if mm.vma_lookup(vma.start) is not vma:
                continue  # merged into the VMA changed before it
        nxt = vmas[i + 1] if i < last else None
        if (mm.set_flags_until_merge((vma,), keep, add, prev, nxt)
                or not MergeProposal.whole_change_merges(vma, new, prev, nxt)):
            if vma.vm_flags != new:
                mm.set_vm_flags(vma, new)
            prev = vma
            continue
        prev = _madvise.update_vma(mm, vma, vma.start, vma.end, new)
        maybe_gone = True


def inherit(old, new, secureexec=False):
    """A fork child's or freshly exec'd mm starts with ``old``'s persistent properties
    (still persistent); a secure exec drops the enabling ones."""
    st_old = states(old)
    st_new = states(new)
    for prop, state in st_old.items():
        keep = state == PERSISTENT and not (secureexec and prop in ENABLING)
        st_new[prop] = PERSISTENT if keep else OFF
    sync_def_flags(new, inherited=old.mctl_bits)
