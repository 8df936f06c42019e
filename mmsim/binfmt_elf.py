"""exec(2) of a real ELF file into a fresh address space, as Linux 6.18 x86-64 does it.

Exec runs in three steps, each usable alone:

* ``prepare_exec`` does everything before the point of no return: it opens the host
  file, copies the argument strings, follows "#!" lines (``binfmt_script``) to an ELF
  file and reads its ELF and program headers (``parse_elf``, cached per version of the
  file in ``image_cache``) and those of its interpreter.  Every failure is raised here.
* ``plan_exec`` is pure: from the parsed images (``ElfImage``), the strings and the
  random draws (``ExecRandom``) it computes the ``ExecLayout``: the stack, how each
  segment is mapped, where each image goes and the break.
* ``load_binprm`` makes that layout in a fresh address space.

The address space is the one the kernel would leave behind when execve() returns:

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

import collections
import errno
import functools
import itertools
import os
import stat
import struct

import attrs

from . import binfmt_script, filemap, mman, overcommit, pages
from .files import Inode, OpenFile
from .defs import (ELF_ET_DYN_BASE, MMAP_RND_BITS, PAGE_SHIFT,
                   PAGE_SIZE, RLIMIT_STACK_DEFAULT, STACK_TOP, TASK_SIZE, U64,
                   error, page_align)
from .defs import offset_in_page as _pageoff
from .defs import page_align_down as _pagestart
from .uapi import MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_EXEC, PROT_READ, PROT_WRITE
from .vma import (VM_ACCOUNT, VM_DONTDUMP,
                  VM_DONTEXPAND, VM_EXEC, VM_GROWSDOWN, VM_IO, VM_LOCKED, VM_LOCKED_MASK,
                  VM_DATA_DEFAULT_FLAGS, VM_MAYEXEC, VM_MAYREAD, VM_MAYWRITE, VM_PFNMAP,
                  VM_READ, VM_WRITE, MergeProposal, Vma)

STACK_RND_BITS = 22                 # STACK_RND_MASK 0x3fffff pages: up to 16 GiB
BRK_RND_RANGE = 1 << 30             # arch_randomize_brk on 64-bit: within 1 GiB
STACK_EXPAND = 128 << 10            # setup_arg_pages grows the new stack by 128 KiB
STACK_ALIGN_RND = 8192              # arch_align_stack: up to 8 KiB below, then 16-aligned
STK_LIM = 8 << 20
ARG_MAX = 32 * PAGE_SIZE
MAX_ARG_STRLEN = 32 * PAGE_SIZE
PATH_MAX = 4096
BINPRM_BUF_SIZE = binfmt_script.BINPRM_BUF_SIZE

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

ET_EXEC, ET_DYN = 2, 3
EM_X86_64 = 62
PT_LOAD, PT_INTERP, PT_GNU_STACK, PT_GNU_RELRO = 1, 3, 0x6474E551, 0x6474E552
PF_X, PF_W, PF_R = 1, 2, 4
EHDR_SIZE = 64
PHDR_SIZE = 56
AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_ENTRY = 3, 4, 5, 6, 7, 9
AT_PLATFORM, AT_RANDOM, AT_EXECFN, AT_SYSINFO_EHDR = 15, 25, 31, 33

# Filesystems whose get_unmapped_area is thp_get_unmapped_area: a file mapping covering
# a whole PMD-aligned 2 MiB of the file is placed PMD-aligned, like anonymous THP areas.
THP_AREA_FILESYSTEMS = frozenset({"ext4", "xfs"})

EXSTACK_DEFAULT, EXSTACK_DISABLE_X, EXSTACK_ENABLE_X = 0, 1, 2

# exec_binprm hands a file to the binary handlers at most six times (the file itself
# and five interpreters named by "#!" lines); one more is ELOOP.
MAX_BINPRM_DEPTH = 5


# ---------------------------------------------------------------------- parsed images


@attrs.frozen
class ProgramHeader:
    """One Elf64_Phdr: the fields the loader uses (``type`` is the numeric p_type)."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


