"""Kernel ABI constants for x86-64 Linux 6.18, under their kernel names, with lookups.

Every constant is a plain module-level ``int`` spelled exactly as in the kernel's uapi
headers, so simulator code reads like kernel code (``uapi.MAP_PRIVATE | uapi.MAP_ANONYMOUS``).
The values are the x86-64 ones.  Each block names the header it was checked against;
where Python's own ``mmap``/``os`` modules expose the same constant, the tests compare
the two.  The two names that are not legal Python identifiers, ``__WCLONE`` and
``__WALL``, are exposed as ``WCLONE`` and ``WALL``; the lookup tables keep the kernel
spelling.

Constants are grouped into *families* (``families()`` lists them).  A family is either

* a **bitmask**: values are ORed together; ``names()`` decomposes a value into member
  names, showing bits it cannot name as one hex leftover.  Some bitmasks also carry an
  *enumerated field* in a few bits (the mapping type in ``MAP_TYPE``, the access mode in
  ``O_ACCMODE``, the exit signal in ``CSIGNAL``), which is matched as a whole; or
* an **enumeration**: a value is exactly one member (``MADV_*``, ``PR_*`` options).

Lookups are per family because values collide across families (``PIDFD_NONBLOCK ==
O_NONBLOCK``, ``PR_SET_PDEATHSIG == PR_MDWE_REFUSE_EXEC_GAIN``); names never collide, so
``value()`` parses names from any family.

The ``MCTL_*`` block is not kernel ABI: it is a simulator-defined proposal, and its
numbers are ours.
"""

import re
from dataclasses import dataclass, field

__all__ = ["value", "names", "families"]

# ---------------------------------------------------------------------------------------
# Memory protection: PROT_*  (include/uapi/asm-generic/mman-common.h; x86 adds none)
# ---------------------------------------------------------------------------------------
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000  # mprotect() only: extend the change down to the VMA start
PROT_GROWSUP = 0x02000000    # mprotect() only: extend the change up to the VMA end

# ---------------------------------------------------------------------------------------
# mmap() flags: MAP_*
#   include/uapi/linux/mman.h             the mapping types (low nibble) and MAP_HUGE_*
#   include/uapi/asm-generic/mman-common.h MAP_TYPE, FIXED, ANONYMOUS, FIXED_NOREPLACE,
#                                          UNINITIALIZED
#   include/uapi/asm-generic/mman.h        GROWSDOWN .. SYNC (x86 uses the generic ones)
#   arch/x86/include/uapi/asm/mman.h       MAP_32BIT, MAP_ABOVE4G
# ---------------------------------------------------------------------------------------
# The low nibble is not a set of bits but one enumerated mapping type: do_mmap() does
# `switch (flags & MAP_TYPE)`.  That is why MAP_DROPPABLE (0x08) is a type, not a flag,
# and why MAP_SHARED_VALIDATE is 0x03 rather than SHARED|PRIVATE.
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03   # MAP_SHARED, but unknown flags fail with EOPNOTSUPP
MAP_DROPPABLE = 0x08         # private anonymous memory the kernel may zero under pressure
MAP_TYPE = 0x0f              # mask of the type field above; not a flag
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_32BIT = 0x40             # x86 only
MAP_ABOVE4G = 0x80           # x86 only
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800       # ignored by the kernel since 5.15, still accepted
MAP_EXECUTABLE = 0x1000      # ignored by the kernel, still accepted
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000  # bit 26: shares bits with the MAP_HUGE_* size field below
# With MAP_HUGETLB, bits [26:31] hold log2 of the huge page size (0 = default size):
# flags |= 21 << MAP_HUGE_SHIFT asks for 2 MiB pages.  These two are parameters of that
# encoding (include/uapi/asm-generic/hugetlb_encode.h), not flags.
MAP_HUGE_SHIFT = 26
MAP_HUGE_MASK = 0x3f

# ---------------------------------------------------------------------------------------
# mremap() flags: MREMAP_*  (include/uapi/linux/mman.h)
# ---------------------------------------------------------------------------------------
MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

