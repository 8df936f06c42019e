"""exec(2) of a real ELF file into a fresh address space, as Linux 6.18 x86-64 does it.

``load_elf`` reads the program headers of an ELF file on this machine (with pyelftools)
and builds the address space the kernel would leave behind when execve() returns:

* the argument strings and the stack (fs/exec.c: copying argv/envp, ``setup_arg_pages``
  moving the stack to its final, possibly randomised top and growing it by 128 KiB);
* every PT_LOAD segment of the program as private file mappings, and the part of each
  segment beyond its file contents as anonymous zero-fill memory (fs/binfmt_elf.c:
  ``load_elf_binary``, ``elf_load``, ``elf_map``, ``padzero``);
* the PT_INTERP interpreter, placed like any other file mapping (``load_elf_interp``);
* the vDSO and its data pages (arch/x86/entry/vdso/vma.c: ``map_vdso``);
* the initial stack contents, for ``start_stack`` (``create_elf_tables``), and the
  program break (the "brk handling" at the end of ``load_elf_binary``).

Every mapping goes through the simulator's own mmap/munmap code, so VMA flags, merging,
accounting and placement follow the same rules as later syscalls.  Randomisation draws
from ``kernel.rng`` in the kernel's order, so a seed gives a repeatable layout.
"""

import errno
import functools
import os
import stat

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from . import mman, overcommit, pages
from .files import Inode, OpenFile
from .mm import (MMF_TOPDOWN, MMAP_MIN_ADDR, RLIMIT_STACK_DEFAULT, STACK_TOP, TASK_SIZE, error,
                 page_align, thp_aligned)
from .uapi import MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE
from .vma import (PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PMD_SIZE, VM_ACCOUNT, VM_DONTDUMP,
                  VM_DONTEXPAND, VM_EXEC, VM_GROWSDOWN, VM_IO, VM_LOCKED, VM_LOCKED_MASK,
                  VM_DATA_DEFAULT_FLAGS, VM_MAYEXEC, VM_MAYREAD, VM_MAYWRITE, VM_PFNMAP,
                  VM_READ, VM_WRITE, MergeProposal, Vma)

U64 = (1 << 64) - 1

# PIE programs are loaded at two thirds of the 47-bit window.  The raw value is not page
# aligned (0x555555554aaa): a PIE base is aligned down to its segment alignment, while a
# static PIE's break is page-aligned up from it (0x555555555000).
ELF_ET_DYN_BASE = TASK_SIZE // 3 * 2
MMAP_RND_BITS = 28                  # vm.mmap_rnd_bits on the reference machine
STACK_RND_BITS = 22                 # STACK_RND_MASK 0x3fffff pages: up to 16 GiB
BRK_RND_RANGE = 1 << 30             # arch_randomize_brk on 64-bit: within 1 GiB
STACK_EXPAND = 128 << 10            # setup_arg_pages grows the new stack by 128 KiB
STACK_ALIGN_RND = 8192              # arch_align_stack: up to 8 KiB below, then 16-aligned
STK_LIM = 8 << 20
ARG_MAX = 32 * PAGE_SIZE
MAX_ARG_STRLEN = 32 * PAGE_SIZE
PATH_MAX = 4096

# The vDSO on the reference kernel: 4 pages of [vvar] (the generic vDSO data store),
# 2 of [vvar_vclock] (pvclock and Hyper-V clock pages), then 2 pages of vDSO text.
VVAR_PAGES = 4
VVAR_VCLOCK_PAGES = 2
VDSO_TEXT_PAGES = 2
VDSO_VM_FLAGS = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VVAR_VM_FLAGS = VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP

# x86-64 data and stack defaults: no VM_EXEC (no READ_IMPLIES_EXEC for 64-bit).
VM_DATA_FLAGS = VM_DATA_DEFAULT_FLAGS
VM_STACK_FLAGS = VM_DATA_FLAGS | VM_GROWSDOWN | VM_ACCOUNT

