"""Exec's layout under ASLR, worked out from what a strace log shows after an execve.

A log never prints where exec put the program, the interpreter or the vDSO, but the
calls that follow pin them down:

* the dynamic loader makes each object's ``PT_GNU_RELRO`` range read-only with one
  ``mprotect`` once it is relocated.  For the program and for the loader itself that
  memory was mapped by exec, not by a logged call, so the first ``mprotect`` of memory
  no logged call mapped whose range is exactly an image's RELRO range (page-aligned
  start, end rounded down) gives that image's load bias;
* the interpreter is the first mapping of the new address space: a top-down search
  places it right below ``mmap_base``, so its end is ``mmap_base``, and the vDSO (which
  is searched for next) lands right below it.  A PIE without an interpreter (ld.so run
  by hand) is placed by the same search, and its end gives ``mmap_base`` the same way;
* the first ``brk(NULL)`` returns the randomised break.

``solve`` turns that evidence into the draws exec would have had to make
(``binfmt_elf.ExecDraws``) and checks each against the pure layout function
``plan_exec``, so exec then builds the address space through its usual code.  The stack
top leaves no trace in a log and stays a seeded random draw.
"""

import attrs

from .binfmt_elf import (ET_DYN, PT_GNU_RELRO, ExecDraws, ExecRandom, plan_exec,
                         total_mapping_size)
from .defs import (MMAP_MIN_ADDR, MMAP_RND_BITS, PAGE_SHIFT, PAGE_SIZE, TASK_SIZE, U64,
                   page_align, page_align_down)

BRK_RND_PAGES = 1 << 18     # arch_randomize_brk: within 1 GiB


@attrs.frozen
class ExecEvidence:
    """What a log shows after one successful execve: the first ``brk(NULL)`` result
    (None when there is none) and the ``(addr, length)`` of each successful mprotect of
    memory no logged call of that address space mapped, in log order."""

    brk: int | None = None
    mprotects: tuple = ()


# How many events after an execve its evidence is looked for in.
LOOKAHEAD = 20_000


def gather(events, pid, limit=LOOKAHEAD):
    """The ExecEvidence of the events that follow an execve by ``pid`` (up to its next
    execve or exit, at most ``limit`` events looked at)."""
    mapped = []
    brk = None
    found = []
    for n, ev in enumerate(events):
        if n >= limit:
            break
        if ev.kind != "call" or ev.pid != pid:
            continue
        name, args, res = ev.name, ev.args, ev.result
        if name in ("execve", "execveat") and res == 0 or name in ("exit", "exit_group"):
            break
        if not all(isinstance(a, int) for a in args[:3]):
            continue
        if name == "brk" and brk is None and args and args[0] == 0 and _address(res):
            brk = res
        elif name == "mmap" and len(args) > 1 and _address(res):
            mapped.append((res, res + page_align(args[1])))
        elif name == "mremap" and len(args) > 2 and _address(res):
            mapped.append((res, res + page_align(args[2])))
        elif name == "mprotect" and len(args) > 1 and res == 0:
            start, end = args[0], args[0] + page_align(args[1])
            if not any(lo < end and start < hi for lo, hi in mapped):
                found.append((args[0], args[1]))
        if brk is not None and len(found) >= 2:
            break
    return ExecEvidence(brk, tuple(found))


def _address(res):
    return isinstance(res, int) and res > 0


def relro_range(image, bias):
    """The ``(addr, length)`` the loader makes read-only for ``image`` loaded at
    ``bias``: its PT_GNU_RELRO from the page of its start to the page of its end, as
    ld.so's _dl_protect_relro rounds (None without one, or when it is empty)."""
    for ph in image.phdrs:
        if ph.type == PT_GNU_RELRO:
            start = page_align_down((bias + ph.vaddr) & U64)
            end = page_align_down((bias + ph.vaddr + ph.memsz) & U64)
            return (start, end - start) if end > start else None
    return None


