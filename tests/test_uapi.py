"""Tests of mmsim.uapi: values against Python's own mmap/os modules and the kernel
headers, and the value()/names() lookups."""

import mmap
import os
import re
import sys

import pytest

from mmsim import uapi

LINUX_X86_64 = sys.platform == "linux" and os.uname().machine == "x86_64"


def _all_names():
    """Every (family, canonical name) pair names() can produce."""
    for fam in uapi.families():
        f = uapi._FAMILIES[fam]
        for name in f.members:
            yield fam, name
        for _mask, choices in f.fields:
            for name in choices:
                yield fam, name


# --- values against the Python runtime ------------------------------------------------
# Python exposes only the constants its build's libc headers had; compare what exists.
# (On this 3.11 build os has no CLONE_*/PIDFD_* and mmap lacks the newer MADV_*.)

MMAP_NAMES = [n for n in dir(mmap) if n.startswith(("PROT_", "MAP_", "MADV_"))
              and n in vars(uapi)]
OS_NAMES = [n for n in dir(os)
            if re.fullmatch(r"(O|CLONE|PIDFD|W)_?[A-Z0-9_]+", n) and n in vars(uapi)
            and n not in ("WALL", "WCLONE")]


@pytest.mark.skipif(not LINUX_X86_64, reason="values are the x86-64 Linux ones")
@pytest.mark.parametrize("name", MMAP_NAMES)
def test_matches_python_mmap(name):
    assert getattr(uapi, name) == getattr(mmap, name)


@pytest.mark.skipif(not LINUX_X86_64, reason="values are the x86-64 Linux ones")
@pytest.mark.parametrize("name", OS_NAMES)
def test_matches_python_os(name):
    assert getattr(uapi, name) == getattr(os, name)


@pytest.mark.skipif(not LINUX_X86_64, reason="values are the x86-64 Linux ones")
def test_runtime_comparison_covers_the_basics():
    # Guard against the parametrized lists above silently shrinking to nothing.
    for name in ("PROT_READ", "PROT_WRITE", "PROT_EXEC", "MAP_SHARED", "MAP_PRIVATE",
                 "MAP_ANONYMOUS", "MAP_POPULATE", "MAP_STACK", "MADV_DONTNEED",
                 "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_FREE", "MADV_HWPOISON"):
        assert name in MMAP_NAMES
    for name in ("O_CLOEXEC", "O_NONBLOCK", "O_DIRECTORY", "O_CREAT", "WNOHANG",
                 "WUNTRACED", "WCONTINUED", "WEXITED", "WNOWAIT"):
        assert name in OS_NAMES


@pytest.mark.skipif(not hasattr(os, "CLONE_VM"), reason="os.CLONE_* needs Python 3.12")
def test_clone_matches_python_os():
    assert uapi.CLONE_VM == os.CLONE_VM
    assert uapi.CLONE_NEWUSER == os.CLONE_NEWUSER


@pytest.mark.skipif(not LINUX_X86_64, reason="values are the x86-64 Linux ones")
def test_pidfd_matches_python_os():
    # linux/pidfd.h defines PIDFD_NONBLOCK as O_NONBLOCK; os.PIDFD_NONBLOCK needs 3.12.
    assert uapi.PIDFD_NONBLOCK == getattr(os, "PIDFD_NONBLOCK", os.O_NONBLOCK)


@pytest.mark.skipif(not LINUX_X86_64, reason="values are the x86-64 Linux ones")
def test_at_fdcwd_and_sigchld_match_python():
    import signal
    assert uapi.SIGCHLD == signal.SIGCHLD
    if hasattr(os, "AT_FDCWD"):  # not exposed by every build
        assert uapi.AT_FDCWD == os.AT_FDCWD