@attrs.frozen
class ElfImage:
    """What exec reads from an ELF file: the header fields it uses, the program headers
    and, for a program, the interpreter named by its first PT_INTERP."""

    e_type: int
    entry: int
    phoff: int
    phnum: int
    phdrs: tuple = ()
    interp: bytes | None = None

    @property
    def loads(self):
        """The PT_LOAD headers, in file order."""
        return tuple(ph for ph in self.phdrs if ph.type == PT_LOAD)


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_MAX_OFFSET = (1 << 63) - 1   # file positions are signed (loff_t)


def parse_elf(head, read_at, bad, want_interp):
    """The checks load_elf_binary makes of an ELF file, given its first bytes ``head``
    and ``read_at(offset, size)`` for the rest; header problems raise ``bad`` (ENOEXEC
    for a program, ELIBBAD for its interpreter).  Only the ELF header and the program
    headers are read, as the kernel does: section headers may be anything."""
    # The program's first bytes come in a zero-padded buffer, so a short program is
    # just not ELF; the interpreter's header is read whole, and a short read is EIO.
    if len(head) < EHDR_SIZE and bad == errno.ELIBBAD:
        raise error(errno.EIO)
    # magic, 64-bit little-endian, ET_EXEC or ET_DYN, EM_X86_64 (a 32-bit file would go
    # to the compat loader, not simulated here).
    if len(head) < EHDR_SIZE or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise error(bad)
    (_, e_type, machine, _, entry, phoff, _, _, _, phentsize, phnum, _, _,
     _) = _EHDR.unpack_from(head)
    if e_type not in (ET_EXEC, ET_DYN) or machine != EM_X86_64:
        raise error(bad)
    # load_elf_phdrs: the table must be of 56-byte entries, 1 byte to 64 KiB, and be
    # read whole.
    size = phnum * PHDR_SIZE
    if phentsize != PHDR_SIZE or not 0 < size <= 65536:
        raise error(bad)
    try:
        table = read_at(phoff, size)
    except OSError:
        table = b""   # load_elf_phdrs fails the same way whatever the read's error
    if len(table) != size:
        raise error(bad)
    phdrs = tuple(ProgramHeader(t, f, off, vaddr, filesz, memsz, align)
                  for t, f, off, vaddr, _, filesz, memsz, align in _PHDR.iter_unpack(table))
    interp = None
    if want_interp:
        for ph in phdrs:
            if ph.type != PT_INTERP:
                continue
            if ph.filesz > PATH_MAX or ph.filesz < 2:
                raise error(errno.ENOEXEC)
            raw = read_at(ph.offset, ph.filesz)
            if len(raw) != ph.filesz:
                raise error(errno.EIO)
            if raw[-1] != 0:
                raise error(errno.ENOEXEC)
            interp = raw.split(b"\0", 1)[0]
            break   # only the first PT_INTERP counts
    return ElfImage(e_type, entry, phoff, phnum, phdrs, interp)


class ImageCache:
    """Parsed images of host files, keyed by what identifies one version of a file
    (path, device, inode, mtime, size), so repeated execs of a binary parse it once."""

    def __init__(self, maxsize=256):
        self.maxsize = maxsize
        self.hits = self.misses = 0
        self._images = collections.OrderedDict()

    def get(self, key):
        """The image cached under ``key``, or None."""
        image = self._images.get(key)
        if image is None:
            self.misses += 1
        else:
            self.hits += 1
            self._images.move_to_end(key)
        return image

    def put(self, key, image):
        """Remember ``image`` under ``key``, dropping the least recently used."""
        self._images[key] = image
        if len(self._images) > self.maxsize:
            self._images.popitem(last=False)

    def clear(self):
        """Forget every image and reset the counters."""
        self._images.clear()
        self.hits = self.misses = 0


image_cache = ImageCache()


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


