"""Exec's layout under ASLR worked out from a log (`mmsim replay --follow`): the PIE
bias and the interpreter from their RELRO mprotects, mmap_base and the vDSO below the
interpreter, the break from the first brk(NULL); real logs recorded with full ASLR."""

import json
import os
import pathlib
import random
import shutil
import subprocess

import attrs
import hypothesis
import hypothesis.strategies as st
import pytest

from mmsim import Kernel, binfmt_elf, cli, exec_follow
from mmsim.binfmt_elf import (ET_DYN, ET_EXEC, PF_R, PF_W, PF_X, PT_GNU_RELRO, PT_LOAD,
                              ElfImage, ExecRandom, ProgramHeader, plan_exec)
from mmsim.defs import PAGE_SIZE, RLIMIT_STACK_DEFAULT, TASK_SIZE, page_align
from mmsim.replay import Replayer
from mmsim.strace import Event, parse, read_trace

DATA = pathlib.Path(__file__).parent / "data" / "strace" / "aslr"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
WORK = pathlib.Path("/tmp/mmsim-aslr")     # where record.sh put the logs' input files
WORDS = b"pear\napple\nfig\nbanana\n"


def _pie(relro_vaddr=0x3DF0, relro_size=0x210):
    """A small PIE program with a RELRO segment, like /usr/bin/true."""
    return ElfImage(ET_DYN, 0x1000, 64, 4, (
        ProgramHeader(PT_LOAD, PF_R, 0, 0, 0x600, 0x600, 0x1000),
        ProgramHeader(PT_LOAD, PF_R | PF_X, 0x1000, 0x1000, 0x200, 0x200, 0x1000),
        ProgramHeader(PT_LOAD, PF_R | PF_W, 0x2DF0, 0x3DF0, 0x220, 0x228, 0x1000),
        ProgramHeader(PT_GNU_RELRO, PF_R, 0x2DF0, relro_vaddr, relro_size, relro_size, 1)),
        b"/lib64/ld-linux-x86-64.so.2")


def _interp():
    """A loader shaped like ld-linux-x86-64.so.2 (0x35000 bytes, RELRO at 0x33000)."""
    return ElfImage(ET_DYN, 0x1C00, 64, 3, (
        ProgramHeader(PT_LOAD, PF_R, 0, 0, 0x1000, 0x1000, 0x1000),
        ProgramHeader(PT_LOAD, PF_R | PF_W, 0x32640, 0x33640, 0x1800, 0x19C0, 0x1000),
        ProgramHeader(PT_GNU_RELRO, PF_R, 0x32640, 0x33640, 0x19C0, 0x19C0, 1)))


def _strings():
    return binfmt_elf._arg_strings("/p", ["p"], [], RLIMIT_STACK_DEFAULT)


def _drawn(seed):
    program = _pie()
    return ExecRandom.draw(random.Random(seed), True, program, True)


# ---------------------------------------------------------------------- solving


@pytest.mark.parametrize("seed", range(5))
def test_solve_recovers_the_pie_draw_and_the_break(seed):
    program, interp, strings = _pie(), _interp(), _strings()
    truth = _drawn(seed)
    layout = plan_exec(program, interp, strings, truth)
    relro = exec_follow.relro_range(program, layout.program.bias)
    other = _drawn(seed + 100)   # what the replay's own generator drew
    ev = exec_follow.ExecEvidence(layout.brk, (relro,))
    got = exec_follow.solve(program, interp, strings, other, ev)
    solved = plan_exec(program, interp, strings, got.random)
    assert solved.program.bias == layout.program.bias
    assert solved.brk == layout.brk
    # The stack is not in the evidence: it keeps the replay's own draw.
    assert solved.stack == plan_exec(program, interp, strings, other).stack


def test_mmap_base_is_the_interpreters_end():
    program, interp, strings = _pie(), _interp(), _strings()
    base = 0x7F0000000000
    relro = exec_follow.relro_range(interp, base)
    assert relro == (base + 0x33000, 0x2000)   # ld.so rounds the end down
    got = exec_follow.solve(program, interp, strings, _drawn(1),
                            exec_follow.ExecEvidence(None, (relro,)))
    assert got.mmap_base == base + 0x35000


