"""What the website suite shares: which site it tests, the browser's path and flags, a local
HTTP server for a folder, the record of one page load, and the scripts that read a page
(imported by conftest.py and the tests)."""
from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def site_mode() -> str:
    mode = os.environ.get("COURSE_SITE_MODE", "").strip().lower()
    if mode:
        return mode
    import torch

    return "full" if torch.cuda.is_available() else "class"


MODE = site_mode()
SITE = Path(os.environ.get("COURSE_SITE") or ROOT / "build" / "site" / MODE)
EXECUTED = ROOT / "build" / MODE          # the notebooks the site was built from
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):          # the test output stays readable
        pass


def serve_folder(folder: Path):
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving ``folder``; returns (server, url)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@dataclass
class Visit:
    """What one page load did: requests to other hosts (aborted), failed loads, script errors."""
    url: str
    foreign: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def executed_notebook(name: str) -> dict | None:
    """The executed notebook a page was built from (``build/<mode>/<name>.ipynb``), if present."""
    path = EXECUTED / f"{name}.ipynb"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


# What the html manager leaves when a widget is drawn: a div before each view's <script> holding
# the view's root (a Lumino widget). A view the manager could not draw has no such sibling.
UNDRAWN_WIDGETS = """() => [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
    .filter(s => !(s.previousElementSibling && s.previousElementSibling.classList.contains('widget-subarea')
                   && s.previousElementSibling.querySelector('.lm-Widget')))
    .map(s => s.textContent.trim().slice(0, 120))"""

# Every <img> loaded eagerly and decoded; the ones that show nothing. An image the page does not
# draw (display: none, e.g. a widget's curve before its first frame) counts only if it has a
# real address that failed.
BROKEN_IMAGES = """async () => {
    const imgs = [...document.images];
    imgs.forEach(img => { img.loading = 'eager'; });
    await Promise.all(imgs.map(img => img.decode().catch(() => null)));
    return imgs.filter(img => img.naturalWidth === 0 &&
                              (img.checkVisibility() || !img.src.startsWith('blob:')))
               .map(img => img.getAttribute('src') || '(no src)');
}"""

# Every folded solution: code cells (MyST-NB's hide-input inside a cell tagged "solution") and
# markdown <details> whose summary says "Solution"; for each, whether it is open or its code shows.
SOLUTIONS = """() => {
    const code = [...document.querySelectorAll('.cell.tag_solution')].map(cell => {
        const input = cell.querySelector('.cell_input');
        const fold = input && input.closest('details');
        return {kind: 'code', folded: !!fold && !fold.open && !input.checkVisibility(),
                text: cell.textContent.trim().slice(0, 80)};
    });
    const markdown = [...document.querySelectorAll('details')]
        .filter(d => !d.closest('.cell.tag_solution') && d.querySelector(':scope > summary')
                     && /^\\s*solution\\b/i.test(d.querySelector(':scope > summary').textContent))
        .map(d => ({kind: 'markdown', folded: !d.open && [...d.children].filter(c => c.tagName !== 'SUMMARY')
                                                        .every(c => !c.checkVisibility()),
                    text: d.textContent.trim().slice(0, 80)}));
    return code.concat(markdown);
}"""