def _inode_for(kernel, name, st, register=True):
    """The simulated inode of a real file: its real dev and inode numbers, shared by
    every exec of the same file (so two processes map one inode, as in the kernel).
    With ``register`` false a new inode is not yet made visible to open()."""
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    inode = kernel.files.get(name)
    if inode is None or inode.ino != st.st_ino or tuple(inode.dev) != dev:
        inode = Inode(name, st.st_size, dev=dev, ino=st.st_ino, mode=st.st_mode & 0o7777,
                      uid=st.st_uid, gid=st.st_gid,
                      thp_area=_fs_type(st.st_dev) in THP_AREA_FILESYSTEMS)
        # Simulator-defined: a host file starts fully cached, as mmsim.live's side
        # warms it (docs/pressure.md); the pages join at its first use.
        inode.warm = inode.size <= filemap.WARM_LIMIT
        if register:
            kernel.files[name] = inode
    return inode


@attrs.define
class ExecFile:
    """A host file opened for exec: the name it was opened by, its stat, the simulated
    open file, and whether its filesystem places file mappings THP-aligned."""

    path: str
    st: os.stat_result
    file: OpenFile
    thp_area: bool
    fd: int = -1

    def read_at(self, offset, size):
        """Up to ``size`` bytes at ``offset`` (short at the end of the file); EINVAL
        for a range that does not fit a file position (rw_verify_area)."""
        if offset + size > _MAX_OFFSET:
            raise error(errno.EINVAL, self.path)
        try:
            return os.pread(self.fd, size, offset)
        except OSError as exc:
            raise error(exc.errno, self.path) from None

    def close(self):
        """Close the host file (the simulated open file lives on in the mappings)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _open_exec(kernel, path, cwd=None):
    """open_exec: the checks made when a file is opened for execution, then a new open
    file description (not yet visible to open(): exec registers it when it succeeds).
    With a ``root`` (a sysroot), an absolute path is looked up under it first."""
    shown = path
    root = kernel.root
    lookup = os.fsdecode(path)
    if cwd is not None and lookup and not lookup.startswith("/"):
        # A relative name starts at the process' working directory, not the host's.
        lookup = cwd.rstrip("/") + "/" + lookup
    if lookup.startswith("/"):
        host = kernel.host_path(lookup)
        path = host if host is not None else lookup
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
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        # The kernel needs no read permission to exec; the simulator needs to read the
        # headers, so an unreadable file is refused with the error the host gave.
        raise error(exc.errno, os.fsdecode(path)) from None
    st = os.fstat(fd)
    # /proc/PID/maps shows d_path() of the opened file: symlinks resolved.
    name = os.fsdecode(os.path.realpath(path))
    if root:
        top = root.rstrip("/")
        if name.startswith(top + "/"):
            name = name[len(top):]
    file = OpenFile(_inode_for(kernel, name, st, register=False), readable=True,
                    writable=False)
    return ExecFile(os.fsdecode(shown), st, file, _fs_type(st.st_dev) in THP_AREA_FILESYSTEMS,
                    fd)


def _read_image(host, head, bad, want_interp):
    """The parsed image of the opened ``host`` file, from the cache when this version of
    the file was parsed before."""
    st = host.st
    key = (host.path, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, bad, want_interp)
    image = image_cache.get(key)
    if image is None:
        try:
            image = parse_elf(head, host.read_at, bad, want_interp)
        except OSError as exc:
            raise error(exc.errno, host.path) from None
        image_cache.put(key, image)
    return image


# ---------------------------------------------------------------------- argument strings


def _as_bytes(value):
    return value if isinstance(value, bytes) else os.fsencode(value)


@attrs.define
class ArgStrings:
    """The strings execve copies to the new stack: the file name (AT_EXECFN), the
    environment and the arguments; ``room`` is what is left of the argument space, and
    ``peak`` the most string bytes the stack held at once."""

    filename: bytes
    argv: list
    envp: list
    room: int
    peak: int

    @property
    def size(self):
        """Bytes the strings take, NULs included."""
        return sum(len(s) + 1 for s in [self.filename, *self.envp, *self.argv])

    def push(self, s):
        """copy_string_kernel: one more string below the others (E2BIG past the limit)."""
        if len(s) + 1 > MAX_ARG_STRLEN or len(s) + 1 > self.room:
            raise error(errno.E2BIG)
        self.room -= len(s) + 1
        self.peak = max(self.peak, self.size + len(s) + 1)

    def remove_arg_zero(self):
        """remove_arg_zero: drop argv[0], giving its bytes back."""
        self.room += len(self.argv[0]) + 1
        del self.argv[0]


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
    return ArgStrings(filename, argv, envp, limit - ptr_size - total, total)


# ---------------------------------------------------------------------- finding the handler


@attrs.define
class Binprm:
    """An exec prepared up to the point of no return (``struct linux_binprm``): the
    strings, the ELF file that will run with its image, and its interpreter."""

    strings: ArgStrings
    host: ExecFile
    program: ElfImage
    interp_host: ExecFile | None = None
    interp: ElfImage | None = None


def prepare_exec(kernel, path, argv=None, envp=None, rlimit_stack=RLIMIT_STACK_DEFAULT,
                 cwd=None):
    """Everything execve does before it throws the old address space away: open the
    file, copy the strings, find the handler (following "#!" lines to an ELF file) and
    read the ELF program and its interpreter.  Every failure raises here, and nothing
    is left behind: the files become visible to open() only when the exec is made."""
    opened = []
    try:
        host = _open_exec(kernel, path, cwd)
        opened.append(host)
        strings = _arg_strings(path, argv, envp, rlimit_stack)
        # bprm->interp: the name the next "#!" line passes as the script's path.
        script_path = strings.filename
        for depth in itertools.count():
            if depth > MAX_BINPRM_DEPTH:
                raise error(errno.ELOOP, os.fsdecode(path))
            head = host.read_at(0, BINPRM_BUF_SIZE)
            if head[:2] != b"#!":
                break   # the ELF handler's turn: anything else is ENOEXEC
            name, arg = binfmt_script.parse_shebang(head)
            binfmt_script.rewrite_args(strings, script_path, name, arg)
            script_path = name
            # An empty name (a NUL right after "#!") is looked up as it stands, which
            # finds the current directory: EACCES, like any folder.
            host = _open_exec(kernel, name or b".", cwd)
            opened.append(host)
        bprm = Binprm(strings, host, _read_image(host, head, errno.ENOEXEC, want_interp=True))
        if bprm.program.interp is not None:
            # The interpreter opens like the program (ENOENT, EACCES), but a bad header
            # is ELIBBAD.
            interp = _open_exec(kernel, os.fsdecode(bprm.program.interp))
            opened.append(interp)
            bprm.interp_host = interp
            bprm.interp = _read_image(interp, interp.read_at(0, EHDR_SIZE), errno.ELIBBAD,
                                      want_interp=False)
    finally:
        for host in opened:
            host.close()
    return bprm


# ---------------------------------------------------------------------- segment mapping


def make_prot(p_flags):
    """PF_R/PF_W/PF_X to PROT_READ/PROT_WRITE/PROT_EXEC."""
    return ((PROT_READ if p_flags & PF_R else 0) | (PROT_WRITE if p_flags & PF_W else 0)
            | (PROT_EXEC if p_flags & PF_X else 0))


def total_mapping_size(loads):
    """Bytes from the lowest PT_LOAD's page to the highest PT_LOAD's end, in whatever
    order the headers list them (0 when there are none)."""
    if not loads:
        return 0
    low = min(_pagestart(ph.vaddr) for ph in loads)
    high = max((ph.vaddr + ph.memsz) & U64 for ph in loads)
    return (high - low) & U64


def maximum_alignment(loads):
    """The largest power-of-two p_align of the PT_LOADs, page-aligned (0 when none)."""
    alignment = 0
    for ph in loads:
        if ph.align and not ph.align & (ph.align - 1):
            alignment = max(alignment, ph.align)
    return page_align(alignment)


def _vm_mmap(mm, image, addr, length, prot, flags, offset):
    """vm_mmap of the image file (MAP_PRIVATE), with the filesystem's placement rule."""
    if offset < 0 or _pageoff(offset):
        raise error(errno.EINVAL, "segment offset and address disagree within a page")
    # The filesystem's placement rule (thp_get_unmapped_area on ext4/xfs) is the
    # inode's: do_mmap applies it.
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
    pages.fault(mm, vma, addr, True, mm.kernel.thp_pmd_policy)
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
    mm.merge_or_insert(MergeProposal(start, end, flags, start >> PAGE_SHIFT), mm.prev_of(start),
                       None, just_expand=True)
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


