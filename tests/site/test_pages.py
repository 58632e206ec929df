"""Every page of the built website in headless Chromium (``make test-site``).

Each page: no request to another host, nothing that fails to load (images, scripts, styles,
fonts), no script error, every saved widget drawn (not left as its placeholder), no traceback in
an output, and every solution folded. Across pages: every link between them resolves (anchors
included), the search finds each lesson by a word of its title, the landing page shows the lesson
map with times, numbers, downloads and the run, and the theme switches between light and dark.
"""
from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
from sitecheck import BROKEN_IMAGES, MODE, SCREENSHOTS, SITE, SOLUTIONS, UNDRAWN_WIDGETS, executed_notebook

PAGES = sorted(p.name for p in SITE.glob("*.html")) or ["index.html"]
LESSONS = sorted(p.stem for p in SITE.glob("[0-9][0-9]_*.html"))

def solution_cells(nb: dict) -> int:
    return sum("solution" in cell.get("metadata", {}).get("tags", []) for cell in nb["cells"])


def test_the_site_has_a_page_for_every_executed_lesson(site):
    executed = sorted(p.stem for p in (site.parent.parent / MODE).glob("[0-9][0-9]_*.ipynb"))
    assert LESSONS, f"no lesson pages in {site}"
    if executed:                 # built from build/<mode>/ (not from a folder elsewhere)
        assert LESSONS == executed


@pytest.mark.parametrize("name", PAGES)
def test_page(name, site, base_url, open_page):
    page, visit = open_page(base_url + name)
    try:
        page.wait_for_function(f"() => ({UNDRAWN_WIDGETS})().length === 0", timeout=30_000) \
            if page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count() else None
    except Exception:
        pass                     # reported below, with the widgets that stayed placeholders
    problems = []
    if visit.foreign:
        problems.append(f"requests to other hosts: {sorted(set(visit.foreign))}")
    if visit.failed:
        problems.append(f"failed loads: {visit.failed}")
    if visit.errors:
        problems.append(f"script errors: {visit.errors}")
    undrawn = page.evaluate(UNDRAWN_WIDGETS)
    if undrawn:
        problems.append(f"{len(undrawn)} widget(s) left as placeholders: {undrawn[:3]}")
    broken = page.evaluate(BROKEN_IMAGES)
    if broken:
        problems.append(f"images that do not load: {broken}")
    tracebacks = page.locator(".output.traceback, .output.error").count()
    text = page.inner_text("body")
    if tracebacks or "Traceback (most recent call last)" in text:
        problems.append(f"a traceback in an output ({tracebacks} error output(s))")
    solutions = page.evaluate(SOLUTIONS)
    unfolded = [s for s in solutions if not s["folded"]]
    if unfolded:
        problems.append(f"unfolded solutions: {unfolded}")
    nb = executed_notebook(Path(name).stem)
    if nb is not None and len(solutions) != solution_cells(nb):
        problems.append(f"{solution_cells(nb)} solution cells in the notebook, {len(solutions)} folded "
                        f"solutions on the page")
    if name.startswith("03_"):              # the README's picture: the first run, its progress bar and curves
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("document.querySelector('.widget-subarea')?.scrollIntoView({block: 'center'})")
        page.screenshot(path=str(SCREENSHOTS / "site_03.png"))
    page.close()
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)


def test_links_between_pages_resolve(site, base_url, open_page):
    """Every link from a page of the site to a page or file of the site resolves, and so does
    its #anchor; every lesson is linked from the landing page."""
    targets: dict[str, set[str]] = {}
    from_index = set()
    for name in PAGES:
        page, _ = open_page(base_url + name)
        hrefs = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
        page.close()
        for href in hrefs:
            if not href.startswith(base_url):
                continue                     # a link to another site: followed by nobody here
            url, anchor = urldefrag(href)
            targets.setdefault(url, set()).add(anchor)
            if name == "index.html":
                from_index.add(Path(urlsplit(url).path).stem)
    problems = []
    for url, anchors in sorted(targets.items()):
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = r.read().decode("utf-8", "replace") if url.endswith((".html", "/")) else ""
        except OSError as err:
            problems.append(f"{url}: {err}")
            continue
        for anchor in sorted(a for a in anchors if a):
            if body and not re.search(rf"""id=["']{re.escape(anchor)}["']""", body):
                problems.append(f"{url}#{anchor}: no such anchor")
    missing = set(LESSONS) - from_index
    assert not missing, f"lessons not linked from the landing page: {sorted(missing)}"
    assert not problems, "broken links:\n  " + "\n  ".join(problems)
    assert any(u.endswith(".ipynb") for u in targets), "no notebook download links"


def title_word(name: str, site: Path) -> str:
    """The longest word of a lesson page's title (e.g. 'Partial' for 03)."""
    html = (site / f"{name}.html").read_text(encoding="utf-8")
    title = re.search(r"<h1>(.*?)<", html, flags=re.S).group(1)
    return max(re.findall(r"[A-Za-z]{4,}", title), key=len)


@pytest.mark.parametrize("name", LESSONS)
def test_search_finds_the_lesson(name, site, base_url, open_page):
    word = title_word(name, site)
    page, visit = open_page(f"{base_url}search.html?q={word}")
    page.wait_for_selector("#search-results .search-summary", timeout=60_000)
    found = page.eval_on_selector_all("#search-results ul.search li a", "as => as.map(a => a.href)")
    page.close()
    assert not visit.foreign and not visit.failed, (visit.foreign, visit.failed)
    assert any(f"/{name}.html" in href for href in found), f"searching {word!r} did not find {name}: {found}"


LESSON_ROWS = """() => [...document.querySelectorAll('main table.lessons tbody tr')].map(tr =>
    [...tr.querySelectorAll('td')].map(td => td.innerText.trim()))"""


def test_the_landing_page_shows_the_map_times_numbers_and_run(site, base_url, open_page):
    page, _ = open_page(base_url + "index.html")
    text = page.inner_text("main")
    rows = page.evaluate(LESSON_ROWS)
    numbers = page.locator("main table.numbers tbody tr").count()
    page.close()
    assert f"in {MODE} mode on" in text, "the mode and machine of the run"
    assert re.search(r"finished 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), "the date of the run"
    assert [r[0] for r in rows] == [n[:2] for n in LESSONS], f"lesson map rows: {rows}"
    for number, title, what, time, notebook in rows:
        assert title and what, f"lesson {number}: no title or description in the map"
        assert re.fullmatch(r"\d\d_\w+\.ipynb", notebook), f"lesson {number}: download link {notebook!r}"
    times = [r[3] for r in rows]
    assert sum(t == "not recorded" for t in times) <= 1, f"lessons without a measured time: {times}"
    assert all(re.fullmatch(r"\d+ s|[\d.]+ min|not recorded", t) for t in times), times
    assert numbers >= len(LESSONS) - 1, f"headline numbers for {numbers} lessons only"


def test_the_theme_switches_between_light_and_dark(base_url, open_page):
    page, _ = open_page(base_url + ("03_partial_finetuning.html" if LESSONS else "index.html"))
    colours = {}
    for mode in ("dark", "light", "dark"):      # the header's colour-mode menu
        page.click(".theme-switch-button")
        page.click(f".theme-change-button[data-mode={mode}]")
        theme = page.evaluate("document.documentElement.dataset.theme")
        assert theme == mode, f"chose {mode}, the page is {theme}"
        colours[theme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
    if LESSONS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "site_03_dark.png"))
    page.close()
    assert colours["light"] != colours["dark"], colours
