"""The child runner: memory syscalls run on the live kernel in a forked child, so tests
can compare the simulator with it.

``run(calls)`` forks a child, executes ``calls`` there (the parent's address space is
never touched), and returns each call's result plus the child's VMAs inside an address
window, as parsed from ``/proc/self/smaps``::

    run([("mmap", 0x200000000000, 3 * 4096, 3, 0x100022, -1, 0)])
    -> {"results": [0x200000000000], "vmas": [{"start": 0x200000000000, ...}]}

Supported calls, with arguments in the C order: ``mmap`` (anonymous only: fd -1),
``munmap``, ``mprotect``, ``madvise``, ``mremap`` (always five arguments), ``mlock``,
``mlock2``, ``munlock``, and ``touch(addr, length, write)``, which faults every page of
the range by reading or writing one byte per page.  A result is the call's return value
(an address for mmap/mremap, else 0) or ``-errno``.
"""

import ast
import ctypes
import json
import mmap as _mmap
import os
import platform
import resource
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .smaps import WINDOW, smaps_blocks, smaps_vmas

__all__ = ["available", "host_thp", "load_libc", "run", "in_child", "in_v1_memcg"]

PAGE_SIZE = _mmap.PAGESIZE
EFAULT = 14

# Argument count of each supported call (after the name); checked before forking so a
# malformed call is a plain ValueError rather than a child failure.
_ARITY = {"mmap": 6, "munmap": 2, "mprotect": 3, "madvise": 3, "mremap": 5,
          "mlock": 2, "mlock2": 3, "munlock": 2, "touch": 3, "prctl": 5, "fork": 0}

# The value of MAP_FAILED, ((void *)-1), as ctypes reads a c_void_p back.
_MAP_FAILED = (1 << 64) - 1


def available() -> tuple[bool, str]:
    """Return ``(True, "")`` if calls can run on this kernel, else ``(False, reason)``."""
    # The expectations built on this module (flag mnemonics, smaps fields, errno
    # choices) were checked on Linux 6.x x86-64 only.
    uname = os.uname()
    if platform.system() != "Linux":
        return False, f"live kernel calls need Linux, not {platform.system()}"
    if uname.machine != "x86_64":
        return False, f"live kernel calls need x86_64, not {uname.machine}"
    major = uname.release.split(".", 1)[0]
    if major != "6":
        return False, f"live kernel calls need kernel 6.x, not {uname.release}"
    return True, ""


