"""Process trees: a launcher that starts services under a THP policy, and storms of
short-lived processes (build jobs, ``git log``-like readers of a shared file set).

A *service* or *job* is a function ``f(proc)`` returning a workload generator for
the forked process ``proc``.  The launcher forks (and, given a program path, execs)
each child; the policy is set once on the launcher and reaches the children the way
the kernel passes it on (mctl's MCTL_SET_DEFAULT_EXEC and PR_SET_THP_DISABLE both
survive fork and exec)."""

from ..errors import Killed
from ..uapi import (MCTL_SET_DEFAULT_EXEC, MCTL_SET_NOHUGEPAGE, PIDFD_SELF,
                    PR_SET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED)
from . import start

# The launcher policies of issue 15's study, by name.
POLICIES = ("none", "mctl-nohugepage", "prctl-thp-disable", "prctl-except-advised")


def apply_policy(proc, policy):
    """Set ``policy`` (one of POLICIES) on ``proc``, for itself and all it starts."""
    if policy == "none":
        return
    if policy == "mctl-nohugepage":
        proc.mctl(PIDFD_SELF, MCTL_SET_NOHUGEPAGE, MCTL_SET_DEFAULT_EXEC)
    elif policy == "prctl-thp-disable":
        proc.prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)
    elif policy == "prctl-except-advised":
        proc.prctl(PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED, 0, 0)
    else:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")


def launcher(proc, services, policy="none", program=None, interval=0.0):
    """``proc`` sets ``policy`` then starts each service of ``services`` (a list of
    ``(name, service)``) in a child of its own, ``interval`` seconds apart; a child
    execs ``program`` first when one is given (a real ELF path).  Returns
    ``{name: (child process, its Task)}``."""
    apply_policy(proc, policy)
    started = {}
    for name, service in services:
        child = proc.fork()
        if program is not None:
            child.execve(program, [program])
        child.comm = name[:15]
        started[name] = (child, start(proc.kernel, service(child), name=name, proc=child))
        yield interval
    return started


def storm(parent, job, count, interval=0.1, reap=True):
    """``count`` short-lived children of ``parent``, one every ``interval`` seconds:
    each runs ``job(child)`` to its end, then exits and (with ``reap``) is waited
    for.  Returns how many ran."""
    for _ in range(count):
        child = parent.fork()
        try:
            yield from job(child)
        except Killed as e:
            if e.pid != child.tgid:
                raise
        if child.state == "running":
            child.exit(0)
        if reap:
            parent.wait4(child.pid, 0)
        yield interval
    return count
