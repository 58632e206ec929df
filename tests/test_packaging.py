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
    for name in SIZES.names():
        for mode in MODES:
            assert SIZES.part(name).in_mode(mode) is not None, (name, mode)


def _canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def test_constraints_pin_registry_releases_of_every_dependency():
    """constraints.txt (make setup installs with it) holds exact releases from the registries
    only, so a fresh clone installs it anywhere: no paths, URLs or editable installs. It pins every
    package pyproject.toml names, and PyTorch at the versions the course was tested with."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line.strip())
        assert m, f"constraints.txt: {line!r} is not name==version (make constraints writes it)"
        pins[_canonical(m.group(1))] = m.group(2)
    assert "fine-tuning-course" not in pins, "the course itself is installed from the checkout"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_canonical(_name(r)) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    assert not wanted - set(pins), f"not pinned in constraints.txt (run make constraints): {sorted(wanted - set(pins))}"
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1"), \
        "the course is tested with torch 2.14.1 and torchvision 0.29.1: change them on purpose only"
