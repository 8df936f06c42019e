"""execve through the process API: a fresh address space from a real ELF file, and what
survives exec (kernel-semantics.md section 1.4's table, each row checked live on 6.18)."""

import errno
import os
import platform
import shutil

import pytest

from mmsim.kernel import Kernel
from mmsim.mm import MMF_HAS_MDWE, MMF_HAS_MDWE_NO_INHERIT, MMF_VM_MERGE_ANY
from mmsim.uapi import (MAP_ANONYMOUS, MAP_PRIVATE, PR_GET_DUMPABLE, PR_GET_THP_DISABLE,
                        PR_SET_DUMPABLE, PR_SET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED,
                        PROT_READ, PROT_WRITE)
from mmsim.vma import VM_LOCKED, VM_NOHUGEPAGE

TRUE = shutil.which("true") or "/usr/bin/true"
pytestmark = pytest.mark.skipif(not os.path.exists(TRUE), reason="no 'true' binary to exec")


def test_spawn_execs_a_real_binary():
    k = Kernel(seed=3)
    proc = k.spawn(TRUE)
    maps = k.proc_read(f"/proc/{proc.pid}/maps")
    names = [line.split()[-1] for line in maps.splitlines() if len(line.split()) > 5]
    assert os.path.realpath(TRUE) in names and "[stack]" in names and "[vdso]" in names
    assert proc.comm == os.path.basename(TRUE)
    again = Kernel(seed=3).spawn(TRUE)
    assert [v.start for v in again.mm.vmas()] == [v.start for v in proc.mm.vmas()]


@pytest.mark.parametrize("flags, want", [(0, 1), (PR_THP_DISABLE_EXCEPT_ADVISED, 3)])
def test_thp_disable_survives_exec(flags, want):
    k = Kernel()
    proc = k.spawn()
    proc.prctl(PR_SET_THP_DISABLE, 1, flags)
    proc.execve(TRUE)
    assert proc.prctl(PR_GET_THP_DISABLE) == want
    status = k.proc_read(f"/proc/{proc.pid}/status")
    assert f"THP_enabled:\t{0 if want == 1 else 1}\n" in status