def host_thp() -> str:
    """The live kernel's THP mode (sysfs), for a simulator run to match it."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[", 1)[1].split("]", 1)[0]
    except (OSError, IndexError):
        return "madvise"


def run(calls: Iterable[Sequence], window: tuple[int, int] = WINDOW) -> dict:
    """Run ``calls`` in order in a fresh forked child; return its results, the window's
    VMAs parsed, and their raw smaps text (``smaps_text``).

    A ``("fork",)`` call forks: the child goes on with the remaining calls and is the
    process reported (its result for the fork is 0); the parent waits, keeping its own
    mappings alive meanwhile, as a parent would."""
    calls = [tuple(call) for call in calls]
    for call in calls:
        if not call or call[0] not in _ARITY or len(call) - 1 != _ARITY[call[0]]:
            raise ValueError(f"unsupported call {call!r}")
        if call[0] == "mmap" and call[5] != -1:
            raise ValueError(f"only anonymous mmap (fd -1) is supported: {call!r}")
    window = (int(window[0]), int(window[1]))

    report = in_child(lambda: _child(calls, window), f"calls={calls!r}")
    return {"results": report["results"], "vmas": report["vmas"],
            "smaps_text": report["smaps_text"]}


def load_libc() -> ctypes.CDLL:
    """Load libc with prototypes wide enough that 64-bit addresses survive the call."""
    libc = ctypes.CDLL(None, use_errno=True)
    vp, size, c_int = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
    protos = {
        "mmap": (vp, [vp, size, c_int, c_int, c_int, ctypes.c_long]),
        "munmap": (c_int, [vp, size]),
        "mprotect": (c_int, [vp, size, c_int]),
        "madvise": (c_int, [vp, size, c_int]),
        # mremap is variadic; declaring the optional new_address as a fifth fixed
        # argument is safe on x86-64, where both conventions pass integers in registers.
        "mremap": (vp, [vp, size, size, c_int, vp]),
        "mlock": (c_int, [vp, size]),
        "mlock2": (c_int, [vp, size, ctypes.c_uint]),
        "munlock": (c_int, [vp, size]),
        "prctl": (c_int, [c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]),
    }
    for name, (restype, argtypes) in protos.items():
        func = getattr(libc, name)
        func.restype, func.argtypes = restype, argtypes
    libc.syscall.restype = ctypes.c_long   # variadic: arguments are passed as given
    return libc


def in_child(fn: Callable[[], Any], what: str = "") -> Any:
    """Run ``fn`` in a forked child of this process and return its JSON-able result
    (credentials, mappings and limits may change there); RuntimeError, with the child's
    traceback or how it died and ``what`` it was doing, if the child fails."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        # Child: whatever happens, never return into the caller's (e.g. pytest's) code.
        status = 1
        try:
            os.close(read_fd)
            try:
                report = {"ok": True, "value": fn()}
            except BaseException:
                report = {"ok": False, "error": traceback.format_exc()}
            data = json.dumps(report).encode()
            while data:
                data = data[os.write(write_fd, data):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while chunk := pipe.read(65536):
            chunks.append(chunk)
    _, wait_status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not os.WIFEXITED(wait_status) or os.WEXITSTATUS(wait_status) != 0 or not data:
        if os.WIFSIGNALED(wait_status):
            how = f"was killed by signal {os.WTERMSIG(wait_status)}"
        else:
            how = f"exited with status {os.waitstatus_to_exitcode(wait_status)}"
        raise RuntimeError(f"live child {how} after sending {len(data)} bytes; {what}")
    report = json.loads(data)
    if not report["ok"]:
        raise RuntimeError(f"live child raised:\n{report['error']}")
    return report["value"]


def _child(calls, window):
    """The child's work: clear the window, run the calls, report results and VMAs."""
    # Experiments may legitimately crash the child; don't leave core files behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = load_libc()
    if libc.munmap(window[0], window[1] - window[0]) != 0:
        raise OSError(ctypes.get_errno(), f"cannot clear window {window[0]:#x}-{window[1]:#x}")
    results = []
    for name, *args in calls:
        if name == "touch":
            results.append(_touch(*args))
            continue
        if name == "fork":
            # The child carries on with the remaining calls and is the one reported;
            # this process just waits for it and passes its exit status on.
            pid = os.fork()
            if pid:
                _, status = os.waitpid(pid, 0)
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF or 0)
            results.append(0)
            continue
        if name == "prctl":
            ret = libc.prctl(*args)
            results.append(-ctypes.get_errno() if ret == -1 else ret)
            continue
        ret = getattr(libc, name)(*args)
        if name in ("mmap", "mremap"):
            # c_void_p turns NULL into None; MAP_FAILED comes back as 2**64 - 1.
            ret = -ctypes.get_errno() if ret == _MAP_FAILED else (ret or 0)
        elif ret != 0:
            ret = -ctypes.get_errno()
        results.append(ret)
    with open("/proc/self/smaps") as f:
        text = f.read()
    return {"results": results, "vmas": smaps_vmas(text, window),
            "smaps_text": smaps_blocks(text, window)}


def _touch(addr, length, write):
    """Fault each page of [addr, addr+length), or return -EFAULT without touching any."""
    # A fault on memory we may not access would kill the child, so check the whole
    # range against /proc/self/maps first.  This is stricter than the hardware (x86
    # lets a write-only page be read), but it never crashes.
    end = addr + length
    need = "w" if write else "r"
    with open("/proc/self/maps") as f:
        vmas = smaps_vmas(f.read(), (addr, max(end, addr + 1)))
    cursor = addr
    for vma in vmas:
        if cursor >= end or vma["start"] > cursor or need not in vma["perms"]:
            break
        cursor = vma["end"]
    if cursor < end:
        return -EFAULT
    page = addr - addr % PAGE_SIZE
    while page < end:
        at = max(page, addr)
        if write:
            ctypes.memset(at, 1, 1)
        else:
            ctypes.string_at(at, 1)
        page += PAGE_SIZE
    return 0


def in_v1_memcg(name: str, child: Callable[[str], Any], limit: int | None = None) -> Any:
    """On the host: a new v1 memory cgroup (with ``limit`` bytes, if given), a child
    process moved into it running ``child(cg)`` (the cgroup's directory), and that
    call's value (a literal) back; the cgroup is removed afterwards.  Needs root and
    /sys/fs/cgroup/memory."""
    cg = f"/sys/fs/cgroup/memory/mmsim-{name}-{os.getpid()}"
    os.mkdir(cg)
    rfd, wfd = os.pipe()
    pid = None
    try:
        if limit is not None:
            with open(cg + "/memory.limit_in_bytes", "w") as f:
                f.write(str(limit))
        pid = os.fork()
        if pid == 0:
            try:
                os.close(rfd)
                with open(cg + "/cgroup.procs", "w") as f:
                    f.write(str(os.getpid()))
                os.write(wfd, repr(child(cg)).encode())
            finally:
                os._exit(0)
        os.close(wfd)
        data = b""
        while chunk := os.read(rfd, 4096):
            data += chunk
        os.waitpid(pid, 0)
        pid = None
        os.close(rfd)
    finally:
        if pid is not None:
            # The parent failed before reaping its child: a cgroup with a task in it
            # cannot be removed.
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        for _ in range(20):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)
    return ast.literal_eval(data.decode())
