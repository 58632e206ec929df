"""What a lesson shows at its start and end: its sizes in one line, and one call that records the
results and checks the lesson's claims."""
import dataclasses

import pytest

from helpers.claims import Claim
from helpers.modes import MODES, SIZES, sizes
from helpers.results import Lesson, load_results


@pytest.mark.parametrize("name", SIZES.names())
def test_every_sizes_object_says_itself_in_one_line(name):
    for mode in MODES:
        S = sizes(name, mode)
        line = S.summary()
        assert "\n" not in line and str(S) == line
        assert line.startswith(f"{name} sizes, {mode} mode: ")
        for field in dataclasses.fields(S):
            assert f"{field.name} " in line
    changed = dataclasses.replace(sizes(name, "smoke"), **{dataclasses.fields(S)[0].name: None})
    assert "changed from a mode's" in changed.summary()


def test_summary_writes_tuples_and_floats_compactly():
    line = sizes("finetune", "class").summary()
    assert "labels_per_class 5/10/50" in line and "lr_sweep 0.0001/0.001/0.01/0.1" in line


def test_finish_records_and_shows_the_claims_in_one_call(data_dir, capsys):
    lesson = Lesson("98")
    claims = [Claim("98", "a beats b", lambda m: m["a"] > m["b"]),
              Claim("98", "a is small", lambda m: m["a"] < 0.1),
              Claim("98", "c is positive", lambda m: m["c"] > 0)]
    entry = lesson.finish({"a": 0.5, "b": 0.2, "rows": [{"x": 1}]}, claims)
    assert load_results()["98"]["metrics"] == entry["metrics"] == {"a": 0.5, "b": 0.2, "rows": [{"x": 1}]}
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("Recorded lesson 98 (smoke mode) in ") and "2 numbers and 1 table(s)" in out[1]
    assert out[2:] == ["The claims this lesson makes, checked on these numbers (3):", "✅ a beats b",
                       "❌ does not hold: a is small", "… not measured: c is positive"]
    Lesson("97").finish({"a": 1.0})                   # a lesson without claims only records
    assert "claims" not in capsys.readouterr().out and "97" in load_results()


def test_a_build_announces_how_long_it_takes(data_dir, capsys):
    import torch

    from helpers.cache import CLASS_BUILD_SECONDS, build_estimate, cached_model
    assert build_estimate("image_pretrained", "class") == "about 2 minutes on a 2-core CPU in class mode, measured"
    assert build_estimate("lm_pretrained", "full").startswith("no measured estimate in full mode (about 5 minutes")
    assert build_estimate("image_pretrained", "smoke") == "seconds in smoke mode"
    assert len(CLASS_BUILD_SECONDS) >= 6
    from dataclasses import replace

    from helpers.models import image_model_config
    lesson_01 = image_model_config("class")
    assert build_estimate("image_pretrained", "class", config=lesson_01).startswith("about 2 minutes")
    # lesson 00's and lesson 10's smaller models share the entry name but not lesson 01's time
    assert build_estimate("image_pretrained", "class", config=replace(lesson_01, width=12)) == \
        "no measured estimate for this image_pretrained config"
    cached_model("image_pretrained", {"w": 1}, lambda: torch.nn.Linear(2, 2), lambda m: {})
    assert "This runs once (seconds in smoke mode; `make prepare` builds every checkpoint" in capsys.readouterr().out


@pytest.mark.parametrize("name", SIZES.names())
def test_smoke_mode_is_not_degenerate_where_class_mode_chooses_or_averages(name):
    """Where class mode averages over several seeds or chooses from a grid of several values, smoke
    mode (CI) does too, with at least 2: otherwise every choice on validation, every significance
    test and every claim on seeds would run on a path that cannot go two ways."""
    smoke, klass = sizes(name, "smoke"), sizes(name, "class")
    for field in dataclasses.fields(smoke):
        s, c = getattr(smoke, field.name), getattr(klass, field.name)
        if isinstance(c, tuple) and len(c) > 1:
            assert len(s) >= 2, f"{name}.{field.name}: class mode has {c}, smoke only {s}"
        if field.name.endswith("seeds") and c > 1:
            assert s >= 2, f"{name}.{field.name}: class mode has {c} seeds, smoke only {s}"
