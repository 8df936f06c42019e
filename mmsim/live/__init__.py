"""The live kernel, for comparing the simulator with it: smaps parsing (``smaps``), the
child runner that makes calls in a forked child (``child``), the helper processes one
per trace pid and their protocol (``helper``), ``mmsim diff`` (``diff``), and the
memory-pressure scenarios run in a cgroup v1 memory cgroup (``pressure``, imported on
its own).  The names tests and benchmarks use are here too: ``from mmsim.live import
run``."""

from .child import available, host_thp, in_child, in_v1_memcg, load_libc, run
from .diff import diff_trace
from .helper import LiveProc, LiveReplayer, NotComparable
from .smaps import VMA_FIELDS, WINDOW, smaps_blocks, smaps_vmas

__all__ = ["WINDOW", "VMA_FIELDS", "available", "host_thp", "in_child", "in_v1_memcg",
           "load_libc", "run",
           "smaps_vmas", "smaps_blocks", "diff_trace", "LiveProc", "LiveReplayer",
           "NotComparable"]