# ---------------------------------------------------------------------- vdso


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


# ---------------------------------------------------------------------- the layout


@attrs.frozen
class ExecRandom:
    """The random draws of one exec, in pages or bytes (all zero without randomisation):
    the stack top's offset, the two arch_align_stack drops, the PIE base's offset and
    the break's offset; ``randomize`` is whether exec randomises at all."""

    stack_pages: int = 0
    stack_drop: int = 0
    mmap_pages: int = 0
    sp_drop: int = 0
    brk_pages: int = 0
    randomize: bool = False

    @classmethod
    def draw(cls, rng, randomize, program, has_interp):
        """Draw from ``rng`` in the kernel's order (the PIE offset only for a PIE run
        through an interpreter)."""
        if not randomize:
            return cls()
        stack_pages = rng.getrandbits(STACK_RND_BITS)
        stack_drop = rng.randrange(STACK_ALIGN_RND)
        mmap_pages = 0
        if program.e_type == ET_DYN and has_interp and program.loads:
            mmap_pages = rng.getrandbits(MMAP_RND_BITS)
        sp_drop = rng.randrange(STACK_ALIGN_RND)
        brk_pages = rng.randrange(BRK_RND_RANGE >> PAGE_SHIFT)
        return cls(stack_pages, stack_drop, mmap_pages, sp_drop, brk_pages, True)