def test_program_and_interpreter_told_apart_in_either_order():
    program, interp, strings = _pie(), _interp(), _strings()
    truth = _drawn(3)
    bias = plan_exec(program, interp, strings, truth).program.bias
    prog_relro = exec_follow.relro_range(program, bias)
    interp_relro = exec_follow.relro_range(interp, 0x7F1234560000)
    for order in ((prog_relro, interp_relro), (interp_relro, prog_relro)):
        got = exec_follow.solve(program, interp, strings, _drawn(4),
                                exec_follow.ExecEvidence(None, order))
        assert plan_exec(program, interp, strings, got.random).program.bias == bias
        assert got.mmap_base == 0x7F1234560000 + 0x35000


def test_a_bias_outside_the_randomisation_range_is_not_forced():
    program, interp, strings = _pie(), _interp(), _strings()
    drawn = _drawn(2)
    relro = exec_follow.relro_range(program, 0x10000000)   # far below ELF_ET_DYN_BASE
    got = exec_follow.solve(program, interp, strings, drawn,
                            exec_follow.ExecEvidence(None, (relro,)))
    assert got is None


def test_non_pie_keeps_its_address_and_takes_the_break():
    program = ElfImage(ET_EXEC, 0x401000, 64, 2, (
        ProgramHeader(PT_LOAD, PF_R | PF_X, 0, 0x400000, 0x2000, 0x2000, 0x1000),
        ProgramHeader(PT_LOAD, PF_R | PF_W, 0x2000, 0x402000, 0x100, 0x5000, 0x1000)),
        b"/lib64/ld-linux-x86-64.so.2")
    interp, strings = _interp(), _strings()
    drawn = ExecRandom.draw(random.Random(7), True, program, True)
    brk = page_align(0x407000) + PAGE_SIZE + (1234 << 12)
    got = exec_follow.solve(program, interp, strings, drawn,
                            exec_follow.ExecEvidence(brk, ()))
    layout = plan_exec(program, interp, strings, got.random)
    assert layout.program.bias == 0 and layout.brk == brk


def test_without_randomisation_nothing_is_forced():
    program, interp, strings = _pie(), _interp(), _strings()
    assert exec_follow.solve(program, interp, strings, ExecRandom(),
                             exec_follow.ExecEvidence(0x555555559000, ())) is None


# ---------------------------------------------------------------------- gathering


def _call(pid, name, args, result):
    return Event(1, "call", pid=pid, name=name, args=list(args), result=result)


def test_gather_skips_memory_a_logged_call_mapped_and_stops_at_the_next_exec():
    events = [
        _call(None, "brk", [0], 0x5600_0000_0000),
        _call(None, "mmap", [0, 8192, 3, 0x22, -1, 0], 0x7F00_0000_0000),
        _call(None, "mprotect", [0x7F00_0000_1000, 4096, 1], 0),     # logged: not evidence
        _call(7, "mprotect", [0x5555_0000_0000, 4096, 1], 0),        # another process
        _call(None, "mprotect", [0x5555_5555_8000, 4096, 1], -12),   # failed
        _call(None, "mprotect", [0x5555_5555_9000, 4096, 1], 0),
        _call(None, "execve", [], 0),
        _call(None, "mprotect", [0x5555_5555_a000, 4096, 1], 0),
    ]
    ev = exec_follow.gather(events, None)
    assert ev.brk == 0x5600_0000_0000
    assert ev.mprotects == ((0x5555_5555_9000, 4096),)


# ---------------------------------------------------------------------- real logs


def _host_differs(log):
    for path, size in MANIFEST[log].items():
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return f"{path} differs from the machine the log was recorded on"
    return None