def _image_bias(image, mprotects, used):
    """The first unused ``(index, bias)`` whose mprotect is exactly ``image``'s RELRO
    range at that bias."""
    for i, (addr, length) in enumerate(mprotects):
        if i in used or addr & (PAGE_SIZE - 1):
            continue
        for ph in image.phdrs:
            if ph.type == PT_GNU_RELRO:
                bias = (addr - page_align_down(ph.vaddr)) & U64
                if not bias & (PAGE_SIZE - 1) and relro_range(image, bias) == (addr, length):
                    return i, bias
                break
    return None


def solve(program, interp, strings, drawn, evidence):
    """The ExecDraws that give the layout ``evidence`` shows, keeping ``drawn``'s values
    for what it does not pin down (the stack); None when nothing can be worked out."""
    if not drawn.randomize:
        return None
    used = set()
    fixed = plan_exec(program, interp, strings, ExecRandom())
    if evidence.brk is not None and evidence.brk == fixed.brk:
        # A break right after the image, with no random gap, is one only an exec
        # without randomisation gives (setarch -R): replay it so, stack top included,
        # unless the program's RELRO shows it elsewhere.
        moved = _image_bias(program, evidence.mprotects, set()) if (
            program.e_type == ET_DYN and interp is not None) else None
        if moved is None or moved[1] == fixed.program.bias:
            if moved is not None:
                used.add(moved[0])
            return ExecDraws(ExecRandom(), _mmap_base(program, interp, evidence, used))
    rnd = drawn
    changed = False
    # The program: only a PIE run through an interpreter moves with the mmap draw.
    if program.e_type == ET_DYN and interp is not None and program.loads:
        got = _program_draw(program, interp, strings, rnd, evidence.mprotects, used)
        if got is not None:
            rnd, changed = got, True
    mmap_base = _mmap_base(program, interp, evidence, used)
    if evidence.brk is not None:
        low = plan_exec(program, interp, strings, attrs.evolve(rnd, brk_pages=0)).brk
        pages, rest = divmod(evidence.brk - low, PAGE_SIZE)
        if not rest and 0 <= pages < BRK_RND_PAGES:
            rnd, changed = attrs.evolve(rnd, brk_pages=pages), True
    if not changed and mmap_base is None:
        return None
    return ExecDraws(rnd, mmap_base)


def _mmap_base(program, interp, evidence, used):
    """mmap_base from the RELRO of the first image exec placed by a search (None when
    the evidence does not show it)."""
    # That image is the interpreter, or a PIE run without one (ld.so started by hand);
    # a top-down search put it right below mmap_base.
    searched = interp if interp is not None else (
        program if program.e_type == ET_DYN else None)
    if searched is None or not searched.loads:
        return None
    got = _image_bias(searched, evidence.mprotects, used)
    if got is None:
        return None
    used.add(got[0])
    first = min(page_align_down(ph.vaddr) for ph in searched.loads)
    base = (got[1] + first + page_align(total_mapping_size(searched.loads))) & U64
    return base if MMAP_MIN_ADDR < base <= TASK_SIZE else None


def _program_draw(program, interp, strings, rnd, mprotects, used):
    """The draws with the mmap offset that puts the PIE ``program`` where one of the
    ``mprotects`` shows its RELRO (None when none fits the randomisation's range)."""
    skip = set(used)
    while True:
        got = _image_bias(program, mprotects, skip)
        if got is None:
            return None
        index, bias = got
        skip.add(index)
        first = program.loads[0]
        load_bias = (bias + page_align_down(first.vaddr)) & U64
        # ELF_ET_DYN_BASE plus the draw, aligned down to the image's alignment: any
        # draw in the aligned slot will do; the plan says whether one exists.
        base = plan_exec(program, interp, strings, attrs.evolve(rnd, mmap_pages=0))
        pages = (load_bias - (base.program.bias + page_align_down(first.vaddr))) >> PAGE_SHIFT
        if 0 <= pages < 1 << MMAP_RND_BITS:
            trial = attrs.evolve(rnd, mmap_pages=pages)
            if plan_exec(program, interp, strings, trial).program.bias == bias:
                used.add(index)
                return trial


__all__ = ["ExecEvidence", "gather", "relro_range", "solve", "ExecDraws", "ExecRandom"]
