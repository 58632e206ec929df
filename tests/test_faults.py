"""Faults and concurrency: nothing lost when processes write at once, when a line is cut short,
when a save is interrupted or killed, or when a run is stopped early."""
import json
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from helpers import cache
from helpers.cache import atomic_write, cached_model, checkpoint_path, clean_stale_temporaries, save_checkpoint
from helpers.lora import add_lora, load_adapter, lora_layers, save_adapter
from helpers.results import Lesson, RunLog, load_results, record_results, results_path, results_table

needs_fork = pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork (POSIX)")
needs_fcntl = pytest.mark.skipif(cache.fcntl is None, reason="needs fcntl (POSIX)")


def run_processes(target, n, *args):
    """Start ``n`` forked processes running ``target(i, together, *args)``; fail if any fails.
    ``together.wait()`` in the target returns once every process has reached it."""
    ctx = mp.get_context("fork")
    together = ctx.Barrier(n, timeout=30)
    procs = [ctx.Process(target=target, args=(i, together, *args)) for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]


# ---------------------------------------------------------------------------------------------
# Concurrent writers
# ---------------------------------------------------------------------------------------------

def _record_lessons(i, together, per_process):
    together.wait()                            # all start writing at once
    for k in range(per_process):
        number = i * per_process + k
        record_results(f"{number:02d}", {"acc": number / 100}, wall_s=1.0, device="cpu", mode="class")


@needs_fork
@pytest.mark.parametrize("processes, per_process", [(2, 20), (4, 10)])
def test_concurrent_lessons_lose_no_results(processes, per_process, data_dir):
    run_processes(_record_lessons, processes, per_process)
    results = load_results("class")
    expected = {f"{n:02d}" for n in range(processes * per_process)}
    assert set(results) == expected, f"missing: {sorted(expected - set(results))}"
    assert all(results[k]["metrics"]["acc"] == int(k) / 100 for k in results)
    assert not list(results_path("class").parent.glob(".*.tmp"))


def _log_runs(i, together, per_process):
    log = RunLog("shared")                     # every process opens the log before any adds
    together.wait()
    for k in range(per_process):
        log.add(process=i, k=k)
        time.sleep(0.002)                      # interleave the processes' appends


@needs_fork
@pytest.mark.parametrize("processes, per_process", [(2, 20), (4, 10)])
def test_concurrent_run_logs_number_every_run_once(processes, per_process, data_dir):
    run_processes(_log_runs, processes, per_process)
    rows = RunLog("shared").rows
    assert len(rows) == processes * per_process
    assert sorted(r["run"] for r in rows) == list(range(1, processes * per_process + 1))
    assert {(r["process"], r["k"]) for r in rows} == {(i, k) for i in range(processes) for k in range(per_process)}


def test_a_log_sees_rows_another_log_added(data_dir):
    a, b = RunLog("two"), RunLog("two")
    a.add(x=1)
    b.add(x=2)
    assert [r["run"] for r in b.rows] == [1, 2]
    assert [r["run"] for r in RunLog("two").rows] == [1, 2]


# ---------------------------------------------------------------------------------------------
# Torn lines in a run log
# ---------------------------------------------------------------------------------------------

def three_rows(name="torn"):
    log = RunLog(name)
    for k in range(3):
        log.add(k=k, acc=0.5 + k / 10, note="a row long enough to cut in many places")
    return log.path


@pytest.mark.parametrize("keep", [1, 5, 12, 30, -3, -2])
def test_a_torn_last_line_swallows_no_row(keep, data_dir):
    path = three_rows()
    lines = path.read_text().splitlines(keepends=True)
    cut = lines[-1][:keep] if keep > 0 else lines[-1][:len(lines[-1]) + keep]
    path.write_text("".join(lines[:-1]) + cut)          # the crash cut the last row
    with pytest.warns(UserWarning, match="cut short"):
        log = RunLog("torn")
    assert [r["k"] for r in log.rows] == [0, 1]
    log.add(k=9)                                        # starts on a fresh line, numbered after the rest
    again = RunLog("torn")
    assert [r["k"] for r in again.rows] == [0, 1, 9]
    assert [r["run"] for r in again.rows] == [1, 2, 3]


def test_a_torn_line_without_newline_is_not_glued_to_the_next_row(data_dir):
    path = three_rows()
    path.write_bytes(path.read_bytes().rstrip(b"\n"))    # a complete row, its newline lost
    log = RunLog("torn")
    assert len(log) == 3
    log.add(k=3)
    assert [r["k"] for r in RunLog("torn").rows] == [0, 1, 2, 3]


def test_a_row_glued_to_a_torn_line_by_an_older_version_is_recovered(data_dir):
    path = three_rows()
    path.write_text(path.read_text() + '{"run": 4, "k": 3, "ac' + json.dumps({"run": 5, "k": 4}) + "\n")
    with pytest.warns(UserWarning, match="cut short"):
        log = RunLog("torn")
    assert [r["k"] for r in log.rows] == [0, 1, 2, 4]


