"""The examples (the README's demo among them) run and print what they promise."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_vma_tree_demo():
    assert "65,530 ranges" in run_example("vma_tree_demo.py")


@pytest.mark.skipif(not os.path.exists("/usr/bin/true"), reason="no /usr/bin/true to exec")
def test_mctl_launcher():
    lines = run_example("mctl_launcher.py").splitlines()
    rows = {line[:24].strip(): line[24:].split() for line in lines if line[:24].strip()
            and line[24:].split() and line[24:].split()[0].isdigit()}
    assert rows["no setting"] == ["16384", "8192", "0"]
    assert rows["prctl THP_DISABLE"] == ["0", "0", "0"]
    assert rows["mctl HUGEPAGE+EXEC"] == ["16384", "16384", "0"]


def test_fade_on_death_reproduces_both_published_directions():
    """Fading every exiting process makes repeated short-lived readers refault more;
    fading only the killed app makes the surviving apps refault less."""
    sections = run_example("fade_on_death.py", "--small").split("\n\n")
    assert len(sections) == 2
    refaults = []
    for text in sections:
        rows = {}
        for line in text.splitlines()[2:]:
            label, refault, activate, majfault = line.rsplit(None, 3)
            rows[label.strip()] = int(refault)
        refaults.append(rows)
    readers, apps = refaults
    assert readers["on every process"] > 2 * readers["off"]
    assert apps["on the killed app"] < apps["off"]


def test_thp_policies_differ_where_the_kernel_says():
    """The launcher's THP policies, at a quarter of the size: mctl NOHUGEPAGE is a
    default MADV_HUGEPAGE overrides, PR_SET_THP_DISABLE allows nothing, EXCEPT_ADVISED
    what is advised; khugepaged gives the late-advised service its huge pages."""
    rows = {}
    for line in run_example("thp_policies.py", "--small").splitlines()[2:]:
        mode, policy, service, rss, huge, coverage, mthp, bloat, collapsed = line.split()
        rows[mode, policy, service] = (float(coverage), float(bloat), int(collapsed))
        assert float(mthp) >= float(coverage)   # PMD-mapped THPs are large folios too
    assert len(rows) == 24
    cov = {key: c for key, (c, _, _) in rows.items()}
    assert cov["always", "none", "sparse"] == 1.0 and rows["always", "none", "sparse"][1] > 0
    for mode in ("always", "madvise"):
        assert [cov[mode, "prctl-thp-disable", s] for s in ("sparse", "dense", "late")] == [0, 0, 0]
        for policy in ("mctl-nohugepage", "prctl-except-advised"):
            assert [cov[mode, policy, s] for s in ("sparse", "dense", "late")] == [0, 1, 1]
            assert rows[mode, policy, "late"][2] > 0   # khugepaged collapsed it
            assert rows[mode, policy, "sparse"][1] == 0
    assert [cov["madvise", "none", s] for s in ("sparse", "dense", "late")] == [0, 1, 1]
    # Collapse work is the late service's: the others fault their THPs in.
    assert rows["madvise", "none", "late"][2] > 0
    assert rows["madvise", "none", "dense"][2] == 0