def test_what_exec_keeps_and_drops():
    """Kept: KSM merge-any, MDWE, def_flags VM_NOHUGEPAGE.  Dropped: the old VMAs,
    MDWE set NO_INHERIT, mlockall's VM_LOCKED default.  Recomputed: dumpable."""
    k = Kernel()
    proc = k.spawn()
    a = proc.mmap(0, 4 << 12, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    proc.prctl(PR_SET_DUMPABLE, 0)
    proc.mm.flags |= MMF_VM_MERGE_ANY | MMF_HAS_MDWE
    proc.mm.def_flags = VM_NOHUGEPAGE | VM_LOCKED
    proc.execve(TRUE)
    assert proc.mm.vma_lookup(a) is None
    assert proc.prctl(PR_GET_DUMPABLE) == 1
    assert proc.mm.flags & MMF_VM_MERGE_ANY and proc.mm.flags & MMF_HAS_MDWE
    assert proc.mm.def_flags == VM_NOHUGEPAGE
    assert all(v.vm_flags & VM_NOHUGEPAGE for v in proc.mm.vmas() if v.special is None)
    proc.mm.flags |= MMF_HAS_MDWE_NO_INHERIT
    proc.execve(TRUE)
    assert not proc.mm.flags & (MMF_HAS_MDWE | MMF_HAS_MDWE_NO_INHERIT)
    proc.mm.check()


def test_exec_errors_leave_the_process_alone(tmp_path):
    k = Kernel()
    proc = k.spawn()
    a = proc.mmap(0, 4 << 12, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
    text = tmp_path / "script.txt"
    text.write_text("not an ELF file\n")
    text.chmod(0o755)
    for path, code in [(str(tmp_path / "missing"), errno.ENOENT), (str(tmp_path), errno.EACCES),
                       (str(text), errno.ENOEXEC)]:
        with pytest.raises(OSError) as exc:
            proc.execve(path)
        assert exc.value.errno == code
        assert proc.mm.vma_lookup(a) is not None
    with pytest.raises(OSError) as exc:
        k.spawn(str(tmp_path / "missing"))
    assert exc.value.errno == errno.ENOENT


def _setuid_root_elf():
    import stat
    for d in ("/usr/bin", "/bin", "/usr/sbin"):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            try:
                st = os.stat(path)
                with open(path, "rb") as f:
                    magic = f.read(4)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_ISUID and st.st_uid == 0 \
                    and magic == b"\x7fELF":
                return path
    return None


def test_secure_exec_of_a_setuid_file():
    """begin_new_exec: a set-uid-root file run by nobody gives euid 0 (and the full
    permitted set), and the mm is not dumpable (fs.suid_dumpable = 0)."""
    path = _setuid_root_elf()
    if path is None:
        pytest.skip("no set-uid-root ELF file on this machine")
    k = Kernel()
    proc = k.spawn(uid=65534, gid=65534)
    proc.execve(path)
    assert (proc.cred.uid, proc.cred.euid, proc.cred.suid) == (65534, 0, 0)
    assert proc.prctl(PR_GET_DUMPABLE) == 0
    assert "Uid:\t65534\t0\t0\t0" in k.proc_read(f"/proc/{proc.pid}/status")


@pytest.mark.live
def test_spawn_maps_match_the_live_kernel():
    """Kernel.spawn(path) without randomisation gives, line for line, the /proc/PID/maps
    of the same binary stopped at the end of its real execve (ASLR off)."""
    from test_binfmt_elf import CAT, LIVE_THP, _need_linux6, live_exec
    _need_linux6()
    live = live_exec(CAT)
    k = Kernel(thp=LIVE_THP, randomize=False)
    proc = k.spawn(CAT, argv=[CAT], envp=[])
    lines = k.proc_read(f"/proc/{proc.pid}/maps").splitlines()
    assert lines == live["maps"]
    assert lines[-1].endswith(" [vsyscall]")   # the gate area, last as on x86-64


def test_every_address_space_shows_the_vsyscall_page():
    """The vsyscall gate area is no VMA (not counted in VmSize) but every x86-64
    process' maps and smaps end with it, a synthetic spawn() too; its smaps block is
    this machine's, byte for byte."""
    k = Kernel()
    proc = k.spawn()
    maps = k.proc_read(f"/proc/{proc.pid}/maps")
    assert maps == ("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0"
                    + " " * 18 + "[vsyscall]\n")
    smaps = k.proc_read(f"/proc/{proc.pid}/smaps")
    if os.path.exists("/proc/self/smaps") and platform.machine() == "x86_64":
        with open("/proc/self/smaps") as fh:
            live = fh.read()
        if "[vsyscall]" in live:
            assert smaps == live[live.index("ffffffffff600000-"):]
    assert "VmSize:\t       0 kB" in k.proc_read(f"/proc/{proc.pid}/status")


def test_one_elf_et_dyn_base():
    """The machine and the ELF loader agree on the PIE base: a process that has not
    exec'd has its notional image where a PIE lands without randomisation."""
    from mmsim import binfmt_elf, kernel
    assert kernel.ELF_ET_DYN_BASE == binfmt_elf.ELF_ET_DYN_BASE
    proc = Kernel(randomize=False).spawn()
    assert proc.mm.start_code == binfmt_elf.ELF_ET_DYN_BASE & ~0xFFF == 0x555555554000


# ---------------------------------------------------------------------- the live kernel

def _live_exec_state(path, argv, env=None):
    """execve ``path`` in a child stopped at the end of execve (ASLR off): its argv (from
    /proc/PID/cmdline), comm, exe and [stack] line, or {"errno": n}."""
    from test_binfmt_elf import _need_linux6, live_exec
    _need_linux6()
    state = {}

    def more(pid):
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            state["argv"] = fh.read().split(b"\0")[:-1]
        with open(f"/proc/{pid}/comm") as fh:
            state["comm"] = fh.read().rstrip("\n")
        state["exe"] = os.readlink(f"/proc/{pid}/exe")

    live = live_exec(path, argv, env, on_stop=more)
    live.update(state)
    return live


def _sim_exec_state(path, argv, env=None):
    """The same as _live_exec_state, from mmsim."""
    from mmsim.binfmt_elf import prepare_exec
    from test_binfmt_elf import LIVE_THP
    k = Kernel(thp=LIVE_THP, randomize=False)
    try:
        bprm = prepare_exec(k, path, argv, env or {})
        proc = k.spawn(path, argv, env or {})
    except OSError as exc:
        return {"errno": exc.errno}
    return {"argv": bprm.strings.argv, "comm": proc.comm, "exe": proc.mm.exe_file.path,
            "maps": k.proc_read(f"/proc/{proc.pid}/maps").splitlines(), "mm": proc.mm}


def _stack_line(maps):
    return next(line for line in maps if line.endswith("[stack]"))


# ---------------------------------------------------------------------- failed exec


def test_failed_exec_leaves_no_file_visible(tmp_path):
    """Exec opens the program and its interpreter before it can fail; when it fails,
    neither becomes a simulated file that open() finds.  A successful exec does."""
    from test_binfmt_elf import ET_DYN, PT_LOAD, build_elf
    k = Kernel()
    proc = k.spawn()
    bad_interp = tmp_path / "interp"
    bad_interp.write_text("not an interpreter\n" * 8)
    bad_interp.chmod(0o755)
    prog = build_elf(tmp_path / "prog", ET_DYN, 0x1000,
                     [(PT_LOAD, 5, 0, 0, 0x1000, 0x1000, 0x1000)], 0x1000,
                     interp=str(bad_interp))
    with pytest.raises(OSError) as exc:
        proc.execve(prog)
    assert exc.value.errno == errno.ELIBBAD
    for path in (prog, str(bad_interp)):
        with pytest.raises(OSError) as exc:
            proc.open(os.path.realpath(path))
        assert exc.value.errno == errno.ENOENT
    assert k.files == {}
    proc.execve(TRUE)
    assert proc.open(os.path.realpath(TRUE)) >= 3


# ---------------------------------------------------------------------- "#!" scripts

CAT = "/usr/bin/cat"
_SCRIPTS = {
    "plain": (b"#!%s\necho hi\n", None),
    "blanks and an argument": (b"#! \t%s  -u  -B \t \nrest\n", None),
    "no newline": (b"#!%s", None),
    "no newline, a blank": (b"#!%s ", None),
    "NUL after a blank": (b"#!%s \0-u\n", None),
    "argument cut at 256 bytes": (b"#!%s " + b"a" * 300 + b"\n", None),
    "carriage return": (b"#!%s\r\n", errno.ENOENT),
    "no interpreter": (b"#!\n", errno.ENOEXEC),
    "only blanks": (b"#!  \t \n", errno.ENOEXEC),
    "name cut at 256 bytes": (b"#!/" + b"x" * 300 + b" -u\n", errno.ENOEXEC),
    "missing interpreter": (b"#!/nonexistent/interp\n", errno.ENOENT),
    "empty name": (b"#!\0%s\n", errno.EACCES),
    "only #!": (b"#!", errno.EACCES),
    "interpreter is a folder": (b"#!/tmp\n", errno.EACCES),
}


def _script(tmp_path, name, content, mode=0o755):
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


def _same_as_live(path, argv, env=None):
    live = _live_exec_state(path, argv, env)
    sim = _sim_exec_state(path, argv, env)
    if "errno" in live:
        assert sim == {"errno": live["errno"]}
        return live
    assert "errno" not in sim, sim
    assert sim["argv"] == live["argv"]
    assert (sim["comm"], sim["exe"]) == (live["comm"], live["exe"])
    assert sim["maps"] == live["maps"], "\n".join(["sim:", *sim["maps"], "live:", *live["maps"]])
    sim["mm"].check()
    return live


@pytest.mark.parametrize("case", sorted(_SCRIPTS))
def test_script_runs_its_interpreter_like_live_kernel(tmp_path, case):
    """fs/binfmt_script.c: the first line's interpreter and one optional argument; argv
    becomes [interpreter, argument?, script path, argv[1:]...]; the same errno for lines
    that name no interpreter or one that cannot run."""
    content, code = _SCRIPTS[case]
    if b"%s" in content:
        content = content.replace(b"%s", CAT.encode())
    path = _script(tmp_path, "script", content)
    live = _same_as_live(path, [path, "A1", "A2"], {"K": "v"})
    assert live.get("errno") == code


def test_script_interpreters_nest_five_deep(tmp_path):
    """A script may name a script as its interpreter, five levels deep; a sixth is ELOOP.
    A relative interpreter name is looked up from the current directory."""
    prev = CAT
    paths = []
    for i in range(1, 7):
        prev = _script(tmp_path, f"s{i}", b"#!%s L%d\n" % (prev.encode(), i))
        paths.append(prev)
    live = _same_as_live(paths[4], [paths[4], "A"])
    assert live["argv"][:4] == [CAT.encode(), b"L1", paths[0].encode(), b"L2"]
    assert _same_as_live(paths[5], [paths[5], "A"]) == {"errno": errno.ELOOP}
    rel = _script(tmp_path, "rel", b"#!s1\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        _same_as_live(rel, ["anything"])
    finally:
        os.chdir(cwd)


def test_script_interpreter_errors_like_live_kernel(tmp_path):
    """An interpreter without an x bit is EACCES; a text file as interpreter is ENOEXEC;
    a set-uid script runs with the caller's credentials (only the ELF file counts)."""
    _script(tmp_path, "noexec", b"hello\n", 0o644)
    _script(tmp_path, "text", b"hello\n")
    for target, code in (("noexec", errno.EACCES), ("text", errno.ENOEXEC)):
        path = _script(tmp_path, f"to_{target}", b"#!%s\n" % str(tmp_path / target).encode())
        assert _same_as_live(path, [path]) == {"errno": code}
    path = _script(tmp_path, "suid", b"#!%s\n" % CAT.encode(), 0o4755)
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o4755)
    k = Kernel()
    proc = k.spawn()
    proc.execve(path)
    assert proc.cred.euid == 0 and proc.comm == "suid"


def test_script_strings_count_against_the_argument_space(tmp_path):
    """The interpreter's name and the script's path are copied like any argument: when
    they no longer fit the argument space the exec is E2BIG, as on the live kernel."""
    import resource
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    if soft != 8 << 20:
        pytest.skip(f"needs an 8 MiB stack rlimit, not {soft}")
    path = _script(tmp_path, "s", b"#!%s\n" % CAT.encode())
    limit = 2 << 20                      # a quarter of the stack rlimit
    argv = [path] + ["x" * 100000] * 20
    # The file name, the strings and one pointer per string (the filler's included).
    used = sum(len(s) + 1 for s in [path, *argv]) + 8 * (len(argv) + 1)
    # A last argument that leaves exactly the bytes the interpreter's name needs
    # (argv[0], the script's path, is given back and copied again).
    filler = limit - used - 1 - (len(CAT) + 1)
    fits = argv + ["y" * filler]
    over = argv + ["y" * (filler + 1)]
    assert "errno" not in _same_as_live(path, fits, {})
    assert _same_as_live(path, over, {}) == {"errno": errno.E2BIG}


@pytest.mark.parametrize("size", [50000, 131071])
def test_script_stack_keeps_the_pages_argv0_reached(tmp_path, size):
    """A script's argv[0] is dropped from the strings, but the [stack] VMA already grew
    to hold it while it was copied: the stack is as large as the live kernel's."""
    path = _script(tmp_path, "s", b"#!%s\n" % CAT.encode())
    live = _same_as_live(path, ["y" * size, "A"])
    start, end = (int(x, 16) for x in _stack_line(live["maps"]).split()[0].split("-"))
    assert end - start > (128 << 10) + size
