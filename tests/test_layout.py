"""The package is split by role: mechanisms in helpers/, lesson harnesses in helpers/lessons/.

A mechanism (a loop, a surgery, a data world) knows nothing of any lesson, so it never imports a
harness; a harness composes mechanisms and never imports another lesson's harness. The command
line that runs the whole course (``helpers.course``) is the one module allowed to know them all.
"""
import ast
from pathlib import Path

import pytest

HELPERS = Path(__file__).resolve().parent.parent / "helpers"
ENTRY_POINTS = {"helpers.course"}


def module_name(path: Path) -> str:
    parts = path.relative_to(HELPERS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, text: str | None = None) -> set[str]:
    """Every helpers module that ``path`` (with source ``text``, default its file) imports,
    absolutely or relatively, at any depth."""
    tree = ast.parse(path.read_text() if text is None else text)
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found |= {f"{mod}.{a.name}" for a in node.names}     # "from .lessons import peft"
    # strings in PREPARE-style tables ("helpers.lessons.x:function") count as imports too
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("helpers."):
            found.add(node.value.split(":")[0])
    return {m for m in found if m == "helpers" or m.startswith("helpers.")}


MODULES = sorted(p for p in HELPERS.rglob("*.py"))


def is_harness(name: str) -> bool:
    return name.startswith("helpers.lessons.")


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_imports_follow_the_roles(path):
    name = module_name(path)
    if name in ENTRY_POINTS:
        return
    harnesses = {m for m in imported_modules(path) if is_harness(m)}
    if is_harness(name):
        others = {m for m in harnesses if not (m == name or m.startswith(name + "."))}
        assert not others, f"the harness {name} imports another lesson's harness: {sorted(others)}"
    else:
        assert not harnesses, f"the mechanism {name} imports lesson harnesses: {sorted(harnesses)}"


@pytest.mark.parametrize("path", MODULES, ids=[module_name(p) for p in MODULES])
def test_every_module_says_what_it_is_for(path):
    if path.name == "__init__.py" and not path.read_text().strip():
        return
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc and len(doc.split()) >= 5, f"{module_name(path)} has no docstring saying what it is for"


def test_the_checker_sees_a_wrong_direction():
    """The checks above would catch a mechanism importing a harness, relatively or absolutely,
    and a harness importing another lesson's."""
    mechanism, harness = HELPERS / "training.py", HELPERS / "lessons" / "peft.py"
    text = "from .lessons.peft import run_peft\nimport helpers.lessons.partial\n"
    assert {"helpers.lessons.peft", "helpers.lessons.partial"} <= imported_modules(mechanism, text)
    assert "helpers.lessons.partial" in imported_modules(harness, "from .partial import time_per_epoch\n")
    assert "helpers.training" in imported_modules(harness, "from ..training import train\n")


def import_graph(modules=MODULES) -> dict[str, set[str]]:
    """helpers module -> the helpers modules it imports (at the top or inside functions); a name
    imported from a module ("from .training import train") counts as that module."""
    names = {module_name(p): p for p in modules}
    graph = {}
    for name, path in names.items():
        deps = set()
        for m in imported_modules(path):
            while m and m not in names:
                m = m.rpartition(".")[0]
            if m and m != name:
                deps.add(m)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as [a, b, ..., a], or [] if there is none (depth-first)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = "done"
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_helpers_has_no_import_cycle():
    """Imports point down only, those inside functions included: a cycle hidden in a function
    (cache -> results -> cache) works until someone moves the import to the top."""
    graph = import_graph()
    assert "helpers.training" in graph["helpers.experiments"]          # the graph sees real imports
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_sees_a_cycle_inside_a_function(tmp_path):
    graph = import_graph()
    training = HELPERS / "training.py"
    text = training.read_text() + "\n\ndef late():\n    from .experiments import run_finetune\n"
    graph["helpers.training"] = graph["helpers.training"] | {
        m for m in imported_modules(training, text) if m == "helpers.experiments"}
    cycle = find_cycle(graph)
    assert cycle[0] == cycle[-1] and "helpers.training" in cycle and "helpers.experiments" in cycle


# Issue 25: no public function in helpers/ takes more than ten parameters; the rest go in typed
# settings objects (helpers.runner's Setup, Budget, Adaptation, Report; helpers.training's
# Optimiser, Speed, Monitor; ...). Each exception names its reason.
MAX_PARAMETERS = 10
ALLOWED = {
    "helpers.experiments.run_finetune": "11: the seven knobs lessons 02-04's cells vary stay flat (labels_per_class, "
                                        "task, frozen_stages, lr, seed, from_scratch, log); the rest is four groups",
    "helpers.own_tasks.finetune_task": "11: the same seven flat knobs as run_finetune, with the source in place of "
                                       "labels_per_class (the experiment's own variable); the rest is four groups",
    "helpers.lessons.bird_counter.run_counter": "11: lesson 05's cells vary labels, pretrained, loss, seed, lr and "
                                                "freeze; cache and the data are the eighth; the rest is three groups",
}


def public_functions_with_parameters():
    """(module.function, its parameter count, self and cls not counted) for every public function
    and method in helpers/."""
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                yield f"{module_name(path)}.{node.name}", len(names)


def test_no_public_function_takes_more_than_ten_parameters():
    counts = dict(public_functions_with_parameters())
    over = {name: n for name, n in counts.items() if n > MAX_PARAMETERS and name not in ALLOWED}
    assert not over, (f"{over}: group related settings in a typed settings object (a frozen dataclass, "
                      f"validated, each field with its unit) instead of more loose parameters")
    stale = [name for name in ALLOWED if counts.get(name, 0) <= MAX_PARAMETERS]
    assert not stale, f"{stale} no longer need their exception: remove them from ALLOWED"
