"""The README stays a front page: short, its links alive, and its test command findable by CI."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def test_readme_fits_on_a_screenful_or_two():
    assert len(README.read_text().splitlines()) <= 150


def test_readme_links_point_at_files_that_exist():
    text = README.read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, missing


def test_ci_finds_the_test_command_by_its_marker(tmp_path):
    # Run .ci/run's own extraction on the README and on a README without the marker: the first
    # gives the install-and-test command, the second fails loudly instead of running nothing.
    script = (ROOT / ".ci" / "run").read_text()
    extract = script[script.index("marker="):script.index('echo "+ $cmd"')]
    probe = extract + 'printf "%s" "$cmd"\n'
    found = subprocess.run(["bash", "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert "pip install '.[test]'" in found.stdout and "pytest" in found.stdout

    (tmp_path / "README.md").write_text("# x\n\n```\necho not a test\n```\n")
    lost = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert lost.returncode != 0
    assert "ci-test-command" in lost.stderr
