"""Scripts that start with "#!" (fs/binfmt_script.c): the first line names an
interpreter and at most one argument, and exec runs the interpreter instead, with the
script's path among its arguments.

Only the first ``BINPRM_BUF_SIZE`` bytes of the file are looked at (zero-padded when the
file is shorter).  The argument list becomes ``[interpreter, argument?, script path,
argv[1:]...]``; the exec then starts over with the interpreter, which may itself be a
script (fs/exec.c stops that at ELOOP).
"""

import errno

from .mm import error

BINPRM_BUF_SIZE = 256   # bytes of a file the binary handlers look at
_BLANK = b" \t"


def _first(buf, start, last, pred):
    """The first index in ``[start, last]`` whose byte satisfies ``pred``, or None."""
    for i in range(start, last + 1):
        if pred(buf[i]):
            return i
    return None


def _blank(c):
    return c in _BLANK


def parse_shebang(head):
    """The interpreter path and optional argument of the "#!" line in ``head`` (the
    file's first bytes), as bytes; ENOEXEC when the line names no interpreter or the
    interpreter's name may have been cut off by the buffer's end."""
    buf = bytes(head[:BINPRM_BUF_SIZE]).ljust(BINPRM_BUF_SIZE, b"\0")
    if buf[:2] != b"#!":
        raise error(errno.ENOEXEC)
    last = BINPRM_BUF_SIZE - 1
    # The line ends at its newline; the search for one stops at a NUL.
    text_end = buf.find(b"\0")
    end = buf.find(b"\n", 0, BINPRM_BUF_SIZE if text_end < 0 else text_end)
    if end < 0:
        # No newline: the interpreter's name must be followed by a blank or a NUL
        # somewhere in the buffer, or it may be truncated.
        name = _first(buf, 2, last, lambda c: not _blank(c))
        if name is None or _first(buf, name, last, lambda c: _blank(c) or c == 0) is None:
            raise error(errno.ENOEXEC)
        end = last
    while buf[end - 1] in _BLANK:
        end -= 1
    name = _first(buf, 2, end, lambda c: not _blank(c))
    if name is None or name == end:
        raise error(errno.ENOEXEC)
    arg = None
    sep = _first(buf, name, end, lambda c: _blank(c) or c == 0)
    if sep is not None and buf[sep] != 0:
        arg = _first(buf, sep, end, lambda c: not _blank(c))
    # Both strings end at the line's end or at their first NUL; the name also at sep.
    line = buf[:end]
    name_str = line[name:sep if arg is not None else end].split(b"\0", 1)[0]
    arg_str = None if arg is None else line[arg:].split(b"\0", 1)[0]
    return name_str, arg_str


def rewrite_args(strings, script_path, interp, arg):
    """load_script's argument splice: argv[0] goes, then the script's path, the optional
    argument and the interpreter's name become the first arguments (E2BIG when they do
    not fit)."""
    strings.remove_arg_zero()
    new = [interp] + ([arg] if arg is not None else []) + [script_path]
    # Pushed in reverse, each checked against what is left of the argument space.
    for s in reversed(new):
        strings.push(s)
        strings.argv.insert(0, s)
