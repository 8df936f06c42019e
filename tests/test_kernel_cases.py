"""The kernel's own test cases as data: each file in tests/data/kernel_cases/ is one case
of tools/testing/vma/vma.c or of tools/testing/selftests/mm/{merge,mremap_test,
prctl_thp_disable}.c, written as a trace in strace syntax with the kernel's results and,
in ``# vmas`` comment lines, the VMAs the kernel has at that point
(tests/data/kernel_cases/README.md defines the format and lists the cases left out).

For each file:

* the header names a known source and test, and every call has its result written in;
* the recorded results are the simulator's (``replay`` in the THP mode the file names);
* every ``# vmas`` line holds in the simulator after the calls above it;
* on the live kernel, every recorded result and every ``# vmas`` line holds (the data is
  the kernel's), and ``mmsim diff`` finds no difference, nor do mmsim's VMAs differ
  from the live ones at any ``# vmas`` line.  These skip without a live kernel, or when
  the file needs a THP mode the host is not in.
"""

import pathlib
import re

import attrs
import pytest

from mmsim import live, testing
from mmsim.kernel import Kernel
from mmsim.trace import format_result, parse, replay

CASES_DIR = pathlib.Path(__file__).parent / "data" / "kernel_cases"
FILES = sorted(CASES_DIR.glob("*.strace"))
SOURCES = ("tools/testing/vma/vma.c", "tools/testing/selftests/mm/merge.c",
           "tools/testing/selftests/mm/mremap_test.c",
           "tools/testing/selftests/mm/prctl_thp_disable.c")
THP_MODES = ("always", "madvise", "never")
DEFAULT_THP = "madvise"     # for a case that names no THP mode (its VMAs do not depend on it)
WINDOW = live.WINDOW

# Cases where mmsim and Linux 6.18 really differ: stem -> what differs.  The data keeps the
# kernel's behaviour, so the tests comparing mmsim's VMAs with the data or with the live
# kernel are expected to fail for these (strictly: a fix in mmsim makes them pass, and
# then the entry must go).
KNOWN_DIFFERENCES = {}

_VMAS = re.compile(r"#\s*vmas\b(?:\s+pid\s+(\d+))?\s*:\s*(.*)\Z")
_VMA = re.compile(r"([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps])((?: [A-Za-z]+=\d+)*)\Z")
_HEADER = re.compile(r"#\s*(source|checks|thp)\s*:\s*(.*)\Z")
# Optional per-VMA fields of a ``# vmas`` line: name in the file -> key in smaps_vmas().
EXTRA_FIELDS = {"AnonHugePages": "anon_huge_kb"}


@attrs.frozen
class Expectation:
    """One ``# vmas`` line: the VMAs process ``pid`` (None: the initial process) has in
    the window once every call on the lines before ``line`` has run."""
    line: int
    pid: int | None
    vmas: tuple     # ((start, end, perms, ((field, value), ...)), ...)


@attrs.frozen
class Case:
    path: pathlib.Path
    text: str
    source: str
    checks: str
    thp: str | None
    expectations: tuple


def read_case(path):
    """The file's header and ``# vmas`` lines, checked; ValueError names a bad line."""
    text = path.read_text()
    header, expectations = {}, []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{path.name}:{lineno}"
        m = _HEADER.match(line)
        if m:
            if m[1] in header:
                raise ValueError(f"{where}: a second '{m[1]}:' line")
            header[m[1]] = m[2].strip()
            continue
        if not re.match(r"#\s*vmas\b", line):
            continue
        m = _VMAS.match(line)
        if not m:
            raise ValueError(f"{where}: cannot read {line!r}")
        pid = int(m[1]) if m[1] else None
        vmas = []
        if m[2].strip() != "none":
            for item in m[2].split(","):
                v = _VMA.match(item.strip())
                if not v:
                    raise ValueError(f"{where}: cannot read the VMA {item.strip()!r}")
                extras = []
                for pair in v[4].split():
                    name, _, value = pair.partition("=")
                    if name not in EXTRA_FIELDS:
                        raise ValueError(f"{where}: unknown field {name!r} (known: "
                                         f"{', '.join(EXTRA_FIELDS)})")
                    extras.append((name, int(value)))
                vmas.append((int(v[1], 16), int(v[2], 16), v[3], tuple(extras)))
        for (s, e, *_), nxt in zip(vmas, vmas[1:] + [None]):
            if not s < e or (nxt is not None and e > nxt[0]):
                raise ValueError(f"{where}: VMAs must be non-empty and in address order")
            if s < WINDOW[0] or e > WINDOW[1]:
                raise ValueError(f"{where}: {s:x}-{e:x} is outside the window")
        expectations.append(Expectation(lineno, pid, tuple(vmas)))
    for key in ("source", "checks"):
        if key not in header:
            raise ValueError(f"{path.name}: no '# {key}:' line")
    thp = header.get("thp")
    if thp is not None and thp not in THP_MODES:
        raise ValueError(f"{path.name}: '# thp: {thp}' is not one of {THP_MODES}")
    return Case(path, text, header["source"], header["checks"], thp, tuple(expectations))