@pytest.fixture(scope="module")
def inputs():
    """The files the logs read in /tmp: the input of sort, xz and gzip and the preload
    library (rebuilt from its source when missing).  Only what this made is removed."""
    made = []
    if not WORK.exists():
        WORK.mkdir()
        made.append(WORK)
    words = WORK / "words.txt"
    if not words.exists():
        words.write_bytes(WORDS)
        made.append(words)
    preload = WORK / "maps_preload.so"
    if not preload.exists() and shutil.which("gcc"):
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(preload),
                        str(DATA / "maps_preload.c")], check=True)
        made.append(preload)
    yield
    for path in reversed(made):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _replay(log, upto=None):
    events = parse(read_trace(str(DATA / log)), str(DATA / log))
    if upto is not None:
        events = events[:upto(events)]
    replayer = Replayer(Kernel(), follow=True)
    return replayer, replayer.run(events)


@pytest.mark.parametrize("log", sorted(MANIFEST))
def test_aslr_log_reproduces_every_recorded_result(log, inputs):
    reason = _host_differs(log)
    if reason:
        pytest.skip(reason)
    if "maps" in log and not (WORK / "maps_preload.so").exists():
        pytest.skip("no gcc to build the preload library the log loaded")
    outputs = [p for p in (WORK / "words.txt.xz", WORK / "words.txt.gz") if p.exists()]
    if outputs and log in ("xz.strace", "gzip.strace"):
        pytest.skip(f"{outputs[0]} is in the way: the log's O_EXCL open made it")
    _, outcomes = _replay(log)
    assert [o.line() for o in outcomes if not o.matches()] == []


def test_aslr_log_fails_without_follow(inputs):
    """The seeded randomisation stays as it was without --follow: the program's RELRO
    mprotect lands on nothing."""
    if _host_differs("true.strace"):
        pytest.skip("the machine's files differ from the recording's")
    status = cli.main(["replay", str(DATA / "true.strace"), "--check"])
    assert status == 1
    assert cli.main(["replay", str(DATA / "true.strace"), "--check", "--follow"]) == 0


def _maps_key(line):
    fields = line.split(None, 5)
    name = fields[5].strip() if len(fields) > 5 else ""
    return fields[0], fields[1], fields[2], name


@pytest.mark.parametrize("log", ["true_maps.strace", "sort_maps.strace"])
def test_final_layout_matches_the_real_maps(log, inputs):
    reason = _host_differs(log)
    if reason:
        pytest.skip(reason)
    if not (WORK / "maps_preload.so").exists():
        pytest.skip("no gcc to build the preload library the log loaded")
    # The preload copied /proc/self/maps just before exit_group: replay up to there.
    replayer, outcomes = _replay(log, lambda evs: max(
        i for i, e in enumerate(evs) if e.kind == "call" and e.name == "exit_group"))
    assert all(o.matches() for o in outcomes)
    proc = replayer.procs[None]
    sim = replayer.kernel.proc_read(f"/proc/{proc.pid}/maps").splitlines()
    real = (DATA / log.replace(".strace", ".maps")).read_text().splitlines()
    # Not comparable: [stack] (its top is not in a log).
    skip = ("[stack]",)
    want = [_maps_key(ln) for ln in real if not ln.rstrip().endswith(skip)]
    got = [_maps_key(ln) for ln in sim if not ln.rstrip().endswith(skip)]
    assert got == want
    names = [k[3] for k in got]
    # The vDSO sits right below the interpreter, as the kernel places it.
    at = names.index("[vdso]")
    assert names[at - 2:at + 2] == ["[vvar]", "[vvar_vclock]", "[vdso]",
                                    os.path.realpath("/lib64/ld-linux-x86-64.so.2")]


def test_a_loader_run_as_the_program_gives_mmap_base():
    """ld.so run directly (a static PIE): the mmap search placed it below mmap_base, so
    its RELRO gives mmap_base, and the break is ELF_ET_DYN_BASE plus the draw."""
    program, strings = _interp(), _strings()
    drawn = ExecRandom.draw(random.Random(5), True, program, False)
    base = 0x7F0209EAA000
    relro = exec_follow.relro_range(program, base)
    brk = plan_exec(program, None, strings, attrs.evolve(drawn, brk_pages=777)).brk
    got = exec_follow.solve(program, None, strings, drawn,
                            exec_follow.ExecEvidence(brk, (relro,)))
    assert got.mmap_base == base + 0x35000
    assert plan_exec(program, None, strings, got.random).brk == brk


