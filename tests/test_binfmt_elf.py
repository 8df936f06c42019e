"""exec of real ELF files (mmsim.binfmt_elf.load_elf) against the live kernel.

Two live references are used:

* ``setarch -R /usr/bin/cat /proc/self/maps``: the layout after ld.so has run, for the
  mappings exec made (ld.so's RELRO mprotect is replayed on the simulated side);
* a child stopped by ptrace right at the end of execve (PTRACE_TRACEME, personality
  ADDR_NO_RANDOMIZE), before any user instruction runs: its maps, smaps, stat and auxv
  are exactly what the kernel's exec built, so they are compared byte for byte.
"""

import ctypes
import errno
import os
import platform
import shutil
import signal
import stat
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from mmsim import mman
from mmsim.binfmt_elf import (AT_BASE, AT_ENTRY, AT_EXECFN, AT_PAGESZ, AT_PHDR, AT_PHENT,
                              AT_PHNUM, AT_PLATFORM, AT_RANDOM, AT_SYSINFO_EHDR,
                              ELF_ET_DYN_BASE, load_elf)
from mmsim.kernel import Kernel
from mmsim.mm import MMF_TOPDOWN, STACK_TOP
from mmsim.procfs import VSYSCALL_LINE, VSYSCALL_SMAPS, maps_line, smaps_block
from mmsim.uapi import PROT_READ
from mmsim.vma import PAGE_SIZE, PMD_SIZE, VM_GROWSDOWN, vmflags_mnemonics

CAT = "/usr/bin/cat"
ADDR_NO_RANDOMIZE = 0x0040000
PTRACE_TRACEME = 0
LIVE_THP = "madvise"
try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as _fh:
        LIVE_THP = _fh.read().split("[", 1)[1].split("]", 1)[0]
except (OSError, IndexError):
    pass


def _linux6():
    uname = os.uname()
    if platform.system() != "Linux" or uname.machine != "x86_64":
        return f"needs Linux x86-64, not {platform.system()} {uname.machine}"
    if uname.release.split(".", 1)[0] != "6":
        return f"needs a 6.x kernel, not {uname.release}"
    return None


def _need_linux6():
    reason = _linux6()
    if reason:
        pytest.skip(reason)


def fresh(randomize=False, seed=0):
    """A kernel and a fresh top-down mm, as exec gets it."""
    kernel = Kernel(thp=LIVE_THP, seed=seed, randomize=randomize)
    mm = kernel.new_mm()
    mm.flags |= MMF_TOPDOWN
    return kernel, mm


def sim_maps(mm):
    return [maps_line(mm, vma) for vma in mm.vmas()]


# ---------------------------------------------------------------------- live helpers

_libc = ctypes.CDLL(None, use_errno=True)


