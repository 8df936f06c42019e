"""``import mmsim`` is enough for the common uses: Kernel and Process, replaying a
trace, and mmsim's own exceptions under one base class; the public functions of the
replay, CLI and live-kernel modules carry type hints."""

import inspect
import pathlib

import pytest

import mmsim
from mmsim import cli, errors, live, replay, strace, testing

DIFF = pathlib.Path(__file__).parent / "data" / "diff"


def test_the_top_level_names():
    for name in ("Kernel", "Process", "replay_trace", "replay_file", "Outcome",
                 "MmsimError", "TraceError", "NotComparable", "Killed"):
        assert name in mmsim.__all__ and hasattr(mmsim, name), name
    k = mmsim.Kernel()
    assert isinstance(k.spawn(), mmsim.Process)


def test_one_base_class_for_mmsims_own_exceptions():
    for exc in (mmsim.TraceError, mmsim.NotComparable, mmsim.Killed, testing.Difference):
        assert issubclass(exc, mmsim.MmsimError), exc
    # the same classes wherever they are imported from
    assert strace.TraceError is mmsim.TraceError is errors.TraceError
    assert live.NotComparable is mmsim.NotComparable
    assert errors.Killed is mmsim.Killed
    # a malformed trace is still a ValueError, as before
    assert issubclass(mmsim.TraceError, ValueError)


def test_replay_a_text_and_a_file():
    path = DIFF / "01_split_merge.strace"
    outs = mmsim.replay_file(str(path))
    assert outs and all(o.matches() for o in outs)
    again = mmsim.replay_trace(path.read_text(), mmsim.Kernel(), str(path))
    assert [o.result for o in again] == [o.result for o in outs]
    with pytest.raises(mmsim.MmsimError, match=r"^t:1: unknown call frob\(\)"):
        mmsim.replay_trace("frob()\n", file="t")


PUBLIC = [strace.read_trace, strace.parse, strace.parse_line, strace.check_pids,
          strace.iovecs, replay.replay_trace, replay.replay_file, replay.format_result,
          replay.c_string, replay.Replayer.__init__, replay.Replayer.run,
          replay.Replayer.call, replay.Replayer.dump, replay.Outcome.line,
          replay.Outcome.matches, cli.main, cli.build_parser, cli.run_replay, cli.render,
          live.available, live.host_thp, live.run, live.load_libc, live.in_child,
          live.smaps_vmas, live.smaps_blocks, live.diff_trace, testing.run,
          testing.conformance_machine, testing.errno_of, testing.data_file,
          errors.TraceError.__init__]


@pytest.mark.parametrize("fn", PUBLIC, ids=lambda f: f.__qualname__)
def test_public_functions_have_type_hints(fn):
    sig = inspect.signature(fn)
    missing = [p.name for p in sig.parameters.values()
               if p.name != "self" and p.annotation is inspect.Parameter.empty]
    assert missing == [] and sig.return_annotation is not inspect.Signature.empty