# ---------------------------------------------------------------------------------------
# mlock2() and mlockall() flags  (mman-common.h: MLOCK_*; asm-generic/mman.h: MCL_*)
# ---------------------------------------------------------------------------------------
MLOCK_ONFAULT = 0x01

MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4

# ---------------------------------------------------------------------------------------
# madvise() advice: MADV_*  (include/uapi/asm-generic/mman-common.h; x86 uses these)
# An enumeration: madvise() takes exactly one advice value.
# ---------------------------------------------------------------------------------------
MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
# 5-7 are unused on x86 (alpha, mips and parisc number some advice differently).
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_DONTNEED_LOCKED = 24
MADV_COLLAPSE = 25
# The testing/guard advice sits apart at 100 and up.
MADV_HWPOISON = 100
MADV_SOFT_OFFLINE = 101
MADV_GUARD_INSTALL = 102     # since 6.13
MADV_GUARD_REMOVE = 103

# ---------------------------------------------------------------------------------------
# prctl() options: PR_*  (include/uapi/linux/prctl.h)
# The option (first argument) is an enumeration.  The flag and sub-command values passed
# in later arguments reuse small numbers (PR_MDWE_NO_INHERIT == PR_GET_PDEATHSIG == 2),
# so they live in their own families: PR_THP_DISABLE, PR_MDWE, PR_SET_VMA, PR_SET_MM.
# ---------------------------------------------------------------------------------------
PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_GET_KEEPCAPS = 7
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_GET_NAME = 16
PR_CAPBSET_READ = 23
PR_SET_MM = 35
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_THP_DISABLE = 41
PR_GET_THP_DISABLE = 42
PR_SET_MDWE = 65
PR_GET_MDWE = 66
PR_SET_MEMORY_MERGE = 67
PR_GET_MEMORY_MERGE = 68
PR_SET_VMA = 0x53564d41      # "SVMA" in ASCII

# arg3 of PR_SET_THP_DISABLE (6.18): disable THP except where MADV_HUGEPAGE /
# MADV_COLLAPSE asked for it.  Bit 0 is reserved so PR_GET_THP_DISABLE can return
# "1 | flags".
PR_THP_DISABLE_EXCEPT_ADVISED = 1 << 1

# arg2 of PR_SET_MDWE, and the result of PR_GET_MDWE (memory-deny-write-execute).
PR_MDWE_REFUSE_EXEC_GAIN = 1 << 0
PR_MDWE_NO_INHERIT = 1 << 1

# arg2 of PR_SET_VMA.
PR_SET_VMA_ANON_NAME = 0

# arg2 of PR_SET_MM: which field of the mm to set (CONFIG_CHECKPOINT_RESTORE).
PR_SET_MM_START_CODE = 1
PR_SET_MM_END_CODE = 2
PR_SET_MM_START_DATA = 3
PR_SET_MM_END_DATA = 4
PR_SET_MM_START_STACK = 5
PR_SET_MM_START_BRK = 6
PR_SET_MM_BRK = 7
PR_SET_MM_ARG_START = 8
PR_SET_MM_ARG_END = 9
PR_SET_MM_ENV_START = 10
PR_SET_MM_ENV_END = 11
PR_SET_MM_AUXV = 12
PR_SET_MM_EXE_FILE = 13
PR_SET_MM_MAP = 14
PR_SET_MM_MAP_SIZE = 15

# ---------------------------------------------------------------------------------------
# clone() flags: CLONE_*  (include/uapi/linux/sched.h) and the exit signal
# The low byte (CSIGNAL) is not flags but the signal sent to the parent when the child
# exits, normally SIGCHLD (arch/x86/include/uapi/asm/signal.h).
# ---------------------------------------------------------------------------------------
CSIGNAL = 0x000000ff
SIGCHLD = 17
CLONE_VM = 0x00000100
CLONE_FS = 0x00000200
CLONE_FILES = 0x00000400
CLONE_SIGHAND = 0x00000800
CLONE_PIDFD = 0x00001000
CLONE_PTRACE = 0x00002000
CLONE_VFORK = 0x00004000
CLONE_PARENT = 0x00008000
CLONE_THREAD = 0x00010000
CLONE_NEWNS = 0x00020000
CLONE_SYSVSEM = 0x00040000
CLONE_SETTLS = 0x00080000
CLONE_PARENT_SETTID = 0x00100000
CLONE_CHILD_CLEARTID = 0x00200000
CLONE_DETACHED = 0x00400000  # unused, ignored
CLONE_UNTRACED = 0x00800000
CLONE_CHILD_SETTID = 0x01000000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_IO = 0x80000000

