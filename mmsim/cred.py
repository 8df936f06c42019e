"""Credentials, capabilities, user namespaces and the ptrace access check
(kernel/cred.c, kernel/capability.c, security/commoncap.c, kernel/ptrace.c)."""

import errno

from .defs import error

CAP_CHOWN = 0
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_SETGID = 6
CAP_SETUID = 7
CAP_SETPCAP = 8
CAP_IPC_LOCK = 14
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYS_NICE = 23
CAP_SYS_RESOURCE = 24
CAP_LAST_CAP = 40
CAP_FULL_SET = (1 << (CAP_LAST_CAP + 1)) - 1

PTRACE_MODE_READ = 0x01
PTRACE_MODE_ATTACH = 0x02
PTRACE_MODE_NOAUDIT = 0x04
PTRACE_MODE_FSCREDS = 0x08
PTRACE_MODE_REALCREDS = 0x10
PTRACE_MODE_READ_FSCREDS = PTRACE_MODE_READ | PTRACE_MODE_FSCREDS
PTRACE_MODE_READ_REALCREDS = PTRACE_MODE_READ | PTRACE_MODE_REALCREDS
PTRACE_MODE_ATTACH_FSCREDS = PTRACE_MODE_ATTACH | PTRACE_MODE_FSCREDS
PTRACE_MODE_ATTACH_REALCREDS = PTRACE_MODE_ATTACH | PTRACE_MODE_REALCREDS

SUID_DUMP_USER = 1
# (uid_t)-1 and (gid_t)-1: "leave this id as it is" for setres*id, no id anywhere else.
# Ids are unsigned 32-bit, as the kernel keeps and /proc shows them.
NO_ID = 0xFFFFFFFF


class UserNamespace:
    """A user namespace: its parent and the (outer) uid that created it."""

    def __init__(self, parent=None, owner=0):
        self.parent = parent
        self.owner = owner
        self.level = 0 if parent is None else parent.level + 1

    def __repr__(self):
        return f"<UserNamespace level {self.level} owner {self.owner}>"


INIT_USER_NS = UserNamespace()


class Cred:
    """A task's credentials: uids, gids, capability sets and user namespace."""

    __slots__ = ("uid", "euid", "suid", "fsuid", "gid", "egid", "sgid", "fsgid",
                 "cap_permitted", "cap_effective", "cap_inheritable", "user_ns")

    def __init__(self, uid=0, gid=0, caps=None, user_ns=INIT_USER_NS):
        self.uid = self.euid = self.suid = self.fsuid = uid
        self.gid = self.egid = self.sgid = self.fsgid = gid
        if caps is None:
            caps = CAP_FULL_SET if uid == 0 else 0
        self.cap_permitted = self.cap_effective = caps
        self.cap_inheritable = 0
        self.user_ns = user_ns

    def copy(self):
        """prepare_creds(): a copy to change."""
        new = Cred.__new__(Cred)
        for name in Cred.__slots__:
            setattr(new, name, getattr(self, name))
        return new


def ns_capable(cred, ns, cap):
    """cap_capable(): ``cred`` holds ``cap`` over namespace ``ns`` (its own namespace,
    or one it owns further down)."""
    while True:
        if ns is cred.user_ns:
            return bool(cred.cap_effective >> cap & 1)
        if ns.level <= cred.user_ns.level:
            return False
        # The creator of a namespace has every capability inside it.
        if ns.parent is cred.user_ns and ns.owner == cred.euid:
            return True
        ns = ns.parent