def live_exec(path, argv=None, env=None, trace=True, on_stop=None, rlimit_stack=None):
    """execve ``path`` in a child with ASLR off (and RLIMIT_STACK's soft limit set to
    ``rlimit_stack`` if given).  With ``trace`` the child stops at the end of execve;
    its /proc files are read (and ``on_stop(pid)`` called) and it is killed.  Returns
    {"errno": n} when execve failed."""
    argv = [path] if argv is None else argv
    env = {} if env is None else env
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _libc.personality(ADDR_NO_RANDOMIZE)
            if rlimit_stack is not None:
                import resource
                hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
                resource.setrlimit(resource.RLIMIT_STACK, (rlimit_stack, hard))
            if trace and _libc.ptrace(PTRACE_TRACEME, 0, None, None) != 0:
                os.write(w, b"ptrace")
                os._exit(1)
            os.execve(path, argv, env)
        except OSError as exc:
            os.write(w, str(exc.errno).encode())
        finally:
            os._exit(1)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as fh:
        msg = fh.read()
    if not os.WIFSTOPPED(status):
        if msg == b"ptrace":
            pytest.skip("ptrace(PTRACE_TRACEME) is not permitted here")
        return {"errno": int(msg)}
    if trace and os.WSTOPSIG(status) != signal.SIGTRAP:
        # Failed after the point of no return: the kernel kills the process.
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"killed": os.WSTOPSIG(status)}
    try:
        out = {}
        for name in ("maps", "smaps", "stat", "auxv"):
            with open(f"/proc/{pid}/{name}", "rb") as fh:
                out[name] = fh.read()
        if on_stop is not None:
            on_stop(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    fields = out["stat"].decode().rsplit(")", 1)[1].split()
    stat_field = {n: int(fields[n - 3]) for n in (26, 27, 28, 45, 46, 47, 48, 49, 50, 51)}
    words = struct.unpack(f"<{len(out['auxv']) // 8}Q", out["auxv"])
    auxv = dict(zip(words[::2], words[1::2]))
    maps = out["maps"].decode().splitlines()
    return {"maps": maps, "smaps": _smaps_blocks(out["smaps"].decode()), "stat": stat_field,
            "auxv": auxv}


def _smaps_blocks(text):
    blocks, cur = [], []
    for line in text.splitlines(keepends=True):
        if line[:1] in "0123456789abcdef" and "-" in line.split(" ", 1)[0] and cur:
            blocks.append("".join(cur))
            cur = []
        cur.append(line)
    if cur:
        blocks.append("".join(cur))
    return blocks


def assert_same_exec_state(mm, result, live):
    """maps, smaps, /proc/PID/stat layout fields and auxv all as the live kernel's."""
    vmas = mm.vmas()
    # The vsyscall gate area is no VMA, but the kernel shows it last.
    sim = [maps_line(mm, vma) for vma in vmas] + [VSYSCALL_LINE]
    assert sim == live["maps"], "\n".join(["sim:"] + sim + ["live:"] + live["maps"])
    assert len(live["smaps"]) == len(vmas) + 1
    for vma, block in zip(vmas, live["smaps"]):
        assert smaps_block(mm, vma) == block
    assert live["smaps"][-1] == VSYSCALL_SMAPS
    st = live["stat"]
    assert (result["start_code"], result["end_code"], result["start_stack"]) == \
        (st[26], st[27], st[28])
    assert (result["start_data"], result["end_data"], result["start_brk"]) == \
        (st[45], st[46], st[47])
    assert (result["arg_start"], result["arg_end"], result["env_start"], result["env_end"]) == \
        (st[48], st[49], st[50], st[51])
    for at in (AT_PHDR, AT_PHENT, AT_PHNUM, AT_BASE, AT_ENTRY, AT_SYSINFO_EHDR, AT_RANDOM,
               AT_EXECFN, AT_PLATFORM, AT_PAGESZ):
        assert result["auxv"][at] == live["auxv"][at], f"AT {at}"


# ---------------------------------------------------------------------- 1. cat vs setarch


def _relro(path, bias):
    """The range ld.so makes read-only after relocating (_dl_protect_relro)."""
    with open(path, "rb") as fh:
        for seg in ELFFile(fh).iter_segments():
            if seg["p_type"] == "PT_GNU_RELRO":
                start = (bias + seg["p_vaddr"]) & ~(PAGE_SIZE - 1)
                end = (bias + seg["p_vaddr"] + seg["p_memsz"]) & ~(PAGE_SIZE - 1)
                return start, end
    return None


@pytest.mark.live
def test_cat_layout_matches_setarch():
    """Without ASLR every mapping exec makes for /usr/bin/cat (program, ld.so, vvar,
    vvar_vclock, vdso, stack) is where the live kernel puts it, line for line."""
    reason = _linux6()
    if reason:
        pytest.skip(reason)
    if shutil.which("setarch") is None:
        pytest.skip("setarch is not installed")
    argv = [CAT, "/proc/self/maps"]
    out = subprocess.run(["setarch", "-R", *argv], env={}, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    kernel, mm = fresh()
    result = load_elf(kernel, mm, CAT, argv=argv, envp=[])
    # Replay what ld.so does to the kernel's mappings before cat runs: mprotect the
    # RELRO part of the program and of itself read-only.
    for path, bias in ((CAT, result["load_bias"]), (result["interp"], result["interp_base"])):
        rng = _relro(path, bias)
        if rng and rng[1] > rng[0]:
            mman.mprotect(mm, rng[0], rng[1] - rng[0], PROT_READ)
    mm.check()
    keep = {os.path.realpath(CAT), os.path.realpath(result["interp"]), "[vvar]",
            "[vvar_vclock]", "[vdso]", "[stack]"}
    live = [line for line in out if line.split(None, 5)[5:] and line.split(None, 5)[5] in keep]
    assert sim_maps(mm) == live, "\n".join(["sim:"] + sim_maps(mm) + ["live:"] + out)
    # The heap libc grew starts exactly at the break exec set.
    heap = [line for line in out if line.endswith(" [heap]")]
    if heap:
        assert int(heap[0].split("-", 1)[0], 16) == result["start_brk"]


@pytest.mark.live
def test_cat_exec_state_matches_live_kernel():
    """Right at the end of execve: maps and smaps byte for byte (the padzero pages of
    both data segments and the stack page the kernel wrote are resident), stat's
    layout fields, and the auxv addresses."""
    _need_linux6()
    live = live_exec(CAT)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, CAT)
    assert_same_exec_state(mm, result, live)
    stack = mm.vma_lookup(result["start_stack"])
    assert stack.vm_flags & VM_GROWSDOWN and stack.end == STACK_TOP
    assert stack.end - stack.start == 132 << 10
    assert vmflags_mnemonics(stack.vm_flags) == ["rd", "wr", "mr", "mw", "me", "gd", "ac"]
    assert result["load_bias"] == 0x555555554000 == ELF_ET_DYN_BASE & ~0xFFF


@pytest.mark.live
def test_environment_and_arguments_size_the_stack():
    """Strings beyond a page make the first stack VMA larger before the 128 KiB growth."""
    _need_linux6()
    env = {f"VAR{i}": "x" * 200 for i in range(30)}      # about 6 KiB of strings
    argv = [CAT, "-n", "/dev/null"]
    live = live_exec(CAT, argv, env)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, CAT, argv=argv, envp=env)
    assert_same_exec_state(mm, result, live)
    assert result["stack_end"] - result["stack_start"] == (128 << 10) + 2 * PAGE_SIZE