# create_elf_tables on this kernel writes 22 auxv entries plus AT_NULL (counted on the
# live machine: AT_SYSINFO_EHDR and AT_MINSIGSTKSZ from ARCH_DLINFO, the generic ones,
# AT_HWCAP2, AT_EXECFN, AT_PLATFORM and the two rseq entries).
AUXV_WORDS = 2 * 23
ELF_PLATFORM = b"x86_64"

ET_EXEC, ET_DYN = "ET_EXEC", "ET_DYN"
PF_X, PF_W, PF_R = 1, 2, 4
PHDR_SIZE = 56
AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_ENTRY = 3, 4, 5, 6, 7, 9
AT_PLATFORM, AT_RANDOM, AT_EXECFN, AT_SYSINFO_EHDR = 15, 25, 31, 33

# Filesystems whose get_unmapped_area is thp_get_unmapped_area: a file mapping covering
# a whole PMD-aligned 2 MiB of the file is placed PMD-aligned, like anonymous THP areas.
THP_AREA_FILESYSTEMS = frozenset({"ext4", "xfs"})

EXSTACK_DEFAULT, EXSTACK_DISABLE_X, EXSTACK_ENABLE_X = 0, 1, 2


def _pagestart(addr):
    return addr & PAGE_MASK


def _pageoff(addr):
    return addr & ~PAGE_MASK


class _Phdr:
    """The fields of one program header the loader uses."""

    __slots__ = ("type", "flags", "offset", "vaddr", "filesz", "memsz", "align")

    def __init__(self, h):
        self.type = h["p_type"]
        self.flags = h["p_flags"]
        self.offset = h["p_offset"]
        self.vaddr = h["p_vaddr"]
        self.filesz = h["p_filesz"]
        self.memsz = h["p_memsz"]
        self.align = h["p_align"]


class _Image:
    """An opened ELF file: its simulated open file and the headers read from disk."""

    def __init__(self, path, file, e_type, entry, phoff, phnum, phdrs, interp, thp_area):
        self.path = path
        self.file = file
        self.e_type = e_type
        self.entry = entry
        self.phoff = phoff
        self.phnum = phnum
        self.phdrs = phdrs
        self.interp = interp
        self.thp_area = thp_area

    @property
    def loads(self):
        return [ph for ph in self.phdrs if ph.type == "PT_LOAD"]


# ---------------------------------------------------------------------- opening files


@functools.lru_cache(maxsize=None)
def _fs_type(dev):
    """The filesystem type mounted on device ``dev`` (from /proc/self/mountinfo)."""
    want = f"{os.major(dev)}:{os.minor(dev)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 3 and fields[2] == want and " - " in line:
                    return line.split(" - ", 1)[1].split()[0]
    except OSError:
        pass
    return None


def _inode_for(kernel, name, st):
    """The simulated inode of a real file: its real dev and inode numbers, shared by
    every exec of the same file (so two processes map one inode, as in the kernel)."""
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    inode = kernel.files.get(name)
    if inode is None or inode.ino != st.st_ino or tuple(inode.dev) != dev:
        inode = Inode(name, st.st_size, dev=dev, ino=st.st_ino, mode=st.st_mode & 0o7777,
                      uid=st.st_uid, gid=st.st_gid)
        kernel.files[name] = inode
    return inode


