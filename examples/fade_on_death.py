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

Both run in a memory cgroup with a limit, through the cgroup v2 files, as workloads
on the simulated clock (mmsim/workloads/fade.py has them; ``mmsim sweep
examples/sweep_fade.toml`` runs them over a grid).

Run: python examples/fade_on_death.py [--small]
"""

import sys

from mmsim.workloads.fade import killed_app_study, readers_study

FIELDS = ("workingset_refault_file", "workingset_activate_file", "pgmajfault")


def main(argv):
    scale = 4 if "--small" in argv else 1
    print("1. repeated short-lived readers of a shared file set (the git log case)")
    print(f"{'FADE_ON_DEATH':<28}" + "".join(f"{f:>26}" for f in FIELDS))
    for label, fade in (("off", False), ("on every process", True)):
        stat = readers_study(fade, scale)
        print(f"{label:<28}" + "".join(f"{stat[f]:>26}" for f in FIELDS))
    print()
    print("2. the surviving apps after a foreground app is killed (the Android case)")
    print(f"{'FADE_ON_DEATH':<28}" + "".join(f"{f:>26}" for f in FIELDS))
    for label, fade in (("off", False), ("on the killed app", True)):
        stat = killed_app_study(fade, scale)
        print(f"{label:<28}" + "".join(f"{stat[f]:>26}" for f in FIELDS))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