@attrs.frozen
class ExecDraws:
    """Draws forced on one exec in place of the random ones: ``random`` for exec's own
    (ExecRandom) and ``mmap_base`` for the one arch_pick_mmap_layout made when the new
    mm was set up (None: keep it)."""

    random: ExecRandom
    mmap_base: int | None = None


@attrs.frozen
class SegmentMap:
    """One elf_load step: map PT_LOAD ``ph`` at its address plus the image's bias, with
    ``flags``; the first mapping of an image reserves ``total_size`` bytes."""

    ph: ProgramHeader
    prot: int
    flags: int
    total_size: int = 0


@attrs.frozen
class ImageLayout:
    """Where one ELF image goes.  ``placement`` is "fixed" (at ``bias``), "search"
    (wherever mmap puts the first segment, asked at ``bias`` plus its address) or
    "search-aligned" (found by a search, then aligned down to ``alignment``).  The
    addresses below are unbiased; ``error`` is the errno the kernel gives when it gets
    to this image (an empty PIE); ``check_errno`` the one for a segment outside the
    user address space."""

    placement: str
    bias: int
    segments: tuple
    alignment: int = 0
    error: int = 0
    check_errno: int = errno.EINVAL
    check_biased: bool = False
    entry: int = 0
    phdr: int = 0
    start_code: int = U64
    end_code: int = 0
    start_data: int = 0
    end_data: int = 0
    elf_brk: int = 0


@attrs.frozen
class StackLayout:
    """The [stack] VMA and what create_elf_tables writes into it."""

    start: int
    end: int
    pgoff: int
    exec_stack: int
    start_stack: int
    arg_start: int
    env_start: int
    execfn: int
    platform: int
    random_bytes: int


@attrs.frozen
class ExecLayout:
    """Everything exec lays out: the stack, the program, its interpreter and the break."""

    stack: StackLayout
    program: ImageLayout
    interp: ImageLayout | None
    brk: int


def _exec_stack(image):
    """PT_GNU_STACK decides whether the stack is executable."""
    for ph in image.phdrs:
        if ph.type == PT_GNU_STACK:
            return EXSTACK_ENABLE_X if ph.flags & PF_X else EXSTACK_DISABLE_X
    return EXSTACK_DEFAULT