# ---------------------------------------------------------------------------------------
# pidfd_open() flags and pidfd sentinels
#   include/uapi/linux/pidfd.h  PIDFD_NONBLOCK = O_NONBLOCK, PIDFD_THREAD = O_EXCL,
#                               PIDFD_SELF / PIDFD_SELF_PROCESS aliases
#   include/uapi/linux/fcntl.h  PIDFD_SELF_THREAD, PIDFD_SELF_THREAD_GROUP
# The sentinels are "fd" values naming the caller without opening a pidfd.  The
# thread-group one was first -20000 in pidfd.h; commit 67fcec2919e4 ("fcntl/pidfd:
# redefine PIDFD_SELF_THREAD_GROUP") moved both into fcntl.h before 6.18, as -10001.
# ---------------------------------------------------------------------------------------
PIDFD_NONBLOCK = 0o4000      # O_NONBLOCK on x86-64 (0x800)
PIDFD_THREAD = 0o200         # O_EXCL on x86-64 (0x80)

PIDFD_SELF_THREAD = -10000
PIDFD_SELF_THREAD_GROUP = -10001
PIDFD_SELF = PIDFD_SELF_THREAD
PIDFD_SELF_PROCESS = PIDFD_SELF_THREAD_GROUP

# ---------------------------------------------------------------------------------------
# open() flags: O_*  (include/uapi/asm-generic/fcntl.h; x86-64 keeps the generic octal
# values) and AT_FDCWD (include/uapi/linux/fcntl.h)
# The low two bits are the access mode, an enumerated field (O_ACCMODE), so O_RDONLY is 0
# and "O_RDONLY|O_WRONLY" is not a thing.
# ---------------------------------------------------------------------------------------
O_ACCMODE = 0o3
O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_CREAT = 0o100
O_EXCL = 0o200
O_NOCTTY = 0o400
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_NONBLOCK = 0o4000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
O_CLOEXEC = 0o2000000

AT_FDCWD = -100              # dirfd meaning "the current working directory"

# ---------------------------------------------------------------------------------------
# wait4()/waitid() options: W*  (include/uapi/linux/wait.h)
# __WCLONE and __WALL are not Python identifiers; the attributes drop the underscores,
# the lookup tables keep them.
# ---------------------------------------------------------------------------------------
WNOHANG = 0x00000001
WUNTRACED = 0x00000002
WEXITED = 0x00000004
WCONTINUED = 0x00000008
WNOWAIT = 0x01000000
WALL = 0x40000000            # kernel name: __WALL (wait for all children)
WCLONE = 0x80000000          # kernel name: __WCLONE (wait only for non-SIGCHLD children)

# ---------------------------------------------------------------------------------------
# getrlimit()/setrlimit()/prlimit64() resources: RLIMIT_*  (include/uapi/asm-generic/resource.h)
# ---------------------------------------------------------------------------------------
RLIMIT_CPU = 0
RLIMIT_FSIZE = 1
RLIMIT_DATA = 2
RLIMIT_STACK = 3
RLIMIT_CORE = 4
RLIMIT_RSS = 5
RLIMIT_NPROC = 6
RLIMIT_NOFILE = 7
RLIMIT_MEMLOCK = 8
RLIMIT_AS = 9
RLIMIT_LOCKS = 10
RLIMIT_SIGPENDING = 11
RLIMIT_MSGQUEUE = 12
RLIMIT_NICE = 13
RLIMIT_RTPRIO = 14
RLIMIT_RTTIME = 15
RLIM_NLIMITS = 16
RLIM_INFINITY = (1 << 64) - 1