def _open_exec(kernel, path):
    """open_exec: the checks made when a file is opened for execution, then a new open
    file description.  Returns (OpenFile, host file object, stat result)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise error(exc.errno, os.fsdecode(path)) from None
    # may_open(): only regular files can be executed, and only with an x bit (root too)
    # on a filesystem not mounted noexec.
    if not stat.S_ISREG(st.st_mode):
        raise error(errno.EACCES, os.fsdecode(path))
    if not os.access(path, os.X_OK):
        raise error(errno.EACCES, os.fsdecode(path))
    if os.statvfs(path).f_flag & os.ST_NOEXEC:
        raise error(errno.EACCES, os.fsdecode(path))
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        # The kernel needs no read permission to exec; the simulator needs to read the
        # headers, so an unreadable file is refused with the error the host gave.
        raise error(exc.errno, os.fsdecode(path)) from None
    # /proc/PID/maps shows d_path() of the opened file: symlinks resolved.
    name = os.path.realpath(path)
    file = OpenFile(_inode_for(kernel, name, st), readable=True, writable=False)
    return file, fh, st


def _read_image(path, file, fh, st, bad, want_interp):
    """Read the ELF and program headers of the opened ``path``; header problems raise
    ``bad`` (ENOEXEC for the program, ELIBBAD for its interpreter)."""
    head = fh.read(64)
    # The program's first bytes come in a zero-padded buffer, so a short program is
    # just not ELF; the interpreter's header is read whole, and a short read is EIO.
    if len(head) < 64 and bad == errno.ELIBBAD:
        raise error(errno.EIO, os.fsdecode(path))
    # The checks of load_elf_binary: magic, 64-bit little-endian, ET_EXEC or ET_DYN,
    # EM_X86_64 (a 32-bit file would go to the compat loader, not simulated here).
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise error(bad, os.fsdecode(path))
    fh.seek(0)
    try:
        elf = ELFFile(fh)
        hdr = elf.header
        e_type, machine = hdr["e_type"], hdr["e_machine"]
        if e_type not in (ET_EXEC, ET_DYN) or machine != "EM_X86_64":
            raise error(bad, os.fsdecode(path))
        phnum = hdr["e_phnum"]
        # load_elf_phdrs: the table must be of 56-byte entries, 1 byte to 64 KiB.
        if hdr["e_phentsize"] != PHDR_SIZE or not 0 < phnum * PHDR_SIZE <= 65536:
            raise error(bad, os.fsdecode(path))
        phdrs = [_Phdr(elf.get_segment(i).header) for i in range(phnum)]
    except OSError:
        raise
    except (ELFError, Exception) as exc:  # also construct's StreamError on a short file
        raise error(bad, f"{os.fsdecode(path)}: {exc}") from None
    interp = None
    if want_interp:
        for ph in phdrs:
            if ph.type != "PT_INTERP":
                continue
            if ph.filesz > PATH_MAX or ph.filesz < 2:
                raise error(errno.ENOEXEC, os.fsdecode(path))
            fh.seek(ph.offset)
            raw = fh.read(ph.filesz)
            if len(raw) != ph.filesz:
                raise error(errno.EIO, os.fsdecode(path))
            if raw[-1] != 0:
                raise error(errno.ENOEXEC, os.fsdecode(path))
            interp = raw.split(b"\0", 1)[0]
            break   # only the first PT_INTERP counts
    thp_area = _fs_type(st.st_dev) in THP_AREA_FILESYSTEMS
    return _Image(path, file, e_type, hdr["e_entry"], hdr["e_phoff"], phnum, phdrs, interp,
                  thp_area)


# ---------------------------------------------------------------------- argument strings


def _as_bytes(value):
    return value if isinstance(value, bytes) else os.fsencode(value)


def _arg_strings(path, argv, envp, rlimit_stack):
    """What execve copies to the top of the new stack: the file name, then the
    environment, then the arguments, each NUL-terminated.  Raises E2BIG like
    bprm_stack_limits and copy_strings."""
    filename = _as_bytes(path)
    argv = [_as_bytes(a) for a in ([path] if argv is None else argv)]
    if envp is None:
        envp = []
    elif isinstance(envp, dict):
        envp = [_as_bytes(k) + b"=" + _as_bytes(v) for k, v in envp.items()]
    envp = [_as_bytes(e) for e in envp]
    if not argv:
        argv = [b""]   # since 5.18 an empty argv gets "" as argv[0]
    limit = max(min(STK_LIM // 4 * 3, rlimit_stack // 4), ARG_MAX)
    ptr_size = (len(argv) + len(envp)) * 8
    if limit <= ptr_size:
        raise error(errno.E2BIG)
    for s in [filename] + envp + argv:
        if len(s) + 1 > MAX_ARG_STRLEN:
            raise error(errno.E2BIG)
    total = sum(len(s) + 1 for s in [filename] + envp + argv)
    if total > limit - ptr_size:
        raise error(errno.E2BIG)
    return filename, argv, envp


# ---------------------------------------------------------------------- segment mapping


def make_prot(p_flags):
    """PF_R/PF_W/PF_X to PROT_READ/PROT_WRITE/PROT_EXEC."""
    return ((PROT_READ if p_flags & PF_R else 0) | (PROT_WRITE if p_flags & PF_W else 0)
            | (PROT_EXEC if p_flags & PF_X else 0))


def total_mapping_size(loads):
    """Bytes from the page of the first PT_LOAD to the end of the last one."""
    if not loads:
        return 0
    return (loads[-1].vaddr + loads[-1].memsz - _pagestart(loads[0].vaddr)) & U64


def maximum_alignment(loads):
    """The largest power-of-two p_align of the PT_LOADs, page-aligned (0 when none)."""
    alignment = 0
    for ph in loads:
        if ph.align and not ph.align & (ph.align - 1):
            alignment = max(alignment, ph.align)
    return page_align(alignment)


def _thp_file_area(mm, image, addr, length, pgoff):
    """thp_get_unmapped_area for a file: a mapping that covers a whole 2 MiB-aligned
    stretch of the file is placed so that stretch is PMD-aligned in memory.  Returns
    None when the ordinary search applies."""
    off = pgoff << PAGE_SHIFT
    off_end = off + length
    off_align = (off + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    if off_end <= off_align or off_end - off_align < PMD_SIZE:
        return None
    try:
        ret = mm.get_unmapped_area(addr, length + PMD_SIZE, pgoff, MAP_PRIVATE, image.file)
    except OSError:
        return None
    return thp_aligned(ret, addr, off, mm.flags & MMF_TOPDOWN)


def _vm_mmap(mm, image, addr, length, prot, flags, offset):
    """vm_mmap of the image file (MAP_PRIVATE), with the filesystem's placement rule."""
    if offset < 0 or offset & ~PAGE_MASK:
        raise error(errno.EINVAL, "segment offset and address disagree within a page")
    if image.thp_area and not flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
        hint = addr
        if hint and hint < MMAP_MIN_ADDR:
            hint = page_align(MMAP_MIN_ADDR)   # round_hint_to_min, as do_mmap does
        placed = _thp_file_area(mm, image, hint, page_align(length), offset >> PAGE_SHIFT)
        if placed is not None and placed <= TASK_SIZE - page_align(length):
            addr, flags = placed, flags | MAP_FIXED
    return mman.mmap(mm, addr, length, prot, flags, image.file, offset)