# ---------------------------------------------------------------------- 2. randomisation


def _layout(seed):
    kernel, mm = fresh(randomize=True, seed=seed)
    result = load_elf(kernel, mm, CAT)
    mm.check()
    return [(v.start, v.end, v.vm_flags, v.pgoff, v.special, v.file and v.file.path)
            for v in mm.vmas()], result, mm


def test_randomised_layouts_repeat_per_seed():
    """Same seed, same layout; other seeds, other layouts, all within the kernel's ranges."""
    a, ra, _ = _layout(7)
    b, rb, _ = _layout(7)
    assert a == b and ra == rb
    seen = set()
    for seed in range(8):
        layout, r, mm = _layout(seed)
        seen.add(tuple(layout))
        # PIE base: ELF_ET_DYN_BASE plus up to 2^28 pages.
        assert 0x555555554000 <= r["load_bias"] < 0x555555554000 + (1 << 40)
        assert not r["load_bias"] % PAGE_SIZE
        # Stack: up to 16 GiB (plus the 8 KiB alignment drop) below STACK_TOP.
        assert STACK_TOP - (1 << 34) - 2 * PAGE_SIZE <= r["stack_end"] <= STACK_TOP
        assert r["stack_start"] < r["start_stack"] < r["stack_end"]
        # Break: a page of gap after the bss, then up to 1 GiB.
        bss_end = (r["load_bias"] + 0xB418 + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        assert bss_end + PAGE_SIZE <= r["start_brk"] < bss_end + PAGE_SIZE + (1 << 30)
        # ld.so ends at mmap_base; the vDSO area sits right below it.
        assert mm.vma_lookup(mm.mmap_base - 1).file.path.endswith("ld-linux-x86-64.so.2")
        assert r["vdso"] + 2 * PAGE_SIZE == r["interp_base"]
    assert len(seen) == 8
    assert _layout(1)[0] != _layout(2)[0]


def test_randomize_argument_overrides_kernel():
    """randomize=False on a randomising kernel gives the fixed layout (apart from
    mmap_base, which new_mm already drew)."""
    kernel, mm = fresh(randomize=True, seed=3)
    r = load_elf(kernel, mm, CAT, randomize=False)
    assert r["load_bias"] == 0x555555554000 and r["stack_end"] == STACK_TOP
    assert r["start_brk"] == 0x555555560000


# ---------------------------------------------------------------------- 3. errors


def _errno(path, argv=None):
    """The errno load_elf raises for ``path``, checked against a live execve."""
    kernel, mm = fresh()
    with pytest.raises(OSError) as info:
        load_elf(kernel, mm, path, argv=argv)
    if _linux6() is None:
        # Traced, so that an exec that unexpectedly succeeds stops before running.
        try:
            live = live_exec(path, argv)
        except pytest.skip.Exception:
            live = None
        if live is not None:
            assert live == {"errno": info.value.errno}, "live kernel disagrees"
    return info.value.errno


def test_missing_file_is_enoent(tmp_path):
    assert _errno(str(tmp_path / "nope")) == errno.ENOENT


def test_not_executable_is_eacces(tmp_path):
    """Directories, devices, FIFOs and files without an x bit (even for root)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    os.chmod(fifo, 0o755)
    noperm = tmp_path / "noperm"
    shutil.copy(CAT, noperm)
    os.chmod(noperm, 0)
    for path in (str(tmp_path), "/dev/null", str(fifo), str(noperm)):
        assert _errno(path) == errno.EACCES, path


def test_not_elf_is_enoexec(tmp_path):
    text = tmp_path / "text"
    text.write_text("just some text\n")
    os.chmod(text, 0o755)
    assert _errno(str(text)) == errno.ENOEXEC
    short = tmp_path / "short"
    short.write_bytes(b"\x7fELF\x02\x01\x01")
    os.chmod(short, 0o755)
    assert _errno(str(short)) == errno.ENOEXEC
    # A text file without an x bit fails the permission check first.
    os.chmod(text, 0o644)
    assert _errno(str(text)) == errno.EACCES


def test_oversized_arguments_are_e2big():
    """One string over 32 pages, or all strings over a quarter of the stack rlimit."""
    assert _errno(CAT, [CAT, "x" * (32 * PAGE_SIZE)]) == errno.E2BIG
    assert _errno(CAT, [CAT] + ["y" * 100000] * 25) == errno.E2BIG


def test_wrong_machine_is_enoexec(tmp_path):
    data = bytearray(open(CAT, "rb").read())
    struct.pack_into("<H", data, 18, 183)            # EM_AARCH64
    other = tmp_path / "other"
    other.write_bytes(bytes(data))
    os.chmod(other, 0o755)
    assert _errno(str(other)) == errno.ENOEXEC


def test_bad_or_missing_interpreter(tmp_path):
    """A missing interpreter is ENOENT; one that is not an ELF file is ELIBBAD, or EIO
    when it is shorter than an ELF header (the header is read whole)."""
    for text, code in (("not an interpreter\n" * 8, errno.ELIBBAD),
                       ("short\n", errno.EIO)):
        bad = tmp_path / "interp.txt"
        bad.write_text(text)
        os.chmod(bad, 0o755)
        prog = tmp_path / "prog"
        build_elf(prog, ET_DYN, 0x1000, [(PT_LOAD, 5, 0, 0, 0x1000, 0x1000, 0x1000)],
                  0x1000, interp=str(bad))
        assert _errno(str(prog)) == code
    prog2 = tmp_path / "prog2"
    build_elf(prog2, ET_DYN, 0x1000, [(PT_LOAD, 5, 0, 0, 0x1000, 0x1000, 0x1000)],
              0x1000, interp=str(tmp_path / "missing"))
    assert _errno(str(prog2)) == errno.ENOENT


# ---------------------------------------------------------------------- 4. static binaries


def _elf_kind(path):
    """'exec' (static ET_EXEC), 'static-pie', or None, from the raw headers."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            e_type, machine = struct.unpack_from("<HH", head, 16)
            phoff, = struct.unpack_from("<Q", head, 32)
            phnum, = struct.unpack_from("<H", head, 56)
            if machine != 62 or e_type not in (2, 3) or not 0 < phnum < 100:
                return None
            fh.seek(phoff)
            table = fh.read(56 * phnum)
            types = {struct.unpack_from("<I", table, 56 * i)[0] for i in range(phnum)}
            if 3 in types or 1 not in types:
                return None
            if e_type == 2:
                return "exec"
            if 2 not in types:
                return None
            fh.seek(0)
            for seg in ELFFile(fh).iter_segments():
                if seg["p_type"] == "PT_DYNAMIC":
                    for tag in seg.iter_tags():
                        if tag.entry.d_tag == "DT_FLAGS_1" and tag.entry.d_val & 0x08000000:
                            return "static-pie"
    except (OSError, ValueError, struct.error, Exception):
        return None
    return None


def find_static(kind):
    """The smallest executable of ``kind`` in /usr/bin, /usr/sbin, then /usr/lib."""
    for roots in (("/usr/bin", "/usr/sbin"), ("/usr/lib",)):
        found = []
        for root in roots:
            for dirpath, _, names in os.walk(root):
                for name in names:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and _elf_kind(path) == kind:
                        found.append((st.st_size, path))
        if found:
            return min(found)[1]
    return None


@pytest.mark.live
@pytest.mark.parametrize("kind", ["exec", "static-pie"])
def test_static_binary_matches_live_kernel(kind):
    """A static ET_EXEC sits at its link addresses with the vDSO right under mmap_base;
    a static PIE is placed by the mmap search and its break moves to ELF_ET_DYN_BASE."""
    _need_linux6()
    path = find_static(kind)
    if path is None:
        pytest.skip(f"no {kind} binary on this machine")
    live = live_exec(path)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, path)
    assert_same_exec_state(mm, result, live)
    assert result["interp_base"] == 0 and result["interp"] is None
    if kind == "static-pie":
        assert result["start_brk"] == 0x555555555000
        assert mm.vma_lookup(mm.mmap_base - 1) is not None
    else:
        assert result["load_bias"] == 0
        assert mm.vma_lookup(mm.mmap_base - 1).special == "[vdso]"


