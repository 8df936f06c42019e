"""The conformance kit (mmsim.testing): it finds a planted rule change with a short
reproducing trace, finds nothing between two copies of the same model, and finds
nothing between mmsim and the live kernel (CI-sized; `mmsim conform` runs it long)."""

import os
import pathlib
import re

import attrs
import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from mmsim import testing
from mmsim.kernel import Kernel
from mmsim.trace import parse, replay
from mmsim.uapi import MADV_DONTFORK, MADV_NORMAL


class ForgetsDontfork(testing.SimBackend):
    """A user's modified model: MADV_DONTFORK is accepted but not applied."""

    name = "modified model"

    def step(self, event):
        if event.name == "madvise" and event.args[2] == MADV_DONTFORK:
            event = attrs.evolve(event, args=[*event.args[:2], MADV_NORMAL])
        return super().step(event)


DOC = pathlib.Path(__file__).parent.parent / "docs" / "conformance.md"


def test_the_documented_planted_change_is_found_with_a_short_trace():
    # The block in docs/conformance.md, run as written: it must fail, every time.
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    ns = {}
    exec(compile(block, str(DOC), "exec"), ns)
    with pytest.raises(AssertionError) as info:
        ns["test_my_model"]()
    text = str(info.value)
    assert "the VMAs of pid" in text.splitlines()[0]
    trace = text[text.index("# my model against mmsim"):]
    calls = [line for line in trace.splitlines() if not line.startswith("#")]
    assert 1 <= len(calls) <= 3, trace
    assert "MADV_DONTFORK" in calls[-1]
    # The trace replays, and its results are the reference model's.
    outs = replay(trace, Kernel(randomize=False))
    assert all(o.matches() for o in outs)


def test_the_same_model_twice_never_differs():
    assert testing.run(testing.SimBackend, testing.SimBackend, examples=40, seed=1) is None


def test_state_machine_runs_with_two_models():
    machine = testing.conformance_machine(testing.SimBackend, testing.SimBackend)
    run_state_machine_as_test(machine, settings=settings(max_examples=15, deadline=None,
                                                         stateful_step_count=15))


def test_state_machine_reports_the_planted_change():
    machine = testing.conformance_machine(ForgetsDontfork, testing.SimBackend,
                                          calls=("mmap", "madvise"))
    # Shrinking a state machine run is slow and run() already shows shrinking: generate only.
    # Derandomized so CI sees the same generated runs every time (a random draw can miss).
    with pytest.raises(testing.Difference):
        run_state_machine_as_test(machine, settings=settings(max_examples=300, deadline=None,
                                                             stateful_step_count=20,
                                                             database=None, derandomize=True,
                                                             phases=[Phase.generate]))


def test_strategies_make_parseable_lines():
    from hypothesis import given
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(st.lists(testing.call_texts(), min_size=1, max_size=10))
    def check(lines):
        events = parse("".join(f"[pid {testing.INITIAL}] {line}\n" for line in lines))
        assert [e.name for e in events] == [line.split("(")[0] for line in lines]
    check()


@pytest.mark.live
def test_mmsim_conforms_to_the_live_kernel():
    # MMSIM_CONFORM_EXAMPLES raises the count for a long search; CI keeps it small.
    n = int(os.environ.get("MMSIM_CONFORM_EXAMPLES", "30"))
    diff = testing.run(testing.SimBackend, testing.LiveBackend, examples=n, seed=2026)
    assert diff is None, diff.message + "\n" + diff.trace


def test_generation_covers_every_call_but_mctl():
    from mmsim.trace import EXECUTED
    seen = set()
    real_do = testing.Session.do

    def do(self, pid, text):
        seen.add(text.split("(")[0])
        return real_do(self, pid, text)

    testing.Session.do = do
    try:
        assert testing.run(testing.SimBackend, testing.SimBackend, examples=150, seed=3) is None
    finally:
        testing.Session.do = real_do
    assert EXECUTED - seen == {"mctl"}
