"""execve through the process API: a fresh address space from a real ELF file, and what
survives exec (kernel-semantics.md section 1.4's table, each row checked live on 6.18)."""

import errno
import os
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
