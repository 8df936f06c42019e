"""The vm sysctls (/proc/sys/vm/*, kernel/sysctl.c and mm/*) and the transparent huge
page knobs (/sys/kernel/mm/transparent_hugepage/*, mm/huge_memory.c) the simulator
keeps, read and written as the kernel's handlers do: the accepted values and ranges,
EINVAL otherwise, and the read-back format.  Each knob is an attribute of the
``Kernel``; the watermarks are computed from ``min_free_kbytes`` and
``watermark_scale_factor`` when asked, so a write takes effect at once."""

import errno

from .defs import error
from . import shmem
from .khugepaged import KNOBS as KHUGEPAGED_KNOBS
from . import pages, thp
from .kstrtox import kstrtobool, kstrtoull, proc_get_long
from .thp import recommended_min_free_kbytes

INT_MAX = (1 << 31) - 1
ULONG_MAX = (1 << 64) - 1

# name -> (Kernel attribute, kind, min, max); kind "int" is proc_dointvec_minmax,
# "ulong" proc_doulongvec_minmax.
VM_SYSCTLS = {
    "swappiness": ("swappiness", "int", 0, 200),
    "page-cluster": ("page_cluster", "int", 0, 31),
    "min_free_kbytes": ("min_free_kbytes", "int", 0, INT_MAX),
    "watermark_scale_factor": ("watermark_scale_factor", "int", 1, 3000),
    "overcommit_memory": ("overcommit_memory", "int", 0, 2),
    "overcommit_ratio": ("overcommit_ratio", "int", -INT_MAX - 1, INT_MAX),
    "overcommit_kbytes": ("overcommit_kbytes", "ulong", 0, ULONG_MAX),
    "max_map_count": ("max_map_count", "int", 0, INT_MAX),
    "admin_reserve_kbytes": ("admin_reserve_kbytes", "ulong", 0, ULONG_MAX),
    "user_reserve_kbytes": ("user_reserve_kbytes", "ulong", 0, ULONG_MAX),
}

# /sys/kernel/mm/transparent_hugepage/NAME -> (Kernel attribute, the accepted values
# in the order the file lists them).
THP_KNOBS = {
    "enabled": ("thp", ("always", "madvise", "never")),
    "defrag": ("thp_defrag", ("always", "defer", "defer+madvise", "madvise", "never")),
}
# shmem_enabled has handlers of its own (mmsim.shmem).

# hugepages-<N>kB/NAME knobs of every size (``enabled`` is the anonymous sizes' only).
SIZE_KNOBS = ("shmem_enabled",)

SYSCTL_DIR = "/proc/sys/vm/"
THP_DIR = "/sys/kernel/mm/transparent_hugepage/"
KHUGEPAGED_DIR = THP_DIR + "khugepaged/"


def is_knob(path):
    """Whether ``path`` names one of the files this module answers."""
    if path.startswith(SYSCTL_DIR):
        return path[len(SYSCTL_DIR):] in VM_SYSCTLS
    if path.startswith(KHUGEPAGED_DIR):
        return path[len(KHUGEPAGED_DIR):] in KHUGEPAGED_KNOBS
    if path.startswith(THP_DIR):
        name = path[len(THP_DIR):]
        return (name in THP_KNOBS or name in ("shrink_underused", "use_zero_page",
                                              "shmem_enabled")
                or _size_file(name) is not None)
    return False


_SIZE_DIRS = {thp.size_dir(o): o for o in thp.ALL_ORDERS}


def _size_file(name):
    """(order, file) for hugepages-<N>kB/enabled (anonymous sizes),
    hugepages-<N>kB/shmem_enabled and hugepages-<N>kB/stats/<stat> (the files this
    model keeps), else None."""
    head, _, rest = name.partition("/")
    order = _SIZE_DIRS.get(head)
    if order is None:
        return None
    if (rest == "enabled" and order in thp.ANON_ORDERS) or rest in SIZE_KNOBS:
        return order, rest
    if rest.startswith("stats/") and rest[6:] in thp.stat_names(order):
        return order, rest
    return None


def read(kernel, path):
    """The text of a knob file."""
    if path.startswith(SYSCTL_DIR):
        attr = VM_SYSCTLS[path[len(SYSCTL_DIR):]][0]
        return f"{getattr(kernel, attr)}\n"
    if path.startswith(KHUGEPAGED_DIR):
        return kernel.khugepaged.read_knob(path[len(KHUGEPAGED_DIR):])
    name = path[len(THP_DIR):]
    if name == "shmem_enabled":
        return shmem.read_top(kernel)
    if name == "shrink_underused":
        return f"{kernel.shrink_underused}\n"
    if name == "use_zero_page":
        return f"{kernel.use_zero_page}\n"
    if name not in THP_KNOBS:
        order, file = _size_file(name)
        if file == "shmem_enabled":
            return shmem.read_size(kernel, order)
        if file == "enabled":
            current = kernel.thp_sizes[order]
            return " ".join(f"[{v}]" if v == current else v for v in thp.SIZE_MODES) + "\n"
        if file[6:] in ("nr_anon", "nr_anon_partially_mapped"):
            pages.thp_gauges(kernel)   # the gauges are counted from the page maps
        return f"{kernel.mthp_stats[order][file[6:]]}\n"
    attr, values = THP_KNOBS[name]
    current = getattr(kernel, attr)
    return " ".join(f"[{v}]" if v == current else v for v in values) + "\n"


