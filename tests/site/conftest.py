"""The website suite's fixtures: the built site on a local HTTP server, headless Chromium.

Run it with ``make test-site`` after ``make site`` (it sets COURSE_SITE_TESTS=1 and
COURSE_SITE_MODE); plain ``make test`` and a bare ``pytest`` do not collect these tests. The site
under test is ``build/site/<mode>/`` (COURSE_SITE_MODE, else class, or full with CUDA, as
``make site`` picks) or the folder in $COURSE_SITE. Unlike the JupyterLab suite, a missing
Chromium, Playwright or site FAILS here: the site is checked where it is built, or not at all.

Chromium is the system one (Debian's ``chromium``, or $CHROMIUM); nothing is downloaded. Every
request the pages make to another host is aborted and recorded, so a test can fail on it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sitecheck import CHROMIUM_ARGS, MODE, SITE, Visit, chromium_path, serve_folder

ENABLED = os.environ.get("COURSE_SITE_TESTS") == "1"

if not ENABLED:                  # plain `make test`: not even collected
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def site() -> Path:
    """The built site's folder (fails, with the command to run, when there is none)."""
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `COURSE_MODE={MODE} make site` first "
                    f"(after `COURSE_MODE={MODE} make course`)")
    return SITE


@pytest.fixture(scope="session")
def base_url(site):
    server, url = serve_folder(site)
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (Playwright for Python driving the system browser); fails when missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is not installed: pip install playwright (no browser download)")
    if chromium_path() is None:
        pytest.fail("Chromium not found: apt-get install chromium (Debian), or set CHROMIUM=/path/to/chromium")
    profile = tempfile.mkdtemp(prefix="course-site-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900})
        context.set_default_timeout(60_000)
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def open_page(browser):
    """``open_page(url) -> (page, Visit)``: loads ``url`` in a fresh tab, aborting and recording
    every request to another host, every failed load and every script error, and waits until
    the network is idle. Close the page when done."""
    def opener(url: str):
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
        visit = Visit(url)
        page = browser.new_page()

        def route(r):
            if r.request.url.startswith(origin + "/") or r.request.url.startswith(("data:", "blob:")):
                r.continue_()
            else:
                visit.foreign.append(r.request.url)
                r.abort()

        page.route("**/*", route)
        page.on("response", lambda r: r.status >= 400 and visit.failed.append(f"{r.status} {r.url}"))
        page.on("requestfailed", lambda r: r.url not in visit.foreign
                and visit.failed.append(f"{r.failure} {r.url}"))
        page.on("pageerror", lambda err: visit.errors.append(str(err)))
        page.goto(url, wait_until="networkidle")
        return page, visit

    return opener