def _elf_map(mm, image, addr, ph, prot, flags, total_size):
    """elf_map: map the file part of a segment; the first mapping of an image reserves
    the whole image (``total_size``) so nothing else can land inside it, and gives back
    the part beyond this segment."""
    size = page_align(ph.filesz + _pageoff(ph.vaddr))
    off = ph.offset - _pageoff(ph.vaddr)
    addr = _pagestart(addr)
    if not size:
        return addr
    if total_size:
        total_size = page_align(total_size)
        map_addr = _vm_mmap(mm, image, addr, total_size, prot, flags, off)
        if total_size > size:
            mm.unmap(map_addr + size, map_addr + total_size)
        return map_addr
    return _vm_mmap(mm, image, addr, size, prot, flags, off)


def _padzero(mm, addr):
    """padzero: zero the rest of the page after the file data.  The write faults the
    page in (a private copy); False where the kernel's clear_user would fail."""
    if not _pageoff(addr):
        return True
    vma = mm.vma_lookup(addr)
    if vma is None or not vma.vm_flags & VM_WRITE:
        return False
    if vma.file is not None:
        # A page wholly beyond the end of the file raises SIGBUS instead of faulting.
        file_off = vma.pgoff_at(addr) << PAGE_SHIFT
        if file_off >= page_align(vma.file.inode.size):
            return False
    pages.fault(mm, vma, addr, True, mm.kernel.thp)
    return True


