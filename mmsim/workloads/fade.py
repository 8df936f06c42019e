"""The two FADE_ON_DEATH studies of the mctl thread, as workloads.

1. ``git_log_readers``: Johannes Weiner's objection.  A shell runs a short-lived
   ``git log`` (it maps and reads the same pack files, then exits) again and again,
   with another short-lived process streaming other file data in between.  Its exit
   normally promotes the pages it used, so they survive the stream; with
   FADE_ON_DEATH on every process they go to the inactive list, the stream evicts
   them, and the next run refaults them.
2. ``killed_app``: Barry Song's Android case.  Background apps and a foreground app
   share a memory cgroup with short-lived app launches; the foreground app is
   killed.  Fading only its exclusive file pages sends them to the inactive list's
   tail, and the surviving apps refault less.

``readers_study`` and ``killed_app_study`` build the machine, run the workload to
its end on the simulated clock and return memory.stat deltas (examples/
fade_on_death.py prints them; the ``fade`` study of mmsim.studies sweeps them).
"""

from ..kernel import Kernel
from ..uapi import MAP_SHARED, MCTL_SET_FADE_ON_DEATH, PIDFD_SELF, PROT_READ
from . import start

MiB = 1 << 20


def memory_stat(k, cgroup):
    """memory.stat of a cgroup as a dict of ints."""
    text = k.proc_read(f"/sys/fs/cgroup/{cgroup}/memory.stat")
    return {name: int(value) for name, value in (line.split() for line in text.splitlines())}


def new_cgroup(k, name, limit=None):
    """mkdir a cgroup, with memory.max ``limit`` when given."""
    k.mkdir(f"/sys/fs/cgroup/{name}")
    if limit is not None:
        k.proc_write(f"/sys/fs/cgroup/{name}/memory.max", str(limit))


def map_and_read(proc, path, size):
    """Map a file shared and read every page of it; returns the address."""
    fd = proc.open(path)
    addr = proc.mmap(0, size, PROT_READ, MAP_SHARED, fd, 0)
    proc.close(fd)
    proc.touch(addr, size, write=False)
    return addr


def git_log_readers(shell, packs, pack_size, other, other_size, runs, fade_every_process,
                    pause=0.5):
    """``runs`` times: a child of ``shell`` maps and reads every pack (with
    FADE_ON_DEATH set on itself when ``fade_every_process``) and exits; ``pause``
    seconds later another child streams the next ``other_size`` bytes of ``other``
    and exits."""
    for run in range(runs):
        git = shell.fork()
        if fade_every_process:
            git.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, 0)
        for path in packs:
            map_and_read(git, path, pack_size)
        git.exit(0)
        shell.wait4(git.pid, 0)
        yield pause
        work = shell.fork()
        fd = work.open(other)
        addr = work.mmap(0, other_size, PROT_READ, MAP_SHARED, fd, run * other_size)
        work.touch(addr, other_size, write=False)
        work.exit(0)
        shell.wait4(work.pid, 0)
        yield pause


def run_to_end(k, task, step=1.0):
    """Advance ``k``'s clock until ``task`` is done."""
    while not task.done:
        k.advance(step)


def readers_study(fade_every_process, scale=1, runs=10, seed=1):
    """Study 1: a shell in a cgroup of 50 MiB runs ``git log`` (reads 32 MiB of pack
    files through mappings, then exits) ``runs`` times, with 16 MiB of other file
    data streamed by another short-lived process between runs.  The 2 MiB above the
    48 MiB both need hold what readahead reads past the stream's mapping: without
    them the stream evicts the packs whatever their exit did.  Returns the cgroup's
    memory.stat at the end."""
    k = Kernel(seed=seed)
    k.make_dirs("/repo")
    packs = [f"/repo/pack{i}" for i in range(4)]
    for path in packs:
        k.create_file(path, 8 * MiB // scale)
    k.create_file("/repo/other", runs * 16 * MiB // scale)
    new_cgroup(k, "git", 50 * MiB // scale)
    shell = k.spawn(cgroup="git")
    task = start(k, git_log_readers(shell, packs, 8 * MiB // scale, "/repo/other",
                                    16 * MiB // scale, runs, fade_every_process),
                 name="git-log", proc=shell)
    run_to_end(k, task)
    return memory_stat(k, "git")


def killed_app(k, launcher, rounds, launch_mib, scale, fade_killed_app, result, pause=0.5):
    """Three background apps (12 MiB of files each) and a foreground app (20 MiB) in
    the cgroup ``apps``, with a short-lived launch reading ``launch_mib`` MiB each
    round; after ``rounds`` rounds the foreground app is killed (FADE_ON_DEATH set on
    it first when ``fade_killed_app``), and the background apps go on for as many
    rounds.  Fills ``result`` with the background apps' memory.stat after the kill
    minus before it."""
    size = 12 * MiB // scale

    def start_app(name, size):
        new_cgroup(k, f"apps/{name}")
        app = launcher.fork()
        k.proc_write(f"/sys/fs/cgroup/apps/{name}/cgroup.procs", str(app.pid))
        k.create_file(f"/apps/{name}.data", size)
        return app, map_and_read(app, f"/apps/{name}.data", size), size

    background = [start_app(f"bg{i}", size) for i in range(3)]
    foreground = start_app("fg", 20 * MiB // scale)
    new_cgroup(k, "apps/launches")
    launches = 0

    def launch():
        nonlocal launches
        app = launcher.fork()
        k.proc_write("/sys/fs/cgroup/apps/launches/cgroup.procs", str(app.pid))
        path = f"/apps/launch{launches}"
        k.create_file(path, launch_mib * MiB // scale)
        map_and_read(app, path, launch_mib * MiB // scale)
        app.exit(0)
        launcher.wait4(app.pid, 0)
        launches += 1

    for r in range(rounds):
        fg, addr, n = foreground
        fg.touch(addr, n, write=False)   # in the foreground: used all the time
        bg, addr, n = background[r % 3]
        bg.touch(addr, n, write=False)
        launch()
        yield pause
    before = [memory_stat(k, f"apps/bg{i}") for i in range(3)]
    fg = foreground[0]
    if fade_killed_app:
        fg.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, 0)   # what the killer would set
    fg.exit(137)   # killed: its address space is torn down as at any exit
    launcher.wait4(fg.pid, 0)
    for r in range(rounds, 2 * rounds):
        bg, addr, n = background[r % 3]
        bg.touch(addr, n, write=False)
        launch()
        yield pause
    after = [memory_stat(k, f"apps/bg{i}") for i in range(3)]
    result.update({name: sum(a[name] - b[name] for a, b in zip(after, before))
                   for name in after[0]})


def killed_app_study(fade_killed_app, scale=1, rounds=8, launch_mib=24, seed=1):
    """Study 2 in a 64 MiB cgroup (the launcher stays in the root cgroup and moves
    each app it starts: a cgroup whose children have the memory controller holds no
    process itself).  Returns the background apps' memory.stat deltas."""
    k = Kernel(seed=seed)
    k.make_dirs("/apps")
    new_cgroup(k, "apps", 64 * MiB // scale)
    k.proc_write("/sys/fs/cgroup/apps/cgroup.subtree_control", "+memory")
    launcher = k.spawn()
    result = {}
    task = start(k, killed_app(k, launcher, rounds, launch_mib, scale, fade_killed_app,
                               result), name="killed-app", proc=launcher)
    run_to_end(k, task)
    return result
