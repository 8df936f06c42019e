"""prctl(2) options that touch memory-management state (kernel/sys.c, 6.18)."""

import errno

from .mm import (MMF_DISABLE_THP_COMPLETELY, MMF_DISABLE_THP_EXCEPT_ADVISED, MMF_DUMPABLE_MASK,
                 error)
from .uapi import (PR_GET_DUMPABLE, PR_GET_THP_DISABLE, PR_SET_DUMPABLE, PR_SET_THP_DISABLE,
                   PR_SET_VMA, PR_THP_DISABLE_EXCEPT_ADVISED)

SUID_DUMP_DISABLE = 0
SUID_DUMP_USER = 1


def prctl(proc, option, arg2=0, arg3=0, arg4=0, arg5=0):
    """prctl(2) for the options mmsim models; any other option is EINVAL."""
    mm = proc.mm
    if option == PR_SET_THP_DISABLE:
        return set_thp_disable(mm, arg2, arg3, arg4, arg5)
    if option == PR_GET_THP_DISABLE:
        if arg2 or arg3 or arg4 or arg5:
            raise error(errno.EINVAL)
        if mm.flags & MMF_DISABLE_THP_COMPLETELY:
            return 1
        if mm.flags & MMF_DISABLE_THP_EXCEPT_ADVISED:
            return 1 | PR_THP_DISABLE_EXCEPT_ADVISED
        return 0
    if option == PR_GET_DUMPABLE:
        return mm.flags & MMF_DUMPABLE_MASK
    if option == PR_SET_DUMPABLE:
        if arg2 not in (SUID_DUMP_DISABLE, SUID_DUMP_USER):
            raise error(errno.EINVAL)
        mm.flags = (mm.flags & ~MMF_DUMPABLE_MASK) | arg2
        return 0
    if option == PR_SET_VMA:
        # CONFIG_ANON_VMA_NAME is off on the reference kernel.
        raise error(errno.EINVAL, "anonymous VMA names are not configured")
    raise error(errno.EINVAL, f"prctl option {option} is not simulated")


def set_thp_disable(mm, thp_disable, flags, arg4, arg5):
    """PR_SET_THP_DISABLE with the 6.18 PR_THP_DISABLE_EXCEPT_ADVISED flag: only the mm
    flags change; VMAs and THPs already mapped stay as they are."""
    if arg4 or arg5:
        raise error(errno.EINVAL)
    if not thp_disable and flags:
        raise error(errno.EINVAL, "flags are only accepted when disabling")
    if flags & ~PR_THP_DISABLE_EXCEPT_ADVISED:
        raise error(errno.EINVAL)
    mm.flags &= ~(MMF_DISABLE_THP_COMPLETELY | MMF_DISABLE_THP_EXCEPT_ADVISED)
    if thp_disable:
        mm.flags |= (MMF_DISABLE_THP_EXCEPT_ADVISED if flags & PR_THP_DISABLE_EXCEPT_ADVISED
                     else MMF_DISABLE_THP_COMPLETELY)
    return 0
