"""Every benchmark script runs end to end with tiny settings and prints the line it promises."""
import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run(capsys, script, *argv):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        module = importlib.import_module(script)
        module.main(list(argv))
    finally:
        sys.path.remove(str(BENCHMARKS))
    return capsys.readouterr().out.strip().splitlines()


def test_loop_overhead_prints_a_paired_ratio_with_its_spread(capsys):
    lines = run(capsys, "loop_overhead", "--steps", "1", "--min-rounds", "2", "--max-rounds", "2",
                "--batch-size", "4", "--width", "8", "--image-size", "24", "--quiet", "--device", "cpu")
    assert lines[-1].startswith("ratio ") and "median of 2 paired ratios" in lines[-1] and "IQR" in lines[-1]


def test_roofline_prints_fractions_last(capsys):
    lines = run(capsys, "roofline", "--mode", "smoke", "--rounds", "1", "--steps", "1", "--matmul", "64",
                "--batch-scale", "0.1", "--top", "2", "--device", "cpu")
    assert all("fraction" in line for line in lines[-3:]) and "fraction" not in lines[-4]
    assert any("practical peak fp32" in line for line in lines)


def test_bf16_cpu_prints_ratios_per_model(capsys):
    lines = run(capsys, "bf16_cpu", "--mode", "smoke", "--rounds", "1", "--steps", "1", "--no-compile",
                "--batch-scale", "0.1", "--only", "GPT")
    assert lines[-1].startswith("GPT (lesson 07)")


@pytest.mark.parametrize("world", ["objects", "general"])
def test_data_throughput_prints_a_ratio(capsys, world):
    lines = run(capsys, "data_throughput", "--mode", "smoke", "--rounds", "1", "--chunk", "16", "--steps", "2",
                "--device", "cpu", "--world", world)
    assert lines[-1].startswith("ratio ") and any(f"{world} world" in line for line in lines)


@pytest.mark.parametrize("script", ["channels_last"])
def test_channels_last_runs(capsys, script):
    lines = run(capsys, script, "--mode", "smoke", "--rounds", "1", "--steps", "1", "--device", "cpu")
    assert any("ratio" in line for line in lines)


def test_profile_render_prints_stages_and_ops(capsys):
    lines = run(capsys, "profile_render", "--mode", "smoke", "--chunks", "1", "--chunk", "8", "--top", "3")
    assert "images/s" in lines[0] and any("backgrounds" in line for line in lines)
    assert any("Self CPU" in line for line in lines)


def test_parallel_jobs_prints_a_ratio(capsys):
    lines = run(capsys, "parallel_jobs", "--mode", "smoke", "--rounds", "1", "--steps", "1", "--only", "GPT")
    assert lines[-1].startswith("ratio ") and "GPT" in lines[-1] and "over 1 job of" in lines[-1]


