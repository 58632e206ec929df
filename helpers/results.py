"""The results file and the run log.

Each lesson records its headline numbers with one call into ``data/results/<mode>.json``: one
JSON object keyed by the lesson's two-digit number, each entry holding ``mode``, ``device``,
``seed``, ``wall_s``, ``finished`` and ``metrics``. Re-running a lesson replaces its entry.

An entry whose lesson had a run stopped early (Ctrl-C, the stop button: ``History.interrupted``)
also holds ``"interrupted": true``, and so does that run's row in a run log, so a half-trained
number is never mistaken for a finished one. The lesson hears of it from what the run returned
(``record(..., interrupted=history.interrupted)``) or from the run logs it owns
(``lesson.run_log(name)``): nothing passes through module state.

Several processes may record at once (two notebooks, ``make course`` beside JupyterLab): every
update of the results file and every run-log append happens under a file lock (``file_lock``),
so none is lost and run numbers never repeat.

Example (first and last cells of a lesson):
    >>> lesson = Lesson("01")               # starts the clock, prints device and mode
    >>> lesson.record({"val_acc": 0.93})     # writes data/results/class.json
"""
from __future__ import annotations

import difflib
import json
import math
import numbers
import time
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from .cache import atomic_write, data_dir, file_lock
from .checks import check_seed, keywords_checked
from .claims import show_claims
from .device import describe, resolve_device
from .distributed import is_main_process
from .modes import MODES, current_mode


class ResultsError(ValueError):
    """The results file cannot be read; the message names it and says what to do."""


def results_path(mode: str | None = None) -> Path:
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)} (or None for the current mode); got {mode!r}")
    return data_dir() / "results" / f"{mode or current_mode()}.json"


