"""The suite's own machinery (tests/conftest.py): the ``live`` marker and the check of
every mm after each test, run on small test files with pytester."""

import pathlib

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (pathlib.Path(__file__).parent / "conftest.py").read_text()
MARKERS = """
[pytest]
markers =
    live: needs the live kernel
    no_mm_check: breaks an mm on purpose
"""

BROKEN = """
import pytest
from mmsim.kernel import Kernel
from mmsim.uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ

def break_one():
    p = Kernel().spawn()
    a = p.mmap(0, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
    next(iter(p.mm.vmas())).end += 4096   # the VMA no longer matches its range in the tree
    return p

def test_left_broken():
    break_one()

@pytest.mark.no_mm_check
def test_opted_out():
    break_one()

def test_failing_test_is_not_checked_again():
    break_one()
    assert False

def test_exited_processes_are_skipped():
    p = break_one()
    p.exit(0)

def test_fine():
    p = Kernel().spawn()
    p.fork().mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS)
"""


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makeini(MARKERS)
    return pytester


@pytest.mark.no_mm_check     # the inner tests' Kernels, broken on purpose, are built here too
def test_a_test_leaving_a_broken_mm_errors_at_teardown(suite):
    suite.makepyfile(test_broken=BROKEN)
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=4, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_left_broken*",
                                 "*mm is inconsistent after the test*"])


def test_live_tests_are_marked_and_deselectable(suite):
    suite.makepyfile(test_marks="""
import pytest

@pytest.mark.live
def test_marked():
    pass

def test_by_fixture(live_kernel):
    pass

def test_plain():
    pass
""")
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-m", "not live")
    result.assert_outcomes(passed=1, deselected=2)
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-m", "live",
                                       "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_marked*", "*test_by_fixture*"])