def inode_permission(cred, inode, read, write):
    """generic_permission() for opening a regular file: the owner, group or other bits
    that apply to the fsuid, then CAP_DAC_OVERRIDE (or CAP_DAC_READ_SEARCH for a read),
    which counts only in a namespace where the file's owner is mapped: the initial one
    here, as mmsim writes no uid maps."""
    want = (4 if read else 0) | (2 if write else 0)
    if cred.fsuid == inode.uid:
        bits = inode.mode >> 6
    elif cred.fsgid == inode.gid:
        bits = inode.mode >> 3
    else:
        bits = inode.mode
    if bits & want == want:
        return True
    if cred.user_ns is not INIT_USER_NS:
        return False
    if capable(cred, CAP_DAC_OVERRIDE):
        return True
    return not write and capable(cred, CAP_DAC_READ_SEARCH)


def capable(cred, cap):
    """``cap`` in the initial user namespace."""
    return ns_capable(cred, INIT_USER_NS, cap)


def ptrace_may_access(caller, target, mode):
    """__ptrace_may_access(): may ``caller`` (a process) inspect ``target`` in ``mode``?"""
    if caller is target or caller.tgid == target.tgid:
        return True
    cred = caller.cred
    tcred = target.cred
    if mode & PTRACE_MODE_FSCREDS:
        uid, gid = cred.fsuid, cred.fsgid
    else:
        uid, gid = cred.uid, cred.gid
    same_ids = (uid == tcred.euid == tcred.suid == tcred.uid
                and gid == tcred.egid == tcred.sgid == tcred.gid)
    if not same_ids and not ns_capable(cred, tcred.user_ns, CAP_SYS_PTRACE):
        return False
    mm = target.mm
    if mm is not None and (mm.flags & 3) != SUID_DUMP_USER \
            and not ns_capable(cred, mm.user_ns, CAP_SYS_PTRACE):
        return False
    # commoncap: same namespace and the target's permitted set inside the caller's.
    caller_caps = cred.cap_effective if mode & PTRACE_MODE_FSCREDS else cred.cap_permitted
    if cred.user_ns is tcred.user_ns and not tcred.cap_permitted & ~caller_caps:
        return True
    return ns_capable(cred, tcred.user_ns, CAP_SYS_PTRACE)


def _check_mapped(cred, *ids):
    """make_kuid/make_kgid: an id must map into the initial namespace.  mmsim writes no
    uid_map or gid_map, so in a child user namespace every id is unmapped: EINVAL."""
    if cred.user_ns is not INIT_USER_NS and any(i != NO_ID for i in ids):
        raise error(errno.EINVAL, "no uid/gid map in this user namespace")


def setresuid(proc, ruid, euid, suid):
    """setresuid(2): (uid_t)-1 keeps an id; without CAP_SETUID each new id must be one
    of the current three.  Capabilities drop the way commoncap's cap_task_fix_setuid does."""
    old = proc.cred
    _check_mapped(old, ruid, euid, suid)
    if not ns_capable(old, old.user_ns, CAP_SETUID):
        allowed = {old.uid, old.euid, old.suid}
        for value in (ruid, euid, suid):
            if value != NO_ID and value not in allowed:
                raise error(errno.EPERM)
    new = old.copy()
    if ruid != NO_ID:
        new.uid = ruid
    if euid != NO_ID:
        new.euid = euid
    if suid != NO_ID:
        new.suid = suid
    new.fsuid = new.euid
    _fix_setuid(old, new)
    commit_creds(proc, new)
    return 0


def setuid(proc, uid):
    """setuid(2): with CAP_SETUID all three ids, else the effective one."""
    old = proc.cred
    if uid == NO_ID:
        raise error(errno.EINVAL, "(uid_t)-1 is no user")   # make_kuid gives INVALID_UID
    _check_mapped(old, uid)
    if ns_capable(old, old.user_ns, CAP_SETUID):
        return setresuid(proc, uid, uid, uid)
    if uid not in (old.uid, old.suid):
        raise error(errno.EPERM)
    return setresuid(proc, NO_ID, uid, NO_ID)