# ---------------------------------------------------------------------------------------
# mctl(): SIMULATOR-DEFINED, NOT KERNEL ABI.
# mctl() is a proposed syscall with no upstream numbers; every value below is chosen by
# this simulator and may change.  How MCTL_GET reports its result is left to a later
# change and deliberately not encoded here.
# ---------------------------------------------------------------------------------------
MCTL_SET_NOHUGEPAGE = 1
MCTL_CLEAR_NOHUGEPAGE = 2
MCTL_SET_HUGEPAGE = 3
MCTL_CLEAR_HUGEPAGE = 4
MCTL_SET_FADE_ON_DEATH = 5
MCTL_CLEAR_FADE_ON_DEATH = 6
MCTL_GET = 7                 # the query action

MCTL_SET_DEFAULT_EXEC = 1    # flag (a separate argument from the action)


# =======================================================================================
# Families and lookups
# =======================================================================================

@dataclass(frozen=True)
class _Family:
    """How one family's values are named: its members and whether they combine."""

    bitmask: bool
    # Canonical names in display order: names() only ever produces these.
    members: tuple[str, ...]
    # Enumerated fields inside a bitmask: (mask name, member names whose values are the
    # field's possible values).  Matched as a whole before the single-bit members.
    fields: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Names value() accepts that names() never prints: masks, shifts, aliases.
    extra: tuple[str, ...] = ()
    # What names() prints for 0 in a bitmask family with no member worth 0.
    zero: str | None = None
    # Width of the syscall argument; a negative value is read as its two's complement
    # in this many bits (an int flag with bit 31 set arrives negative).
    bits: int = 64
    values: dict[str, int] = field(default_factory=dict, compare=False)


# Maps the kernel spelling to the module attribute where they differ.
_ATTR = {"__WALL": "WALL", "__WCLONE": "WCLONE"}