def _vm_brk(mm, start, end, vm_flags):
    """vm_brk_flags: anonymous zero-fill memory at the fixed range ``[start, end)``,
    which may only grow an anonymous VMA just below it (do_brk_flags)."""
    if end <= start:
        return
    if end > TASK_SIZE:
        raise error(errno.ENOMEM)
    flags = vm_flags | VM_DATA_FLAGS | VM_ACCOUNT | mm.def_flags
    mm.unmap(start, end)
    overcommit.charge(mm, (end - start) >> PAGE_SHIFT)   # do_brk_flags
    pgoff = start >> PAGE_SHIFT
    prev = mm.prev_of(start)
    prop = MergeProposal(start, end, flags, pgoff)
    merged = (prev is not None and prev.end == start
              and mm.merge_new(prop, prev, None, just_expand=True) is not None)
    if not merged:
        mm.insert(Vma(start, end, flags, pgoff))
    if mm.def_flags & VM_LOCKED:
        mman.mm_populate(mm, start, end)


def _elf_load(mm, image, addr, ph, prot, flags, total_size):
    """elf_load: one PT_LOAD segment, its file part and then its zero-fill tail."""
    if ph.filesz:
        map_addr = _elf_map(mm, image, addr, ph, prot, flags, total_size)
        zero_start = map_addr + _pageoff(ph.vaddr) + ph.filesz
        zero_end = map_addr + _pageoff(ph.vaddr) + ph.memsz
        if ph.memsz > ph.filesz and not _padzero(mm, zero_start) and prot & PROT_WRITE:
            # Only a writable segment must have its partial page zeroed.
            raise error(errno.EFAULT, "cannot zero the end of a writable segment")
    else:
        # A segment with no file contents is all zero fill, at the address asked for.
        map_addr = zero_start = _pagestart(addr)
        zero_end = zero_start + _pageoff(ph.vaddr) + ph.memsz
    if ph.memsz > ph.filesz:
        _vm_brk(mm, page_align(zero_start), page_align(zero_end),
                VM_EXEC if prot & PROT_EXEC else 0)
    return map_addr


def _check_segment(ph, k, code):
    """The range checks made on each loaded segment."""
    if (k >= TASK_SIZE or ph.filesz > ph.memsz or ph.memsz > TASK_SIZE
            or TASK_SIZE - ph.memsz < k):
        raise error(code, "segment outside the user address space")


