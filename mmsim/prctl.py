"""prctl(2) options that touch memory-management state (kernel/sys.c, 6.18)."""

import errno

import attrs

from .cred import capable, ns_capable
from .defs import MMAP_MIN_ADDR, TASK_SIZE, error
from .mm import MMF_DISABLE_THP_COMPLETELY, MMF_DISABLE_THP_EXCEPT_ADVISED, MMF_DUMPABLE_MASK
from .uapi import (PR_GET_DUMPABLE, PR_GET_THP_DISABLE, PR_SET_DUMPABLE, PR_SET_MM,
                   PR_SET_MM_ARG_END, PR_SET_MM_ARG_START, PR_SET_MM_AUXV, PR_SET_MM_BRK,
                   PR_SET_MM_END_CODE, PR_SET_MM_END_DATA, PR_SET_MM_ENV_END,
                   PR_SET_MM_ENV_START, PR_SET_MM_EXE_FILE, PR_SET_MM_MAP, PR_SET_MM_MAP_SIZE,
                   PR_SET_MM_START_BRK, PR_SET_MM_START_CODE, PR_SET_MM_START_DATA,
                   PR_SET_MM_START_STACK, PR_SET_THP_DISABLE, PR_SET_VMA,
                   PR_THP_DISABLE_EXCEPT_ADVISED)
from .vma import VM_READ, VM_WRITE

SUID_DUMP_DISABLE = 0
SUID_DUMP_USER = 1
CAP_SYS_RESOURCE = 24
CAP_SYS_ADMIN = 21
CAP_CHECKPOINT_RESTORE = 40

# struct prctl_mm_map (include/uapi/linux/prctl.h): eleven addresses, the auxv pointer,
# its size (u32) and exe_fd (u32): the size PR_SET_MM_MAP insists on.
PRCTL_MM_MAP_SIZE = 104
# sizeof(mm->saved_auxv) on x86-64: AT_VECTOR_SIZE (2 * (3 + 22 + 1)) longs.
SAVED_AUXV_SIZE = 2 * (3 + 22 + 1) * 8

# The fields of PR_SET_MM's single options, by option, in struct prctl_mm_map order.
MM_FIELDS = ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
             "start_stack", "arg_start", "arg_end", "env_start", "env_end")
_OPTION_FIELD = {
    PR_SET_MM_START_CODE: "start_code", PR_SET_MM_END_CODE: "end_code",
    PR_SET_MM_START_DATA: "start_data", PR_SET_MM_END_DATA: "end_data",
    PR_SET_MM_START_STACK: "start_stack", PR_SET_MM_START_BRK: "start_brk",
    PR_SET_MM_BRK: "brk", PR_SET_MM_ARG_START: "arg_start", PR_SET_MM_ARG_END: "arg_end",
    PR_SET_MM_ENV_START: "env_start", PR_SET_MM_ENV_END: "env_end",
}
# Options whose address must lie in (or below) a VMA: they point into the stack.
_ON_STACK = (PR_SET_MM_START_STACK, PR_SET_MM_ARG_START, PR_SET_MM_ARG_END,
             PR_SET_MM_ENV_START, PR_SET_MM_ENV_END)


@attrs.define(slots=True)
class PrctlMmMap:
    """struct prctl_mm_map, the argument PR_SET_MM_MAP reads from user memory (the
    simulator has no user memory: the caller passes the record in its place)."""
    start_code: int = 0
    end_code: int = 0
    start_data: int = 0
    end_data: int = 0
    start_brk: int = 0
    brk: int = 0
    start_stack: int = 0
    arg_start: int = 0
    arg_end: int = 0
    env_start: int = 0
    env_end: int = 0
    auxv: int = 0
    auxv_size: int = 0
    exe_fd: int = 0xFFFFFFFF


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
    if option == PR_SET_MM:
        return set_mm(proc, arg2, arg3, arg4, arg5)
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


