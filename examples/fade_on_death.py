"""Does MCTL_SET_FADE_ON_DEATH help under memory pressure?  The two published results
of the FADE_ON_DEATH thread, reproduced with the simulator alone.

1. Johannes Weiner's objection: a short-lived program run again and again (`git log`
   mapping the same pack files) relies on its exit promoting the pages it used, so
   they survive the other work in between.  With FADE_ON_DEATH on every process, the
   exit sends them to the inactive list instead, the other work evicts them, and the
   next run refaults them: more refaults and major faults.
2. Barry Song's Android case: when the low-memory killer kills an app that was in the
   foreground, its exclusive file pages are active and young; promoted once more at
   its exit they outlive the pages of the apps that stay.  Fading only the killed
   app's pages sends them to the tail of the inactive list, next to be reclaimed, and
   the surviving apps refault less.

Both run in a memory cgroup with a limit, through the cgroup v2 files.

Run: python examples/fade_on_death.py [--small]
"""

import sys

import mmsim
from mmsim.uapi import MAP_SHARED, MCTL_SET_FADE_ON_DEATH, PIDFD_SELF, PROT_READ

MiB = 1 << 20


def memory_stat(k, cgroup):
    """memory.stat of a cgroup as a dict of ints."""
    text = k.proc_read(f"/sys/fs/cgroup/{cgroup}/memory.stat")
    return {name: int(value) for name, value in (line.split() for line in text.splitlines())}


def new_cgroup(k, name, limit=None):
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


def repeated_readers(fade_every_process, scale=1, runs=10):
    """Experiment 1: a shell in a cgroup of 50 MiB runs `git log` (reads 32 MiB of
    pack files through mappings, then exits) ``runs`` times, with 16 MiB of other file
    data streamed by another short-lived process between runs.  The 2 MiB above the
    48 MiB both need hold what readahead reads past the stream's mapping: without
    them the stream evicts the packs whatever their exit did."""
    k = mmsim.Kernel(seed=1)
    k.make_dirs("/repo")
    packs = [f"/repo/pack{i}" for i in range(4)]
    for path in packs:
        k.create_file(path, 8 * MiB // scale)
    k.create_file("/repo/other", runs * 16 * MiB // scale)
    new_cgroup(k, "git", 50 * MiB // scale)
    shell = k.spawn()
    k.proc_write("/sys/fs/cgroup/git/cgroup.procs", str(shell.pid))
    other = 16 * MiB // scale
    for run in range(runs):
        git = shell.fork()
        if fade_every_process:
            git.mctl(PIDFD_SELF, MCTL_SET_FADE_ON_DEATH, 0)
        for path in packs:
            map_and_read(git, path, 8 * MiB // scale)
        git.exit(0)
        shell.wait4(git.pid, 0)
        work = shell.fork()
        fd = work.open("/repo/other")
        addr = work.mmap(0, other, PROT_READ, MAP_SHARED, fd, run * other)
        work.touch(addr, other, write=False)
        work.exit(0)
        shell.wait4(work.pid, 0)
    return memory_stat(k, "git")


def killed_app(fade_killed_app, scale=1, rounds=8, launch_mib=24):
    """Experiment 2: three background apps (12 MiB of files each) and a foreground app
    (20 MiB) share a 64 MiB cgroup with short-lived app launches that read
    ``launch_mib`` MiB each; after ``rounds`` rounds the foreground app is killed, and
    the background apps go on for as many rounds.  Returns the background apps'
    memory.stat after the kill minus before it."""
    k = mmsim.Kernel(seed=1)
    k.make_dirs("/apps")
    new_cgroup(k, "apps", 64 * MiB // scale)
    # A cgroup whose children have the memory controller holds no process itself:
    # the launcher stays in the root cgroup and moves each app it starts.
    k.proc_write("/sys/fs/cgroup/apps/cgroup.subtree_control", "+memory")
    launcher = k.spawn()
    size = 12 * MiB // scale

    def start(name, size):
        new_cgroup(k, f"apps/{name}")
        app = launcher.fork()
        k.proc_write(f"/sys/fs/cgroup/apps/{name}/cgroup.procs", str(app.pid))
        k.create_file(f"/apps/{name}.data", size)
        return app, map_and_read(app, f"/apps/{name}.data", size), size

    background = [start(f"bg{i}", size) for i in range(3)]
    foreground = start("fg", 20 * MiB // scale)
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
    after = [memory_stat(k, f"apps/bg{i}") for i in range(3)]
    return {name: sum(a[name] - b[name] for a, b in zip(after, before)) for name in after[0]}


FIELDS = ("workingset_refault_file", "workingset_activate_file", "pgmajfault")


def main(argv):
    scale = 4 if "--small" in argv else 1
    print("1. repeated short-lived readers of a shared file set (the git log case)")
    print(f"{'FADE_ON_DEATH':<28}" + "".join(f"{f:>26}" for f in FIELDS))
    for label, fade in (("off", False), ("on every process", True)):
        stat = repeated_readers(fade, scale)
        print(f"{label:<28}" + "".join(f"{stat[f]:>26}" for f in FIELDS))
    print()
    print("2. the surviving apps after a foreground app is killed (the Android case)")
    print(f"{'FADE_ON_DEATH':<28}" + "".join(f"{f:>26}" for f in FIELDS))
    for label, fade in (("off", False), ("on the killed app", True)):
        stat = killed_app(fade, scale)
        print(f"{label:<28}" + "".join(f"{stat[f]:>26}" for f in FIELDS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
