"""``make prepare``: every PREPARE entry builds, in one process or several at once, and a second
prepare finds everything in the cache."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prepare(tmp_path, *args):
    env = {**os.environ, "COURSE_MODE": "smoke", "COURSE_DATA": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "helpers.course", "prepare", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_parallel_prepare_builds_every_entry_and_a_second_prepare_loads_them(tmp_path):
    from helpers.course import PREPARE
    first = prepare(tmp_path, "--jobs", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert all(f"- {entry} ready in" in first.stdout for entry in PREPARE), first.stdout
    built = sorted(p.name for p in (tmp_path / "data" / "cache").glob("*.safetensors"))
    again = prepare(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "none is cached yet" not in again.stdout + again.stderr          # nothing trained twice
    assert sorted(p.name for p in (tmp_path / "data" / "cache").glob("*.safetensors")) == built


def test_prepare_rejects_zero_jobs(tmp_path):
    bad = prepare(tmp_path, "--jobs", "0")
    assert bad.returncode == 2 and "--jobs must be at least 1; got 0" in bad.stderr