def _sysfs_streq(a, b):
    """sysfs_streq: equal but for one trailing newline on either."""
    return a.removesuffix("\n") == b.removesuffix("\n")


def write(kernel, path, text):
    """Write ``text`` to a knob file: the new value takes effect, or OSError(EINVAL)
    leaves everything as it was."""
    if path.startswith(SYSCTL_DIR):
        name = path[len(SYSCTL_DIR):]
        attr, kind, lo, hi = VM_SYSCTLS[name]
        value = proc_get_long(text, unsigned=kind == "ulong")
        if kind == "int" and not -INT_MAX - 1 <= value <= INT_MAX:
            raise error(errno.EINVAL, "not an int")
        if not lo <= value <= hi:
            raise error(errno.EINVAL, f"{name} must be in {lo}..{hi}")
        setattr(kernel, attr, value)
        # overcommit_ratio_handler and overcommit_kbytes_handler: setting one clears
        # the other, so that the one written last rules.
        if name == "overcommit_ratio":
            kernel.overcommit_kbytes = 0
        elif name == "overcommit_kbytes":
            kernel.overcommit_ratio = 0
        return
    if path.startswith(KHUGEPAGED_DIR):
        kernel.khugepaged.write_knob(path[len(KHUGEPAGED_DIR):], text)
        return
    name = path[len(THP_DIR):]
    size = _size_file(name) if name not in THP_KNOBS else None
    if name == "shmem_enabled" or (size is not None and size[1] == "shmem_enabled"):
        _write_shmem(kernel, size, text)
        return
    if name == "use_zero_page":
        if not text:
            return
        value = kstrtoull(text, 10)   # single_hugepage_flag_store returns its error
        if value > 1:
            raise error(errno.EINVAL, "use_zero_page takes 0 or 1")
        kernel.use_zero_page = value
        return
    if name == "shrink_underused" or name not in THP_KNOBS:
        if name != "shrink_underused" and _size_file(name)[1] != "enabled":
            raise error(errno.EACCES, "the per-size statistics are read-only (0444)")
        if not text:
            return   # a write of nothing never reaches the store handler
    if name == "shrink_underused":
        kernel.shrink_underused = int(kstrtobool(text))
        return
    if name not in THP_KNOBS:
        order, file = _size_file(name)
        for v in thp.SIZE_MODES:
            if _sysfs_streq(text, v):
                break
        else:
            raise error(errno.EINVAL, f"{name} takes one of {' '.join(thp.SIZE_MODES)}")
        kernel.thp_sizes[order] = v
        # anon_enabled_store: start_stop_khugepaged, as a write of ``enabled`` does.
        kernel.khugepaged.start_stop()
        if kernel.khugepaged.pmd_enabled():
            kernel.min_free_kbytes = max(kernel.min_free_kbytes,
                                         recommended_min_free_kbytes(kernel.memory))
        return
    attr, values = THP_KNOBS[name]
    for v in values:
        if _sysfs_streq(text, v):
            break
    else:
        raise error(errno.EINVAL, f"{name} takes one of {' '.join(values)}")
    setattr(kernel, attr, v)
    if name == "enabled":
        kernel.khugepaged.start_stop()
    if name == "enabled" and v != "never":
        # start_stop_khugepaged: a running khugepaged raises min_free_kbytes to its
        # recommendation (never lowers it) each time the knob is written.
        kernel.min_free_kbytes = max(kernel.min_free_kbytes,
                                     recommended_min_free_kbytes(kernel.memory))


def _write_shmem(kernel, size, text):
    """The top-level shmem_enabled (``size`` None) or a per-size one (``size``:
    ``(order, file)``); a write of nothing is not passed to the store handler
    (sysfs_kf_write) and succeeds.  A change restarts khugepaged's thread if it
    should now run (start_stop_khugepaged)."""
    if not text:
        return
    if size is None:
        shmem.write_top(kernel, text)
    else:
        shmem.write_size(kernel, size[0], text)
    kernel.khugepaged.start_stop()
    if kernel.khugepaged.pmd_enabled():
        kernel.min_free_kbytes = max(kernel.min_free_kbytes,
                                     recommended_min_free_kbytes(kernel.memory))


__all__ = ["VM_SYSCTLS", "THP_KNOBS", "SIZE_KNOBS", "is_knob", "read", "write"]
