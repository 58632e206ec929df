"""``make site``: the executed course as a static website, built without running a lesson again.

    python -m helpers.site build                 # build/<mode>/*.ipynb -> build/site/<mode>/
    python -m helpers.site build --mode class    # the mode to publish (default: COURSE_MODE's)
    python -m helpers.site serve                 # http://127.0.0.1:8000/ serves the built site

``make course`` saves each lesson, executed, under ``build/<mode>/``, its headline numbers in the
results file and a note of the run (when, on which machine) in ``build/<mode>/run.json``. This
module stages a Sphinx project under ``build/site-src/<mode>/``: the settings in ``website/conf.py``,
a landing page written from the template ``website/index.md`` (the lesson map, each lesson's time and
numbers, and the date, mode and machine of the run), and a copy of each executed notebook in which
solutions stay folded and a line under the title links the notebook for download. Sphinx with
MyST-NB renders it (``nb_execution_mode = "off"``: the outputs as saved) into
``build/site/<mode>/``.

The site loads nothing from another host. The ipywidgets HTML manager, which draws the saved
widget state (progress bars, the depth picker), and RequireJS, which loads it, come from the npm
registry at the versions and integrity hashes pinned in ``VENDOR`` (fetched once with ``npm pack``
into ``build/site-vendor/``, checked, then copied into ``_static/``). ``make test-site`` opens
every page in headless Chromium and fails on any request to another host.

Example:
    >>> cell = {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "x = 1"}
    >>> fold_solution(cell)["metadata"]["tags"]
    ['solution', 'hide-input']
"""
from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "website"                # conf.py, the landing page's template, _static/

# npm packages copied into the site: version, the registry's integrity hash of the tarball, and
# which files go where under _static/. html-manager 1.0.x draws ipywidgets 8 state; embed-amd.js
# holds the built-in controls and the manager; its fonts (Font Awesome, for button icons) are
# loaded from ./@jupyter-widgets/ beside it (website/_static/jupyter-widgets/assets-path.js says why).
VENDOR = {
    "@jupyter-widgets/html-manager": {
        "version": "1.0.15",
        "integrity": "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        "license": "BSD-3-Clause",
        "files": {r"dist/embed-amd\.js": "jupyter-widgets/",
                  r"dist/[0-9a-f]+\.(woff2|woff|ttf|eot|svg)": "jupyter-widgets/@jupyter-widgets/",
                  r"package.json": "jupyter-widgets/"},   # its name, version and licence
    },
    "requirejs": {
        "version": "2.3.8",
        "integrity": "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        "license": "MIT",
        "files": {r"require\.js": ""},
    },
}
SOLUTION_SUMMARY = "Solution"


class SiteError(RuntimeError):
    """The site cannot be built; the message says what is missing and how to get it."""


# ---------------------------------------------------------------------------------------------
# The notebooks


def executed_notebooks(mode: str, source: Path | None = None) -> list[Path]:
    """The lessons ``make course`` executed in ``mode`` (in ``source``, default ``build/<mode>/``),
    in course order."""
    folder = source or ROOT / "build" / mode
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise SiteError(f"no executed notebooks in {folder}: run `COURSE_MODE={mode} make course` first "
                        f"(the site shows its outputs and never runs a lesson itself)")
    return found


def fold_solution(cell: dict) -> dict:
    """``cell`` with its solution folded on the website (changed in place and returned).

    A code cell tagged ``solution`` gets MyST-NB's ``hide-input`` tag: its source sits in a closed
    ``<details>``, as JupyterLab shows it folded. A markdown cell tagged ``solution`` is expected
    to be an HTML ``<details><summary>Solution</summary> ... </details>`` block, which the browser
    keeps closed; an ``open`` attribute is dropped, and a cell that is not such a block is wrapped
    in one. Other cells are left alone.
    """
    tags = cell.get("metadata", {}).get("tags", [])
    if "solution" not in tags:
        return cell
    if cell["cell_type"] == "code":
        if "hide-input" not in tags:
            cell["metadata"]["tags"] = [*tags, "hide-input"]
    elif cell["cell_type"] == "markdown":
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if source.lstrip().lower().startswith("<details"):
            source = re.sub(r"(<details\b[^>]*?)\s+open(=(\"[^\"]*\"|'[^']*'|\S+))?(?=[\s>])", r"\1",
                            source, count=1, flags=re.IGNORECASE)
        else:
            source = (f"<details class=\"solution\"><summary>{SOLUTION_SUMMARY}</summary>\n\n{source.strip()}"
                      f"\n\n</details>")
        cell["source"] = source
    return cell


