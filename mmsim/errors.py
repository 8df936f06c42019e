"""mmsim's own exception types, under one base class.

A syscall that fails raises ``OSError`` with the kernel's errno, as Python's ``os``
module does; these are for what is not a kernel answer: a malformed trace, a call the
live kernel cannot be compared on."""


class MmsimError(Exception):
    """The base class of every exception mmsim defines."""


class TraceError(MmsimError, ValueError):
    """A malformed trace: ``file``, ``line`` (1-based) and what is wrong."""

    def __init__(self, file: str, line: int, message: str) -> None:
        if len(message) > 300:
            # It quotes the input, which may be a line of a megabyte.
            message = message[:300] + "..."
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


class NotComparable(MmsimError):
    """A call the live kernel has no counterpart for (mctl), or that a helper process
    cannot make safely (brk would move the helper's own heap)."""


class Killed(MmsimError):
    """The calling process was killed during its call (the OOM killer's SIGKILL): the
    call never returns, and the process is a zombie for its parent to reap."""

    def __init__(self, pid: int, signal: int) -> None:
        super().__init__(f"process {pid} was killed by signal {signal} (out of memory)")
        self.pid, self.signal = pid, signal


__all__ = ["MmsimError", "TraceError", "NotComparable", "Killed"]