# ---------------------------------------------------------------------- synthetic ELFs

ET_EXEC, ET_DYN = 2, 3
PT_LOAD, PT_INTERP, PT_GNU_STACK = 1, 3, 0x6474E551
INTERP = "/lib64/ld-linux-x86-64.so.2"


def build_elf(path, e_type, entry, loads, size, interp=None, extra=()):
    """Write a minimal x86-64 ELF: headers, program headers, the interpreter name,
    then zeros up to ``size`` bytes.  ``loads`` are (type, flags, offset, vaddr,
    filesz, memsz, align) tuples."""
    phdrs = list(loads) + list(extra)
    name = interp.encode() + b"\0" if interp else b""
    count = len(phdrs) + (1 if interp else 0)
    name_off = 64 + 56 * count
    if interp:
        phdrs.insert(0, (PT_INTERP, 4, name_off, name_off, len(name), len(name), 1))
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    data = bytearray(struct.pack("<16sHHIQQQIHHHHHH", ident, e_type, 62, 1, entry, 64, 0, 0,
                                 64, 56, len(phdrs), 64, 0, 0))
    for ph in phdrs:
        p_type, flags, off, vaddr, filesz, memsz, align = ph
        data += struct.pack("<IIQQQQQQ", p_type, flags, off, vaddr, vaddr, filesz, memsz, align)
    data += name
    assert len(data) <= size
    with open(path, "wb") as fh:
        fh.write(data)
        fh.truncate(size)
    os.chmod(path, 0o755)
    return str(path)


