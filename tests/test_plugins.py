"""What installing archibald's test extra does to other projects' test suites: nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "test_fake_arcgis.py"


def test_a_suite_outside_this_repository_runs_with_the_test_extra_installed(
    tmp_path: Path,
) -> None:
    """The docs' example test, copied into a bare folder, passes under plain pytest
    (no pytest plugin from our test extra breaks its collection)."""
    shutil.copy(EXAMPLE, tmp_path / "test_example.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stdout[-2000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
