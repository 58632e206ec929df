"""The course installs outside a checkout (a hosted notebook, a JupyterHub): the built wheel goes
into a fresh virtual environment in a temporary folder, far from the repository, and lesson 00
runs there in smoke mode.

The fresh environment reuses this environment's installed packages (torch is large) through a
``.pth`` file naming this environment's site-packages; that adds the folder to ``sys.path``
without running its ``.pth`` files, so the checkout's editable install stays out of it and
``import helpers`` can only find the wheel's copy (the test checks which file it imported).
Runs in ``make test``: about a minute (building the wheel, one smoke notebook); no network.
"""
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd, **kwargs):
    out = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, its environment variables)."""
    tmp = tmp_path_factory.mktemp("install")
    wheels = tmp / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(wheels), str(ROOT)])
    wheel = next(wheels.glob("fine_tuning_course-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
          str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "reuse_course_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COURSE_DATA", "VIRTUAL_ENV")}
    env.update(COURSE_MODE="smoke", XDG_CACHE_HOME=str(tmp / "user-cache"), HOME=str(tmp / "home"),
               MPLBACKEND="Agg", TORCH_DEVICE=os.environ.get("TORCH_DEVICE", "cpu"))
    (tmp / "home").mkdir()
    return python, env, tmp


def test_the_wheel_is_what_imports(installed):
    python, env, tmp = installed
    out = _run([str(python), "-c", "import helpers, helpers.lessons.your_own; print(helpers.__file__)"],
               cwd=tmp, env=env)
    where = Path(out.stdout.strip())
    assert ROOT not in where.parents, f"imported the checkout's helpers ({where}), not the wheel's"


def test_lesson_00_runs_in_smoke_mode_outside_the_checkout(installed):
    python, env, tmp = installed
    notebook = ROOT / "notebooks" / "00_welcome.ipynb"
    work = tmp / "lab"
    work.mkdir()
    code = ("import nbformat, nbclient, sys; nb = nbformat.read(sys.argv[1], as_version=4); "
            "nbclient.NotebookClient(nb, timeout=600, kernel_name='python3', "
            "resources={'metadata': {'path': sys.argv[2]}}).execute(); print('ran', len(nb.cells), 'cells')")
    env = {**env, "COURSE_DATA": str(tmp / "course-data")}
    # the kernel nbclient starts must be this venv's python: a kernelspec in the venv says so
    _run([str(python), "-m", "ipykernel", "install", "--prefix", str(python.parent.parent), "--name", "python3"],
         env=env, cwd=work)
    env["JUPYTER_PATH"] = str(python.parent.parent / "share" / "jupyter")
    env["JUPYTER_PREFER_ENV_PATH"] = "1"
    out = _run([str(python), "-c", code, str(notebook), str(work)], cwd=work, env=env, timeout=900)
    assert "ran" in out.stdout
    assert not list(work.glob("data")), "the lesson wrote a data folder into the working directory"


def test_data_folder_defaults_to_user_cache_outside_a_checkout(installed):
    python, env, tmp = installed
    out = _run([str(python), "-c", "from helpers.cache import data_dir; print(data_dir())"], cwd=tmp, env=env)
    where = Path(out.stdout.strip())
    assert (tmp / "user-cache") in where.parents, f"data folder {where} is not under the user cache dir"
