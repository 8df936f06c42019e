"""The names ``mmsim.trace`` had before it was split into ``mmsim.strace`` (parsing)
and ``mmsim.replay`` (replaying), kept so existing imports go on working."""

from .replay import ADDRESS_RESULTS, Outcome, Replayer, format_result
from .replay import replay_trace as replay
from .strace import (ARITY, EXECUTED, FORKS, IGNORED, KNOWN, Event, Raw, Str, TraceError,
                     check_pids, parse, parse_line)

__all__ = ["parse", "parse_line", "check_pids", "replay", "Replayer", "Outcome", "Event",
           "Raw", "Str", "TraceError", "format_result", "EXECUTED", "IGNORED", "KNOWN",
           "ARITY", "FORKS", "ADDRESS_RESULTS"]