def test_a_break_no_kernel_could_give_is_not_followed():
    """The first brk(NULL) sets the break under --follow only when the kernel could
    have returned it: page-aligned and below TASK_SIZE."""
    from mmsim.replay import replay_trace
    for bogus in ("0xfffffffffffff000", "0x555555559001"):
        out = replay_trace(f"brk(NULL) = {bogus}\nbrk(NULL) = 0x1000\n", Kernel(), follow=True)
        assert out[0].result == out[1].result < TASK_SIZE
        assert out[0].result % PAGE_SIZE == 0


def test_help_says_follow_works_out_the_exec_layout(capsys):
    with pytest.raises(SystemExit):
        cli.main(["replay", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "exec's layout" in out


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(
    brk=st.one_of(st.none(), st.integers(0, (1 << 64) - 1)),
    mprotects=st.lists(st.one_of(
        st.tuples(st.integers(0, (1 << 64) - 1).map(lambda a: a & ~0xFFF),
                  st.integers(0, 1 << 40)),
        # RELRO ranges of the program and of the loader at any page-aligned bias.
        st.integers(0, (1 << 52) - 1).map(lambda p: exec_follow.relro_range(_pie(), p << 12)),
        st.integers(0, (1 << 52) - 1).map(
            lambda p: exec_follow.relro_range(_interp(), p << 12))).filter(bool),
        max_size=4),
    interp=st.booleans(), seed=st.integers(0, 50))
def test_solve_takes_any_evidence_and_forces_only_what_a_draw_gives(brk, mprotects, interp,
                                                                    seed):
    """Whatever a log shows, solve gives draws within their ranges (or nothing), and the
    layout they plan is the one the evidence names."""
    program, loader, strings = _pie(), _interp(), _strings()
    loader = loader if interp else None
    drawn = ExecRandom.draw(random.Random(seed), True, program, interp)
    got = exec_follow.solve(program, loader, strings, drawn,
                            exec_follow.ExecEvidence(brk, tuple(mprotects)))
    if got is None:
        return
    rnd = got.random
    if not rnd.randomize:
        # Only a break with no random gap says the log was recorded unrandomised.
        assert rnd == ExecRandom()
        assert brk == plan_exec(program, loader, strings, rnd).brk
        return
    assert 0 <= rnd.mmap_pages < 1 << 28 and 0 <= rnd.brk_pages < 1 << 18
    assert rnd.stack_pages == drawn.stack_pages and rnd.sp_drop == drawn.sp_drop
    layout = plan_exec(program, loader, strings, rnd)
    if brk is not None and rnd.brk_pages != drawn.brk_pages:
        assert layout.brk == brk
    if rnd.mmap_pages != drawn.mmap_pages:
        assert exec_follow.relro_range(program, layout.program.bias) in mprotects
    if got.mmap_base is not None:
        assert 0 < got.mmap_base <= TASK_SIZE


def test_a_log_recorded_without_randomisation_is_recognised():
    """A setarch -R log replayed with --follow alone: the break right after the image
    (no random gap) is one no randomised exec gives, so exec is replayed unrandomised,
    stack top included."""
    program, interp, strings = _pie(), _interp(), _strings()
    fixed = plan_exec(program, interp, strings, ExecRandom())
    ev = exec_follow.ExecEvidence(fixed.brk, (
        exec_follow.relro_range(program, fixed.program.bias),
        exec_follow.relro_range(interp, 0x7FFFF7FC3000)))
    got = exec_follow.solve(program, interp, strings, _drawn(9), ev)
    assert got.random == ExecRandom()
    assert got.mmap_base == 0x7FFFF7FC3000 + 0x35000


@pytest.mark.parametrize("log", ["true.strace", "ls.strace", "sh_vfork.strace",
                                 "sh_fork.strace", "cat.strace"])
def test_setarch_log_reproduces_with_follow_alone(log):
    top = DATA.parent
    manifest = json.loads((top / "manifest.json").read_text())
    for path, size in manifest[log].items():
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            pytest.skip(f"{path} differs from the machine the log was recorded on")
    assert cli.main(["replay", str(top / log), "--follow", "--check"]) == 0