def test_transfer_prints_the_table_the_verdicts_and_its_time(capsys, tmp_path):
    pytest.importorskip("skimage", reason="the faces task ships in scikit-image")
    out = tmp_path / "transfer.json"
    lines = run(capsys, "transfer", "--mode", "smoke", "--tasks", "faces", "--labels", "2", "--seeds", "2",
                "--worlds", "object,fractal", "--device", "cpu", "--out", str(out))
    assert any(line.startswith("tasks: faces: judge") for line in lines)
    for arm in ("from scratch", "fine-tuned", "linear probe", "LP-FT"):
        assert any(arm in line and "(n=2)" in line for line in lines), arm
    assert any(line.startswith("faces, 2/class, object world: fine-tuned") for line in lines)
    assert any(line.startswith("faces, 2/class, object world: its linear probe") for line in lines)
    assert lines[-1].startswith("took ") and "for 14 runs" in lines[-1]
    import json
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == 14 and {r["seed"] for r in saved["rows"]} == {0, 1}
    assert saved["tasks"]["faces"]["role"] == "judge"
    # every arm and world saw the same draw: the rows of a seed are one paired set
    assert sorted((r["world"], r["arm"]) for r in saved["rows"] if r["seed"] == 1) == sorted(
        (r["world"], r["arm"]) for r in saved["rows"] if r["seed"] == 0)

    # the budget check re-runs from scratch and one world's fine-tuning at a longer budget, same draws and rates
    check = tmp_path / "check.json"
    lines = run(capsys, "transfer_budget", "--results", str(out), "--world", "object", "--steps", "6",
                "--device", "cpu", "--out", str(check))
    assert [line.split()[2:4] for line in lines[:2]] == [["from", "scratch"], ["fine-tuned", "object"]]
    assert all(" at 8 -> " in lines[0] or " at 4 -> " in line for line in lines[:2]) and lines[-1].startswith("took ")
    rows = json.loads(check.read_text())["rows"]
    assert [(r["arm"], r["short_steps"], r["long_steps"]) for r in rows] == [("from scratch", 8, 6), ("fine-tuned", 4, 6)]
    before = {r["arm"]: [x["val_acc"] for x in sorted(saved["rows"], key=lambda x: x["seed"])
                         if x["arm"] == r["arm"] and x["world"] == r["world"]] for r in rows}
    assert all(r["short_val"] == before[r["arm"]] and len(r["long_val"]) == 2 for r in rows)


def test_from_scratch_gets_steps_in_proportion_to_its_labels_in_class_mode():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        transfer = importlib.import_module("transfer")
    finally:
        sys.path.remove(str(BENCHMARKS))
    B = transfer.BUDGETS["class"]
    assert [B.scratch_steps_at(n) for n in (1, 5, 10, 20)] == [240, 240, 480, 960]    # the same passes over the data
    assert B.steps == 240                               # fine-tuning's budget: no real gain at 720 steps (docs/transfer.md)
    full = transfer.BUDGETS["full"]
    assert full.scratch_steps_at(5) == full.scratch_steps_at(20) == 1200


def test_the_rate_search_goes_past_an_edge_only_while_validation_improves():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        search_rates = importlib.import_module("transfer").search_rates
    finally:
        sys.path.remove(str(BENCHMARKS))

    def peak_at(best):
        calls = []

        def run(lr):
            calls.append(lr)
            return (-abs(__import__("math").log10(lr / best)), 0, "result")
        return run, calls

    run, calls = peak_at(3e-3)                          # inside the grid: the grid alone
    lr, tried, result = search_rates((1e-3, 3e-3, 1e-2), run)
    assert lr == 3e-3 and len(calls) == 3 and result == (0.0, 0, "result")
    run, calls = peak_at(1e-4)                          # below it: two steps down, each better
    lr, tried, _ = search_rates((1e-3, 3e-3, 1e-2), run)
    assert len(calls) == 5 and abs(lr - 1e-3 / 3 / 3) < 1e-12 and min(tried) == lr
    run, calls = peak_at(0.05)                          # above it: one step up is better, the next is not tried
    lr, tried, _ = search_rates((1e-3, 3e-3, 1e-2), run, beyond=1)
    assert len(calls) == 4 and abs(lr - 0.01 * 10 / 3) < 1e-12
    flat = lambda lr: (0.5, 0, None)                    # all equal: the first of equals, nothing past the edge kept
    lr, tried, _ = search_rates((1e-3, 1e-2), flat)
    assert lr == 1e-3 and len(tried) == 3


def test_general_world_cost_prints_both_starts_and_the_verdict(capsys, data_dir):
    lines = run(capsys, "general_world_cost", "--mode", "smoke", "--seeds", "2", "--lrs", "1e-3", "1e-2")
    assert lines[0].startswith("object world: validation") and lines[1].startswith("general world: validation")
    assert lines[-1].startswith("general minus object world: ") and "paired t-test p = " in lines[-1]
