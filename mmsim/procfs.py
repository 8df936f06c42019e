"""/proc/PID/maps, smaps and status, byte for byte in the format of fs/proc/task_mmu.c
and fs/proc/array.c on the reference kernel (no ProtectionKey line: the machine has no
PKU; no soft-dirty; no anon names)."""

from . import pages, thp
from .defs import PAGE_SHIFT, PAGE_SIZE
from .mm import MMF_DISABLE_THP_COMPLETELY
from .vma import (VM_EXEC, VM_GROWSDOWN, VM_LOCKED, VM_MAYSHARE, VM_READ, VM_SHARED,
                  VM_WRITE, vmflags_mnemonics)

HEADER_WIDTH = 25 + 8 * 6 - 1   # seq_setwidth in show_vma_header_prefix (64-bit)


def vma_name(mm, vma):
    """The name column: file, special mapping, [heap], [stack] or anon name."""
    if vma.file is not None:
        return vma.file.inode.display_name()
    if vma.special is not None:
        return vma.special
    # vma_is_initial_heap / vma_is_initial_stack (6.18): strict for the heap.
    if vma.start < mm.brk and vma.end > mm.start_brk:
        return "[heap]"
    if mm.start_stack and vma.start <= mm.start_stack <= vma.end:
        return "[stack]"
    if vma.anon_name:
        return f"[anon:{vma.anon_name}]"
    return None


def maps_line(mm, vma):
    """One /proc/PID/maps line (show_map_vma), without the newline."""
    flags = vma.vm_flags
    perms = (("r" if flags & VM_READ else "-") + ("w" if flags & VM_WRITE else "-")
             + ("x" if flags & VM_EXEC else "-") + ("s" if flags & VM_MAYSHARE else "p"))
    if vma.file is not None:
        pgoff = vma.pgoff << PAGE_SHIFT
        major, minor = vma.file.inode.dev
        ino = vma.file.inode.ino
    else:
        pgoff = major = minor = ino = 0
    line = f"{vma.start:08x}-{vma.end:08x} {perms} {pgoff:08x} {major:02x}:{minor:02x} {ino} "
    name = vma_name(mm, vma)
    if name is None:
        return line
    if len(line) < HEADER_WIDTH:
        line += " " * (HEADER_WIDTH - len(line))
    return line + " " + name


def maps(proc):
    """/proc/PID/maps (the vsyscall gate area last)."""
    mm = proc.mm
    if mm is None:
        return ""
    return "".join(maps_line(mm, vma) + "\n" for vma in mm.vmas()) + VSYSCALL_LINE + "\n"


PSS_SHIFT = 12


def _kb(label, pages_4k):
    return _line_kb(label, pages_4k * 4)


def _line_kb(label, kb):
    return f"{label:<16}{kb:>8} kB\n"


# The x86-64 vsyscall page (vsyscall=xonly, the 6.18 default): the gate area, which is
# no VMA of the mm (not in map_count or VmSize) but which every 64-bit address space
# shows last in maps and smaps, execute-only, with nothing resident.
VSYSCALL_START, VSYSCALL_END = 0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000
VSYSCALL_LINE = (f"{VSYSCALL_START:08x}-{VSYSCALL_END:08x} --xp 00000000 00:00 0"
                 .ljust(HEADER_WIDTH) + " [vsyscall]")
_VSYSCALL_FIELDS = ("Rss:", "Pss:", "Pss_Dirty:", "Shared_Clean:", "Shared_Dirty:",
                    "Private_Clean:", "Private_Dirty:", "Referenced:", "Anonymous:", "KSM:",
                    "LazyFree:", "AnonHugePages:", "ShmemPmdMapped:", "FilePmdMapped:",
                    "Shared_Hugetlb:", "Private_Hugetlb:", "Swap:", "SwapPss:", "Locked:")
VSYSCALL_SMAPS = (VSYSCALL_LINE + "\n" + _line_kb("Size:", 4)
                  + _line_kb("KernelPageSize:", 4) + _line_kb("MMUPageSize:", 4)
                  + "".join(_line_kb(f, 0) for f in _VSYSCALL_FIELDS)
                  + f"{'THPeligible:':<16}{0:>8}\n" + "VmFlags: ex \n")