def lesson_title(nb: dict, name: str) -> str:
    """The title a lesson gives itself (its first heading, without the number), e.g. 'Partial
    fine-tuning'; the file name where the notebook has no heading."""
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            m = re.search(r"^#\s+(.+)$", source, flags=re.MULTILINE)
            if m:
                return re.sub(r"^\d\d\s*[·.:-]\s*", "", m.group(1).strip())
    return name[3:].replace("_", " ")


def _seconds(value) -> str:
    if not isinstance(value, (int, float)):
        return "not recorded"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def run_line(name: str, entry: dict | None, mode: str) -> str:
    """The line under a lesson page's title: how its outputs were made, and the downloads."""
    if entry:
        made = (f"These outputs come from a run in <b>{mode}</b> mode on {entry.get('device', '?')}, "
                f"finished {entry.get('finished', '?').replace('T', ' ').replace('Z', ' UTC')}, "
                f"in {_seconds(entry.get('wall_s'))}.")
    else:
        made = f"These outputs come from a run in <b>{mode}</b> mode (the lesson recorded no numbers)."
    return (f"<p class=\"course-run\">{made} Download <a href=\"notebooks/{name}.ipynb\" download>the "
            f"notebook</a> to run it yourself (no outputs), or <a href=\"executed/{name}.ipynb\" "
            f"download>this page's notebook</a> with the outputs shown here.</p>")


def prepare_notebook(nb: dict, name: str, entry: dict | None, mode: str) -> dict:
    """A copy of the executed notebook ``nb`` for the website: solutions folded
    (``fold_solution``) and, after the title cell, the line that says how the outputs were made
    and links the downloads. The executed cells and their outputs are not touched."""
    import nbformat

    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        fold_solution(cell)
    line = nbformat.from_dict({"cell_type": "markdown", "id": "course-run", "metadata": {"tags": ["course-run"]},
                               "source": run_line(name, entry, mode)})
    first = nb["cells"][0] if nb["cells"] else None
    at = 1 if first and first["cell_type"] == "markdown" and "".join(first["source"]).lstrip().startswith("#") else 0
    nb["cells"].insert(at, line)
    return nb


# ---------------------------------------------------------------------------------------------
# The landing page


