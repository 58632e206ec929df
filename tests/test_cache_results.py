"""Checkpoint cache and the results file."""
import json
from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from helpers.cache import (
    CheckpointError,
    cached_model,
    checkpoint_path,
    config_key,
    load_into,
    read_checkpoint,
    save_checkpoint,
)
from helpers.results import (
    Lesson,
    RunLog,
    load_results,
    record_results,
    results_path,
    results_table,
)


@dataclass(frozen=True)
class Cfg:
    width: int = 4
    seed: int = 0


def make(cfg=Cfg()):
    torch.manual_seed(cfg.seed)
    return nn.Sequential(nn.Linear(3, cfg.width), nn.ReLU(), nn.Linear(cfg.width, 2))


def test_round_trip(tmp_path):
    model = make()
    path = save_checkpoint(tmp_path / "m.safetensors", model, Cfg(), {"val_acc": 0.5})
    state, meta = read_checkpoint(path, Cfg())
    fresh = load_into(make(Cfg(seed=1)), state)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert meta["extra"]["val_acc"] == 0.5
    assert not list(tmp_path.glob("*.tmp")), "no temporary files left behind"


def test_corrupt_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x00\x01 this is not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_truncated_file_gives_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", make(), Cfg())
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="rebuild=True"):
        read_checkpoint(path)


def test_mismatched_model_names_what_differs(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", make(Cfg(width=4)), Cfg(width=4))
    state, _ = read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"shapes differ: 0.weight: model \(8, 3\), file \(4, 3\)"):
        load_into(make(Cfg(width=8)), state)
    with pytest.raises(CheckpointError, match="made by another config"):
        read_checkpoint(path, Cfg(width=8))


def test_cached_model_builds_once_then_loads_fresh_copies(data_dir, capsys):
    calls = []

    def build(model):
        calls.append(1)
        with torch.no_grad():
            model[0].weight.add_(1.0)
        return {"note": "trained"}

    m1, extra = cached_model("toy", Cfg(), make, build)
    m2, extra2 = cached_model("toy", Cfg(), make, build)
    assert len(calls) == 1 and extra2 == {"note": "trained"}
    assert torch.equal(m1[0].weight, m2[0].weight) and m1[0].weight is not m2[0].weight
    with torch.no_grad():
        m2[0].weight.zero_()                                   # a later cell changes its copy...
    m3, _ = cached_model("toy", Cfg(), make, build)
    assert torch.equal(m3[0].weight, m1[0].weight)            # ...which never leaks into the next
    out = capsys.readouterr().out
    assert "Building toy" in out and "Loaded the cached toy" in out


def test_stale_entry_is_rebuilt_with_a_message(data_dir, capsys):
    cached_model("toy", Cfg(width=4), lambda: make(Cfg(width=4)), lambda m: {})
    cached_model("toy", Cfg(width=6), lambda: make(Cfg(width=6)), lambda m: {})
    out = capsys.readouterr().out
    assert "other configs" in out
    assert config_key(Cfg(width=4)) != config_key(Cfg(width=6))
    assert checkpoint_path("toy", Cfg(width=6)).exists()


def test_results_file_format_and_replacement(data_dir):
    record_results("05", {"mae": 0.31, "table": [{"loss": "mse", "mae": 0.4}]}, wall_s=12.3, seed=0,
                   device="cpu", mode="class")
    record_results("05", {"mae": 0.29}, wall_s=10.0, device="cpu", mode="class")
    data = json.loads(results_path("class").read_text())
    entry = data["05"]
    assert set(entry) == {"mode", "device", "seed", "wall_s", "finished", "metrics"}
    assert entry["metrics"] == {"mae": 0.29} and entry["mode"] == "class" and entry["device"] == "cpu"
    assert entry["finished"].endswith("Z")
    assert "05" in results_table("class")


def test_lesson_records_its_wall_time(data_dir):
    lesson = Lesson("01")
    entry = lesson.record({"val_acc": torch.tensor(0.9)})
    assert entry["metrics"]["val_acc"] == pytest.approx(0.9) and entry["wall_s"] >= 0
    assert "01" in load_results()
    with pytest.raises(ValueError, match="two-digit"):
        record_results("1", {}, wall_s=0)


def test_run_log_collects_runs_and_survives_a_restart(data_dir):
    log = RunLog("demo")
    log.add(frozen_stages=0, acc=0.7)
    log.add(frozen_stages=2, acc=0.8)
    assert list(log.table()["frozen_stages"]) == [0, 2]
    assert len(RunLog("demo")) == 2
    log.clear()
    assert len(RunLog("demo")) == 0
