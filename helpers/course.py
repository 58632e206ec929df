"""``make course`` and ``make prepare``: run every lesson headless, build the class caches.

    python -m helpers.course run        # execute notebooks/*.ipynb into build/<mode>/, print results
    python -m helpers.course prepare    # build every cached checkpoint the lessons load
    python -m helpers.course results    # print the results table of the current mode
    python -m helpers.course claims     # check every registered claim against the results file

``COURSE_MODE`` is honoured by both (``smoke``, ``class`` or ``full``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import time
from pathlib import Path

from .claims import check_claims
from .modes import current_mode
from .results import load_results, results_path, results_table

ROOT = Path(__file__).resolve().parent.parent

# What `make prepare` builds: "module:function" entries, each loading its models from the cache
# and training the missing ones. Lessons add theirs here. Longest first (class mode on a 2-core
# CPU), so that with --jobs 2 the builds end at about the same time.
PREPARE = [
    "helpers.generator:pretrained_generator",   # lesson 11: the generator pre-trained on the world
    "helpers.experiments:prepare_scratch_baselines",  # lessons 02-03: converged from-scratch species models
    "helpers.lessons.bird_counter:prepare_scratch_counters",  # lesson 05: its from-scratch baselines
    "helpers.lm:pretrained_lm",                 # lessons 07-09: the LM pre-trained on the augmented encyclopedia
    "helpers.lm:pretrained_lm_once_only",       # lesson 08's ablation: the once-only encyclopedia
    "helpers.models:pretrained_image_model",    # lessons 01-06, 10, 13: lesson 01's model
    "helpers.lessons.image_generator:orca_judge",            # lesson 11: the classifier that measures the orca rate
]


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
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out_dir / path.name)
    return nb


def run_course(pattern: str = "*.ipynb") -> int:
    mode = current_mode()
    out_dir = ROOT / "build" / mode
    failed = []
    for path in notebooks(pattern):
        start = time.perf_counter()
        print(f"[{mode}] {path.name} ...", flush=True)
        try:
            execute_notebook(path, out_dir)
            print(f"    done in {time.perf_counter() - start:.0f} s", flush=True)
        except Exception as err:  # keep going: one broken lesson should not hide the others
            failed.append(path.name)
            print(f"    FAILED after {time.perf_counter() - start:.0f} s: {type(err).__name__}: "
                  f"{str(err).splitlines()[0] if str(err) else ''}", flush=True)
    print(f"\nExecuted notebooks are in {out_dir}.\nResults ({results_path(mode)}):\n")
    print(results_table(mode))
    if failed:
        print(f"\n{len(failed)} notebook(s) failed: {', '.join(failed)}")
    broken = report_claims(mode)
    return 1 if failed or broken else 0


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
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        logs = ROOT / "build" / "prepare"
        logs.mkdir(parents=True, exist_ok=True)
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_build, entry, str(logs / f"{entry.replace(':', '.')}.log"), threads): entry
                       for entry in PREPARE}
            for future in as_completed(futures):
                print(f"- {futures[future]} ready in {future.result():.0f} s "
                      f"(log: {logs.relative_to(ROOT)}/{futures[future].replace(':', '.')}.log)", flush=True)
    print(f"All ready in {time.perf_counter() - start:.0f} s.")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["run", "prepare", "results", "claims"])
    parser.add_argument("--only", default="*.ipynb", help="glob of notebooks to run, e.g. '0[0-3]*'")
    parser.add_argument("--jobs", type=int, default=1, help="prepare: checkpoints built at once (processes)")
    args = parser.parse_args(argv)
    os.environ.setdefault("COURSE_MODE", current_mode())
    if args.command == "run":
        return run_course(args.only)
    if args.command == "prepare":
        if args.jobs < 1:
            parser.error(f"--jobs must be at least 1; got {args.jobs}")
        return prepare(args.jobs)
    if args.command == "claims":
        return 1 if report_claims(current_mode()) else 0
    print(results_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
