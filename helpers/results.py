"""The results file and the run log.

Each lesson records its headline numbers with one call into ``data/results/<mode>.json``: one
JSON object keyed by the lesson's two-digit number, each entry holding ``mode``, ``device``,
``seed``, ``wall_s``, ``finished`` and ``metrics``. Re-running a lesson replaces its entry.

Example (first and last cells of a lesson):
    >>> lesson = Lesson("01")               # starts the clock, prints device and mode
    >>> lesson.record({"val_acc": 0.93})     # writes data/results/class.json
"""
from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

from .cache import atomic_write, data_dir
from .device import describe, resolve_device
from .distributed import is_main_process
from .modes import current_mode


def results_path(mode: str | None = None) -> Path:
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
    path = results_path(mode)
    return json.loads(path.read_text()) if path.exists() else {}


def record_results(lesson: str, metrics: dict, *, wall_s: float, seed: int = 0, device="auto",
                   mode: str | None = None) -> dict:
    """Write (or replace) ``lesson``'s entry in the results file and return it."""
    if not (len(lesson) == 2 and lesson.isdigit()):
        raise ValueError(f"lesson must be a two-digit string such as '05', got {lesson!r}")
    mode = mode or current_mode()
    entry = {"mode": mode, "device": resolve_device(device).type, "seed": seed,
             "wall_s": round(float(wall_s), 1),
             "finished": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "metrics": _clean(metrics)}
    if not is_main_process():          # under torchrun only rank 0 writes the file
        return entry
    results = load_results(mode)
    results[lesson] = entry
    path = results_path(mode)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=1, sort_keys=True)))
    return entry


class Lesson:
    """A lesson's clock and identity: created in the first cell, records in the last."""

    def __init__(self, number: str, seed: int = 0, device="auto"):
        self.number, self.seed = number, seed
        self.device = resolve_device(device)
        self.mode = current_mode()
        self.start = time.perf_counter()
        print(f"Lesson {number} | mode: {self.mode} | device: {describe(self.device)}")

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def record(self, metrics: dict) -> dict:
        entry = record_results(self.number, metrics, wall_s=self.elapsed, seed=self.seed,
                               device=self.device, mode=self.mode)
        print(f"Recorded lesson {self.number} in {results_path(self.mode).name} "
              f"after {entry['wall_s']:.0f} s: " +
              ", ".join(f"{k}={v}" for k, v in entry["metrics"].items() if not isinstance(v, list)))
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
        lines.append(f"{lesson:<7}{e['mode']:<7}{e['device']:<7}{e['wall_s']:>8.1f}  {scalars}")
    return "\n".join(lines)


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class RunLog:
    """Collects every run of an experiment cell, so re-runs with other settings compare.

    Each ``add`` appends one row (settings and results). Rows are kept in memory and appended
    to ``data/runs/<name>.jsonl``, so the comparison survives a kernel restart; ``clear()``
    starts over.

    Example:
        >>> log = RunLog("03_freeze")
        >>> log.add(frozen_stages=2, test_acc=0.81)
        >>> log.table()          # a pandas DataFrame, one row per run
    """

    def __init__(self, name: str, persist: bool = True):
        self.name = name
        self.path = data_dir() / "runs" / f"{name}.jsonl" if persist else None
        self.rows: list[dict] = []
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    self.rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass     # a line cut short by a crash: skip it, keep the rest

    def add(self, **row) -> dict:
        row = {"run": len(self.rows) + 1, **_clean(row)}
        self.rows.append(row)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        return row

    def clear(self) -> None:
        self.rows = []
        if self.path is not None:
            self.path.unlink(missing_ok=True)

    def table(self):
        """The runs as a DataFrame, one row per run, shown compactly in a notebook (``table_html``)."""
        table = _run_table_class()
        return table(self.rows).set_index("run") if self.rows else table()

    def __len__(self):
        return len(self.rows)


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