@pytest.mark.parametrize("garbage", ["\x00\x00\x00", "not json", "[1, 2]", '{"k": 1}', "\ufffd\ufffd"])
def test_garbage_lines_in_the_middle_are_skipped(garbage, data_dir):
    path = three_rows()
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + garbage + "\n" + "".join(lines[1:]))
    with pytest.warns(UserWarning, match="cut short"):
        log = RunLog("torn")
    assert [r["k"] for r in log.rows] == [0, 1, 2]
    log.add(k=3)
    assert "not json" not in path.read_text()           # the next add rewrote the file cleanly
    assert [r["run"] for r in RunLog("torn").rows] == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------
# The results file itself unreadable
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ['{"05": {"mode": "class"', "[]", "", "\xff\xfe garbage"])
def test_an_unreadable_results_file_is_named_and_kept_aside(text, data_dir):
    path = results_path("class")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ValueError, match=str(path)):
        load_results("class")
    with pytest.warns(UserWarning, match="corrupt"):
        record_results("05", {"mae": 0.3}, wall_s=1.0, device="cpu", mode="class")
    assert load_results("class")["05"]["metrics"] == {"mae": 0.3}
    aside = list(path.parent.glob("class.corrupt-*.json"))
    assert len(aside) == 1 and aside[0].read_bytes() == text.encode("latin-1")


# ---------------------------------------------------------------------------------------------
# Interrupted saves and killed writers
# ---------------------------------------------------------------------------------------------

def adapted_model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    add_lora(model, ["0", "2"], rank=2)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].normal_()
    return model


def lora_B(model):
    return [layer.lora_B["default"].detach().clone() for layer in lora_layers(model).values()]


@pytest.mark.parametrize("fault", [KeyboardInterrupt, OSError, RuntimeError])
def test_an_interrupted_adapter_save_keeps_the_old_adapter(fault, tmp_path, monkeypatch):
    path = save_adapter(adapted_model(0), tmp_path / "task.safetensors")
    old = path.read_bytes()

    def half_then_fail(state, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise fault("stopped")

    monkeypatch.setattr("helpers.lora.save_file", half_then_fail)
    with pytest.raises(fault):
        save_adapter(adapted_model(1), path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["task.safetensors"]
    monkeypatch.undo()
    fresh = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    load_adapter(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(lora_B(fresh), lora_B(adapted_model(0))))


def _save_slowly(path, started):
    def write(tmp):
        Path(tmp).write_bytes(b"partial")
        started.set()
        time.sleep(60)                                  # killed here
    atomic_write(Path(path), write)


def _killed_save(folder):
    ctx = mp.get_context("fork")
    started = ctx.Event()
    p = ctx.Process(target=_save_slowly, args=(folder / "model.safetensors", started))
    p.start()
    assert started.wait(20)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    leftovers = list(folder.glob(".*.tmp"))
    assert len(leftovers) == 1                          # what a killed save leaves behind
    return leftovers[0]


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


@needs_fork
@needs_fcntl
@pytest.mark.parametrize("next_write", ["checkpoint", "adapter", "results"])
def test_a_killed_save_leaves_temporaries_that_the_next_write_cleans(next_write, data_dir, tmp_path):
    folder = {"checkpoint": tmp_path / "cache", "adapter": tmp_path / "cache",
              "results": results_path("class").parent}[next_write]
    folder.mkdir(parents=True, exist_ok=True)
    old = save_checkpoint(folder / "model.safetensors", nn.Linear(2, 2)).read_bytes() \
        if next_write != "results" else None
    leftover = _killed_save(folder)
    if old is not None:
        assert (folder / "model.safetensors").read_bytes() == old   # the old file survived the kill
    _age(leftover, 10)
    if next_write == "checkpoint":
        save_checkpoint(folder / "other.safetensors", nn.Linear(2, 2))
    elif next_write == "adapter":
        save_adapter(adapted_model(), folder / "a.safetensors")
    else:
        record_results("01", {"acc": 1.0}, wall_s=1.0, device="cpu", mode="class")
    assert not leftover.exists()


def _hold_a_temporary(folder, started):
    def write(tmp):
        started.set()
        time.sleep(60)
    atomic_write(Path(folder) / "busy.safetensors", write)


@needs_fork
@needs_fcntl
def test_a_live_writers_temporary_is_left_alone(tmp_path):
    ctx = mp.get_context("fork")
    started = ctx.Event()
    p = ctx.Process(target=_hold_a_temporary, args=(tmp_path, started))
    p.start()
    try:
        assert started.wait(20)
        (live,) = tmp_path.glob(".*.tmp")
        _age(live, 3600)                                # old, but a live process holds it
        atomic_write(tmp_path / "mine.json", lambda tmp: Path(tmp).write_text("{}"))
        assert live.exists()
    finally:
        p.kill()
        p.join(10)
    _age(live, 3600)
    assert clean_stale_temporaries(tmp_path) == [live.name]


def test_stale_temporaries_of_older_versions_are_cleaned_but_fresh_ones_kept(tmp_path):
    stale = tmp_path / ".model.safetensors.abc123.tmp"
    fresh = tmp_path / ".other.safetensors.def456.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    _age(stale, cache.STALE_TMP_S + 60)
    mine = tmp_path / "notes.tmp"                     # not hidden: not ours to clean
    mine.write_text("keep")
    _age(mine, cache.STALE_TMP_S + 60)
    atomic_write(tmp_path / "x.json", lambda tmp: Path(tmp).write_text("{}"))
    assert not stale.exists() and fresh.exists() and mine.exists()


@dataclass(frozen=True)
class Cfg:
    width: int = 4


def make(cfg=Cfg()):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, cfg.width), nn.ReLU(), nn.Linear(cfg.width, 2))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other_shapes"])
def test_a_damaged_cached_checkpoint_is_rebuilt_with_a_message(damage, data_dir, capsys):
    calls = []

    def build(model):
        calls.append(1)
        return {"n": len(calls)}

    cached_model("toy", Cfg(), make, build)
    path = checkpoint_path("toy", Cfg())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-30])
    elif damage == "garbage":
        path.write_bytes(b"\x00garbage")
    elif damage == "empty":
        path.write_bytes(b"")
    else:                                               # the architecture changed, the config did not
        save_checkpoint(path, make(Cfg(width=6)), Cfg())
    model, extra = cached_model("toy", Cfg(), make, build)
    assert len(calls) == 2 and extra == {"n": 2}
    assert "cannot be used, so it is built again" in capsys.readouterr().out
    model, extra = cached_model("toy", Cfg(), make, build)     # and the rebuilt file loads
    assert len(calls) == 2