def _map_program(mm, image, has_interp, randomize, rng):
    """The PT_LOAD loop of load_elf_binary for the program itself."""
    out = {"load_bias": 0, "phdr": 0, "elf_brk": 0, "start_code": U64, "end_code": 0,
           "start_data": 0, "end_data": 0}
    load_bias = 0
    first = True
    for ph in image.loads:
        prot = make_prot(ph.flags)
        flags = MAP_PRIVATE
        vaddr = ph.vaddr
        total_size = 0
        if not first:
            # The first mapping reserved the whole image: the rest go on top of it.
            flags |= MAP_FIXED
        elif image.e_type == ET_EXEC:
            flags |= MAP_FIXED_NOREPLACE
        else:
            total_size = total_mapping_size(image.loads)
            if not total_size:
                raise error(errno.EINVAL, "empty ELF image")
            alignment = maximum_alignment(image.loads)
            if has_interp:
                # A PIE program goes at ELF_ET_DYN_BASE, moved by the mmap randomisation.
                load_bias = ELF_ET_DYN_BASE
                if randomize:
                    load_bias += rng.getrandbits(MMAP_RND_BITS) << PAGE_SHIFT
                if alignment:
                    load_bias &= ~(alignment - 1)
                flags |= MAP_FIXED_NOREPLACE
            elif alignment > PAGE_SIZE:
                # A loader run directly (static PIE) with a large alignment: find room
                # for the image, give it back, then map it at that place aligned down.
                load_bias = _elf_load(mm, image, 0, ph, prot, flags, total_size)
                mm.unmap(load_bias, load_bias + page_align(total_size))
                load_bias &= ~(alignment - 1)
                flags |= MAP_FIXED_NOREPLACE
            else:
                # Otherwise a static PIE goes wherever mmap puts it (load_bias 0).
                load_bias = 0
            load_bias = _pagestart((load_bias - vaddr) & U64)
        map_addr = _elf_load(mm, image, (load_bias + vaddr) & U64, ph, prot, flags, total_size)
        if first:
            first = False
            if image.e_type == ET_DYN:
                load_bias = (load_bias + map_addr - _pagestart((load_bias + vaddr) & U64)) & U64
        if ph.offset <= image.phoff < ph.offset + ph.filesz:
            out["phdr"] = image.phoff - ph.offset + vaddr
        k = vaddr
        if ph.flags & PF_X and k < out["start_code"]:
            out["start_code"] = k
        out["start_data"] = max(out["start_data"], k)
        _check_segment(ph, k, errno.EINVAL)
        k = vaddr + ph.filesz
        if ph.flags & PF_X:
            out["end_code"] = max(out["end_code"], k)
        out["end_data"] = max(out["end_data"], k)
        out["elf_brk"] = max(out["elf_brk"], vaddr + ph.memsz)
    for key in ("phdr", "elf_brk", "start_code", "end_code", "start_data", "end_data"):
        out[key] = (out[key] + load_bias) & U64
    out["load_bias"] = load_bias
    out["entry"] = (image.entry + load_bias) & U64
    return out


def _map_interp(mm, image, no_base):
    """load_elf_interp: map the interpreter; returns its load address (AT_BASE)."""
    loads = image.loads
    total_size = total_mapping_size(loads)
    if not total_size:
        raise error(errno.EINVAL, "empty interpreter image")
    load_addr = 0
    load_addr_set = False
    for ph in loads:
        prot = make_prot(ph.flags)
        flags = MAP_PRIVATE
        vaddr = ph.vaddr
        if image.e_type == ET_EXEC or load_addr_set:
            flags |= MAP_FIXED
        elif no_base and image.e_type == ET_DYN:
            # Next to a PIE program, the interpreter is placed by a plain search (hint 0).
            load_addr = -vaddr & U64
        map_addr = _elf_load(mm, image, (load_addr + vaddr) & U64, ph, prot, flags, total_size)
        total_size = 0
        if not load_addr_set and image.e_type == ET_DYN:
            load_addr = (map_addr - _pagestart(vaddr)) & U64
            load_addr_set = True
        _check_segment(ph, (load_addr + vaddr) & U64, errno.ENOMEM)
    return load_addr


# ---------------------------------------------------------------------- vdso and stack


def _install_special_mapping(mm, start, length, vm_flags, name):
    """_install_special_mapping: a VMA with no file and no merging, named in /proc."""
    if mm.find_vma_intersection(start, start + length) is not None:
        raise error(errno.ENOMEM)
    flags = (vm_flags | mm.def_flags | VM_DONTEXPAND) & ~VM_LOCKED_MASK
    # Special mappings have a vm_ops->close hook (special_mapping_close).
    return mm.insert(Vma(start, start + length, flags, 0, special=name, close_hook=True))