def lesson_map(readme: Path = ROOT / "README.md") -> dict[str, str]:
    """What each lesson does, from the README's lesson table: {"03": "freezing stages ...", ...}."""
    found = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(\d\d)\s*\|\s*`\d\d_[^`]*`\s*\|(.*)\|\s*$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    return found


def format_number(value) -> str:
    """A metric as the landing page shows it: 4 significant digits, whole numbers as they are."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {format_number(v)}" for k, v in value.items())
    return str(value)


def headline_numbers(metrics: dict) -> str:
    """A lesson's recorded metrics on one line: scalars as ``name value``; lists of numbers (one
    per seed) in brackets; tables of rows by name only (the lesson page shows them)."""
    parts, tables = [], []
    for key, value in metrics.items():
        if isinstance(value, list):
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and len(value) <= 6:
                parts.append(f"{key} [{', '.join(format_number(v) for v in value)}]")
            else:
                tables.append(key)
        else:
            parts.append(f"{key} {format_number(value)}")
    text = " · ".join(f"`{p}`" for p in parts)
    if tables:
        text += f" (tables on the lesson's page: {', '.join(tables)})"
    return text or "–"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def landing_page(lessons: list[tuple[str, str]], results: dict, run: dict, mode: str,
                 descriptions: dict[str, str], template: Path = SITE / "index.md") -> str:
    """The landing page's MyST source, from ``template`` (``$run_note``, ``$lesson_table``,
    ``$numbers_table``, ``$toctree``, ``$mode``).

    Args:
        lessons: (notebook name without suffix, title) for each lesson, in course order.
        results: the results file of ``mode`` (``helpers.results.load_results``).
        run: ``build/<mode>/run.json`` as a dict ({} when the outputs were made another way).
        descriptions: what each lesson does, by number (``lesson_map``).
    """
    rows = ["| # | lesson | what it does and measures | time | notebook |", "|---|---|---|---|---|"]
    numbers = ["| # | headline numbers |", "|---|---|"]
    for name, title in lessons:
        number = name[:2]
        entry = results.get(number) or {}
        seconds = entry.get("wall_s", (run.get("lessons", {}).get(f"{name}.ipynb") or {}).get("seconds"))
        rows.append(f"| {number} | [{_cell(title)}]({name}.ipynb) | {_cell(descriptions.get(number, ''))} | "
                    f"{_seconds(seconds)} | <a href=\"notebooks/{name}.ipynb\" download>{name}.ipynb</a> |")
        if entry.get("metrics"):
            numbers.append(f"| {number} | {_cell(headline_numbers(entry['metrics']))} |")
    finished = run.get("finished") or max((e.get("finished", "") for e in results.values()), default="")
    devices = sorted({e.get("device", "?") for e in results.values()})
    machine = run.get("machine") or f"{', '.join(devices) or 'a machine'} (machine not recorded)"
    when = finished.replace("T", " ").replace("Z", " UTC") if finished else "at a time not recorded"
    note = (f"These pages show the lessons as `make course` executed them in **{mode}** mode on {machine}, "
            f"finished {when}")
    if run.get("commit"):
        note += f", at commit `{run['commit']}`"
    if isinstance(run.get("wall_s"), (int, float)) and run.get("ran"):
        count = len(run["ran"])
        note += (f"; it ran {count} lesson{'s' if count > 1 else ''} in {_seconds(run['wall_s'])}, "
                 f"{run.get('jobs', 1)} at a time")
    note += ". Each lesson's time below is its own wall time."
    if mode == "smoke":
        note += ("\n\n:::{warning}\nThis site was built from **smoke** mode: every code path ran, on tiny data, "
                 "so the numbers mean nothing. The published site is built from class mode.\n:::")
    toctree = "\n".join(name for name, _ in lessons)
    return Template(template.read_text(encoding="utf-8")).substitute(
        run_note=note, lesson_table="\n".join(rows), numbers_table="\n".join(numbers), toctree=toctree, mode=mode)


# ---------------------------------------------------------------------------------------------
# The npm packages and the build


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch_vendor(cache: Path = ROOT / "build" / "site-vendor") -> dict[str, Path]:
    """Each ``VENDOR`` package unpacked under ``cache`` (fetched once with ``npm pack`` from the
    npm registry and checked against its pinned integrity hash); returns package -> folder."""
    folders = {}
    for name, spec in VENDOR.items():
        folder = cache / f"{name.replace('/', '+').lstrip('@')}-{spec['version']}"
        folders[name] = folder
        if (folder / ".integrity").is_file() and (folder / ".integrity").read_text() == spec["integrity"]:
            continue
        npm = shutil.which("npm")
        if npm is None:
            raise SiteError(f"npm is needed once to fetch {name}@{spec['version']} for the site's widgets "
                            f"(install Node.js: apt-get install npm, or nodejs.org)")
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([npm, "pack", f"{name}@{spec['version']}", "--pack-destination", tmp,
                                   "--json", "--silent"], capture_output=True, text=True)
            tarballs = list(Path(tmp).glob("*.tgz"))
            if done.returncode or len(tarballs) != 1:
                raise SiteError(f"npm pack {name}@{spec['version']} failed:\n{done.stderr[-2000:]}")
            got = _integrity(tarballs[0])
            if got != spec["integrity"]:
                raise SiteError(f"{name}@{spec['version']} from the registry has integrity {got}, not the "
                                f"pinned {spec['integrity']}: not using it")
            shutil.rmtree(folder, ignore_errors=True)
            with tarfile.open(tarballs[0]) as tar:
                tar.extractall(folder, filter="data")
        (folder / ".integrity").write_text(spec["integrity"])
    return folders


def copy_vendor(folders: dict[str, Path], static: Path) -> list[dict]:
    """Copy the ``VENDOR`` files into ``static`` (the site's ``_static``); returns what was copied,
    for ``_static/vendor.json``."""
    copied = []
    for name, spec in VENDOR.items():
        package = folders[name] / "package"
        files = [p for p in sorted(package.rglob("*")) if p.is_file()]
        for pattern, dest in spec["files"].items():
            matches = [p for p in files if re.fullmatch(pattern, p.relative_to(package).as_posix())]
            if not matches:
                raise SiteError(f"{name}@{spec['version']} has no file matching {pattern!r}")
            for path in matches:
                target = static / dest / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        copied.append({"package": name, "version": spec["version"], "integrity": spec["integrity"],
                       "license": spec["license"]})
    return copied


def run_info(mode: str, source: Path | None = None) -> dict:
    """``build/<mode>/run.json`` (written by ``make course``; in ``source`` when given), or {} when
    there is none."""
    path = (source or ROOT / "build" / mode) / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def stage(mode: str, staging: Path, source: Path | None = None) -> list[str]:
    """Write the Sphinx project for ``mode`` into ``staging`` (``src/`` and the downloads in
    ``extra/``) from the executed notebooks in ``source`` (default ``build/<mode>/``); returns the
    lessons' names."""
    import nbformat

    from .results import load_results

    shutil.rmtree(staging, ignore_errors=True)
    src, extra = staging / "src", staging / "extra"
    shutil.copytree(SITE, src, ignore=shutil.ignore_patterns("__pycache__", "index.md"))
    static = src / "_static"
    copied = copy_vendor(fetch_vendor(), static)
    (static / "vendor.json").write_text(json.dumps(copied, indent=1) + "\n")
    results, lessons = load_results(mode), []
    for path in executed_notebooks(mode, source):
        name = path.stem
        nb = nbformat.read(path, as_version=4)
        lessons.append((name, lesson_title(nb, name)))
        nbformat.write(nbformat.from_dict(prepare_notebook(nb, name, results.get(name[:2]), mode)),
                       src / path.name)
        (extra / "executed").mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, extra / "executed" / path.name)
        clean = ROOT / "notebooks" / path.name
        (extra / "notebooks").mkdir(parents=True, exist_ok=True)
        shutil.copy2(clean if clean.exists() else path, extra / "notebooks" / path.name)
    (src / "index.md").write_text(landing_page(lessons, results, run_info(mode, source), mode, lesson_map()),
                                  encoding="utf-8")
    return [name for name, _ in lessons]


def build(mode: str, out: Path | None = None, source: Path | None = None,
          staging: Path | None = None) -> Path:
    """Stage and render the site of ``mode`` into ``out`` (default ``build/site/<mode>/``),
    replacing what was there; prints the time it took and the site's size.

    Args:
        source: the executed notebooks (default ``build/<mode>/``, where ``make course`` saves them).
        staging: where the Sphinx project is written (default ``build/site-src/<mode>/``).
    """
    start = time.perf_counter()
    staging = staging or ROOT / "build" / "site-src" / mode
    out = out or ROOT / "build" / "site" / mode
    lessons = stage(mode, staging, source)
    shutil.rmtree(out, ignore_errors=True)
    # -W: a warning (a broken cross-reference, a missing image) fails the build
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going",
           "-d", str(staging / "doctrees"), str(staging / "src"), str(out)]
    done = subprocess.run(cmd, cwd=staging, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if done.returncode:
        raise SiteError(f"Sphinx failed (exit {done.returncode}); see its messages above")
    for source_map in (out / "_static").rglob("*.map"):      # for browsers' developer tools only
        source_map.unlink()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"[{mode}] site of {len(lessons)} lessons in {out} ({size / 1e6:.1f} MB) built in "
          f"{time.perf_counter() - start:.0f} s")
    return out


def serve(mode: str, port: int = 8000) -> None:
    """Serve the built site of ``mode`` on http://127.0.0.1:<port>/ until Ctrl-C."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = ROOT / "build" / "site" / mode
    if not (folder / "index.html").exists():
        raise SiteError(f"no site in {folder}: run `COURSE_MODE={mode} make site` first")
    server = ThreadingHTTPServer(("127.0.0.1", port), partial(SimpleHTTPRequestHandler, directory=str(folder)))
    print(f"Serving {folder} on http://127.0.0.1:{port}/ (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "serve"])
    parser.add_argument("--mode", default=None, help="smoke, class or full (default: COURSE_MODE's)")
    parser.add_argument("--port", type=int, default=8000, help="serve: the port on 127.0.0.1")
    args = parser.parse_args(argv)
    from .modes import MODES, current_mode

    mode = args.mode or current_mode()
    if mode not in MODES:
        parser.error(f"--mode must be one of {list(MODES)}; got {mode!r}")
    try:
        if args.command == "build":
            build(mode)
        else:
            serve(mode, args.port)
    except SiteError as err:
        print(f"make site: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