_FAMILIES: dict[str, _Family] = {
    "PROT": _Family(
        bitmask=True, zero="PROT_NONE",
        members=("PROT_READ", "PROT_WRITE", "PROT_EXEC", "PROT_SEM",
                 "PROT_GROWSDOWN", "PROT_GROWSUP"),
        extra=("PROT_NONE",)),
    "MAP": _Family(
        bitmask=True,
        fields=(("MAP_TYPE", ("MAP_SHARED", "MAP_PRIVATE", "MAP_SHARED_VALIDATE",
                              "MAP_DROPPABLE")),),
        members=("MAP_FIXED", "MAP_ANONYMOUS", "MAP_32BIT", "MAP_ABOVE4G",
                 "MAP_GROWSDOWN", "MAP_DENYWRITE", "MAP_EXECUTABLE", "MAP_LOCKED",
                 "MAP_NORESERVE", "MAP_POPULATE", "MAP_NONBLOCK", "MAP_STACK",
                 "MAP_HUGETLB", "MAP_SYNC", "MAP_FIXED_NOREPLACE", "MAP_UNINITIALIZED"),
        extra=("MAP_TYPE", "MAP_HUGE_SHIFT", "MAP_HUGE_MASK")),
    "MREMAP": _Family(
        bitmask=True, members=("MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP")),
    "MLOCK": _Family(bitmask=True, bits=32, members=("MLOCK_ONFAULT",)),
    "MCL": _Family(bitmask=True, bits=32,
                   members=("MCL_CURRENT", "MCL_FUTURE", "MCL_ONFAULT")),
    "MADV": _Family(
        bitmask=False,
        members=("MADV_NORMAL", "MADV_RANDOM", "MADV_SEQUENTIAL", "MADV_WILLNEED",
                 "MADV_DONTNEED", "MADV_FREE", "MADV_REMOVE", "MADV_DONTFORK",
                 "MADV_DOFORK", "MADV_MERGEABLE", "MADV_UNMERGEABLE", "MADV_HUGEPAGE",
                 "MADV_NOHUGEPAGE", "MADV_DONTDUMP", "MADV_DODUMP", "MADV_WIPEONFORK",
                 "MADV_KEEPONFORK", "MADV_COLD", "MADV_PAGEOUT", "MADV_POPULATE_READ",
                 "MADV_POPULATE_WRITE", "MADV_DONTNEED_LOCKED", "MADV_COLLAPSE",
                 "MADV_HWPOISON", "MADV_SOFT_OFFLINE", "MADV_GUARD_INSTALL",
                 "MADV_GUARD_REMOVE")),
    "PR": _Family(
        bitmask=False,
        members=("PR_SET_PDEATHSIG", "PR_GET_PDEATHSIG", "PR_GET_DUMPABLE",
                 "PR_SET_DUMPABLE", "PR_GET_KEEPCAPS", "PR_SET_KEEPCAPS", "PR_SET_NAME",
                 "PR_GET_NAME", "PR_CAPBSET_READ", "PR_SET_MM",
                 "PR_SET_NO_NEW_PRIVS",
                 "PR_GET_NO_NEW_PRIVS", "PR_SET_THP_DISABLE", "PR_GET_THP_DISABLE",
                 "PR_SET_MDWE", "PR_GET_MDWE", "PR_SET_MEMORY_MERGE",
                 "PR_GET_MEMORY_MERGE", "PR_SET_VMA")),
    "PR_THP_DISABLE": _Family(bitmask=True, members=("PR_THP_DISABLE_EXCEPT_ADVISED",)),
    "PR_MDWE": _Family(bitmask=True,
                       members=("PR_MDWE_REFUSE_EXEC_GAIN", "PR_MDWE_NO_INHERIT")),
    "PR_SET_VMA": _Family(bitmask=False, members=("PR_SET_VMA_ANON_NAME",)),
    "PR_SET_MM": _Family(
        bitmask=False,
        members=("PR_SET_MM_START_CODE", "PR_SET_MM_END_CODE", "PR_SET_MM_START_DATA",
                 "PR_SET_MM_END_DATA", "PR_SET_MM_START_STACK", "PR_SET_MM_START_BRK",
                 "PR_SET_MM_BRK", "PR_SET_MM_ARG_START", "PR_SET_MM_ARG_END",
                 "PR_SET_MM_ENV_START", "PR_SET_MM_ENV_END", "PR_SET_MM_AUXV",
                 "PR_SET_MM_EXE_FILE", "PR_SET_MM_MAP", "PR_SET_MM_MAP_SIZE")),
    "CLONE": _Family(
        bitmask=True,
        fields=(("CSIGNAL", ("SIGCHLD",)),),
        members=("CLONE_VM", "CLONE_FS", "CLONE_FILES", "CLONE_SIGHAND", "CLONE_PIDFD",
                 "CLONE_PTRACE", "CLONE_VFORK", "CLONE_PARENT", "CLONE_THREAD",
                 "CLONE_NEWNS", "CLONE_SYSVSEM", "CLONE_SETTLS", "CLONE_PARENT_SETTID",
                 "CLONE_CHILD_CLEARTID", "CLONE_DETACHED", "CLONE_UNTRACED",
                 "CLONE_CHILD_SETTID", "CLONE_NEWCGROUP", "CLONE_NEWUTS",
                 "CLONE_NEWIPC", "CLONE_NEWUSER", "CLONE_NEWPID", "CLONE_NEWNET",
                 "CLONE_IO"),
        extra=("CSIGNAL",)),
    "PIDFD": _Family(bitmask=True, bits=32, members=("PIDFD_THREAD", "PIDFD_NONBLOCK")),
    "PIDFD_SELF": _Family(
        bitmask=False,
        members=("PIDFD_SELF_THREAD", "PIDFD_SELF_THREAD_GROUP"),
        extra=("PIDFD_SELF", "PIDFD_SELF_PROCESS")),
    "O": _Family(
        bitmask=True, bits=32,
        fields=(("O_ACCMODE", ("O_RDONLY", "O_WRONLY", "O_RDWR")),),
        members=("O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK",
                 "O_DIRECTORY", "O_NOFOLLOW", "O_CLOEXEC"),
        extra=("O_ACCMODE",)),
    "AT": _Family(bitmask=False, members=("AT_FDCWD",)),
    "W": _Family(
        bitmask=True, bits=32,
        members=("WNOHANG", "WUNTRACED", "WEXITED", "WCONTINUED", "WNOWAIT",
                 "__WALL", "__WCLONE")),
    # Simulator-defined (see the MCTL block above).
    "MCTL": _Family(
        bitmask=False,
        members=("MCTL_SET_NOHUGEPAGE", "MCTL_CLEAR_NOHUGEPAGE", "MCTL_SET_HUGEPAGE",
                 "MCTL_CLEAR_HUGEPAGE", "MCTL_SET_FADE_ON_DEATH",
                 "MCTL_CLEAR_FADE_ON_DEATH", "MCTL_GET")),
    "MCTL_FLAGS": _Family(bitmask=True, members=("MCTL_SET_DEFAULT_EXEC",)),
}