# ---------------------------------------------------------------------------------------------
# Interrupted runs are flagged in the run log and the results file
# ---------------------------------------------------------------------------------------------

def test_an_interrupted_run_is_flagged_in_its_row_and_the_lesson_entry(data_dir, capsys):
    lesson = Lesson("03")
    log = lesson.run_log("03_freeze")
    log.add(frozen_stages=2, test_acc=0.8)
    log.add(frozen_stages=4, test_acc=0.3, interrupted=True)
    rows = RunLog("03_freeze").rows
    assert "interrupted" not in rows[0] and rows[1]["interrupted"] is True
    entry = lesson.record({"test_acc": 0.8})
    assert entry["interrupted"] is True and load_results()["03"]["interrupted"] is True
    assert "interrupted" in capsys.readouterr().out and "(interrupted)" in results_table()
    clean = Lesson("03")                               # a later, complete run of the lesson
    clean.run_log("03_freeze").add(frozen_stages=2, test_acc=0.8)   # the log holds the old row still
    assert "interrupted" not in clean.record({"test_acc": 0.8})
    assert "interrupted" not in load_results()["03"]


def test_a_lesson_hears_of_a_stopped_run_from_its_own_logs_not_from_module_state(data_dir, capsys):
    """Two lessons in one process (a test session, a kernel that runs two notebooks' cells): each
    is flagged by the runs in the logs it owns, whenever it was created, and by no other."""
    import helpers.results as results
    first, second = Lesson("03"), Lesson("04")
    ours = first.run_log("03_freeze")
    RunLog("scratch_pad").add(test_acc=0.1, interrupted=True)     # a log no lesson owns flags none
    ours.add(frozen_stages=4, test_acc=0.3, interrupted=True)
    ours.clear()                                                   # clearing the table does not hide it
    assert first.record({"test_acc": 0.8})["interrupted"] is True
    assert "1 run in 03_freeze stopped early" in capsys.readouterr().out
    assert "interrupted" not in second.record({"test_acc": 0.8})  # created before the stop, not its run
    assert not [name for name, value in vars(results).items()                # no mutable module state
                if not name.startswith("__") and isinstance(value, (list, dict, set))]


@pytest.mark.parametrize("how", ["keyword", "record_results"])
def test_an_interrupted_lesson_can_say_so_itself(how, data_dir):
    if how == "keyword":
        Lesson("07").record({"val_loss": 2.0}, interrupted=True)
    else:
        record_results("07", {"val_loss": 2.0}, wall_s=3.0, device="cpu", interrupted=True)
    assert load_results()["07"]["interrupted"] is True


def test_an_interrupted_build_is_not_cached_and_its_lesson_says_so(data_dir):
    lesson = Lesson("01")
    _, info = cached_model("toy", Cfg(), make, lambda m: {"interrupted": True})
    assert not checkpoint_path("toy", Cfg()).exists()
    assert lesson.record({"val_acc": 0.1}, interrupted=info["interrupted"])["interrupted"] is True


def test_ctrl_c_in_training_is_flagged_through_the_history(data_dir):
    """What a runner does: train, stopped by KeyboardInterrupt, logs interrupted=history.interrupted."""
    from helpers.training import Optimiser, train
    model = make()
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    calls = []

    def loss_fn(m, batch):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return nn.functional.cross_entropy(m(batch[0]), batch[1])

    lesson = Lesson("02")
    history = train(model, loss_fn, [(x, y)] * 10, epochs=1, optimiser=Optimiser(lr=1e-2), device="cpu", progress=False)
    assert history.interrupted
    row = lesson.run_log("02_curve").add(steps=history.steps_done, interrupted=history.interrupted)
    assert row["interrupted"] is True
    assert lesson.record({"acc": 0.5})["interrupted"] is True