@pytest.mark.live
def test_segment_edge_cases_match_live_kernel(tmp_path):
    """A static ET_EXEC whose segments cover the odd cases: a read-only segment with a
    zero-fill tail (its partial page is not zeroed, its tail is still rw-), a writable
    one whose bss crosses pages (the partial page is faulted), a segment with no file
    part at all (merged into the bss before it), and an executable stack."""
    _need_linux6()
    path = build_elf(tmp_path / "edges", ET_EXEC, 0x401000, [
        (PT_LOAD, 5, 0, 0x400000, 0x1800, 0x1800, 0x1000),
        (PT_LOAD, 4, 0x2000, 0x402000, 0x100, 0x3000, 0x1000),
        (PT_LOAD, 6, 0x3010, 0x406010, 0x200, 0x2ff0, 0x1000),
        (PT_LOAD, 6, 0, 0x409000, 0, 0x1800, 0x1000),
    ], 0x4000, extra=[(PT_GNU_STACK, 7, 0, 0, 0, 0, 16)])
    live = live_exec(path)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, path)
    assert_same_exec_state(mm, result, live)
    assert "ex" in vmflags_mnemonics(mm.vma_lookup(result["start_stack"]).vm_flags)


@pytest.mark.live
def test_large_static_pie_is_pmd_aligned_like_live_kernel(tmp_path):
    """On ext4 a file mapping covering a whole 2 MiB of the file is PMD-aligned
    (thp_get_unmapped_area), which places a large static PIE."""
    _need_linux6()
    path = build_elf(tmp_path / "bigpie", ET_DYN, 0x1000, [
        (PT_LOAD, 5, 0, 0, 0x300000, 0x300000, 0x1000),
        (PT_LOAD, 6, 0x300000, 0x300000, 0x800, 0x2000, 0x1000),
    ], 0x301000)
    live = live_exec(path)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, path)
    assert_same_exec_state(mm, result, live)
    from mmsim.binfmt_elf import THP_AREA_FILESYSTEMS, _fs_type
    if _fs_type(os.stat(path).st_dev) in THP_AREA_FILESYSTEMS:
        assert result["load_bias"] % PMD_SIZE == 0


@pytest.mark.live
def test_pie_with_large_alignment_matches_live_kernel(tmp_path):
    """A PIE with 2 MiB p_align: its base is ELF_ET_DYN_BASE aligned down to 2 MiB, and
    the hole between its segments is given back."""
    _need_linux6()
    path = build_elf(tmp_path / "alignpie", ET_DYN, 0x1000, [
        (PT_LOAD, 5, 0, 0, 0x2000, 0x2000, 0x200000),
        (PT_LOAD, 6, 0x2000, 0x202000, 0x100, 0x100, 0x200000),
    ], 0x3000, interp=INTERP)
    live = live_exec(path)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, path)
    assert_same_exec_state(mm, result, live)
    assert result["load_bias"] == ELF_ET_DYN_BASE & ~(PMD_SIZE - 1)


def test_bss_ending_at_empty_heap_is_not_named_heap(tmp_path):
    """The live kernel does not name a bss that ends at start_brk "[heap]"."""
    path = build_elf(tmp_path / "bss", ET_EXEC, 0x401000, [
        (PT_LOAD, 5, 0, 0x400000, 0x1000, 0x1000, 0x1000),
        (PT_LOAD, 6, 0x1000, 0x401000, 0x100, 0x3000, 0x1000),
    ], 0x2000)
    kernel, mm = fresh()
    load_elf(kernel, mm, path)
    assert not any(line.endswith("[heap]") for line in sim_maps(mm))


# ---------------------------------------------------------------------- large argv


@pytest.mark.parametrize("nargs, size", [(17000, 0), (100000, 0), (60000, 10), (20, 100000)])
def test_large_argv_stack_matches_live_kernel(nargs, size):
    """Many arguments: the pointers, auxv and random bytes create_elf_tables writes
    below the strings reach past the 128 KiB growth, and the kernel extends [stack] to
    hold them.  maps, smaps (every written page resident), stat and auxv as live."""
    _need_linux6()
    argv = [CAT] + ["x" * size] * nargs
    live = live_exec(CAT, argv)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, CAT, argv=argv, envp=[])
    mm.check()
    stack = mm.vma_lookup(result["start_stack"])
    assert stack is not None and stack.start <= result["start_stack"]
    assert_same_exec_state(mm, result, live)


