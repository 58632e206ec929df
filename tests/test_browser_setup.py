"""`make test-browser` fails, and does not skip, when its browser is missing."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_browser_suite_fails_without_its_browser(tmp_path):
    env = {**os.environ, "COURSE_BROWSER_TESTS": "1", "CHROMIUM": str(tmp_path / "no-chromium")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "tests/browser"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "the browser suite cannot run: " in out, out       # Chromium (or Playwright) missing
    assert "skipped" not in out.splitlines()[-1], out
