"""Fixtures and hooks shared by the whole suite.

* ``@pytest.mark.live`` marks a test that needs the live kernel (Linux 6.x x86-64, through
  ``mmsim.live``): it skips, with the reason, where there is none, and
  ``pytest -m "not live"`` runs everything else.  A test that asks for the ``live_kernel``
  fixture is marked for you.
* After every test, each Kernel the test built has every live process' mm checked
  (``Mm.check()``, which checks the VmaTree too), so no test leaves a broken tree behind
  unnoticed.  A test that breaks an mm on purpose opts out with
  ``@pytest.mark.no_mm_check``.
* ``kernel`` and ``proc``: a fresh Kernel without layout randomisation and a process
  spawned in it; ``run_sim``: run a ``mmsim.live.run`` call list on mmsim instead.
"""

import pytest

from mmsim import live, pagecache, pages
from mmsim.kernel import Kernel

LIVE_OK, LIVE_WHY = live.available()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "live_kernel" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("live"):
            item.add_marker(pytest.mark.live)


def pytest_runtest_setup(item):
    if item.get_closest_marker("live") is not None and not LIVE_OK:
        pytest.skip(f"live kernel unavailable: {LIVE_WHY}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.mmsim_call_failed = report.failed


@pytest.fixture
def live_kernel():
    """The live kernel is usable (tests asking for this are marked ``live``)."""
    if not LIVE_OK:
        pytest.skip(f"live kernel unavailable: {LIVE_WHY}")


@pytest.fixture
def host_thp():
    """The host's /sys/kernel/mm/transparent_hugepage/enabled mode ("madvise" if unreadable)."""
    return live.host_thp()


def check_kernels(kernels):
    """Check each distinct live mm of every process in ``kernels`` once, and each
    kernel's page cache, LRU lists and cgroup charges."""
    seen = set()
    for kernel in kernels:
        try:
            pagecache.check(kernel)
            pages.check_anon_lru(kernel)
            pages.check_folios(kernel)
        except AssertionError as exc:
            raise AssertionError(f"page cache or cgroup books inconsistent after the test: "
                                 f"{exc}") from exc
        for proc in list(kernel.processes.values()):
            mm = getattr(proc, "mm", None)
            if mm is None or id(mm) in seen:
                continue
            seen.add(id(mm))
            try:
                mm.check()
            except AssertionError as exc:
                raise AssertionError(f"pid {proc.pid}'s mm is inconsistent after the test: "
                                     f"{exc}") from exc


@pytest.fixture(autouse=True)
def _check_every_mm(request, monkeypatch):
    """Record the Kernels the test builds; at teardown check every live process' mm."""
    if request.node.get_closest_marker("no_mm_check") is not None:
        yield
        return
    kernels = []
    init = Kernel.__init__

    def recording_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        kernels.append(self)

    monkeypatch.setattr(Kernel, "__init__", recording_init)
    yield kernels
    monkeypatch.setattr(Kernel, "__init__", init)
    if not getattr(request.node, "mmsim_call_failed", False):
        check_kernels(kernels)


@pytest.fixture
def kernel():
    """A fresh simulated machine without layout randomisation (THP "madvise")."""
    return Kernel(randomize=False)


@pytest.fixture
def proc(kernel):
    """A process spawned in ``kernel``, with a synthetic empty address space."""
    return kernel.spawn()


def sim_run(calls, thp="madvise", window=live.WINDOW):
    """Run a ``mmsim.live.run`` call list on a fresh mmsim process; same result shape.

    A ``("fork",)`` call forks and the child goes on, as on the live side; an ``mmap``
    takes its fd and offset too (anonymous: -1, 0); a failed call's result is -errno."""
    k = Kernel(thp=thp, randomize=False)
    proc = k.spawn()
    results = []
    for name, *args in calls:
        if name == "fork":
            proc = proc.fork()
            results.append(0)
            continue
        if name == "mmap":
            args = args[:4]
        elif name == "touch":
            args = [args[0], args[1], bool(args[2])]
        try:
            out = getattr(proc, name)(*args)
        except OSError as exc:
            out = -exc.errno
        results.append(0 if out is None else out)
    proc.mm.check()
    text = k.proc_read(f"/proc/{proc.pid}/smaps")
    return {"results": results, "vmas": live.smaps_vmas(text, window),
            "smaps_text": live.smaps_blocks(text, window), "proc": proc}


@pytest.fixture
def run_sim():
    """``sim_run``: a call list run on mmsim, shaped like ``mmsim.live.run``'s answer."""
    return sim_run
