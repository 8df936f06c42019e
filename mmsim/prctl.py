"""prctl(2) options that touch memory-management state (kernel/sys.c, 6.18)."""

import errno

import attrs

from .cred import CAP_LAST_CAP, capable, ns_capable
from .defs import MMAP_MIN_ADDR, TASK_SIZE, error
from .madvise import new_flags
from .mm import (MMF_DISABLE_THP_COMPLETELY, MMF_DISABLE_THP_EXCEPT_ADVISED, MMF_DUMPABLE_MASK,
                 MMF_HAS_MDWE, MMF_HAS_MDWE_NO_INHERIT, MMF_VM_MERGE_ANY)
from .uapi import (MADV_MERGEABLE, PR_CAPBSET_READ, PR_GET_DUMPABLE, PR_GET_KEEPCAPS,
                   PR_GET_MDWE, PR_GET_MEMORY_MERGE, PR_GET_NAME, PR_GET_NO_NEW_PRIVS, PR_GET_PDEATHSIG,
                   PR_MDWE_NO_INHERIT, PR_MDWE_REFUSE_EXEC_GAIN, PR_SET_KEEPCAPS, PR_SET_MDWE,
                   PR_SET_MEMORY_MERGE, PR_SET_NAME, PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG,
                   PR_GET_THP_DISABLE, PR_SET_DUMPABLE, PR_SET_MM,
                   PR_SET_MM_ARG_END, PR_SET_MM_ARG_START, PR_SET_MM_AUXV, PR_SET_MM_BRK,
                   PR_SET_MM_END_CODE, PR_SET_MM_END_DATA, PR_SET_MM_ENV_END,
                   PR_SET_MM_ENV_START, PR_SET_MM_EXE_FILE, PR_SET_MM_MAP, PR_SET_MM_MAP_SIZE,
                   PR_SET_MM_START_BRK, PR_SET_MM_START_CODE, PR_SET_MM_START_DATA,
                   PR_SET_MM_START_STACK, PR_SET_THP_DISABLE, PR_SET_VMA,
                   PR_THP_DISABLE_EXCEPT_ADVISED)
from .vma import VM_MERGEABLE, VM_READ, VM_WRITE

TASK_COMM_LEN = 16
_NSIG = 64

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
    # The objects mmsim takes in place of a pointer to user memory are accepted only
    # where that option reads such a pointer: the name of PR_SET_NAME, the struct of
    # PR_SET_MM_MAP.  Anywhere else there is nothing the kernel could read: EFAULT.
    args = (arg2, arg3, arg4, arg5)
    allowed = {PR_SET_NAME: (0, (str, bytes)), PR_SET_MM: (1, PrctlMmMap)}.get(option)
    if option == PR_SET_MM and arg2 != PR_SET_MM_MAP:
        allowed = None
    for i, a in enumerate(args):
        if isinstance(a, int):
            continue
        if allowed is None or i != allowed[0] or not isinstance(a, allowed[1]):
            raise error(errno.EFAULT, f"prctl argument {i + 2} cannot be {type(a).__name__}")
    handler = _TASK_OPTIONS.get(option)
    if handler is not None:
        return handler(proc, arg2, arg3, arg4, arg5)
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


def _no_args(*args):
    if any(args):
        raise error(errno.EINVAL)


def _user_ptr(proc, addr, length, write):
    """A pointer argument: the simulator has no user memory, so it checks only that
    ``length`` bytes at ``addr`` are mapped with the access (else EFAULT)."""
    if not isinstance(addr, int) or not _user_range_ok(proc.mm, addr, length, write):
        raise error(errno.EFAULT)


def _set_pdeathsig(proc, sig, *_):
    if not 0 <= sig <= _NSIG:
        raise error(errno.EINVAL)
    proc.pdeath_signal = sig
    return 0


def _get_pdeathsig(proc, addr, *_):
    _user_ptr(proc, addr, 4, write=True)   # put_user of an int
    return 0


def _set_name(proc, name, *_):
    """PR_SET_NAME: the new comm, at most 15 bytes.  mmsim takes the name itself (str or
    bytes) in place of the pointer; a plain pointer must be readable, and the name
    behind it, which mmsim cannot see, leaves comm as it is."""
    if isinstance(name, (str, bytes)):
        raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
        raw = raw.split(b"\0", 1)[0][:TASK_COMM_LEN - 1]
        proc.comm = raw.decode("utf-8", "replace")
        return 0
    _user_ptr(proc, name, 1, write=False)
    return 0