def map_vdso(mm):
    """map_vdso: [vvar], [vvar_vclock] and [vdso] in one searched-for area; the vDSO address."""
    data_pages = VVAR_PAGES + VVAR_VCLOCK_PAGES
    addr = mm.get_unmapped_area(0, (data_pages + VDSO_TEXT_PAGES) * PAGE_SIZE, 0, 0)
    text = addr + data_pages * PAGE_SIZE
    _install_special_mapping(mm, text, VDSO_TEXT_PAGES * PAGE_SIZE, VDSO_VM_FLAGS, "[vdso]")
    _install_special_mapping(mm, addr, VVAR_PAGES * PAGE_SIZE, VVAR_VM_FLAGS, "[vvar]")
    _install_special_mapping(mm, addr + VVAR_PAGES * PAGE_SIZE, VVAR_VCLOCK_PAGES * PAGE_SIZE,
                             VVAR_VM_FLAGS, "[vvar_vclock]")
    return text


def _exec_stack(image):
    """PT_GNU_STACK decides whether the stack is executable."""
    for ph in image.phdrs:
        if ph.type == "PT_GNU_STACK":
            return EXSTACK_ENABLE_X if ph.flags & PF_X else EXSTACK_DISABLE_X
    return EXSTACK_DEFAULT


def _arch_align_stack(sp, randomize, rng):
    """arch_align_stack: a random drop of up to 8 KiB when randomising, then 16-align."""
    if randomize:
        sp -= rng.randrange(STACK_ALIGN_RND)
    return sp & ~0xF


def _setup_stack(mm, strings_bytes, executable_stack, rlimit_stack, randomize, rng):
    """The argument pages at the top of the window, then setup_arg_pages: move them to
    the (randomised) stack top and grow the VMA by 128 KiB.  Returns (vma, shift)."""
    top_max = STACK_TOP   # STACK_TOP_MAX with 4-level paging
    # The strings sit below one reserved pointer slot; the VMA covers their pages.
    lowest = top_max - 8 - strings_bytes
    start = _pagestart(lowest)
    stack_top = STACK_TOP
    if randomize:
        stack_top -= rng.getrandbits(STACK_RND_BITS) << PAGE_SHIFT
    stack_top = page_align(_arch_align_stack(stack_top, randomize, rng))
    shift = top_max - stack_top
    start -= shift
    size = stack_top - start
    expand = min(rlimit_stack & PAGE_MASK, size + STACK_EXPAND)
    final_start = min(start, stack_top - expand)
    flags = VM_STACK_FLAGS | mm.def_flags
    if executable_stack == EXSTACK_ENABLE_X:
        flags |= VM_EXEC
    elif executable_stack == EXSTACK_DISABLE_X:
        flags &= ~VM_EXEC
    # The VMA keeps the pgoff it got at its first address (insert_vm_struct), lowered
    # by the pages it grows (expand_downwards) but not changed by the relocation.
    # insert_vm_struct and expand_stack charge the stack's pages (VM_ACCOUNT).
    overcommit.charge(mm, (stack_top - final_start) >> PAGE_SHIFT)
    vma = mm.insert(Vma(final_start, stack_top, flags, (final_start + shift) >> PAGE_SHIFT))
    return vma, shift


# ---------------------------------------------------------------------- exec