def show(vmas):
    """VMAs in the ``# vmas`` syntax, for messages."""
    if not vmas:
        return "none"
    return ", ".join(f"{s:x}-{e:x} {p}" + "".join(f" {k}={v}" for k, v in extras)
                     for s, e, p, extras in vmas)


def observed(expectation, vmas):
    """The VMAs a backend reported, in the expectation's terms: the same optional fields
    for the VMA at the same place, so only what the file states is compared."""
    asked = {(s, e): extras for s, e, _, extras in expectation.vmas}
    out = []
    for v in vmas:
        names = [name for name, _ in asked.get((v["start"], v["end"]), ())]
        extras = tuple((name, v[EXTRA_FIELDS[name]]) for name in names)
        out.append((v["start"], v["end"], v["perms"], extras))
    return tuple(out)


def check_expectation(case, expectation, vmas, who):
    where = f"{case.path.name}:{expectation.line}"
    pid = "the initial process" if expectation.pid is None else f"pid {expectation.pid}"
    assert vmas is not None, f"{where}: {pid} does not exist on {who}"
    got = observed(expectation, vmas)
    assert got == expectation.vmas, (
        f"{where}: the VMAs of {pid} on {who} differ\n"
        f"  expected: {show(expectation.vmas)}\n  {who}: {show(got)}")


def walk(case, backend):
    """Run the case's calls on ``backend`` in trace order; yield ``(event, result)``
    for each call and ``(expectation, vmas)`` at each ``# vmas`` line."""
    events = parse(case.text, str(case.path))
    queue = sorted([(ev.line, 0, ev) for ev in events if ev.kind == "call"]
                   + [(exp.line, 1, exp) for exp in case.expectations],
                   key=lambda item: item[:2])
    for _, kind, item in queue:
        if kind == 0:
            yield item, backend.step(item)
        else:
            yield item, backend.vmas(testing.INITIAL if item.pid is None else item.pid)


def sim_thp(case):
    return case.thp or DEFAULT_THP


CASES = {path.stem: path for path in FILES}


def params(compares_mmsim_vmas=False):
    """One parameter per case; a test that compares mmsim's VMAs is expected to fail
    for the cases in KNOWN_DIFFERENCES."""
    out = []
    for stem in CASES:
        marks = []
        if compares_mmsim_vmas and stem in KNOWN_DIFFERENCES:
            marks.append(pytest.mark.xfail(reason=KNOWN_DIFFERENCES[stem], strict=True))
        out.append(pytest.param(stem, marks=marks, id=stem))
    return out


def load(stem):
    return read_case(CASES[stem])


# ---------------------------------------------------------------------- the data itself


def test_every_source_has_cases():
    """At least one file per kernel source, so a lost file is noticed."""
    counts = {src: 0 for src in SOURCES}
    for path in FILES:
        source = read_case(path).source.split(":", 1)[0]
        assert source in counts, f"{path.name}: unknown source {source}"
        counts[source] += 1
    assert all(counts.values()), counts


@pytest.mark.parametrize("stem", params())
def test_case_is_well_formed(stem):
    """The header names one known source file and test; every call has its result
    written in; there is at least one ``# vmas`` line; pids are ones the trace made."""
    case = load(stem)
    path, _, test = case.source.partition(":")
    assert path in SOURCES and test.strip(), case.source
    assert case.checks
    assert case.expectations, f"{stem}: no '# vmas' line"
    events = parse(case.text, str(case.path))
    calls = [ev for ev in events if ev.kind == "call"]
    assert calls and all(ev.result is not None for ev in calls), (
        [f"line {ev.line}" for ev in calls if ev.result is None])
    forked = {ev.result for ev in calls if ev.name == "fork"}
    assert {exp.pid for exp in case.expectations} - {None} <= forked


# ---------------------------------------------------------------------- the simulator


