"""mmsim: a userspace simulator of the Linux memory-management subsystem.

The public API: ``Kernel`` (``Kernel().spawn()`` gives a ``Process`` whose methods are
the system calls), ``replay_trace`` and ``replay_file`` (a strace-syntax trace replayed,
one ``Outcome`` per call), and mmsim's own exceptions, all ``MmsimError``: a failing
system call raises ``OSError`` with the kernel's errno instead, as ``os`` does, and a
call whose own process the OOM killer kills raises ``Killed`` (it never returns)."""

from .errors import Killed, MmsimError, NotComparable, TraceError
from .kernel import Kernel
from .replay import Outcome, replay_file, replay_trace
from .task import Process
from .vma_tree import VmaTree

__version__ = "0.1.0"
__all__ = ["Kernel", "Process", "replay_trace", "replay_file", "Outcome", "MmsimError",
           "TraceError", "NotComparable", "Killed", "VmaTree"]
