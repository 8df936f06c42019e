"""The docs match the code: every python block in docs/ and the README runs, and no
docstring or comment names a class that does not exist."""

import ast
import builtins
import contextlib
import io
import pathlib
import re
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SOURCES = [path for folder in ("mmsim", "benchmarks", "examples", "tests")
           for path in sorted((ROOT / folder).glob("*.py"))]


def python_blocks(path):
    """(first line number, code) of each ```python block in a markdown file."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m[1]) for m in BLOCK.finditer(text)]


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    """The blocks of one file run in order in one namespace, as a reader would type them
    (in a scratch directory: a block may write files)."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    for line, code in python_blocks(path):
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)


# Capitalised words that look like class names but name no class of ours: /proc field
# names, and classes of Python and of other packages.
NOT_OURS = {name for name in dir(builtins) if name[:1].isupper()} | {
    "VmFlags", "VmPeak", "VmSize", "VmHWM", "VmRSS", "VmData", "VmStk", "VmExe", "VmLib",
    "VmLck", "VmPin", "VmPTE", "VmSwap", "RssAnon", "RssFile", "RssShmem", "MemTotal",
    "MemFree", "MemAvailable", "CommitLimit", "AnonHugePages", "ShmemPmdMapped",
    "FilePmdMapped", "THPeligible", "ProtectionKey", "SwapPss", "SwapTotal", "SwapFree",
    "SwapCached", "ShmemHugePages", "FileHugePages",
    "SortedDict", "IntervalTree", "RuleBasedStateMachine", "TestCase", "StreamError", "PathLike",
    "DataFrame", "LocalCluster"}
CAMEL = re.compile(r"\b[A-Z][a-z]+[a-z0-9]*(?:[A-Z][a-z0-9]+)+\b")


def defined_names():
    names = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                names.add(node.name)
    return names


def prose(path):
    """(line, text) of every docstring and comment in a source file."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield (node.body[0].lineno, doc)
    with open(path, "rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type == tokenize.COMMENT:
                yield (tok.start[0], tok.string)


def test_docstrings_and_comments_name_classes_that_exist():
    known = defined_names() | NOT_OURS
    unknown = sorted(f"{path.relative_to(ROOT)}:{line}: {word}"
                     for path in SOURCES for line, text in prose(path)
                     for word in CAMEL.findall(text) if word not in known)
    assert not unknown, "\n".join(unknown)
