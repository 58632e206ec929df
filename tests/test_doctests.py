"""The examples in the docstrings of ``helpers`` run and print what the code prints.

``DOCTESTED`` modules run every example; an example that needs a model builds a tiny one. The
modules in ``SKETCHES`` still hold examples that call the course's real models or data (minutes of
training in a test); each is listed by name so the gap is visible, and a module with examples
must be in one list or the other.
"""
import doctest
import importlib
import pkgutil

import pytest

import helpers

DOCTESTED = ["helpers.cache", "helpers.checks", "helpers.claims", "helpers.fractals", "helpers.general_world",
             "helpers.lora", "helpers.models", "helpers.modes", "helpers.real_images", "helpers.runner", "helpers.lessons.peft", "helpers.site",
             "helpers.stats", "helpers.surgery", "helpers.training"]
SKETCHES = ["helpers.distributed", "helpers.exercises", "helpers.experiments", "helpers.generation_metrics",
            "helpers.generator", "helpers.gpt", "helpers.images", "helpers.lm",
            "helpers.own_tasks", "helpers.plots", "helpers.prompting", "helpers.results", "helpers.tasks",
            "helpers.text_world", "helpers.tokenizer", "helpers.widgets", "helpers.lessons.bird_counter",
            "helpers.lessons.distillation", "helpers.lessons.partial", "helpers.peft_bridge"]


def _examples(name):
    return [t for t in doctest.DocTestFinder().find(importlib.import_module(name)) if t.examples]


@pytest.mark.parametrize("name", DOCTESTED)
def test_docstring_examples_run(name):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in _examples(name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
    assert runner.tries > 0


def test_every_module_with_examples_is_run_or_listed():
    modules = [m.name for m in pkgutil.walk_packages(helpers.__path__, "helpers.")]
    with_examples = {m for m in modules if _examples(m)}
    assert with_examples <= set(DOCTESTED) | set(SKETCHES), sorted(with_examples - set(DOCTESTED) - set(SKETCHES))
