"""``make course`` and ``make prepare``: run every lesson headless, build the class caches.

    python -m helpers.course run        # execute notebooks/*.ipynb into build/<mode>/, print results
    python -m helpers.course prepare    # build every cached checkpoint the lessons load
    python -m helpers.course run --jobs 2   # two at a time, one CPU thread each (`make` does this)
    python -m helpers.course results    # print the results table of the current mode
    python -m helpers.course claims     # check every registered claim against the results file

``COURSE_MODE`` is honoured by both (``smoke``, ``class`` or ``full``).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import pkgutil
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .claims import check_claims
from .modes import current_mode
from .results import load_results, results_path, results_table

ROOT = Path(__file__).resolve().parent.parent

# What `make prepare` builds: "module:function" entries, each loading its models from the cache
# and training the missing ones. Lessons add theirs here. Lesson 01's model first (lesson 05's
# build loads it), then longest first (class mode on a 2-core CPU), so that with --jobs 2 the builds
# end at about the same time; an entry that loads another's checkpoint names it in NEEDS, and a
# parallel prepare starts it only once that one is ready.
PREPARE = [
    "helpers.models:pretrained_image_model",    # lessons 01-06, 10, 13: lesson 01's model
    "helpers.generator:pretrained_generator",   # lesson 11: the generator pre-trained on the world
    "helpers.lessons.bird_counter:prepare_scratch_counters",  # lesson 05: its long-budget baselines
    "helpers.experiments:prepare_scratch_baselines",  # lessons 02-03: converged from-scratch species models
    "helpers.lm:pretrained_lm",                 # lessons 07-09: the LM pre-trained on the augmented encyclopedia
    "helpers.lm:pretrained_lm_once_only",       # lesson 08's ablation: the once-only encyclopedia
    "helpers.lessons.your_own:fractal_pretrained_model",     # lesson 13: lesson 01's network pre-trained on fractals
    "helpers.models:general_pretrained_model",  # lessons 01 and 13 (issue 27): lesson 01's network on the general world
    "helpers.lessons.image_generator:orca_judge",            # lesson 11: the classifier that measures the orca rate
    "helpers.lessons.distillation:pretrained_student",       # lesson 10: lesson 01's network at the student's width
]
NEEDS = {
    # lesson 05's fine-tuned counters at the long budget start from lesson 01's model
    "helpers.lessons.bird_counter:prepare_scratch_counters": "helpers.models:pretrained_image_model",
}


def notebooks(pattern: str = "*.ipynb") -> list[Path]:
    """The lesson notebooks matching ``pattern`` (``"07*"`` means lesson 07's notebook, not its
    paired .py source)."""
    return sorted(p for p in (ROOT / "notebooks").glob(pattern) if p.suffix == ".ipynb")


def execute_notebook(path: Path, out_dir: Path | None = None, timeout: int = 1800,
                     kernel_name: str = "python3", transform=None):
    """Run a notebook top to bottom in a fresh kernel (cwd: notebooks/); optionally save it.

    ``transform(nb) -> nb`` may rearrange the cells first (the tests use it to run each exercise
    check before its solution too).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    if transform is not None:
        nb = transform(nb)
    # The kernel's own log stays quiet below errors: a headless run on loopback TCP would otherwise
    # print ipykernel's "running over TCP without encryption" warning once per lesson.
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out_dir / path.name)
    return nb


def _run_notebook(path: Path, out_dir: Path, threads: int | None = None) -> tuple[float, str | None]:
    """Execute one lesson (its kernel with ``threads`` CPU threads, when given); returns its
    seconds and, when it failed, a one-line reason instead of raising: one broken lesson should
    not hide the others."""
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)   # the kernel inherits it; PyTorch reads it
    start = time.perf_counter()
    try:
        execute_notebook(path, out_dir)
        return time.perf_counter() - start, None
    except Exception as err:
        return time.perf_counter() - start, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def longest_first(paths: list[Path], mode: str) -> list[Path]:
    """``paths`` ordered by the time each lesson last took in ``mode`` (the results file's
    ``wall_s``), longest first, so that lessons run in parallel end at about the same time; lessons
    never recorded go first, in course order."""
    results = load_results(mode)

    def last_time(path):
        entry = results.get(path.name[:2])
        return entry["wall_s"] if entry and isinstance(entry.get("wall_s"), (int, float)) else math.inf

    return sorted(paths, key=lambda p: (-last_time(p), p.name))


