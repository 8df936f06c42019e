"""/proc/PID/maps, smaps and status, byte for byte in the format of fs/proc/task_mmu.c
and fs/proc/array.c on the reference kernel (no ProtectionKey line: the machine has no
PKU; no soft-dirty; no anon names)."""

from . import pages, thp
from .defs import PAGE_SHIFT, PAGE_SIZE
from .pages import PMD_PAGES
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
    return _maps_line(vma, mm.start_brk, mm.brk, mm.start_stack)


_PERM_BITS = VM_READ | VM_WRITE | VM_EXEC | VM_MAYSHARE
# Caches keyed by flag words: an address space holds few distinct ones, so text built
# once per value is reused for every VMA; bounded so odd flag mixes cannot grow it.
_CACHE_LIMIT = 4096
_perms_cache = {}
_vmflags_cache = {}


def _perms(flags):
    """The maps permission column for ``flags`` (cached)."""
    key = flags & _PERM_BITS
    text = _perms_cache.get(key)
    if text is None:
        text = (("r" if key & VM_READ else "-") + ("w" if key & VM_WRITE else "-")
                + ("x" if key & VM_EXEC else "-") + ("s" if key & VM_MAYSHARE else "p"))
        _perms_cache[key] = text
    return text


def _vmflags_text(flags):
    """The smaps VmFlags line for ``flags`` (cached)."""
    text = _vmflags_cache.get(flags)
    if text is None:
        if len(_vmflags_cache) >= _CACHE_LIMIT:
            _vmflags_cache.clear()
        text = "VmFlags: " + "".join(name + " " for name in vmflags_mnemonics(flags)) + "\n"
        _vmflags_cache[flags] = text
    return text


def _maps_line(vma, start_brk, brk, start_stack):
    """maps_line with the mm's heap and stack bounds read once by the caller."""
    file = vma.file
    start = vma.start
    end = vma.end
    if file is not None:
        inode = file.inode
        major, minor = inode.dev
        line = "%08x-%08x %s %08x %02x:%02x %d " % (
            start, end, _perms(vma.vm_flags), vma.pgoff << PAGE_SHIFT, major, minor, inode.ino)
        name = inode.display_name()
        if name is None:
            return line
    else:
        line = "%08x-%08x %s 00000000 00:00 0 " % (start, end, _perms(vma.vm_flags))
        # vma_name() for a VMA without a file, in its order.
        name = vma.special
        if name is None:
            if start < brk and end > start_brk:
                name = "[heap]"
            elif start_stack and start <= start_stack <= end:
                name = "[stack]"
            elif vma.anon_name:
                name = f"[anon:{vma.anon_name}]"
            else:
                return line
    return line.ljust(HEADER_WIDTH) + " " + name


def maps(proc):
    """/proc/PID/maps (the vsyscall gate area last)."""
    mm = proc.mm
    if mm is None:
        return ""
    start_brk, brk, start_stack = mm.start_brk, mm.brk, mm.start_stack
    lines = [_maps_line(vma, start_brk, brk, start_stack) for vma in mm.vmas()]
    lines.append(VSYSCALL_LINE)
    lines.append("")
    return "\n".join(lines)


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