# name -> value over every family, for value().  Built from the module attributes so a
# value is written once; the checks make a typo in a table fail at import.
_VALUE: dict[str, int] = {}


def _build() -> None:
    g = globals()
    for fam in _FAMILIES.values():
        listed = list(fam.members) + list(fam.extra)
        for mask, choices in fam.fields:
            listed += [mask, *choices]
        for name in listed:
            v = g[_ATTR.get(name, name)]
            if _VALUE.setdefault(name, v) != v:  # pragma: no cover - table bug
                raise AssertionError(f"{name} listed with two values")
            fam.values[name] = v
        if fam.bitmask:
            for name in fam.members:
                v = fam.values[name]
                if v <= 0 or v & (v - 1):  # pragma: no cover - table bug
                    raise AssertionError(f"{name} is not a single bit")
        elif len({fam.values[n] for n in fam.members}) != len(fam.members):
            raise AssertionError("enumeration with duplicate values")  # pragma: no cover


_build()

# A token of value(): a number in C syntax (decimal, 0x hex, 0 octal) or a name.
_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def value(expr: str) -> int:
    """Evaluate ``"NAME|NAME|0x20"`` (kernel names and C-syntax numbers ORed) to an int."""
    result = 0
    for raw in expr.split("|"):
        token = raw.strip()
        if _NUMBER.match(token):
            sign = -1 if token[0] == "-" else 1
            digits = token.lstrip("+-")
            # C syntax: a leading 0 means octal (strace prints modes that way), which
            # Python's int(..., 0) would reject.
            base = 16 if digits[:2] in ("0x", "0X") else 8 if digits[0] == "0" else 10
            result |= sign * int(digits, base)
        elif _NAME.match(token):
            try:
                result |= _VALUE[token]
            except KeyError:
                raise KeyError(f"unknown constant {token!r} in {expr!r}") from None
        else:
            raise ValueError(f"cannot parse {token!r} in {expr!r}")
    return result


def names(family: str, v: int) -> str:
    """Name ``v`` within ``family``: ``names("PROT", 3) == "PROT_READ|PROT_WRITE"``."""
    try:
        fam = _FAMILIES[family]
    except KeyError:
        raise KeyError(f"unknown family {family!r}") from None
    vals = fam.values
    if not fam.bitmask:
        for name in fam.members:
            if vals[name] == v:
                return name
        return str(v)

    if v < 0:
        v &= (1 << fam.bits) - 1
    parts = []
    rest = v
    for mask, choices in fam.fields:
        part = rest & vals[mask]
        for name in choices:
            if vals[name] == part:
                parts.append(name)
                rest &= ~vals[mask]
                break
        # An unnamed field value (MAP type 0, an exit signal other than SIGCHLD) is
        # left in `rest` and shown with the leftover bits.
    huge = 0
    if family == "MAP" and rest & MAP_HUGETLB:
        # With MAP_HUGETLB, bits [26:31] are the huge page size, not MAP_UNINITIALIZED
        # (which is also bit 26): keep them whole and show them as hex.
        huge = rest & (MAP_HUGE_MASK << MAP_HUGE_SHIFT)
        rest &= ~huge
    for name in fam.members:
        bit = vals[name]
        if rest & bit:
            parts.append(name)
            rest &= ~bit
    rest |= huge
    if rest:
        parts.append(hex(rest))
    if not parts:
        return fam.zero or "0"
    return "|".join(parts)


def families() -> list[str]:
    """The family names ``names()`` accepts, e.g. ``"PROT"``, ``"MAP"``, ``"MADV"``."""
    return list(_FAMILIES)

# ``from mmsim.uapi import *`` brings every constant along with the lookups.
__all__ = ["value", "names", "families"] + sorted(
    n for n, v in list(globals().items()) if n[:1].isupper() and type(v) is int)