def plan_stack(strings, exec_stack, rnd, rlimit_stack=RLIMIT_STACK_DEFAULT):
    """The argument pages at the top of the window, setup_arg_pages moving them to the
    (randomised) stack top and growing the VMA by 128 KiB, then create_elf_tables
    writing the pointers, auxv, random bytes and platform string below the strings,
    growing the VMA again when they reach below it."""
    top_max = STACK_TOP   # STACK_TOP_MAX with 4-level paging
    # The strings sit below one reserved pointer slot; the VMA covers every page they
    # reached while being copied.
    start = _pagestart(top_max - 8 - strings.peak)
    stack_top = STACK_TOP - (rnd.stack_pages << PAGE_SHIFT)
    stack_top = page_align((stack_top - rnd.stack_drop) & ~0xF)   # arch_align_stack
    shift = top_max - stack_top
    start -= shift
    size = stack_top - start
    expand = min(_pagestart(rlimit_stack), size + STACK_EXPAND)
    start = min(start, stack_top - expand)
    execfn = top_max - 8 - (len(strings.filename) + 1) - shift
    env_start = execfn - sum(len(s) + 1 for s in strings.envp)
    arg_start = env_start - sum(len(s) + 1 for s in strings.argv)
    p = (arg_start - rnd.sp_drop) & ~0xF
    platform = p = p - (len(ELF_PLATFORM) + 1)
    random_bytes = p = p - 16
    sp = p - AUXV_WORDS * 8
    items = (len(strings.argv) + 1) + (len(strings.envp) + 1) + 1
    start_stack = (sp - items * 8) & ~0xF
    # create_elf_tables extends the stack VMA down to the new stack pointer.
    start = min(start, _pagestart(start_stack))
    # The VMA keeps the pgoff it got at its first address (insert_vm_struct), lowered
    # by the pages it grows (expand_downwards) but not changed by the relocation.
    return StackLayout(start, stack_top, (start + shift) >> PAGE_SHIFT, exec_stack,
                       start_stack, arg_start, env_start, execfn, platform, random_bytes)


def _image_fields(image, segments, **kw):
    """An ImageLayout with the unbiased addresses the PT_LOAD loop collects."""
    fields = {"phdr": 0, "elf_brk": 0, "start_code": U64, "end_code": 0, "start_data": 0,
              "end_data": 0}
    for ph in image.loads:
        if ph.offset <= image.phoff < ph.offset + ph.filesz:
            fields["phdr"] = image.phoff - ph.offset + ph.vaddr
        if ph.flags & PF_X:
            fields["start_code"] = min(fields["start_code"], ph.vaddr)
            fields["end_code"] = max(fields["end_code"], ph.vaddr + ph.filesz)
        fields["start_data"] = max(fields["start_data"], ph.vaddr)
        fields["end_data"] = max(fields["end_data"], ph.vaddr + ph.filesz)
        fields["elf_brk"] = max(fields["elf_brk"], ph.vaddr + ph.memsz)
    return ImageLayout(segments=tuple(segments), entry=image.entry, **fields, **kw)


def plan_program(image, has_interp, rnd):
    """The PT_LOAD loop of load_elf_binary for the program: how each segment is mapped
    and where the image goes."""
    loads = image.loads
    segments = []
    for i, ph in enumerate(loads):
        flags = MAP_PRIVATE
        if i:
            # The first mapping reserved the whole image: the rest go on top of it.
            flags |= MAP_FIXED
        elif image.e_type == ET_EXEC:
            flags |= MAP_FIXED_NOREPLACE
        segments.append(SegmentMap(ph, make_prot(ph.flags), flags))
    if image.e_type == ET_EXEC or not loads:
        return _image_fields(image, segments, placement="fixed", bias=0)
    first = segments[0]
    total_size = total_mapping_size(loads)
    if not total_size:
        return _image_fields(image, segments, placement="fixed", bias=0,
                             error=errno.EINVAL)
    alignment = maximum_alignment(loads)
    placement = "search"
    if has_interp:
        # A PIE program goes at ELF_ET_DYN_BASE, moved by the mmap randomisation.
        load_bias = ELF_ET_DYN_BASE + (rnd.mmap_pages << PAGE_SHIFT)
        if alignment:
            load_bias &= ~(alignment - 1)
        placement = "fixed"
    elif alignment > PAGE_SIZE:
        # A loader run directly (static PIE) with a large alignment: find room for the
        # image, give it back, then map it at that place aligned down.
        load_bias = 0
        placement = "search-aligned"
    else:
        # Otherwise a static PIE goes wherever mmap puts it.
        load_bias = 0
    flags = first.flags | (MAP_FIXED_NOREPLACE if placement != "search" else 0)
    segments[0] = SegmentMap(first.ph, first.prot, flags, total_size)
    return _image_fields(image, segments, placement=placement, alignment=alignment,
                         bias=_pagestart((load_bias - first.ph.vaddr) & U64))


