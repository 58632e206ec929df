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


def test_a_parallel_prepare_starts_an_entry_only_after_the_one_it_needs():
    from helpers.course import _in_parallel
    order = []
    _in_parallel(["slow_sleep", "needs_first", "first"], 2, lambda item: (_stamp, item),
                 lambda item, _: order.append(item), needs={"needs_first": "first"})
    assert order.index("first") < order.index("needs_first")


def _stamp(item):
    import time
    time.sleep({"slow_sleep": 1.0, "first": 0.3}.get(item, 0.0))
    return item


def test_parallel_course_runs_each_lesson_and_then_orders_them_by_their_last_time(tmp_path, monkeypatch):
    from helpers.course import longest_first, notebooks
    from helpers.results import load_results
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    paths = notebooks("0[17]*")
    assert [p.name[:2] for p in longest_first(paths, "smoke")] == ["01", "07"]   # never recorded: course order
    env = {**os.environ, "COURSE_MODE": "smoke", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "helpers.course", "run", "--only", "0[17]*", "--jobs", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "2 lessons, 2 at a time (1 thread(s) each)" in run.stdout or os.cpu_count() != 2
    assert "[smoke] 01_pretraining_an_image_model.ipynb done in" in run.stdout and "[smoke] 07_" in run.stdout
    recorded = load_results("smoke")
    assert {"01", "07"} <= set(recorded)
    slowest_first = sorted(["01", "07"], key=lambda lesson: -recorded[lesson]["wall_s"])
    assert [p.name[:2] for p in longest_first(paths, "smoke")] == slowest_first


def test_record_run_notes_when_where_and_which_lessons_ran(tmp_path):
    """build/<mode>/run.json, which the website's landing page shows: the last run's lessons and
    time, the machine, and every lesson's latest outcome (earlier runs' lessons kept)."""
    import json
    import re

    from helpers.course import record_run

    record_run(tmp_path, "smoke", {"03_partial.ipynb": (12.34, None)}, 20.0, 2)
    run = record_run(tmp_path, "smoke", {"05_counter.ipynb": (1.0, "DeadKernelError: Kernel died")}, 3.0, 1)
    assert json.loads((tmp_path / "run.json").read_text()) == run
    assert run["ran"] == ["05_counter.ipynb"] and (run["wall_s"], run["jobs"], run["mode"]) == (3.0, 1, "smoke")
    assert run["lessons"] == {"03_partial.ipynb": {"seconds": 12.3, "failed": False},
                              "05_counter.ipynb": {"seconds": 1.0, "failed": True}}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", run["finished"])
    assert f"{os.cpu_count()} cores" in run["machine"]