def _clean(value):
    """Numbers as plain floats/ints (NaN as None), rows of tables as lists of dicts."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.6g}")   # 6 significant digits
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    raise TypeError(f"cannot record {type(value).__name__} {value!r}: use numbers, strings, "
                    f"or lists of row dicts")


def load_results(mode: str | None = None) -> dict:
    """The results file as a dict keyed by lesson number ({} when nothing is recorded yet).

    Raises:
        ResultsError: the file is not the JSON object the course writes (edited by hand?).
    """
    path = results_path(mode)
    if not path.exists():
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is not a readable results file ({err}). Lessons write it with "
                           f"lesson.record(...); fix it if you edited it, or delete it and run the "
                           f"lessons again to record them anew.") from None
    if not isinstance(results, dict):
        raise ResultsError(f"{path} should hold one JSON object keyed by lesson number ('05': {{...}}); "
                           f"it holds a {type(results).__name__}. Delete it and run the lessons again.")
    return results


def _check_lesson(lesson) -> None:
    if not (isinstance(lesson, str) and len(lesson) == 2 and lesson.isdigit()):
        raise ValueError(f"lesson must be a two-digit string such as '05', got {lesson!r}")


@keywords_checked
def record_results(lesson: str, metrics: dict, *, wall_s: float, seed: int = 0, device="auto",
                   mode: str | None = None, interrupted: bool = False) -> dict:
    """Write (or replace) ``lesson``'s entry in the results file and return it.

    ``interrupted=True`` (a run of the lesson was stopped early) adds ``"interrupted": true`` to
    the entry. The read-modify-write happens under a file lock, so two processes recording at
    once both keep their entries. A results file that cannot be read is kept aside as
    ``<mode>.corrupt-<time>.json`` (with a warning) and a fresh one started.
    """
    _check_lesson(lesson)
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of metric names to numbers (or lists of row dicts), "
                        f"e.g. {{'val_acc': 0.93}}; got {type(metrics).__name__} {metrics!r}")
    if isinstance(wall_s, bool) or not isinstance(wall_s, numbers.Real) or not math.isfinite(wall_s) \
            or wall_s < 0:
        raise ValueError(f"wall_s must be the lesson's wall time in seconds (a number >= 0), got {wall_s!r}")
    check_seed(seed)
    path = results_path(mode)          # checks the mode
    mode = mode or current_mode()
    entry = {"mode": mode, "device": resolve_device(device).type, "seed": int(seed),
             "wall_s": round(float(wall_s), 1),
             "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "metrics": _clean(dict(metrics))}
    if interrupted:
        entry["interrupted"] = True
    if not is_main_process():          # under torchrun only rank 0 writes the file
        return entry
    with file_lock(path):              # read, change, write: one process at a time
        try:
            results = load_results(mode)
        except ResultsError as err:
            aside = path.with_name(f"{path.stem}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}.json")
            path.replace(aside)
            warnings.warn(f"{err} It was kept as {aside.name}; a fresh results file starts with "
                          f"lesson {lesson}.", stacklevel=2)
            results = {}
        results[lesson] = entry
        text = json.dumps(results, indent=1, sort_keys=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return entry


class Lesson:
    """A lesson's clock and identity: created in the first cell, records in the last."""

    def __init__(self, number: str, seed: int = 0, device="auto"):
        _check_lesson(number)          # now, not after the whole lesson has run
        check_seed(seed)
        self.number, self.seed = number, seed
        self.device = resolve_device(device)
        self.mode = current_mode()
        self.start = time.perf_counter()
        self.run_logs: list[RunLog] = []      # the logs of this lesson's runs (``run_log``)
        print(f"Lesson {number} | mode: {self.mode} | device: {describe(self.device)}")

    def run_log(self, name: str, persist: bool = True) -> RunLog:
        """A ``RunLog`` that this lesson owns: a run added to it as stopped early
        (``interrupted=True``) flags the lesson's entry when it is recorded."""
        log = RunLog(name, persist=persist)
        self.run_logs.append(log)
        return log

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, metrics: dict, *, interrupted: bool = False, verbose: bool = True) -> dict:
        """Record the lesson's headline ``metrics`` (see ``record_results``) and print them
        (``verbose=False``: one short line instead of every number).

        The entry is flagged ``"interrupted": true`` when ``interrupted`` is true (e.g.
        ``interrupted=info["interrupted"]`` for a checkpoint built in the lesson, or
        ``history.interrupted``) or when a run added to one of the lesson's own run logs
        (``run_log``) was stopped early.
        """
        stopped = [f"{n} run{'s' if n > 1 else ''} in {log.name}" for log in self.run_logs
                   if (n := log.interrupted_runs)]
        interrupted = bool(interrupted) or bool(stopped)
        entry = record_results(self.number, metrics, wall_s=self.elapsed, seed=self.seed,
                               device=self.device, mode=self.mode, interrupted=interrupted)
        scalars = {k: v for k, v in entry["metrics"].items() if not isinstance(v, (list, dict))}
        if verbose:
            print(f"Recorded lesson {self.number} in {results_path(self.mode).name} "
                  f"after {entry['wall_s']:.0f} s: " + ", ".join(f"{k}={v}" for k, v in scalars.items()))
        else:
            tables = len(entry["metrics"]) - len(scalars)
            print(f"Recorded lesson {self.number} ({self.mode} mode) in {results_path(self.mode)} after "
                  f"{entry['wall_s']:.0f} s: {len(scalars)} numbers" + (f" and {tables} table(s)" if tables else "")
                  + "; `make course` prints them all.")
        if interrupted:
            print("  Marked as interrupted" + (f" ({', '.join(stopped)} stopped early)" if stopped else "")
                  + ": run the lesson to the end to record finished numbers.")
        return entry

    def finish(self, metrics: dict, claims=(), *, interrupted: bool = False) -> dict:
        """The lesson's last call: record ``metrics`` (``record``, in one short line) and show
        each of the lesson's registered ``claims`` with its verdict on them. Returns the entry.

        Example:
            >>> lesson.finish({"finetuned_acc": 0.85, "scratch_acc": 0.30}, CLAIMS)
        """
        entry = self.record(metrics, interrupted=interrupted, verbose=False)
        claims = list(claims)
        if claims:
            print(f"The claims this lesson makes, checked on these numbers ({len(claims)}):")
            show_claims(claims, entry["metrics"])
        return entry