def plan_interp(image, program_bias):
    """load_elf_interp: how the interpreter's segments are mapped.  Next to a PIE
    program (``program_bias`` not 0) an ET_DYN interpreter is placed by a plain search."""
    loads = image.loads
    total_size = total_mapping_size(loads)
    segments = []
    for i, ph in enumerate(loads):
        flags = MAP_PRIVATE
        if image.e_type == ET_EXEC or i:
            flags |= MAP_FIXED
        segments.append(SegmentMap(ph, make_prot(ph.flags), flags, 0 if i else total_size))
    kw = {"error": 0 if total_size else errno.EINVAL, "check_errno": errno.ENOMEM,
          "check_biased": True}
    if image.e_type == ET_EXEC:
        return _image_fields(image, segments, placement="fixed", bias=0, **kw)
    bias = -loads[0].vaddr & U64 if program_bias and loads else 0
    return _image_fields(image, segments, placement="search", bias=bias, **kw)


def plan_exec(program, interp, strings, rnd, rlimit_stack=RLIMIT_STACK_DEFAULT):
    """The whole layout of an exec, from the parsed images, the argument strings and the
    random draws alone: no file and no address space is touched."""
    stack = plan_stack(strings, _exec_stack(program), rnd, rlimit_stack)
    prog = plan_program(program, interp is not None, rnd)
    ilayout = None
    if interp is not None:
        ilayout = plan_interp(interp, prog.bias if prog.placement == "fixed" else 1)
    # The program break: after the program's bss, or out of the way for a static PIE,
    # then (when randomising) a page of gap and a random offset within 1 GiB.
    if program.e_type == ET_DYN and interp is None:
        brk = page_align(ELF_ET_DYN_BASE) + (rnd.brk_pages << PAGE_SHIFT)
    else:
        brk = page_align((prog.elf_brk + prog.bias) & U64)
        if rnd.randomize:
            brk += PAGE_SIZE + (rnd.brk_pages << PAGE_SHIFT)
    return ExecLayout(stack, prog, ilayout, brk)


# ---------------------------------------------------------------------- exec


def _map_image(mm, host, layout):
    """Make the mappings ``layout`` asks for, from the file ``host``; returns the
    image's load bias."""
    if layout.error:
        raise error(layout.error, "empty ELF image")
    bias = layout.bias
    for i, seg in enumerate(layout.segments):
        ph = seg.ph
        if not i and layout.placement == "search-aligned":
            trial = _elf_load(mm, host, 0, ph, seg.prot, seg.flags & ~MAP_FIXED_NOREPLACE,
                              seg.total_size)
            mm.unmap(trial, trial + page_align(seg.total_size))
            bias = _pagestart(((trial & ~(layout.alignment - 1)) - ph.vaddr) & U64)
        map_addr = _elf_load(mm, host, (bias + ph.vaddr) & U64, ph, seg.prot, seg.flags,
                             seg.total_size)
        if not i and layout.placement != "fixed":
            bias = (map_addr - _pagestart(ph.vaddr)) & U64
        _check_segment(ph, (bias + ph.vaddr) & U64 if layout.check_biased else ph.vaddr,
                       layout.check_errno)
    return bias


def _register(kernel, host):
    """Make an exec'd file visible to open(), as exec succeeded."""
    inode = host.file.inode
    if kernel.files.get(inode.path) is not inode:
        kernel.files[inode.path] = inode