# ---------------------------------------------------------------------- headers only


def test_section_headers_are_never_read(tmp_path):
    """The kernel reads the ELF header and the program headers only: a program with a
    PT_DYNAMIC segment and a section header table past the end of the file execs."""
    PT_DYNAMIC = 2
    for shoff in (0x100000, 0xFFFFFFFFFFFFFF00):
        path = build_elf(tmp_path / f"sh{shoff:x}", ET_EXEC, 0x401000,
                         [(PT_LOAD, 5, 0, 0x400000, 0x1000, 0x1000, 0x1000)], 0x1000,
                         extra=[(PT_DYNAMIC, 6, 0x800, 0x400800, 0x40, 0x40, 8)])
        with open(path, "r+b") as fh:
            data = bytearray(fh.read())
            struct.pack_into("<Q", data, 40, shoff)
            struct.pack_into("<HHH", data, 58, 64, 5, 3)
            fh.seek(0)
            fh.write(data)
        kernel, mm = fresh()
        result = load_elf(kernel, mm, path)
        assert result["entry"] == 0x401000
        if _linux6() is None:
            assert_same_exec_state(mm, result, live_exec(path))


@pytest.mark.parametrize("off, code", [(0x10000, errno.EIO), ((1 << 63) - 21, errno.EIO),
                                       ((1 << 63) - 20, errno.EINVAL),
                                       (0xFFFFFFFFFFFFFF00, errno.EINVAL)])
def test_interp_name_beyond_the_file(tmp_path, off, code):
    """A PT_INTERP whose bytes lie past the end of the file is a short read (EIO); one
    that ends past the largest file position is EINVAL, as on the live kernel."""
    path = build_elf(tmp_path / "prog", ET_DYN, 0x1000,
                     [(PT_LOAD, 5, 0, 0, 0x1000, 0x1000, 0x1000)], 0x1000,
                     extra=[(PT_INTERP, 4, off, 0, 20, 20, 1)])
    assert _errno(path) == code


def test_a_bug_in_the_loader_is_not_enoexec(tmp_path, monkeypatch):
    """Only a file that is not a valid ELF becomes an errno: an exception from mmsim's
    own code while reading the headers surfaces as itself."""
    from mmsim import binfmt_elf
    path = build_elf(tmp_path / "ok", ET_EXEC, 0x401000,
                     [(PT_LOAD, 5, 0, 0x400000, 0x1000, 0x1000, 0x1000)], 0x1000)

    class Planted(Exception):
        pass

    def broken(*args, **kw):
        raise Planted("planted bug")

    binfmt_elf.image_cache.clear()
    monkeypatch.setattr(binfmt_elf, "ProgramHeader", broken)
    kernel, mm = fresh()
    with pytest.raises(Planted):
        load_elf(kernel, mm, path)


# ---------------------------------------------------------------------- the image cache


def test_parsed_images_are_cached_per_file_version(tmp_path):
    """A second exec of an unchanged file parses nothing; a new mtime or size (a new
    version of the file) is parsed again."""
    from mmsim.binfmt_elf import image_cache
    path = build_elf(tmp_path / "prog", ET_EXEC, 0x401000,
                     [(PT_LOAD, 5, 0, 0x400000, 0x1000, 0x1000, 0x1000)], 0x1000)
    image_cache.clear()

    def run():
        kernel, mm = fresh()
        return load_elf(kernel, mm, path)

    first = run()
    assert (image_cache.hits, image_cache.misses) == (0, 1)
    assert run() == first
    assert (image_cache.hits, image_cache.misses) == (1, 1)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    run()
    assert (image_cache.hits, image_cache.misses) == (1, 2)
    # Same mtime, new size, new entry point: the new header is read.
    with open(path, "r+b") as fh:
        fh.seek(24)
        fh.write(struct.pack("<Q", 0x401010))
        fh.truncate(0x1800)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert run()["entry"] == 0x401010
    assert (image_cache.hits, image_cache.misses) == (1, 3)


# ---------------------------------------------------------------------- the pure layout


def _image(e_type, entry, loads, interp=None, extra=()):
    """A parsed image built by hand: ``loads`` are (flags, offset, vaddr, filesz, memsz,
    align) tuples."""
    from mmsim.binfmt_elf import ElfImage, ProgramHeader
    phdrs = [ProgramHeader(PT_LOAD, *ld) for ld in loads] + list(extra)
    return ElfImage(e_type, entry, 64, len(phdrs), tuple(phdrs), interp)


def _strings(argv, envp=(), filename=b"/bin/prog"):
    from mmsim.binfmt_elf import ArgStrings
    argv, envp = list(argv), list(envp)
    size = sum(len(s) + 1 for s in [filename, *envp, *argv])
    return ArgStrings(filename, argv, envp, 1 << 20, size)