# --- values from the headers ------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    # include/uapi/linux/mman.h
    ("MAP_SHARED_VALIDATE", 0x03), ("MAP_DROPPABLE", 0x08),
    ("MREMAP_MAYMOVE", 1), ("MREMAP_FIXED", 2), ("MREMAP_DONTUNMAP", 4),
    # arch/x86/include/uapi/asm/mman.h
    ("MAP_32BIT", 0x40), ("MAP_ABOVE4G", 0x80),
    # include/uapi/asm-generic/mman-common.h and mman.h
    ("PROT_SEM", 0x8), ("PROT_GROWSDOWN", 0x01000000), ("PROT_GROWSUP", 0x02000000),
    ("MAP_TYPE", 0x0f), ("MAP_FIXED", 0x10), ("MAP_HUGETLB", 0x40000),
    ("MAP_SYNC", 0x80000), ("MAP_FIXED_NOREPLACE", 0x100000),
    ("MAP_UNINITIALIZED", 0x4000000), ("MAP_HUGE_SHIFT", 26), ("MAP_HUGE_MASK", 0x3f),
    ("MLOCK_ONFAULT", 1), ("MCL_CURRENT", 1), ("MCL_FUTURE", 2), ("MCL_ONFAULT", 4),
    ("MADV_COLD", 20), ("MADV_PAGEOUT", 21), ("MADV_POPULATE_READ", 22),
    ("MADV_POPULATE_WRITE", 23), ("MADV_DONTNEED_LOCKED", 24), ("MADV_COLLAPSE", 25),
    ("MADV_SOFT_OFFLINE", 101), ("MADV_GUARD_INSTALL", 102), ("MADV_GUARD_REMOVE", 103),
    # include/uapi/linux/prctl.h
    ("PR_SET_PDEATHSIG", 1), ("PR_GET_DUMPABLE", 3), ("PR_SET_NAME", 15),
    ("PR_SET_NO_NEW_PRIVS", 38), ("PR_SET_THP_DISABLE", 41), ("PR_GET_THP_DISABLE", 42),
    ("PR_THP_DISABLE_EXCEPT_ADVISED", 2), ("PR_SET_MDWE", 65), ("PR_GET_MDWE", 66),
    ("PR_MDWE_REFUSE_EXEC_GAIN", 1), ("PR_MDWE_NO_INHERIT", 2),
    ("PR_SET_MEMORY_MERGE", 67), ("PR_GET_MEMORY_MERGE", 68),
    ("PR_SET_VMA", 0x53564d41), ("PR_SET_VMA_ANON_NAME", 0),
    ("PR_SET_MM", 35), ("PR_SET_MM_START_CODE", 1), ("PR_SET_MM_START_BRK", 6),
    ("PR_SET_MM_BRK", 7), ("PR_SET_MM_ENV_END", 11), ("PR_SET_MM_MAP", 14),
    ("PR_SET_MM_MAP_SIZE", 15),
    # include/uapi/linux/sched.h
    ("CLONE_VM", 0x100), ("CLONE_PIDFD", 0x1000), ("CLONE_THREAD", 0x10000),
    ("CLONE_IO", 0x80000000), ("SIGCHLD", 17),
    # include/uapi/linux/pidfd.h, include/uapi/linux/fcntl.h
    ("PIDFD_NONBLOCK", 0x800), ("PIDFD_THREAD", 0x80),
    ("PIDFD_SELF_THREAD", -10000), ("PIDFD_SELF_THREAD_GROUP", -10001),
    ("PIDFD_SELF", -10000), ("PIDFD_SELF_PROCESS", -10001), ("AT_FDCWD", -100),
    # include/uapi/asm-generic/fcntl.h
    ("O_NONBLOCK", 0o4000), ("O_CLOEXEC", 0o2000000), ("O_DIRECTORY", 0o200000),
    # include/uapi/linux/wait.h
    ("WALL", 0x40000000), ("WCLONE", 0x80000000),
])
def test_header_values(name, expected):
    assert getattr(uapi, name) == expected


def test_pidfd_flags_are_open_flags():
    # pidfd.h defines them as the open flags, so they must move together.
    assert uapi.PIDFD_NONBLOCK == uapi.O_NONBLOCK
    assert uapi.PIDFD_THREAD == uapi.O_EXCL


def test_kernel_spellings_of_wait_flags():
    assert uapi.value("__WALL") == uapi.WALL
    assert uapi.value("__WCLONE") == uapi.WCLONE
    assert uapi.names("W", uapi.WALL | uapi.WNOHANG) == "WNOHANG|__WALL"
    with pytest.raises(KeyError):
        uapi.value("WALL")  # not a kernel name


def test_mctl_is_simulator_defined():
    assert [uapi.value(f"MCTL_{n}") for n in (
        "SET_NOHUGEPAGE", "CLEAR_NOHUGEPAGE", "SET_HUGEPAGE", "CLEAR_HUGEPAGE",
        "SET_FADE_ON_DEATH", "CLEAR_FADE_ON_DEATH", "GET")] == [1, 2, 3, 4, 5, 6, 7]
    assert uapi.MCTL_SET_DEFAULT_EXEC == 1
    assert uapi.names("MCTL", 7) == "MCTL_GET"
    assert uapi.names("MCTL_FLAGS", 1) == "MCTL_SET_DEFAULT_EXEC"