def _user_range_ok(mm, addr, length, write):
    """Whether ``length`` bytes at ``addr`` could be copied from (or to) user memory."""
    end = addr + length
    want = VM_WRITE if write else VM_READ
    while addr < end:
        vma = mm.vma_lookup(addr)
        if vma is None or not vma.vm_flags & want:
            return False
        addr = vma.end
    return True


def _validate_map(values):
    """validate_prctl_map_addr(): every address inside the user address space and the
    pairs ordered.  (RLIMIT_DATA is unlimited in mmsim, so its check always passes.)"""
    for name in MM_FIELDS:
        if not MMAP_MIN_ADDR <= values[name] < TASK_SIZE:
            return False
    return (values["start_code"] < values["end_code"]
            and values["start_data"] <= values["end_data"]
            and values["start_brk"] <= values["brk"]
            and values["arg_start"] <= values["arg_end"]
            and values["env_start"] <= values["env_end"])


def set_mm(proc, opt, addr, arg4, arg5):
    """PR_SET_MM: rewrite where the mm says its code, data, break, stack, arguments and
    environment are.  The single options need CAP_SYS_RESOURCE; PR_SET_MM_MAP sets
    every field at once and needs no capability."""
    mm = proc.mm
    if arg5 or (arg4 and opt not in (PR_SET_MM_AUXV, PR_SET_MM_MAP, PR_SET_MM_MAP_SIZE)):
        raise error(errno.EINVAL)
    if opt == PR_SET_MM_MAP_SIZE:
        if not _user_range_ok(mm, addr, 4, write=True):
            raise error(errno.EFAULT)
        return 0
    if opt == PR_SET_MM_MAP:
        return _set_mm_map(proc, addr, arg4)
    if not capable(proc.cred, CAP_SYS_RESOURCE):
        raise error(errno.EPERM)
    if opt == PR_SET_MM_EXE_FILE:
        raise error(errno.EINVAL, "PR_SET_MM_EXE_FILE is not simulated")
    if opt == PR_SET_MM_AUXV:
        if arg4 > SAVED_AUXV_SIZE:
            raise error(errno.EINVAL)
        if not _user_range_ok(mm, addr, arg4, write=False):
            raise error(errno.EFAULT)
        return 0   # the auxiliary vector's contents are not modelled
    if not MMAP_MIN_ADDR <= addr < TASK_SIZE:
        raise error(errno.EINVAL)
    field = _OPTION_FIELD.get(opt)
    if field is None:
        raise error(errno.EINVAL)
    values = {name: getattr(mm, name) for name in MM_FIELDS}
    values[field] = addr
    if not _validate_map(values):
        raise error(errno.EINVAL)
    if opt in _ON_STACK and mm.find_vma(addr) is None:
        raise error(errno.EFAULT)
    setattr(mm, field, addr)
    return 0


def _set_mm_map(proc, record, size):
    if size != PRCTL_MM_MAP_SIZE:
        raise error(errno.EINVAL)
    if not isinstance(record, PrctlMmMap):
        # A pointer: the simulator cannot read the struct behind it.
        raise error(errno.EFAULT, "PR_SET_MM_MAP needs a PrctlMmMap record")
    values = attrs.asdict(record)
    if not _validate_map(values):
        raise error(errno.EINVAL)
    if record.auxv_size:
        if not record.auxv or record.auxv_size > SAVED_AUXV_SIZE:
            raise error(errno.EINVAL)
        if not _user_range_ok(proc.mm, record.auxv, record.auxv_size, write=False):
            raise error(errno.EFAULT)
    if record.exe_fd & 0xFFFFFFFF != 0xFFFFFFFF:
        cred = proc.cred
        if not (ns_capable(cred, cred.user_ns, CAP_CHECKPOINT_RESTORE)
                or ns_capable(cred, cred.user_ns, CAP_SYS_ADMIN)):
            raise error(errno.EPERM)
        raise error(errno.EINVAL, "replacing the exe file is not simulated")
    mm = proc.mm
    for name in MM_FIELDS:
        setattr(mm, name, values[name])
    return 0
