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