def run_course(pattern: str = "*.ipynb", jobs: int = 1) -> int:
    """Execute the lessons matching ``pattern`` in the current mode, ``jobs`` at a time (each a
    kernel with its share of the CPU threads), save them under ``build/<mode>/``, print the results
    table and every registered claim's verdict. Returns 1 when a lesson failed or a claim does not
    hold."""
    mode = current_mode()
    out_dir = ROOT / "build" / mode
    failed, outcomes = [], {}

    def done(path, outcome):
        seconds, error = outcome
        outcomes[path.name] = outcome
        if error:
            failed.append(path.name)
            print(f"[{mode}] {path.name} FAILED after {seconds:.0f} s: {error}", flush=True)
        else:
            print(f"[{mode}] {path.name} done in {seconds:.0f} s", flush=True)

    start = time.perf_counter()
    paths = notebooks(pattern)
    if jobs <= 1:
        for path in paths:
            print(f"[{mode}] {path.name} ...", flush=True)
            done(path, _run_notebook(path, out_dir))
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        print(f"[{mode}] {len(paths)} lessons, {jobs} at a time ({threads} thread(s) each), longest first", flush=True)
        _in_parallel(longest_first(paths, mode), jobs, lambda path: (_run_notebook, path, out_dir, threads), done)
    record_run(out_dir, mode, outcomes, time.perf_counter() - start, jobs)
    print(f"\nAll lessons in {time.perf_counter() - start:.0f} s. Executed notebooks are in {out_dir}."
          f"\nResults ({results_path(mode)}):\n")
    print(results_table(mode))
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(sorted(failed))}")
    broken = report_claims(mode)
    return 1 if failed or broken else 0


def machine() -> str:
    """One line naming this machine for the record of a run: CPU model and cores, and the GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    import torch

    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def record_run(out_dir: Path, mode: str, outcomes: dict, seconds: float, jobs: int) -> dict:
    """Write ``out_dir/run.json``: when and where ``make course`` last ran, the commit, which
    lessons it ran (``ran``) and how long it took, and each lesson's time and outcome (merged with
    lessons an earlier run saved there). The website (``helpers.site``) shows it on its landing
    page."""
    path = out_dir / "run.json"
    try:
        previous = json.loads(path.read_text()).get("lessons", {})
    except (OSError, ValueError, AttributeError):
        previous = {}
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    lessons = {**previous, **{name: {"seconds": round(s, 1), "failed": bool(error)}
                              for name, (s, error) in outcomes.items()}}
    run = {"mode": mode, "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "ran": sorted(outcomes), "wall_s": round(seconds, 1), "jobs": jobs, "machine": machine(),
           "commit": commit, "lessons": dict(sorted(lessons.items()))}
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run, indent=1) + "\n")
    return run


def registered_claims() -> list:
    """Every lesson harness's ``CLAIMS`` (helpers/lessons/*.py), in lesson order."""
    from . import lessons
    claims = []
    for info in pkgutil.iter_modules(lessons.__path__):
        module = importlib.import_module(f"{lessons.__name__}.{info.name}")
        claims += getattr(module, "CLAIMS", [])
    return sorted(claims, key=lambda c: c.lesson)


def report_claims(mode: str) -> int:
    """Print every registered claim's verdict on the results file; return how many fail.

    In smoke mode the numbers mean nothing, so failures are reported and not counted."""
    verdicts = check_claims(registered_claims(), load_results(mode))
    if not verdicts:
        return 0
    print(f"\nRegistered claims ({mode} mode):")
    for claim, ok in verdicts:
        mark = "holds" if ok else "DOES NOT HOLD" if ok is False else "not measured"
        print(f"  {claim.lesson}  {mark:<13} {claim.text}")
    broken = sum(ok is not True for _, ok in verdicts)
    if broken and mode == "smoke":
        print(f"({broken} not holding or not measured: smoke-mode numbers are meaningless, so this is not a failure)")
        return 0
    if broken:
        print(f"{broken} registered claim(s) do not hold or were not measured in {mode} mode.")
    return broken