def _counts(vma):
    """smaps_pte_range/smaps_account totals of one VMA as a tuple: rss, pss << PSS_SHIFT,
    pss_dirty << PSS_SHIFT, shared_clean, shared_dirty, private_clean, private_dirty,
    referenced, anon, anon_huge, shmem_huge, file_huge (page counts in 4 KiB pages)."""
    pss2 = pss_dirty = shared_clean = shared_dirty = private_clean = private_dirty = 0
    rss = referenced = anon = anon_huge = file_pmd = 0
    pm = vma.pages
    if not pm:
        return _NOTHING
    unit = PAGE_SIZE << PSS_SHIFT
    unit_thp = unit * PMD_PAGES
    pieces = pages.span_pieces
    for x, y, span in pm.items():
        rss += y - x
        young = span.young
        pmd = span.pmd is True
        for a, b, mapcount, is_anon, dirty, ref in pieces(span, x, y):
            n = b - a
            if ref or young:
                referenced += n
            # smaps_account(): bytes << PSS_SHIFT divided by the mapcount, per folio
            # (per page where a THP's pages have different mapcounts).
            if pmd and not n % PMD_PAGES and not a % PMD_PAGES:
                share = (n // PMD_PAGES) * (unit_thp // mapcount)
            else:
                share = n * (unit // mapcount)
            pss2 += share
            if dirty:
                pss_dirty += share
                if mapcount > 1:
                    shared_dirty += n
                else:
                    private_dirty += n
            elif mapcount > 1:
                shared_clean += n
            else:
                private_clean += n
            if is_anon:
                anon += n
                if pmd:
                    anon_huge += n
            elif pmd:
                file_pmd += n
    # A PMD mapping of a page-cache folio is ShmemPmdMapped for shmem, FilePmdMapped
    # for a regular file.
    if vma.file is not None and not vma.file.shmem:
        return (rss, pss2, pss_dirty, shared_clean, shared_dirty, private_clean,
                private_dirty, referenced, anon, anon_huge, 0, file_pmd)
    return (rss, pss2, pss_dirty, shared_clean, shared_dirty, private_clean, private_dirty,
            referenced, anon, anon_huge, file_pmd, 0)


_NOTHING = (0,) * 12


def vma_memory(vma):
    """Per-VMA page counts for smaps (in 4 KiB pages)."""
    (rss, pss2, pss_dirty, shared_clean, shared_dirty, private_clean, private_dirty,
     referenced, anon, anon_huge, shmem_huge, file_huge) = _counts(vma)
    return {"rss": rss, "pss": pss2, "shared_clean": shared_clean, "shared_dirty": shared_dirty,
            "private_clean": private_clean, "private_dirty": private_dirty, "anon": anon,
            "anon_huge": anon_huge, "shmem_huge": shmem_huge, "file_huge": file_huge,
            "referenced": referenced,
            "pss_kb": pss2 >> PSS_SHIFT >> 10, "pss_dirty_kb": pss_dirty >> PSS_SHIFT >> 10}


def thp_eligible(mm, vma):
    """smaps THPeligible: the TVA_SMAPS decision."""
    return thp.smaps_eligible(vma, mm.flags, mm.kernel)


def _smaps_template():
    """The text of a smaps block after its maps line, with a %d for every number
    that depends on the VMA and the constant lines written out."""
    var = None
    rows = [("Size:", var), ("KernelPageSize:", 4), ("MMUPageSize:", 4), ("Rss:", var),
            ("Pss:", var), ("Pss_Dirty:", var), ("Shared_Clean:", var),
            ("Shared_Dirty:", var), ("Private_Clean:", var), ("Private_Dirty:", var),
            ("Referenced:", var), ("Anonymous:", var), ("KSM:", 0), ("LazyFree:", 0),
            ("AnonHugePages:", var), ("ShmemPmdMapped:", var), ("FilePmdMapped:", var),
            ("Shared_Hugetlb:", 0), ("Private_Hugetlb:", 0), ("Swap:", 0), ("SwapPss:", 0),
            ("Locked:", var)]
    text = "".join(f"{label:<16}%8d kB\n" if value is None else _line_kb(label, value)
                            for label, value in rows)
    return text + f"{'THPeligible:':<16}%8d\n%s"


_SMAPS_TEMPLATE = _smaps_template()
# Block text after the maps line, keyed by every number and flag it shows: VMAs of one
# address space mostly repeat a few of them, and a lookup is cheaper than formatting.
_body_cache = {}


def _smaps_body(npages, counts, flags, eligible):
    """The smaps block after its maps line for these numbers (cached)."""
    key = (npages, counts, flags, eligible)
    text = _body_cache.get(key)
    if text is None:
        (rss, pss2, pss_dirty, shared_clean, shared_dirty, private_clean, private_dirty,
         referenced, anon, anon_huge, shmem_huge, file_huge) = counts
        pss_kb = pss2 >> PSS_SHIFT >> 10
        text = _SMAPS_TEMPLATE % (
            npages * 4, rss * 4, pss_kb, pss_dirty >> PSS_SHIFT >> 10, shared_clean * 4,
            shared_dirty * 4, private_clean * 4, private_dirty * 4, referenced * 4, anon * 4,
            anon_huge * 4, shmem_huge * 4, file_huge * 4,
            pss_kb if flags & VM_LOCKED else 0, eligible,
            _vmflags_text(flags))
        if len(_body_cache) >= _CACHE_LIMIT:
            _body_cache.clear()
        _body_cache[key] = text
    return text


def _smaps_block(mm, vma, start_brk, brk, start_stack, thp_policy, small):
    """smaps_block with the mm's bounds and the THP settings (the PMD policy, whether a
    smaller anonymous size is enabled) read once by the caller."""
    body = _smaps_body(vma.npages, _counts(vma), vma.vm_flags,
                       thp.smaps_eligible(vma, mm.flags, mm.kernel, thp_policy, small))
    if vma.swap:
        body = _with_swap(mm, vma, body)
    return _maps_line(vma, start_brk, brk, start_stack) + "\n" + body


_NO_SWAP = _line_kb("Swap:", 0) + _line_kb("SwapPss:", 0)


def _with_swap(mm, vma, body):
    """The block with its Swap: and SwapPss: lines (smaps_pte_entry's swap entries: a
    slot shared by n page tables counts 1/n of a page in SwapPss)."""
    swap = pss = 0
    slots = mm.kernel.swap.slots
    unit = PAGE_SIZE << PSS_SHIFT
    for x, y, ref in vma.swap.items():
        swap += y - x
        d = ref.delta
        for a, b, st in slots.runs(x - d, y - d):
            pss += (b - a) * (unit // st[0])
    return body.replace(_NO_SWAP, _line_kb("Swap:", swap * 4)
                        + _line_kb("SwapPss:", pss >> PSS_SHIFT >> 10), 1)


def smaps_block(mm, vma):
    """One VMA's /proc/PID/smaps block."""
    return _smaps_block(mm, vma, mm.start_brk, mm.brk, mm.start_stack,
                        mm.kernel.thp_pmd_policy, thp.small_anon_sizes(mm.kernel))


def smaps(proc):
    """/proc/PID/smaps."""
    mm = proc.mm
    if mm is None:
        return ""
    start_brk, brk, start_stack = mm.start_brk, mm.brk, mm.start_stack
    policy, small = mm.kernel.thp_pmd_policy, thp.small_anon_sizes(mm.kernel)
    blocks = [_smaps_block(mm, vma, start_brk, brk, start_stack, policy, small)
              for vma in mm.vmas()]
    blocks.append(VSYSCALL_SMAPS)
    return "".join(blocks)


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
                  _status_kb("VmPTE:", pte_pages(mm)), _status_kb("VmSwap:", mm.swap_pages),
                  _status_kb("HugetlbPages:", 0), "CoreDumping:\t0\n",
                  f"THP_enabled:\t{0 if mm.flags & MMF_DISABLE_THP_COMPLETELY else 1}\n"]
    group = [p for p in proc.kernel.processes.values()
             if p.tgid == proc.tgid and p.state == "running"]
    lines.append(f"Threads:\t{max(len(group), 1)}\n")
    return "".join(lines)


def pte_pages(mm):
    """Simulator-defined VmPTE (mm_pgtables_bytes in pages): one 4 KiB page table per
    2 MiB region holding PTEs, swap entries or zero-page PTEs, or mapped by an
    anonymous PMD (a THP or the huge zero folio deposits a page table: checked live);
    a file or shmem PMD mapping deposits none on x86-64."""
    n = 0
    last = -1   # the last table counted: VMAs and their extents come in address order
    for vma in mm.vmas():
        ranges = [(x, y) for x, y, span in (vma.pages.items() if vma.pages else ())
                  if span.pmd is not True or span.kind != pages.CACHED]
        # Swap entries and the zero page live in page tables too.
        if vma.swap:
            ranges += [(x, y) for x, y, _ in vma.swap.items()]
        if vma.zero:
            ranges += [(x, y) for x, y, _ in vma.zero.items()]
        if vma.swap or vma.zero:
            ranges.sort()
        for x, y in ranges:
            first, final = x >> 9, (y - 1) >> 9
            if first <= last:
                first = last + 1
            if final >= first:
                n += final - first + 1
                last = final
    return n


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