def load_binprm(kernel, mm, bprm, *, randomize=None, rlimit_stack=RLIMIT_STACK_DEFAULT):
    """Past the point of no return: lay the prepared exec out in the fresh ``mm``;
    return entry, auxv and layout."""
    if randomize is None:
        randomize = kernel.randomize
    program, interp = bprm.program, bprm.interp
    rnd = ExecRandom.draw(kernel.rng, randomize, program, interp is not None)
    # The draws are taken from the generator whatever happens, so a forced layout does
    # not shift the seeded sequence of later execs.
    forced = kernel.exec_layout(bprm, rnd) if kernel.exec_layout is not None else None
    if forced is not None:
        rnd = forced.random
        if forced.mmap_base is not None:
            mm.mmap_base = forced.mmap_base
    layout = plan_exec(program, interp, bprm.strings, rnd, rlimit_stack)
    st = layout.stack
    flags = VM_STACK_FLAGS | mm.def_flags
    if st.exec_stack == EXSTACK_ENABLE_X:
        flags |= VM_EXEC
    elif st.exec_stack == EXSTACK_DISABLE_X:
        flags &= ~VM_EXEC
    # insert_vm_struct and expand_stack charge the stack's pages (VM_ACCOUNT).
    overcommit.charge(mm, (st.end - st.start) >> PAGE_SHIFT)
    stack = mm.insert(Vma(st.start, st.end, flags, st.pgoff))
    bias = _map_image(mm, bprm.host, layout.program)
    prog = layout.program
    e_entry = (prog.entry + bias) & U64
    entry = e_entry
    interp_base = 0
    if interp is not None:
        interp_base = _map_image(mm, bprm.interp_host, layout.interp)
        entry = (interp_base + layout.interp.entry) & U64
    if entry >= TASK_SIZE:
        # BAD_ADDR: the first instruction would be outside the user address space.
        raise error(errno.EINVAL, "entry point outside the user address space")
    vdso = map_vdso(mm)
    # Everything from the new stack pointer up was written by the kernel: resident.
    pages.populate(mm, stack, _pagestart(st.start_stack), stack.end, True)

    start_code, end_code, start_data, end_data, phdr = (
        (x + bias) & U64 for x in (prog.start_code, prog.end_code, prog.start_data,
                                   prog.end_data, prog.phdr))
    mm.start_brk = mm.brk = layout.brk
    mm.start_stack = st.start_stack
    mm.start_code, mm.end_code = start_code, end_code
    mm.start_data, mm.end_data = start_data, end_data
    mm.arg_start, mm.arg_end = st.arg_start, st.env_start
    mm.env_start, mm.env_end = st.env_start, st.execfn
    mm.exe_file = bprm.host.file
    mm.vdso = vdso
    for host in (bprm.host, bprm.interp_host):
        if host is not None:
            _register(kernel, host)
    auxv = {AT_SYSINFO_EHDR: vdso, AT_PAGESZ: PAGE_SIZE, AT_PHDR: phdr,
            AT_PHENT: PHDR_SIZE, AT_PHNUM: program.phnum, AT_BASE: interp_base,
            AT_ENTRY: e_entry, AT_RANDOM: st.random_bytes, AT_EXECFN: st.execfn,
            AT_PLATFORM: st.platform}
    return {"entry": entry, "e_entry": e_entry, "phdr_base": phdr,
            "load_bias": bias, "interp_base": interp_base, "vdso": vdso,
            "start_brk": layout.brk, "brk": layout.brk, "start_stack": st.start_stack,
            "stack_start": stack.start, "stack_end": stack.end,
            "start_code": start_code, "end_code": end_code,
            "start_data": start_data, "end_data": end_data,
            "arg_start": st.arg_start, "arg_end": st.env_start, "env_start": st.env_start,
            "env_end": st.execfn, "auxv": auxv,
            "interp": os.fsdecode(program.interp) if program.interp is not None else None}


def load_elf(kernel, mm, path, *, randomize=None, argv=None, envp=None,
             rlimit_stack=RLIMIT_STACK_DEFAULT):
    """Fill the fresh ``mm`` as execve of ``path`` would; return entry, auxv, layout."""
    bprm = prepare_exec(kernel, path, argv, envp, rlimit_stack)
    return load_binprm(kernel, mm, bprm, randomize=randomize, rlimit_stack=rlimit_stack)


__all__ = ["load_elf", "load_binprm", "prepare_exec", "plan_exec", "parse_elf", "map_vdso",
           "make_prot", "total_mapping_size", "maximum_alignment", "image_cache",
           "ElfImage", "ProgramHeader", "ExecLayout", "ExecRandom", "ExecDraws",
           "ELF_ET_DYN_BASE"]