def setresgid(proc, rgid, egid, sgid):
    """setresgid(2): (gid_t)-1 keeps an id; without CAP_SETGID each new id must be one
    of the current three."""
    old = proc.cred
    _check_mapped(old, rgid, egid, sgid)
    if not ns_capable(old, old.user_ns, CAP_SETGID):
        allowed = {old.gid, old.egid, old.sgid}
        for value in (rgid, egid, sgid):
            if value != NO_ID and value not in allowed:
                raise error(errno.EPERM)
    new = old.copy()
    if rgid != NO_ID:
        new.gid = rgid
    if egid != NO_ID:
        new.egid = egid
    if sgid != NO_ID:
        new.sgid = sgid
    new.fsgid = new.egid
    commit_creds(proc, new)
    return 0


def setgid(proc, gid):
    """setgid(2): with CAP_SETGID all three ids, else the effective one."""
    old = proc.cred
    if gid == NO_ID:
        raise error(errno.EINVAL, "(gid_t)-1 is no group")
    _check_mapped(old, gid)
    if ns_capable(old, old.user_ns, CAP_SETGID):
        return setresgid(proc, gid, gid, gid)
    if gid not in (old.gid, old.sgid):
        raise error(errno.EPERM)
    return setresgid(proc, NO_ID, gid, NO_ID)


def capget(proc, target):
    """capget(2): ``(effective, permitted, inheritable)`` of ``target``."""
    cred = target.cred
    return cred.cap_effective, cred.cap_permitted, cred.cap_inheritable


def capset(proc, effective, permitted, inheritable):
    """capset(2) on the caller: permitted may only shrink, effective must lie inside the
    new permitted set, inheritable inside permitted unless CAP_SETPCAP."""
    old = proc.cred
    if permitted & ~old.cap_permitted:
        raise error(errno.EPERM, "cannot gain permitted capabilities")
    if effective & ~permitted:
        raise error(errno.EPERM, "effective must be a subset of permitted")
    if inheritable & ~(old.cap_inheritable | old.cap_permitted) \
            and not ns_capable(old, old.user_ns, CAP_SETPCAP):
        raise error(errno.EPERM)
    new = old.copy()
    new.cap_effective, new.cap_permitted, new.cap_inheritable = effective, permitted, inheritable
    commit_creds(proc, new)
    return 0


def _fix_setuid(old, new):
    """cap_task_fix_setuid: leaving uid 0 entirely drops every capability; leaving
    euid 0 drops the effective set; regaining euid 0 restores it from permitted."""
    root_before = 0 in (old.uid, old.euid, old.suid)
    root_after = 0 in (new.uid, new.euid, new.suid)
    if root_before and not root_after:
        new.cap_permitted = new.cap_effective = 0
    if old.euid == 0 and new.euid != 0:
        new.cap_effective = 0
    if old.euid != 0 and new.euid == 0:
        new.cap_effective = new.cap_permitted


def commit_creds(proc, new):
    """Install ``new``; a change of euid/egid/fsuid/fsgid or of the permitted set makes
    the mm non-dumpable (fs.suid_dumpable is 0 on the reference machine)."""
    old = proc.cred
    changed = (old.euid != new.euid or old.egid != new.egid or old.fsuid != new.fsuid
               or old.fsgid != new.fsgid or new.cap_permitted & ~old.cap_permitted)
    if changed and proc.mm is not None:
        proc.mm.flags &= ~3  # SUID_DUMP_DISABLE
    proc.cred = new


def unshare_user(proc):
    """unshare(CLONE_NEWUSER): a child namespace owned by the caller's euid, with every
    capability inside it (and none outside)."""
    old = proc.cred
    # create_user_ns: the creator's euid and egid must be mapped in the current
    # namespace, and mmsim writes no maps, so only the initial namespace qualifies.
    if old.user_ns is not INIT_USER_NS:
        raise error(errno.EPERM, "the creator's ids are unmapped here")
    new = old.copy()
    new.user_ns = UserNamespace(old.user_ns, owner=old.euid)
    new.cap_permitted = new.cap_effective = CAP_FULL_SET
    proc.cred = new
    return 0