def vma_memory(vma):
    """Per-VMA page counts for smaps (in 4 KiB pages)."""
    rss = pss2 = shared_clean = shared_dirty = private_clean = private_dirty = referenced = 0
    anon = anon_huge = shmem_huge = 0
    items = [(vpn, p, 1) for vpn, p in (vma.pages or {}).items()]
    items += [(vpn, p, 512) for vpn, p in (vma.huge or {}).items()]
    pss_dirty = 0
    for vpn, page, n in items:
        rss += n
        if page.referenced or pages.is_young(vma, vpn):
            referenced += n
        shared = page.mapcount > 1
        # smaps_account(): bytes << PSS_SHIFT, divided by the mapcount, then summed.
        share = ((n * PAGE_SIZE) << PSS_SHIFT) // page.mapcount
        pss2 += share
        if page.dirty:
            pss_dirty += share
        if shared:
            if page.dirty:
                shared_dirty += n
            else:
                shared_clean += n
        elif page.dirty:
            private_dirty += n
        else:
            private_clean += n
        if page.anon:
            anon += n
            if n == 512:
                anon_huge += n
        elif n == 512:
            shmem_huge += n
    return {"rss": rss, "pss": pss2, "shared_clean": shared_clean, "shared_dirty": shared_dirty,
            "private_clean": private_clean, "private_dirty": private_dirty, "anon": anon,
            "anon_huge": anon_huge, "shmem_huge": shmem_huge, "referenced": referenced,
            "pss_kb": pss2 >> PSS_SHIFT >> 10, "pss_dirty_kb": pss_dirty >> PSS_SHIFT >> 10}


def thp_eligible(mm, vma):
    """smaps THPeligible: the TVA_SMAPS decision."""
    return int(thp.allowed(vma, mm.flags, mm.kernel.thp, thp.TVA_SMAPS))


def smaps_block(mm, vma):
    """One VMA's /proc/PID/smaps block."""
    m = vma_memory(vma)
    size = vma.npages
    out = [maps_line(mm, vma) + "\n",
           _kb("Size:", size), _kb("KernelPageSize:", 1), _kb("MMUPageSize:", 1),
           _kb("Rss:", m["rss"]), _line_kb("Pss:", m["pss_kb"]),
           _line_kb("Pss_Dirty:", m["pss_dirty_kb"]),
           _kb("Shared_Clean:", m["shared_clean"]), _kb("Shared_Dirty:", m["shared_dirty"]),
           _kb("Private_Clean:", m["private_clean"]), _kb("Private_Dirty:", m["private_dirty"]),
           _kb("Referenced:", m["referenced"]), _kb("Anonymous:", m["anon"]), _kb("KSM:", 0),
           _kb("LazyFree:", 0), _kb("AnonHugePages:", m["anon_huge"]), _kb("ShmemPmdMapped:", m["shmem_huge"]),
           _kb("FilePmdMapped:", 0), _kb("Shared_Hugetlb:", 0), _kb("Private_Hugetlb:", 0),
           _kb("Swap:", 0), _kb("SwapPss:", 0),
           _line_kb("Locked:", m["pss_kb"] if vma.vm_flags & VM_LOCKED else 0),
           f"{'THPeligible:':<16}{thp_eligible(mm, vma):>8}\n",
           "VmFlags: " + "".join(name + " " for name in vmflags_mnemonics(vma.vm_flags)) + "\n"]
    return "".join(out)


def smaps(proc):
    """/proc/PID/smaps."""
    mm = proc.mm
    if mm is None:
        return ""
    return "".join(smaps_block(mm, vma) for vma in mm.vmas()) + VSYSCALL_SMAPS


def _status_kb(label, pages_4k):
    return f"{label}\t{pages_4k * 4:>8} kB\n"


