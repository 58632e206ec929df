"""The pip and conda dependency lists agree; the sizes table covers every mode."""
import re
from pathlib import Path

import tomllib

from helpers.modes import MODES, SIZES

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}


def _name(req):
    return re.split(r"[<>=!~ \[]", req.strip(), maxsplit=1)[0].lower()


def test_pyproject_and_environment_yml_list_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_names = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    conda = []
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"\s*-\s+([A-Za-z][\w.-]*)", line)
        if m and not line.strip().startswith("- -e"):
            conda.append(m.group(1).lower())
    conda_names = {CONDA_NAMES.get(n, n) for n in conda} - {"python", "pip"}
    assert pip_names == conda_names


def test_every_size_entry_has_every_mode():
    for name, per_mode in SIZES.items():
        assert set(per_mode) == set(MODES), name
