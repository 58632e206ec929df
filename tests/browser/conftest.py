"""The browser suite's fixtures: JupyterLab on the loopback address, headless Chromium.

Run it with ``make test-browser`` (it sets COURSE_BROWSER_TESTS=1); plain ``make test`` and a bare
``pytest`` do not collect these tests. Where Playwright for Python or Chromium is missing, every
test FAILS and says which: a browser suite that skips would report success without having looked
at anything. Chromium is the system one (Debian's ``chromium`` package, or $CHROMIUM, which when
set is the only one tried); nothing is downloaded at run time.

JupyterLab serves a temporary copy of ``notebooks/`` with a fresh token, a temporary
COURSE_DATA (shared by the lessons, which run in order), COURSE_MODE=smoke, and settings,
workspaces and runtime files of its own, so nothing of the user's Jupyter setup leaks in.
COURSE_BROWSER_NOTEBOOKS=/some/folder tests other copies of the notebooks (e.g. a change to try).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
ENABLED = os.environ.get("COURSE_BROWSER_TESTS") == "1"
# The notebooks under test: the course's own, or (to try a change to them first) another folder.
SOURCE = Path(os.environ.get("COURSE_BROWSER_NOTEBOOKS", ROOT / "notebooks"))

if not ENABLED:                  # plain `make test`: not even collected (no Chromium needed)
    collect_ignore_glob = ["test_*.py"]

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio"]

# JupyterLab settings for a quiet, reproducible screen: no news or update toasts.
# Every cell stays in the page (no windowing), so the tests can read each one.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def chromium_path() -> str | None:
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"] if Path(os.environ["CHROMIUM"]).exists() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def why_not_runnable() -> str | None:
    """None when the suite can run, else the reason it cannot (every test then fails with it)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; no browser download needed)"
    if chromium_path() is None:
        return ("Chromium not found" + (f" at CHROMIUM={os.environ['CHROMIUM']}" if os.environ.get("CHROMIUM") else "")
                + ": apt-get install chromium (Debian), or set CHROMIUM=/path/to/chromium")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer at {url} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def lab():
    """A running JupyterLab: {"url", "token", "root" (the notebooks' copy), "data", "log"}."""
    reason = why_not_runnable()
    if reason:
        pytest.fail(f"the browser suite cannot run: {reason}", pytrace=False)
    work = Path(tempfile.mkdtemp(prefix="course-browser-"))
    root, data = work / "notebooks", work / "data"
    root.mkdir()
    for nb in sorted(SOURCE.glob("*.ipynb")):
        shutil.copy2(nb, root / nb.name)
    settings = work / "settings"
    for name, value in LAB_SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.pop("MPLBACKEND", None)          # kernels use their own default: the inline backend
    env.update(COURSE_MODE="smoke", COURSE_DATA=str(data), JUPYTER_PREFER_ENV_PATH="1",
               JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               PYTHONUNBUFFERED="1")
    log = work / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
           "--LabApp.news_url=", "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")       # CI containers run as root
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{url}/api/status?token={token}", proc, log)
        yield {"url": url, "token": token, "root": root, "data": data, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def page(lab):
    """One Chromium page on JupyterLab (1400 x 900, file browser open), for every lesson in turn."""
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="course-chromium-")
    with sync_playwright() as p:
        # a persistent context is the one that takes a user-data dir: a fresh, empty one
        context = p.chromium.launch_persistent_context(
            profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900})
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{lab['url']}/lab?token={lab['token']}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell "
                               "&& document.querySelector('.jp-DirListing-content')", timeout=120_000)
        page.evaluate("() => window.jupyterapp.shell.activateById('filebrowser')")
        yield page
        context.close()
    shutil.rmtree(profile, ignore_errors=True)