def _build(entry: str, log: str | None = None, threads: int | None = None) -> float:
    """Build one ``PREPARE`` entry; returns its seconds. With ``log``, its output goes to that file
    (a worker of a parallel ``prepare``), with ``threads`` PyTorch threads."""
    import contextlib

    import torch
    if threads:
        torch.set_num_threads(threads)
    module, name = entry.split(":")
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if log:
            out = stack.enter_context(open(log, "w", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(out))
            stack.enter_context(contextlib.redirect_stderr(out))
        getattr(importlib.import_module(module), name)()
    return time.perf_counter() - start


def _in_parallel(items, jobs, call, done, needs=None):
    """Run ``call(item) -> (function, *args)`` for every item, ``jobs`` at a time in spawned
    processes, starting them in ``items``' order; an item named in ``needs`` waits for the item it
    needs. ``done(item, result)`` is called as each finishes; the first error is raised."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    needs = {item: need for item, need in (needs or {}).items() if need in items}  # others: nothing to wait for
    waiting, running, finished = list(items), {}, set()
    # A fresh process for every item (max_tasks_per_child=1): nothing one build leaves in its
    # process (thread settings, allocator state, cached tensors) reaches the next.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        while waiting or running:
            for item in [i for i in waiting if i not in needs or needs[i] in finished]:
                if len(running) == jobs:
                    break
                waiting.remove(item)
                function, *args = call(item)
                running[pool.submit(function, *args)] = item
            if not running:
                raise RuntimeError(f"{waiting} wait on each other ({needs})")
            ready, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in ready:
                item = running.pop(future)
                done(item, future.result())
                finished.add(item)


def prepare(jobs: int = 1) -> int:
    """Build every ``PREPARE`` entry of the current mode. ``jobs`` > 1 builds that many at once, in
    processes that share the CPU cores between them (each entry's output goes to a log file in
    ``build/prepare/``): small models use two cores better as two one-thread jobs than as one
    two-thread job (``benchmarks`` and the README's timings say by how much)."""
    mode = current_mode()
    print(f"Preparing the cached checkpoints for mode {mode!r}" + (f", {jobs} at a time." if jobs > 1 else "."))
    start = time.perf_counter()
    if jobs <= 1:
        for entry in PREPARE:
            print(f"- {entry}")
            print(f"  ready in {_build(entry):.0f} s")
    else:
        logs = ROOT / "build" / "prepare"
        logs.mkdir(parents=True, exist_ok=True)
        threads = max(1, (os.cpu_count() or 1) // jobs)

        def log(entry):
            return logs / f"{entry.replace(':', '.')}.log"

        def done(entry, seconds):
            print(f"- {entry} ready in {seconds:.0f} s (log: {log(entry).relative_to(ROOT)})", flush=True)

        _in_parallel(PREPARE, jobs, lambda entry: (_build, entry, str(log(entry)), threads), done, needs=NEEDS)
    print(f"All ready in {time.perf_counter() - start:.0f} s.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "prepare", "results", "claims"])
    parser.add_argument("--only", default="*.ipynb", help="glob of notebooks to run, e.g. '0[0-3]*'")
    parser.add_argument("--jobs", type=int, default=1,
                        help="run and prepare: lessons or checkpoints at once (processes sharing the CPU threads)")
    args = parser.parse_args(argv)
    os.environ.setdefault("COURSE_MODE", current_mode())
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1; got {args.jobs}")
    if args.command == "run":
        return run_course(args.only, args.jobs)
    if args.command == "prepare":
        return prepare(args.jobs)
    if args.command == "claims":
        return 1 if report_claims(current_mode()) else 0
    print(results_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