# Where this machine has kernel uapi headers, check every constant they define.  They
# may be older than 6.18 (then the newer names are simply absent), never different.
_HEADERS = ["/usr/include/asm-generic/mman-common.h", "/usr/include/asm-generic/mman.h",
            "/usr/include/linux/mman.h", "/usr/include/x86_64-linux-gnu/asm/mman.h",
            "/usr/include/linux/prctl.h", "/usr/include/linux/sched.h",
            "/usr/include/asm-generic/fcntl.h", "/usr/include/linux/fcntl.h",
            "/usr/include/linux/wait.h", "/usr/include/x86_64-linux-gnu/asm/signal.h"]
_DEFINE = re.compile(r"^#\s*define\s+(\w+)\s+\(?(-?(?:0[xX][0-9a-fA-F]+|\d+))\)?(?:[UL]*)\s*"
                     r"(?:/\*.*)?$", re.M)


@pytest.mark.skipif(not LINUX_X86_64, reason="values are the x86-64 Linux ones")
def test_matches_installed_headers():
    found = {}
    for path in _HEADERS:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        for name, num in _DEFINE.findall(text):
            found[name] = uapi.value(num)  # C syntax, octal included
    known = set(uapi._VALUE)
    checked = sorted(known & found.keys())
    if not checked:
        pytest.skip("no kernel uapi headers installed")
    assert {n: uapi._VALUE[n] for n in checked} == {n: found[n] for n in checked}


# --- value() ------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, expected", [
    ("PROT_READ|PROT_WRITE", 3),
    ("PROT_READ | PROT_WRITE | PROT_EXEC", 7),
    ("PROT_NONE", 0),
    ("MAP_PRIVATE|MAP_ANONYMOUS", 0x22),
    ("MAP_PRIVATE|0x20", 0x22),
    ("0x22", 0x22), ("34", 34), ("0", 0), ("0644", 0o644), ("-100", -100),
    ("MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|0x54000000", 0x54040022),  # 2 MiB pages
    ("CLONE_VM|CLONE_FS|SIGCHLD", 0x311),
    ("O_WRONLY|O_CREAT|O_TRUNC", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ("AT_FDCWD", -100), ("PIDFD_SELF", -10000), ("PIDFD_SELF_PROCESS", -10001),
    ("PR_SET_VMA", 0x53564d41), ("MADV_GUARD_INSTALL", 102),
])
def test_value(expr, expected):
    assert uapi.value(expr) == expected


@pytest.mark.parametrize("expr", ["PROT_READ|PROT_BOGUS", "MAP_ANON", "prot_read",
                                  "MADV_COLLAPSE|NOPE"])
def test_value_unknown_name_raises_keyerror_naming_it(expr):
    bad = [t for t in expr.split("|") if t not in uapi._VALUE][0]
    with pytest.raises(KeyError, match=bad):
        uapi.value(expr)


@pytest.mark.parametrize("expr", ["", "PROT_READ||PROT_WRITE", "0x", "08", "1.5",
                                  "PROT_READ+PROT_WRITE"])
def test_value_malformed_raises_valueerror(expr):
    with pytest.raises(ValueError):
        uapi.value(expr)


# --- names() ------------------------------------------------------------------------------