def load_elf(kernel, mm, path, *, randomize=None, argv=None, envp=None,
             rlimit_stack=RLIMIT_STACK_DEFAULT):
    """Fill the fresh ``mm`` as execve of ELF file ``path`` would; return entry, auxv, layout."""
    if randomize is None:
        randomize = kernel.randomize
    rng = kernel.rng
    # do_execveat_common: open the file, copy the strings, then find a binary handler.
    file, fh, st = _open_exec(kernel, path)
    with fh:
        filename, argv, envp = _arg_strings(path, argv, envp, rlimit_stack)
        program = _read_image(path, file, fh, st, errno.ENOEXEC, want_interp=True)
    interp = None
    if program.interp is not None:
        # The interpreter opens like the program (ENOENT, EACCES), but a bad header is
        # ELIBBAD.
        name = os.fsdecode(program.interp)
        file, fh, st = _open_exec(kernel, name)
        with fh:
            interp = _read_image(name, file, fh, st, errno.ELIBBAD, want_interp=False)

    # Past this point the real kernel has thrown the old mm away (begin_new_exec).
    strings_bytes = sum(len(s) + 1 for s in [filename] + envp + argv)
    stack, shift = _setup_stack(mm, strings_bytes, _exec_stack(program), rlimit_stack,
                                randomize, rng)
    execfn = STACK_TOP - 8 - (len(filename) + 1) - shift
    env_start = execfn - sum(len(s) + 1 for s in envp)
    arg_start = env_start - sum(len(s) + 1 for s in argv)

    prog = _map_program(mm, program, interp is not None, randomize, rng)
    interp_base = 0
    entry = prog["entry"]
    if interp is not None:
        interp_base = _map_interp(mm, interp, prog["load_bias"])
        entry = (interp_base + interp.entry) & U64
    vdso = map_vdso(mm)

    # create_elf_tables: platform string, 16 random bytes, auxv, envp, argv, argc.
    p = _arch_align_stack(arg_start, randomize, rng)
    platform = p = p - (len(ELF_PLATFORM) + 1)
    random_bytes = p = p - 16
    sp = p - AUXV_WORDS * 8
    items = (len(argv) + 1) + (len(envp) + 1) + 1
    start_stack = (sp - items * 8) & ~0xF
    # Everything from the new stack pointer up was written by the kernel: resident.
    for addr in range(_pagestart(start_stack), stack.end, PAGE_SIZE):
        pages.fault(mm, stack, addr, True, kernel.thp)

    # The program break: after the program's bss, or out of the way for a static PIE,
    # then (when randomising) a page of gap and a random offset within 1 GiB.
    elf_brk = prog["elf_brk"]
    brk_moved = False
    if program.e_type == ET_DYN and interp is None:
        elf_brk = ELF_ET_DYN_BASE
        brk_moved = True
    brk = page_align(elf_brk)
    if randomize:
        if not brk_moved:
            brk += PAGE_SIZE
        brk += rng.randrange(BRK_RND_RANGE >> PAGE_SHIFT) << PAGE_SHIFT

    mm.start_brk = mm.brk = brk
    mm.start_stack = start_stack
    mm.start_code, mm.end_code = prog["start_code"], prog["end_code"]
    mm.start_data, mm.end_data = prog["start_data"], prog["end_data"]
    mm.arg_start, mm.arg_end = arg_start, env_start
    mm.env_start, mm.env_end = env_start, execfn
    mm.exe_file = program.file
    mm.vdso = vdso
    auxv = {AT_SYSINFO_EHDR: vdso, AT_PAGESZ: PAGE_SIZE, AT_PHDR: prog["phdr"],
            AT_PHENT: PHDR_SIZE, AT_PHNUM: program.phnum, AT_BASE: interp_base,
            AT_ENTRY: prog["entry"], AT_RANDOM: random_bytes, AT_EXECFN: execfn,
            AT_PLATFORM: platform}
    return {"entry": entry, "e_entry": prog["entry"], "phdr_base": prog["phdr"],
            "load_bias": prog["load_bias"], "interp_base": interp_base, "vdso": vdso,
            "start_brk": brk, "brk": brk, "start_stack": start_stack,
            "stack_start": stack.start, "stack_end": stack.end,
            "start_code": prog["start_code"], "end_code": prog["end_code"],
            "start_data": prog["start_data"], "end_data": prog["end_data"],
            "arg_start": arg_start, "arg_end": env_start, "env_start": env_start,
            "env_end": execfn, "auxv": auxv,
            "interp": os.fsdecode(program.interp) if program.interp is not None else None}


__all__ = ["load_elf", "map_vdso", "make_prot", "total_mapping_size", "maximum_alignment",
           "ELF_ET_DYN_BASE"]
