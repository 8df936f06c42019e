"""The replay docs match the code: the counts they state, and the files their
examples name exist."""

import pathlib
import re
import shlex

from mmsim.strace import EXECUTED, IGNORED

ROOT = pathlib.Path(__file__).parent.parent


def test_replay_md_counts_the_ignored_calls():
    text = (ROOT / "docs" / "replay.md").read_text()
    m = re.search(r"(\d+) calls that do not touch memory", text)
    assert m and int(m.group(1)) == len(IGNORED)


def test_replay_md_lists_every_executed_call():
    text = " ".join((ROOT / "docs" / "replay.md").read_text().split())
    m = re.search(r"Calls that run in the simulator: ([a-z0-9_, ]+)\.", text)
    assert m and set(m.group(1).split(", ")) == set(EXECUTED)


def _commands(md):
    """The ``mmsim ...`` command lines of a markdown file's indented blocks, with the
    files earlier lines of the block create (``-o FILE``, ``> FILE``)."""
    made = set()
    for line in md.splitlines():
        if not line.startswith("    "):
            made = set()
            continue
        words = shlex.split(line.split("#", 1)[0])
        for flag in ("-o", ">"):
            if flag in words[:-1]:
                made.add(words[words.index(flag) + 1])
        if words[:1] == ["mmsim"]:
            yield words, set(made)


def test_readme_replay_examples_name_files_that_exist():
    checked = 0
    for words, made in _commands((ROOT / "README.md").read_text()):
        if words[1] in ("replay", "diff") and not words[2].startswith("-"):
            assert words[2] in made or (ROOT / words[2]).is_file(), words
            checked += 1
    assert checked >= 3
