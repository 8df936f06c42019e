"""Workloads: seeded, deterministic programs that drive simulated processes over
simulated time.

A workload is a Python generator: it makes calls on a ``Process`` (mmap, touch,
read, fork, ...) and yields the number of seconds to wait before it goes on, as a
program sleeps or computes between its memory accesses.  ``start(k, gen)`` puts it on
the kernel's clock; ``k.advance(seconds)`` then runs every started workload, the
background daemons (khugepaged, kswapd) and any recorder (``mmsim.metrics.record``)
in time order.  System calls themselves take no simulated time.

    k = mmsim.Kernel(thp="always")
    proc = k.spawn()
    start(k, sparse_toucher(proc, 64 << 20, stride=64 << 10, interval=0.01))
    rec = mmsim.metrics.record(k, every=1.0)
    k.advance(60)
    rec.frame()

A workload whose process is killed (the OOM killer: ``mmsim.Killed`` from its own
call, or ESRCH from its next call when another's call killed it) ends there; its
``Task`` says so.  Any other exception is the workload's own error and is raised
from ``advance``.  The library of workloads is in ``files``, ``anon`` and
``processes``; ``fade`` has the two FADE_ON_DEATH studies.
"""

import errno

from ..errors import Killed

__all__ = ["Task", "start"]


class Task:
    """A started workload: ``name``, ``done`` (it returned or was killed), ``killed``,
    ``result`` (the generator's return value) and ``steps`` (how often it ran)."""

    __slots__ = ("kernel", "gen", "name", "proc", "done", "killed", "result", "steps")

    def __init__(self, kernel, gen, name, proc=None):
        self.kernel = kernel
        self.gen = gen
        self.name = name
        self.proc = proc
        self.done = self.killed = False
        self.result = None
        self.steps = 0

    def __repr__(self):
        state = "killed" if self.killed else "done" if self.done else "running"
        return f"<Task {self.name} {state} after {self.steps} steps>"

    def step(self):
        """Run the workload to its next yield and schedule what follows."""
        self.steps += 1
        try:
            delay = next(self.gen)
        except StopIteration as stop:
            self.done = True
            self.result = stop.value
            return
        except Killed:
            self.done = self.killed = True
            return
        except OSError as e:
            proc = self.proc
            if e.errno != errno.ESRCH or proc is None or proc.state == "running":
                raise
            self.done = self.killed = True   # killed while it waited
            return
        if delay is None:
            delay = 0.0
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise ValueError(f"workload {self.name} yielded {delay!r}: "
                             "a workload yields seconds to wait (a number >= 0)")
        self.kernel.call_later(delay, self.step)


def start(kernel, gen, delay=0.0, name=None, proc=None):
    """Run the generator ``gen`` on ``kernel``'s clock, first after ``delay``
    seconds; ``proc`` is the process it drives, if one (so that its death ends the
    task).  Returns its Task."""
    task = Task(kernel, gen, name or getattr(gen, "__name__", "workload"), proc)
    kernel.call_later(delay, task.step)
    return task