def _get_name(proc, addr, *_):
    """PR_GET_NAME: copies the comm to user memory (16 bytes), which must be writable."""
    _user_ptr(proc, addr, TASK_COMM_LEN, write=True)
    return 0


def _set_no_new_privs(proc, arg2, arg3, arg4, arg5):
    if arg2 != 1 or arg3 or arg4 or arg5:
        raise error(errno.EINVAL)
    proc.no_new_privs = True
    return 0


def _get_no_new_privs(proc, *args):
    _no_args(*args)
    return int(proc.no_new_privs)


def _capbset_read(proc, cap, *_):
    if not 0 <= cap <= CAP_LAST_CAP:
        raise error(errno.EINVAL)
    return 1   # the bounding set is full: mmsim has no PR_CAPBSET_DROP


def _get_keepcaps(proc, *_):
    return int(proc.keepcaps)


def _set_keepcaps(proc, arg2, *_):
    if arg2 > 1:
        raise error(errno.EINVAL)
    proc.keepcaps = bool(arg2)
    return 0


def _mdwe_bits(mm):
    return ((PR_MDWE_REFUSE_EXEC_GAIN if mm.flags & MMF_HAS_MDWE else 0)
            | (PR_MDWE_NO_INHERIT if mm.flags & MMF_HAS_MDWE_NO_INHERIT else 0))


def _set_mdwe(proc, bits, arg3, arg4, arg5):
    """PR_SET_MDWE (prctl_set_mdwe): once set, memory-deny-write-execute can be neither
    cleared nor changed; NO_INHERIT needs REFUSE_EXEC_GAIN."""
    _no_args(arg3, arg4, arg5)
    if bits & ~(PR_MDWE_REFUSE_EXEC_GAIN | PR_MDWE_NO_INHERIT):
        raise error(errno.EINVAL)
    if bits & PR_MDWE_NO_INHERIT and not bits & PR_MDWE_REFUSE_EXEC_GAIN:
        raise error(errno.EINVAL)
    mm = proc.mm
    current = _mdwe_bits(mm)
    if current and current != bits:
        raise error(errno.EPERM)
    if bits & PR_MDWE_NO_INHERIT:
        mm.flags |= MMF_HAS_MDWE_NO_INHERIT
    if bits & PR_MDWE_REFUSE_EXEC_GAIN:
        mm.flags |= MMF_HAS_MDWE
    return 0


def _get_mdwe(proc, *args):
    _no_args(*args)
    return _mdwe_bits(proc.mm)


def _set_memory_merge(proc, arg2, arg3, arg4, arg5):
    """PR_SET_MEMORY_MERGE: KSM for the whole process.  Turning it on marks every VMA
    KSM can handle VM_MERGEABLE (new ones get it at mmap); turning it off clears the
    mark from all (ksm_enable_merge_any / ksm_disable_merge_any)."""
    _no_args(arg3, arg4, arg5)
    mm = proc.mm
    if bool(arg2) == bool(mm.flags & MMF_VM_MERGE_ANY):
        return 0
    for vma in mm.vmas():
        flags = new_flags(vma, MADV_MERGEABLE) if arg2 else vma.vm_flags & ~VM_MERGEABLE
        if flags != vma.vm_flags:
            vma.vm_flags = flags
            mm.tree.touch(vma.start)
    if arg2:
        mm.flags |= MMF_VM_MERGE_ANY
    else:
        mm.flags &= ~MMF_VM_MERGE_ANY
    return 0


def _get_memory_merge(proc, *args):
    _no_args(*args)
    return int(bool(proc.mm.flags & MMF_VM_MERGE_ANY))


# The options that need no mm-specific code beyond their own (kernel/sys.c).
_TASK_OPTIONS = {
    PR_SET_PDEATHSIG: _set_pdeathsig, PR_GET_PDEATHSIG: _get_pdeathsig,
    PR_SET_NAME: _set_name, PR_GET_NAME: _get_name,
    PR_SET_NO_NEW_PRIVS: _set_no_new_privs, PR_GET_NO_NEW_PRIVS: _get_no_new_privs,
    PR_CAPBSET_READ: _capbset_read,
    PR_GET_KEEPCAPS: _get_keepcaps, PR_SET_KEEPCAPS: _set_keepcaps,
    PR_SET_MDWE: _set_mdwe, PR_GET_MDWE: _get_mdwe,
    PR_SET_MEMORY_MERGE: _set_memory_merge, PR_GET_MEMORY_MERGE: _get_memory_merge,
}