@pytest.mark.parametrize("family, v, expected", [
    ("PROT", 3, "PROT_READ|PROT_WRITE"),
    ("PROT", 0, "PROT_NONE"),
    ("PROT", 0x40 | 1, "PROT_READ|0x40"),
    ("PROT", 0x01000005, "PROT_READ|PROT_EXEC|PROT_GROWSDOWN"),
    ("MAP", 0x22, "MAP_PRIVATE|MAP_ANONYMOUS"),
    ("MAP", 0x03, "MAP_SHARED_VALIDATE"),
    ("MAP", 0x28, "MAP_DROPPABLE|MAP_ANONYMOUS"),
    ("MAP", 0x0, "0"),
    ("MAP", 0x30, "MAP_FIXED|MAP_ANONYMOUS"),          # type 0: no type name
    ("MAP", 0x05, "0x5"),                               # an invalid type stays numeric
    ("MAP", 0x100022, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE"),
    ("MAP", 0x54040022, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|0x54000000"),
    ("MAP", 0x4000022, "MAP_PRIVATE|MAP_ANONYMOUS|MAP_UNINITIALIZED"),
    ("MREMAP", 3, "MREMAP_MAYMOVE|MREMAP_FIXED"),
    ("MREMAP", 0, "0"),
    ("MLOCK", 1, "MLOCK_ONFAULT"),
    ("MCL", 3, "MCL_CURRENT|MCL_FUTURE"),
    ("MADV", 0, "MADV_NORMAL"),
    ("MADV", 14, "MADV_HUGEPAGE"),
    ("MADV", 103, "MADV_GUARD_REMOVE"),
    ("MADV", 6, "6"),
    ("MADV", 7, "7"),
    ("PR", 41, "PR_SET_THP_DISABLE"),
    ("PR", 0x53564d41, "PR_SET_VMA"),
    ("PR", 2, "PR_GET_PDEATHSIG"),
    ("PR", 999, "999"),
    ("PR_THP_DISABLE", 2, "PR_THP_DISABLE_EXCEPT_ADVISED"),
    ("PR_MDWE", 3, "PR_MDWE_REFUSE_EXEC_GAIN|PR_MDWE_NO_INHERIT"),
    ("PR_SET_VMA", 0, "PR_SET_VMA_ANON_NAME"),
    ("CLONE", 0x311, "SIGCHLD|CLONE_VM|CLONE_FS"),
    ("CLONE", 0x100, "CLONE_VM"),
    ("CLONE", 0x109, "CLONE_VM|0x9"),
    ("PIDFD", 0x800, "PIDFD_NONBLOCK"),
    ("PIDFD", 0x880, "PIDFD_THREAD|PIDFD_NONBLOCK"),
    ("PIDFD_SELF", -10000, "PIDFD_SELF_THREAD"),
    ("PIDFD_SELF", -10001, "PIDFD_SELF_THREAD_GROUP"),
    ("O", 0, "O_RDONLY"),
    ("O", 0o1101, "O_WRONLY|O_CREAT|O_TRUNC"),
    ("O", 0o2000002, "O_RDWR|O_CLOEXEC"),
    ("O", 3, "0x3"),                                    # accmode 3 has no name
    ("O", 0o4000, "O_RDONLY|O_NONBLOCK"),
    ("AT", -100, "AT_FDCWD"),
    ("W", 1, "WNOHANG"),
    ("W", 0, "0"),
    ("W", -0x80000000, "__WCLONE"),                     # an int with bit 31 set
    ("MCTL", 99, "99"),
])
def test_names(family, v, expected):
    assert uapi.names(family, v) == expected


def test_names_keeps_families_apart():
    # The same number means different things in different families.
    assert uapi.names("O", 0x800) == "O_RDONLY|O_NONBLOCK"
    assert uapi.names("PIDFD", 0x800) == "PIDFD_NONBLOCK"
    assert uapi.names("PR", 1) == "PR_SET_PDEATHSIG"
    assert uapi.names("PR_MDWE", 1) == "PR_MDWE_REFUSE_EXEC_GAIN"


def test_names_unknown_family():
    with pytest.raises(KeyError, match="NOPE"):
        uapi.names("NOPE", 1)


@pytest.mark.parametrize("family, name", list(_all_names()))
def test_round_trip_each_name(family, name):
    v = uapi.value(name)
    assert uapi.value(uapi.names(family, v)) == v
    if family != "O" or name in ("O_RDONLY", "O_WRONLY", "O_RDWR"):
        assert uapi.names(family, v) == name
    else:
        assert uapi.names(family, v) == f"O_RDONLY|{name}"  # the access mode is shown


@pytest.mark.parametrize("family", [f for f in uapi.families()
                                    if uapi._FAMILIES[f].bitmask])
def test_round_trip_combinations(family):
    f = uapi._FAMILIES[family]
    bits = [f.values[n] for n in f.members]
    for i in range(1 << min(len(bits), 10)):
        v = sum(b for j, b in enumerate(bits) if i >> j & 1)
        for _mask, choices in f.fields:
            v |= f.values[choices[i % len(choices)]]
        text = uapi.names(family, v)
        assert uapi.value(text) == v, (family, hex(v), text)


def test_every_name_is_a_module_int():
    for name, v in uapi._VALUE.items():
        attr = {"__WALL": "WALL", "__WCLONE": "WCLONE"}.get(name, name)
        assert type(getattr(uapi, attr)) is int and getattr(uapi, attr) == v


def test_families():
    fams = uapi.families()
    assert isinstance(fams, list)
    for fam in ("PROT", "MAP", "MREMAP", "MLOCK", "MCL", "MADV", "PR", "CLONE", "PIDFD",
                "O", "W", "MCTL"):
        assert fam in fams
    fams.append("X")  # a copy: callers cannot change the module's table
    assert "X" not in uapi.families()