def test_plan_exec_of_a_pie_with_an_interpreter():
    """Without any file: a PIE program goes at ELF_ET_DYN_BASE moved by the random
    pages and aligned down to its p_align; the first segment reserves the image; the
    interpreter is searched for; the break follows the bss, a page and the random
    offset on."""
    from mmsim.binfmt_elf import ExecRandom, plan_exec
    from mmsim.uapi import MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE, PROT_EXEC, PROT_WRITE
    prog = _image(ET_DYN, 0x1040, [(5, 0, 0, 0x1800, 0x1800, 0x1000),
                                   (6, 0x2000, 0x3000, 0x100, 0x2400, 0x1000)], b"/ld.so")
    interp = _image(ET_DYN, 0x20, [(5, 0, 0, 0x5000, 0x5000, 0x1000)])
    rnd = ExecRandom(stack_pages=3, stack_drop=0x30, mmap_pages=0x123, sp_drop=0x40,
                     brk_pages=7, randomize=True)
    layout = plan_exec(prog, interp, _strings([b"prog", b"arg"]), rnd)
    base = (ELF_ET_DYN_BASE + (0x123 << 12)) & ~0xFFF
    p = layout.program
    assert (p.placement, p.bias) == ("fixed", base)
    assert [s.flags for s in p.segments] == [MAP_PRIVATE | MAP_FIXED_NOREPLACE,
                                            MAP_PRIVATE | MAP_FIXED]
    assert p.segments[0].total_size == 0x5400 and p.segments[1].total_size == 0
    assert p.segments[1].prot & PROT_WRITE and p.segments[0].prot & PROT_EXEC
    assert (p.entry, p.start_code, p.end_code, p.elf_brk) == (0x1040, 0, 0x1800, 0x5400)
    assert (layout.interp.placement, layout.interp.bias) == ("search", 0)
    assert layout.brk == base + 0x6000 + PAGE_SIZE + (7 << 12)
    st = layout.stack
    top = (STACK_TOP - (3 << 12) - 0x30) & ~0xF
    assert st.end == (top + 0xFFF) & ~0xFFF
    assert st.end - st.start == (128 << 10) + PAGE_SIZE
    assert st.execfn == STACK_TOP - 8 - len(b"/bin/prog\0") - (STACK_TOP - st.end)
    assert st.arg_start == st.env_start - len(b"prog\0arg\0")
    assert st.start <= st.start_stack < st.arg_start < st.end


def test_plan_exec_of_static_programs():
    """A static ET_EXEC sits at its link addresses with no randomness in its bias; a
    static PIE is found by the mmap search and its break moves to ELF_ET_DYN_BASE; a PIE
    with no bytes to map is EINVAL when the loader gets to it."""
    from mmsim.binfmt_elf import ExecRandom, plan_exec
    rnd = ExecRandom()
    exe = _image(ET_EXEC, 0x401000, [(5, 0, 0x400000, 0x1000, 0x1000, 0x1000),
                                     (6, 0x1000, 0x401000, 0x10, 0x3000, 0x1000)])
    layout = plan_exec(exe, None, _strings([b"x"]), rnd)
    assert (layout.program.placement, layout.program.bias, layout.brk) == \
        ("fixed", 0, 0x404000)
    pie = _image(ET_DYN, 0x100, [(5, 0, 0, 0x1000, 0x1000, 0x1000)])
    layout = plan_exec(pie, None, _strings([b"x"]), rnd)
    assert layout.program.placement == "search" and layout.program.bias == 0
    assert layout.brk == (ELF_ET_DYN_BASE + 0xFFF) & ~0xFFF
    big = _image(ET_DYN, 0x100, [(5, 0, 0, 0x1000, 0x1000, 0x200000)])
    assert plan_exec(big, None, _strings([b"x"]), rnd).program.placement == "search-aligned"
    empty = _image(ET_DYN, 0x100, [(5, 0, 0, 0, 0, 0x1000)])
    assert plan_exec(empty, None, _strings([b"x"]), rnd).program.error == errno.EINVAL


def test_plan_stack_holds_everything_exec_writes():
    """However many arguments, the stack VMA reaches down to the page of the first
    stack pointer, and stays within the rlimit-sized growth otherwise."""
    from mmsim.binfmt_elf import ExecRandom, plan_exec
    prog = _image(ET_EXEC, 0x401000, [(5, 0, 0x400000, 0x1000, 0x1000, 0x1000)])
    for n in (1, 1000, 17000, 100000):
        st = plan_exec(prog, None, _strings([b""] * n), ExecRandom()).stack
        assert st.end == STACK_TOP
        peak = len(b"/bin/prog") + 1 + n
        strings_start = (STACK_TOP - 8 - peak) & ~0xFFF
        assert st.start == min(strings_start - (128 << 10), st.start_stack & ~0xFFF)
        assert st.start <= st.start_stack
    assert st.start == st.start_stack & ~0xFFF            # 100000 pointers: below 128 KiB


