"""``mmsim diff``: one trace run in the simulator and on the live kernel (through the
helper processes of mmsim.live.helper), and the differences between the two."""

from ..kernel import Kernel
from ..replay import Replayer, format_result
from ..strace import parse
from .child import host_thp
from .helper import LiveReplayer
from .smaps import VMA_FIELDS, WINDOW, smaps_vmas

__all__ = ["diff_trace"]


def _vma_text(v):
    return (f"{v['start']:x}-{v['end']:x} {v['perms']} rss {v['rss_kb']} kB anon "
            f"{v['anon_kb']} kB thp {v['anon_huge_kb']} kB locked {v['locked_kb']} kB "
            f"eligible {v['thp_eligible']} [{' '.join(v['flags'])}]")


def _compare_vmas(where, sim, live):
    sim = [{k: v[k] for k in VMA_FIELDS} for v in sim]
    live = [{k: v[k] for k in VMA_FIELDS} for v in live]
    if sim == live:
        return []
    lines = [f"{where}: the VMAs in the window differ"]
    lines += ["  - simulator " + _vma_text(v) for v in sim if v not in live]
    lines += ["  + live      " + _vma_text(v) for v in live if v not in sim]
    return lines


def diff_trace(text: str, file: str = "<trace>",
               window: tuple[int, int] = WINDOW) -> tuple[list[str], list[str]]:
    """Run a trace in the simulator and on the live kernel, one real process per trace
    pid; the list of differences (results, and VMAs in ``window`` at every dump and
    at the end), and the calls that could not be compared."""
    events = parse(text, file)
    sim = Replayer(Kernel(thp=host_thp(), randomize=False))
    # The live side faults nothing for a log's access lines (a failed one gives a
    # simulator Outcome the live side has no counterpart for).
    sim_out = [o for o in sim.run(events) if o.event.kind != "access"]
    live = LiveReplayer(window)
    try:
        live_out = live.run(parse(text, file))
        finals = {}
        for who, proc in live.procs.items():
            if proc.sock.fileno() >= 0:
                finals[who] = proc.vmas()
    finally:
        live.finish()
    diffs, skipped = [], []
    for s, lv in zip(sim_out, live_out):
        ev = s.event
        where = f"{file}:{ev.line}"
        if ev.kind == "dump":
            diffs += _compare_vmas(f"{where} dump pid {s.label}",
                                   smaps_vmas(s.smaps, window), lv.smaps)
        elif lv.result == "not comparable":
            skipped.append(f"{where}: {ev.name}() not comparable")
        elif s.result != lv.result:
            diffs.append(f"{where}: {s.line()} but the live kernel returned "
                         f"{format_result(ev.name, lv.result)}")
    for who, vmas in finals.items():
        proc = sim.procs.get(who)
        if proc is None or proc.mm is None:
            continue
        text = sim.kernel.proc_read(f"/proc/{proc.pid}/smaps")
        label = sim._label(who)
        diffs += _compare_vmas(f"{file}: at the end, pid {label}", smaps_vmas(text, window), vmas)
    return diffs, skipped