@pytest.mark.parametrize("stem", params())
def test_results_are_the_simulators(stem):
    case = load(stem)
    outs = replay(case.text, Kernel(randomize=False, thp=sim_thp(case)), file=str(case.path))
    bad = [f"line {o.event.line}: {o.line()} but the trace recorded "
           f"{format_result(o.event.name, o.event.result)}" for o in outs if not o.matches()]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("stem", params(compares_mmsim_vmas=True))
def test_vmas_hold_in_the_simulator(stem):
    case = load(stem)
    sim = testing.SimBackend(kernel=Kernel(randomize=False, thp=sim_thp(case)))
    try:
        for item, got in walk(case, sim):
            if isinstance(item, Expectation):
                check_expectation(case, item, got, "mmsim")
    finally:
        sim.close()


# ---------------------------------------------------------------------- the live kernel


def skip_unless_live(case):
    host = live.host_thp()
    if case.thp is not None and case.thp != host:
        pytest.skip(f"the case needs THP '{case.thp}'; the host's is '{host}'")


@pytest.mark.live
@pytest.mark.parametrize("stem", params())
def test_results_and_vmas_hold_on_the_live_kernel(stem):
    """The data is the kernel's: every recorded result and every ``# vmas`` line holds
    on the live kernel."""
    case = load(stem)
    skip_unless_live(case)
    real = testing.LiveBackend()
    try:
        for item, got in walk(case, real):
            if isinstance(item, Expectation):
                check_expectation(case, item, got, "the live kernel")
            else:
                assert got == item.result, (
                    f"{case.path.name}:{item.line}: {item.name}() returned "
                    f"{format_result(item.name, got)} on the live kernel; the trace records "
                    f"{format_result(item.name, item.result)}")
    finally:
        real.close()


def fields(vmas):
    return [{k: v[k] for k in live.VMA_FIELDS} for v in vmas or ()]


@pytest.mark.live
@pytest.mark.parametrize("stem", params(compares_mmsim_vmas=True))
def test_mmsim_matches_the_live_kernel(stem):
    """``mmsim diff`` finds no difference, and at each ``# vmas`` line mmsim's VMAs equal
    the live kernel's in every field mmsim diff compares (flags, Rss, THPs...)."""
    case = load(stem)
    skip_unless_live(case)
    diffs, skipped = live.diff_trace(case.text, str(case.path))
    assert not skipped, skipped
    assert not diffs, "\n".join(diffs)
    real = testing.LiveBackend()
    sim = testing.SimBackend(kernel=Kernel(randomize=False, thp=live.host_thp()))
    try:
        for (item, got), (_, ours) in zip(walk(case, real), walk(case, sim)):
            if isinstance(item, Expectation):
                assert fields(ours) == fields(got), (
                    f"{case.path.name}:{item.line}: mmsim's VMAs differ from the live "
                    f"kernel's\n  mmsim: {fields(ours)}\n  live:  {fields(got)}")
    finally:
        real.close()
        sim.close()


# ---------------------------------------------------------------------- the checks can fail


def test_a_wrong_vmas_line_is_caught(tmp_path):
    text = CASES["vma_simple_merge"].read_text()
    wrong = text.replace("200000000000-200000003000 rw-p", "200000000000-200000002000 rw-p, "
                         "200000002000-200000003000 rw-p")
    assert wrong != text
    path = tmp_path / "wrong.strace"
    path.write_text(wrong)
    case = read_case(path)
    sim = testing.SimBackend(kernel=Kernel(randomize=False, thp=DEFAULT_THP))
    with pytest.raises(AssertionError, match="wrong.strace:.*differ"):
        for item, got in walk(case, sim):
            if isinstance(item, Expectation):
                check_expectation(case, item, got, "mmsim")


def test_a_wrong_result_is_caught():
    text = CASES["vma_simple_merge"].read_text()
    wrong = text.replace("= 0x200000002000", "= 0x200000005000")
    assert wrong != text
    outs = replay(wrong, Kernel(randomize=False, thp=DEFAULT_THP))
    assert [o.event.line for o in outs if not o.matches()]


def test_a_malformed_vmas_line_is_refused(tmp_path):
    path = tmp_path / "bad.strace"
    path.write_text("# source: tools/testing/vma/vma.c: x\n# checks: y\n"
                    "# vmas: 200000000000-200000001000 rwp\n")
    with pytest.raises(ValueError, match="bad.strace:3: cannot read the VMA"):
        read_case(path)
