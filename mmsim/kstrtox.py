"""How the kernel reads numbers written to its pseudo-files (lib/kstrtox.c,
lib/vsprintf.c ``simple_strtoull``, lib/cmdline.c ``memparse``, kernel/sysctl.c
``proc_get_long``).  Each function takes the written text and returns an int, or
raises OSError with the errno the kernel's parser gives (EINVAL, ERANGE).

A leaf module: the cgroup files, /proc/PID files and sysctls use it."""

import errno

from .defs import error

U64 = (1 << 64) - 1
_DIGITS = "0123456789abcdef"
# strstrip's notion of white space (isspace in the kernel's ctype).
_SPACE = " \t\n\v\f\r"


def _radix(s, base):
    """_parse_integer_fixup_radix: the base and where the digits start."""
    if base == 0:
        if s[:1] == "0":
            if s[1:2] in ("x", "X") and s[2:3] and s[2:3].lower() in _DIGITS:
                return 16, 2
            return 8, 0
        return 10, 0
    if base == 16 and s[:2] in ("0x", "0X"):
        return 16, 2
    return base, 0


def _digits(s, i, base):
    """The value of the digits of ``base`` from ``s[i]`` on (modulo 2**64, with an
    overflow flag) and where they stop."""
    value, overflow, n = 0, False, len(s)
    while i < n:
        d = _DIGITS.find(s[i].lower())
        if d < 0 or d >= base:
            break
        value = value * base + d
        if value > U64:
            overflow = True
            value &= U64
        i += 1
    return value, overflow, i


def simple_strtoull(s, base=0):
    """simple_strtoull: ``(value, end)``; no sign, no white space, the value wraps at
    2**64, ``end`` is where the digits stopped (the start when there are none)."""
    base, i = _radix(s, base)
    value, _, end = _digits(s, i, base)
    return value, end


def kstrtoull(s, base=0):
    """kstrtoull: the whole string (one trailing newline allowed) is one unsigned
    number; EINVAL otherwise, ERANGE past 2**64 - 1."""
    if s[:1] == "+":
        s = s[1:]
    if s.endswith("\n"):
        s = s[:-1]
    base, i = _radix(s, base)
    value, overflow, end = _digits(s, i, base)
    if end == i or end != len(s):
        raise error(errno.EINVAL, "not a number")
    if overflow:
        raise error(errno.ERANGE, "number out of range")
    return value


def kstrtoll(s, base=0):
    """kstrtoll: kstrtoull with an optional minus sign, within a signed 64-bit."""
    if s[:1] == "-":
        value = kstrtoull(s[1:], base)
        if value > 1 << 63:
            raise error(errno.ERANGE, "number out of range")
        return -value
    value = kstrtoull(s, base)
    if value >= 1 << 63:
        raise error(errno.ERANGE, "number out of range")
    return value


def kstrtoint(s, base=0):
    """kstrtoint: kstrtoll within a C int."""
    value = kstrtoll(s, base)
    if not -(1 << 31) <= value < 1 << 31:
        raise error(errno.ERANGE, "number out of range")
    return value


def strstrip(s):
    """strstrip: the text without leading and trailing white space."""
    return s.strip(_SPACE)


def memparse(s):
    """memparse: ``(bytes, end)`` for a number with an optional K, M, G, T, P or E
    suffix (either case), wrapping at 2**64 as the kernel's shifts do."""
    value, end = simple_strtoull(s, 0)
    shift = "kmgtpe".find(s[end:end + 1].lower()) if end < len(s) else -1
    if shift >= 0:
        value = (value << (10 * (shift + 1))) & U64
        end += 1
    return value, end


def proc_get_long(s, unsigned=False):
    """One value of a sysctl write as __do_proc_dointvec and __do_proc_doulongvec_minmax
    read it: leading white space, an optional minus (EINVAL for an unsigned one), digits
    in base 0, then white space or the end; what follows the first value is ignored.
    Returns the value; EINVAL for one of 21 characters or more, or past 2**64 - 1."""
    t = s.lstrip(_SPACE)
    neg = t[:1] == "-"
    if neg:
        if unsigned:
            raise error(errno.EINVAL, "a negative value")
        t = t[1:]
    if not t[:1].isdigit() or not t[:1].isascii():
        raise error(errno.EINVAL, "not a number")
    base, i = _radix(t, 0)
    value, overflow, end = _digits(t, i, base)
    # The kernel copies at most 21 characters (the sign included) to parse them.
    if overflow or end + neg >= 21:
        raise error(errno.EINVAL, "number too long")
    if end < len(t) and t[end] not in " \t\n":
        raise error(errno.EINVAL, "trailing characters")
    return -value if neg else value


__all__ = ["simple_strtoull", "kstrtoull", "kstrtoll", "kstrtoint", "strstrip", "memparse",
           "proc_get_long"]


def kstrtobool(s):
    """kstrtobool: y/Y/t/T/1 or "on" are true, n/N/f/F/0 or "off" false (only the
    first one or two characters count); anything else is EINVAL."""
    if s:
        c = s[0]
        if c in "yYtT1":
            return True
        if c in "nNfF0":
            return False
        if c in "oO" and len(s) > 1:
            if s[1] in "nN":
                return True
            if s[1] in "fF":
                return False
    raise error(errno.EINVAL, "not a boolean")