def test_entry_point_outside_user_space_is_einval():
    """BAD_ADDR: an entry point at or past TASK_SIZE fails the exec after the point of
    no return (the live kernel kills the process with SIGSEGV; mmsim raises EINVAL and
    leaves the caller as it was)."""
    import tempfile
    for entry in (STACK_TOP, 1 << 63):
        with tempfile.TemporaryDirectory() as tmp:
            path = build_elf(os.path.join(tmp, "prog"), ET_EXEC, entry,
                             [(PT_LOAD, 5, 0, 0x400000, 0x1000, 0x1000, 0x1000)], 0x1000)
            kernel, mm = fresh()
            with pytest.raises(OSError) as info:
                load_elf(kernel, mm, path)
            assert info.value.errno == errno.EINVAL
            if _linux6() is None:
                assert live_exec(path) == {"killed": signal.SIGSEGV}


def test_unsorted_segments_reserve_their_whole_span_like_live_kernel(tmp_path):
    """total_mapping_size spans the lowest to the highest PT_LOAD whatever their order in
    the table: a static PIE whose second segment lies below its first is placed as the
    live kernel places it (the first reserves the span, the second fits below it)."""
    _need_linux6()
    path = build_elf(tmp_path / "unsorted", ET_DYN, 0x1000, [
        (PT_LOAD, 6, 0x1100, 0x401100, 0x3A1, 0x16E1, 3),
        (PT_LOAD, 4, 0x6B0, 0x6B0, 0xC1A, 0x54CC, 1),
    ], 0x3000)
    live = live_exec(path)
    kernel, mm = fresh()
    result = load_elf(kernel, mm, path)
    assert_same_exec_state(mm, result, live)


@pytest.mark.parametrize("rlimit, nargs, size", [
    (256 << 10, 10, 10000),     # strings plus 128 KiB fit the rlimit
    (200 << 10, 9, 10000),      # they do not: the stack is the rlimit
    (4 << 20, 11, 100000),      # 1.1 MB of strings over a quarter of 4 MiB: E2BIG
])
def test_stack_rlimit_sizes_the_stack_and_the_argument_space(rlimit, nargs, size):
    """The stack rlimit caps setup_arg_pages' 128 KiB growth, and a quarter of it (at
    least 32 pages) bounds the strings: a child with a lowered RLIMIT_STACK gets the same
    [stack] or the same E2BIG as mmsim given that rlimit."""
    _need_linux6()
    argv = [CAT] + ["z" * size] * nargs
    live = live_exec(CAT, argv, rlimit_stack=rlimit)
    kernel, mm = fresh()
    try:
        result = load_elf(kernel, mm, CAT, argv=argv, envp=[], rlimit_stack=rlimit)
    except OSError as exc:
        assert live == {"errno": exc.errno}
        return
    assert_same_exec_state(mm, result, live)


# ---------------------------------------------------------------------- any ELF file

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402

_ADDR = hst.one_of(hst.sampled_from([0, 0x1000, 0x400000, 0x555555554000, STACK_TOP - 0x2000,
                                     STACK_TOP, 1 << 63, (1 << 64) - 0x1000]),
                   hst.integers(0, (1 << 64) - 1))
_SIZE = hst.one_of(hst.integers(0, 0x6000), hst.integers(0, (1 << 64) - 1))
_LOAD = hst.tuples(hst.just(PT_LOAD), hst.integers(0, 7), hst.integers(0, 0x3000) | _ADDR,
                   _ADDR, _SIZE, _SIZE,
                   hst.sampled_from([0, 1, 3, 0x1000, 0x200000]) | hst.integers(0, (1 << 64) - 1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(e_type=hst.sampled_from([ET_EXEC, ET_DYN]), entry=_ADDR,
       loads=hst.lists(_LOAD, max_size=4), interp=hst.sampled_from([None, INTERP]),
       nargs=hst.sampled_from([0, 3, 20000]), randomize=hst.booleans())
def test_any_elf_file_execs_or_fails_with_an_errno(e_type, entry, loads, interp, nargs,
                                                    randomize):
    """Whatever its program headers say, exec of an ELF file either builds an address
    space that passes mm.check() with [stack] holding the stack pointer, or raises
    OSError: never another exception."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = build_elf(os.path.join(tmp, "prog"), e_type, entry, loads, 0x3000,
                         interp=interp if os.path.exists(INTERP) else None)
        kernel, mm = fresh(randomize=randomize, seed=nargs)
        try:
            result = load_elf(kernel, mm, path, argv=[path] + ["a"] * nargs)
        except OSError:
            return
        mm.check()
        stack = mm.vma_lookup(result["start_stack"])
        assert stack is not None and stack.vm_flags & VM_GROWSDOWN