def results_table(mode: str | None = None) -> str:
    """The results file as a plain-text table: lesson, wall time, scalar metrics."""
    results = load_results(mode)
    if not results:
        return f"(no results recorded yet in {results_path(mode)})"
    lines = [f"{'lesson':<7}{'mode':<7}{'device':<7}{'wall_s':>8}  metrics"]
    for lesson in sorted(results):
        e = results[lesson]
        scalars = ", ".join(f"{k}={_fmt(v)}" for k, v in e["metrics"].items() if not isinstance(v, list))
        tables = [k for k, v in e["metrics"].items() if isinstance(v, list)]
        if tables:
            scalars += f"  (+ tables: {', '.join(tables)})"
        if e.get("interrupted"):
            scalars += "  (interrupted)"
        lines.append(f"{lesson:<7}{e['mode']:<7}{e['device']:<7}{e['wall_s']:>8.1f}  {scalars}")
    return "\n".join(lines)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class RunLog:
    """Collects every run of an experiment cell, so re-runs with other settings compare.

    Each ``add`` appends one row (settings and results). Rows are kept in memory and appended
    to ``data/runs/<name>.jsonl``, so the comparison survives a kernel restart; ``clear()``
    starts over. Processes may share a log: each ``add`` takes a file lock, reads the rows
    others added, numbers its row after them and appends it on a line of its own. A line cut
    short by a crash is skipped on reading (with a warning) and dropped by the next ``add``.

    A lesson makes its logs with ``lesson.run_log(name)``, so that a run stopped early flags the
    lesson's results entry too.

    Example:
        >>> log = lesson.run_log("03_freeze")     # or RunLog("03_freeze"), owned by no lesson
        >>> log.add(frozen_stages=2, test_acc=0.81)
        >>> log.add(frozen_stages=4, test_acc=0.52, interrupted=True)   # stopped early: flagged
        >>> log.table()          # a pandas DataFrame, one row per run
    """

    def __init__(self, name: str, persist: bool = True):
        if not isinstance(name, str) or not name.strip() or any(c in name for c in '/\\:'):
            raise ValueError(f"a run log's name is a plain file name such as '03_freeze', got {name!r}")
        self.name = name
        self.path = data_dir() / "runs" / f"{name}.jsonl" if persist else None
        self.rows: list[dict] = []
        self.interrupted_runs = 0       # runs this object added that were stopped early (clear() keeps it)
        if self.path is not None:
            self.rows, torn, _ = self._read()
            if torn:
                warnings.warn(f"{self.path}: skipped {torn} line(s) cut short (a run stopped while "
                              f"writing); the {len(self.rows)} complete runs are kept. The next "
                              f"add() rewrites the file without them.", stacklevel=2)

    def _read(self) -> tuple[list[dict], int, bool]:
        """(complete rows, number of torn lines, whether the file ends with a newline)."""
        if self.path is None or not self.path.exists():
            return [], 0, True
        raw = self.path.read_bytes()
        rows, torn = [], 0
        for line in raw.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            row = _json_row(line)
            if row is None:
                torn += 1
                # A row appended by an older version straight after a torn line shares its line:
                # recover it from where it starts.
                start = line.rfind('{"run": ')
                row = _json_row(line[start:]) if start > 0 else None
            if row is not None:
                rows.append(row)
        return rows, torn, raw.endswith(b"\n") or not raw

    def add(self, *, interrupted: bool = False, **row) -> dict:
        """Append a row of settings and results; returns it with its run number.

        ``interrupted=True`` (e.g. ``interrupted=history.interrupted``) marks a run that was
        stopped early: the row gets ``"interrupted": True``, and the results entry of the lesson
        that owns the log (``Lesson.run_log``) is flagged too.
        """
        if "run" in row:
            raise TypeError("'run' is the run number RunLog gives each row; name your column "
                            "something else, e.g. run_name=...")
        for key in row:
            if difflib.get_close_matches(key, ["interrupted"], n=1, cutoff=0.85):
                raise TypeError(f"RunLog.add got {key}=...; did you mean interrupted=? (to keep a "
                                f"column of that name, call it e.g. {key}_flag)")
        row = _clean(row)
        if interrupted:
            row["interrupted"] = True
            self.interrupted_runs += 1
        if self.path is None:
            row = {"run": _next_run(self.rows), **row}
            self.rows.append(row)
            return row
        with file_lock(self.path):          # read, number, append: one process at a time
            rows, torn, ends_with_newline = self._read()
            row = {"run": _next_run(rows), **row}
            if torn:                        # rewrite the file without the torn line(s)
                text = "".join(json.dumps(r) + "\n" for r in rows + [row])
                atomic_write(self.path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
            else:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(("" if ends_with_newline else "\n") + json.dumps(row) + "\n")
        self.rows = rows + [row]
        return row

    def clear(self) -> None:
        self.rows = []
        if self.path is not None:
            with file_lock(self.path):
                self.path.unlink(missing_ok=True)

    def table(self):
        """The runs as a DataFrame, one row per run, shown compactly in a notebook (``table_html``)."""
        table = _run_table_class()
        return table(self.rows).set_index("run") if self.rows else table()

    def __len__(self):
        return len(self.rows)


def _json_row(line: str) -> dict | None:
    """A run-log line as a row, or None when it is not one (cut short by a crash)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("run"), int) else None


def _next_run(rows) -> int:
    return max((r["run"] for r in rows), default=0) + 1


def table_html(df, digits: int = 3) -> str:
    """A DataFrame as a compact HTML table that fits beside JupyterLab's file browser.

    Display only, the data are unchanged: numbers to ``digits`` significant digits, headers that
    wrap at their underscores, columns that are empty in every row left out, a smaller font.
    """
    import html
    import numbers

    shown = df.dropna(axis=1, how="all") if len(df) else df

    def cell(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.{digits}g}"
        if isinstance(v, numbers.Integral) and not isinstance(v, bool) and abs(v) >= 10_000:
            return f"{v:,}"
        return "" if v is None else str(v)

    def head(name):
        return html.escape(str(name)).replace("_", "_<wbr>")

    index = shown.index.name or ""
    rows = ["<tr>" + f"<th>{head(index)}</th>" + "".join(f"<th>{head(c)}</th>" for c in shown.columns)
            + "</tr>"]
    for key, row in zip(shown.index, shown.itertuples(index=False)):
        rows.append(f"<tr><th>{html.escape(cell(key))}</th>"
                    + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>")
    style = ("<style>.course-table table{border-collapse:collapse;font-size:12px;margin:0}"
             ".course-table th,.course-table td{padding:2px 6px;text-align:right;"
             "white-space:nowrap;border-bottom:1px solid #ddd}"
             ".course-table tr:first-child th{white-space:normal;vertical-align:bottom;"
             "max-width:7em}</style>")
    return (f'{style}<div class="course-table" style="max-width:100%;overflow-x:auto">'
            f"<table>{''.join(rows)}</table></div>")


_RunTable = None


def _run_table_class():
    """A DataFrame whose notebook display is ``table_html`` (made on first use: pandas loads late)."""
    global _RunTable
    if _RunTable is None:
        import pandas as pd

        class RunTable(pd.DataFrame):
            @property
            def _constructor(self):
                return RunTable

            def _repr_html_(self):
                return table_html(self)

        RunTable.__qualname__ = "RunTable"
        _RunTable = RunTable
    return _RunTable