def status(proc):
    """/proc/PID/status: identity lines, the Vm* block and THP_enabled."""
    mm = proc.mm
    state = "Z (zombie)" if getattr(proc, "state", "running") != "running" else "R (running)"
    cred = proc.cred
    lines = [f"Name:\t{proc.comm[:15]}\n", f"State:\t{state}\n", f"Tgid:\t{proc.pid}\n",
             f"Pid:\t{proc.pid}\n", f"PPid:\t{proc.ppid}\n", "TracerPid:\t0\n",
             f"Uid:\t{cred.uid}\t{cred.euid}\t{cred.suid}\t{cred.fsuid}\n",
             f"Gid:\t{cred.gid}\t{cred.egid}\t{cred.sgid}\t{cred.fsgid}\n"]
    if mm is not None:
        data = stack = exe = locked = 0
        for vma in mm.vmas():
            n = vma.npages
            flags = vma.vm_flags
            if flags & VM_LOCKED:
                locked += n
            if flags & VM_GROWSDOWN:
                stack += n
            elif (flags & (VM_WRITE | VM_SHARED)) == VM_WRITE:
                data += n
            elif (flags & (VM_EXEC | VM_WRITE)) == VM_EXEC:
                exe += n
        rss = mm.rss_anon + mm.rss_file + mm.rss_shmem
        # task_mem(): the high-water marks are kept up to date by whatever lowers
        # total_vm or rss; the current values may be above them.
        lines += [_status_kb("VmPeak:", max(mm.hiwater_vm, mm.total_vm)),
                  _status_kb("VmSize:", mm.total_vm),
                  _status_kb("VmLck:", locked), _status_kb("VmPin:", 0),
                  _status_kb("VmHWM:", max(mm.hiwater_rss, rss)), _status_kb("VmRSS:", rss),
                  _status_kb("RssAnon:", mm.rss_anon), _status_kb("RssFile:", mm.rss_file),
                  _status_kb("RssShmem:", mm.rss_shmem), _status_kb("VmData:", data),
                  _status_kb("VmStk:", stack), _status_kb("VmExe:", 0), _status_kb("VmLib:", exe),
                  _status_kb("VmPTE:", _pte_pages(mm)), _status_kb("VmSwap:", 0),
                  _status_kb("HugetlbPages:", 0), "CoreDumping:\t0\n",
                  f"THP_enabled:\t{0 if mm.flags & MMF_DISABLE_THP_COMPLETELY else 1}\n"]
    group = [p for p in proc.kernel.processes.values()
             if p.tgid == proc.tgid and p.state == "running"]
    lines.append(f"Threads:\t{max(len(group), 1)}\n")
    return "".join(lines)


def _pte_pages(mm):
    """Simulator-defined VmPTE: one 4 KiB page table per 2 MiB region holding PTEs."""
    tables = set()
    for vma in mm.vmas():
        for vpn in vma.pages or ():
            tables.add(vpn >> 9)
    return len(tables)


def parse_smaps(text):
    """/proc/PID/smaps text as a list of dicts, one per VMA: ``start``, ``end``,
    ``offset`` and ``inode`` as ints, ``perms``, ``dev`` and ``name`` (None when the
    line has none) as strings, every ``kB`` field as an int of kB (named as the file
    names it, without the colon), ``THPeligible`` as an int, ``VmFlags`` as a list."""
    vmas = []
    for line in text.splitlines():
        head, _, rest = line.partition(" ")
        if "-" in head and not head.endswith(":"):
            lo, _, hi = head.partition("-")
            parts = rest.split(None, 4)
            vmas.append({"start": int(lo, 16), "end": int(hi, 16), "perms": parts[0],
                         "offset": int(parts[1], 16), "dev": parts[2], "inode": int(parts[3]),
                         "name": parts[4].strip() if len(parts) > 4 else None})
        elif head == "VmFlags:":
            vmas[-1]["VmFlags"] = rest.split()
        elif head.endswith(":") and vmas:
            value = rest.split()
            vmas[-1][head[:-1]] = int(value[0]) if value else 0
    return vmas


def parse_fields(text):
    """A ``Name: value`` /proc file (meminfo, status) or a ``name value`` one (vmstat)
    as a dict; values that are numbers (``kB`` ones in kB) become ints, others stay
    strings, several numbers (Uid:) a list."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            name, _, value = line.partition(":")
        else:
            name, _, value = line.partition(" ")
        words = value.split()
        if words and words[-1] == "kB":
            words = words[:-1]
        # "0022" (Umask) is octal text, not the number 22
        nums = [int(w) for w in words if w.lstrip("-").isdigit() and not
                (len(w) > 1 and w.startswith("0"))]
        if words and len(nums) == len(words):
            out[name.strip()] = nums[0] if len(nums) == 1 else nums
        else:
            out[name.strip()] = value.strip()
    return out
