"""The species task and one-call experiments: fresh models every run, honest counts."""
import pytest
import torch

from helpers.experiments import build_model, run_finetune, summary
from helpers.lessons.partial import time_per_epoch
from helpers.models import pretrained_image_model
from helpers.modes import sizes
from helpers.results import RunLog
from helpers.runner import QUIET, Adaptation, Budget, Report, RunResult, state_hash
from helpers.stats import mean_and_spread
from helpers.surgery import stages
from helpers.tasks import ClassificationTask, species_data, species_task, species_test_set, species_train_set


def test_train_sets_are_balanced_and_repeatable():
    x, y = species_train_set(3, seed=0)
    assert torch.bincount(y).tolist() == [3] * 6
    x2, y2 = species_train_set(3, seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = species_train_set(3, seed=1)
    assert not torch.equal(x, x3)
    xt, yt = species_test_set(60)
    assert xt.shape[0] == 60 and xt.shape[-1] == x.shape[-1]
    assert set(yt.tolist()) <= set(range(6))


def test_reruns_start_from_identical_weights_and_leave_checkpoint_alone():
    log = RunLog("test_rerun", persist=False)
    first = run_finetune(2, frozen_stages=1, budget=Budget(steps=3, evals=0), setup=QUIET, log=log,
                         report=Report(keep_model=True))
    second = run_finetune(2, frozen_stages=4, budget=Budget(steps=3, evals=0), setup=QUIET, log=log)
    assert first.start_state_hash == second.start_state_hash
    assert state_hash(first.model) != first.start_state_hash, "training should change weights"
    # the pretrained checkpoint itself is untouched by the runs
    fresh, _ = pretrained_image_model(verbose=False)
    backbone = {k: v for k, v in fresh.state_dict().items() if not k.startswith("fc.")}
    rebuilt = {k: v for k, v in build_model(seed=0).state_dict().items() if not k.startswith("fc.")}
    assert all(torch.equal(backbone[k], rebuilt[k]) for k in backbone)
    table = log.table()
    assert list(table["frozen_stages"]) == [1, 4]
    assert table["trainable_params"].iloc[0] > table["trainable_params"].iloc[1]


def test_result_fields_and_scratch_differs():
    r = run_finetune(2, budget=Budget(steps=2), setup=QUIET)
    assert isinstance(r, RunResult) and r.model is None
    assert 0 <= r.val_acc <= 1 and 0 <= r.test_acc <= 1 and r.sec_per_epoch > 0 and r.steps == 2
    assert r.trainable_params == r.total_params and r.history.steps_done == 2
    scratch = run_finetune(2, budget=Budget(steps=2), from_scratch=True, setup=QUIET)
    assert scratch.start_state_hash != r.start_state_hash
    assert set(summary(r)) <= set(r.row())
    with pytest.raises(AttributeError, match="no 'test_accuracy'.*test_acc"):
        r.test_accuracy


def test_validation_and_test_are_separate_fixed_sets():
    task = species_data(2, seed=0)
    assert not torch.equal(task.x_val[:8], task.x_test[:8])
    assert torch.equal(task.x_val, species_data(2, seed=5).x_val)        # fixed, whatever the training seed
    assert len(task.x_val) == sizes("finetune").val_images


def test_linear_probe_trains_only_the_head():
    model = build_model(seed=0)
    n = len(stages(model))
    r = run_finetune(2, frozen_stages=n, budget=Budget(steps=2), setup=QUIET)
    assert r.trainable_params == sum(p.numel() for p in model.get_classifier().parameters())


def test_heads_lp_ft_and_layerwise_rates_run():
    mlp = run_finetune(2, adaptation=Adaptation(head="mlp", hidden=8), budget=Budget(steps=2), setup=QUIET)
    block = run_finetune(2, adaptation=Adaptation(head="block"), budget=Budget(steps=2), setup=QUIET)
    assert block.total_params > mlp.total_params - 8 * 6 > 0
    lpft = run_finetune(2, adaptation=Adaptation(linear_probe_steps=2, lr_decay=0.5), budget=Budget(steps=5),
                        setup=QUIET)
    # the probe's steps count in the budget: LP-FT and full fine-tuning get the same steps
    assert lpft.linear_probe_history.steps_done == 2 and lpft.history.steps_done == 3 and lpft.steps == 5


def test_bad_settings_raise_with_choices():
    one = Budget(steps=1)
    with pytest.raises(ValueError, match="0 to"):
        run_finetune(2, frozen_stages=99, budget=one, setup=QUIET)
    with pytest.raises(ValueError, match="Adaptation.head must be one of"):
        run_finetune(2, adaptation=Adaptation(head="tower"), budget=one, setup=QUIET)
    with pytest.raises(TypeError, match=r"'frozen_stage' \(did you mean 'frozen_stages'"):
        run_finetune(2, frozen_stage=2, budget=one, setup=QUIET)
    with pytest.raises(TypeError, match=r"'steps' \(it is a field of budget: budget=Budget\(steps=...\)\)"):
        run_finetune(2, steps=2, setup=QUIET)             # a budget's field goes in the Budget
    with pytest.raises(ValueError, match="labels_per_class must be a whole number"):
        run_finetune(-1, budget=one, setup=QUIET)
    for group, name, bad in ((Budget, "steps", 0), (Budget, "steps", 2.5), (Adaptation, "linear_probe_steps", -1)):
        with pytest.raises(ValueError, match=rf"{group.__name__}.{name} must be .*whole number.*got {bad}"):
            group(**{name: bad})
    with pytest.raises(TypeError, match="budget must be a helpers.runner.Budget"):
        run_finetune(2, budget={"steps": 2}, setup=QUIET)
    with pytest.raises(ValueError, match="leaves nothing of the budget"):
        run_finetune(2, budget=Budget(steps=2), adaptation=Adaptation(linear_probe_steps=2), setup=QUIET)


def test_mean_and_spread():
    m, s = mean_and_spread([0.5, 0.7, 0.9])
    assert m == pytest.approx(0.7) and s == pytest.approx(0.2)
    assert mean_and_spread([0.4]) == (pytest.approx(0.4), 0.0)


def test_time_per_epoch_falls_when_everything_is_frozen():
    timing = time_per_epoch([0, 5], 2, rounds=3, steps=1)
    assert set(timing) == {0, 5} and all(t > 0 for t in timing.values())
    assert timing[5] < timing[0]


def test_keep_best_restores_the_best_validation_weights_and_says_when():
    r = run_finetune(2, budget=Budget(steps=4, evals=2, keep_best=True, test_curve=True), setup=QUIET)
    vals = [e["val_acc"] for e in r.history.evals]
    assert r.val_acc == max(vals)
    assert r.best_step == r.history.evals[vals.index(max(vals))]["step"]
    assert all("test_acc" in e for e in r.history.evals)
    with pytest.raises(ValueError, match="evals"):
        Budget(steps=2, evals=0, keep_best=True)


def test_lp_ft_counts_its_probe_steps_in_the_budget():
    lp = run_finetune(2, budget=Budget(steps=4, evals=0), adaptation=Adaptation(linear_probe_steps=2), setup=QUIET)
    ft = run_finetune(2, budget=Budget(steps=4, evals=0), setup=QUIET)
    assert lp.steps == ft.steps == 4


def test_shifted_task_uses_unseen_backgrounds_and_is_measured():
    from helpers.tasks import SEEN_BACKGROUNDS, SHIFTED_BACKGROUNDS, species_shift_data
    assert not set(SEEN_BACKGROUNDS) & set(SHIFTED_BACKGROUNDS)
    task = species_shift_data(2)
    assert task.x_shifted is not None and len(task.x_shifted) == len(task.y_shifted)
    assert not torch.equal(task.x_test[:4], task.x_shifted[:4])
    r = run_finetune(task=task, budget=Budget(steps=2, evals=0), setup=QUIET)
    assert 0 <= r.shifted_acc <= 1


def test_converged_scratch_is_cached_by_its_config(tmp_path, monkeypatch):
    from helpers.experiments import scratch_converged
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    first = scratch_converged(2, seed=0, lr=3e-3, progress=False)
    again = scratch_converged(2, seed=0, lr=3e-3, progress=False)
    S = sizes("finetune")
    assert not first.cached and again.cached
    assert first.steps == again.steps == S.scratch_steps and first.from_scratch
    assert again.test_acc == first.test_acc and again.best_step == first.best_step
    assert list((tmp_path / "cache").glob("species_scratch-*.safetensors"))
    other = scratch_converged(2, seed=1, lr=3e-3, progress=False)          # other images: another entry
    assert not other.cached


def test_layerwise_rates_reach_the_optimiser(monkeypatch):
    """lr_decay's rates are the rates AdamW steps with: the head at lr, each stage nearer the
    input lr_decay times the next one's."""
    made = []

    class Recorded(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", Recorded)
    r = run_finetune(2, lr=1e-3, adaptation=Adaptation(lr_decay=0.5), budget=Budget(steps=2, evals=0),
                     report=Report(keep_model=True), setup=QUIET)
    rate = {id(p): g["initial_lr"] for g in made[-1].param_groups for p in g["params"]}
    all_stages = stages(r.model)
    for i, (name, stage) in enumerate(all_stages):
        expected = 1e-3 * 0.5 ** (len(all_stages) - i)
        assert [rate[id(p)] for p in stage.parameters()] == pytest.approx([expected] * len(list(stage.parameters()))), name
    head = list(r.model.get_classifier().parameters())
    assert [rate[id(p)] for p in head] == pytest.approx([1e-3] * len(head))


def _easy_task(n_per_class=16, size=None):
    """Two classes any colour detector tells apart: reddish and bluish noise images."""
    size = size or species_task().image_size

    def split(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(2 * n) % 2
        x = 0.3 * torch.rand(2 * n, 3, size, size, generator=g)
        x[y == 0, 0] += 0.6                                  # red
        x[y == 1, 2] += 0.6                                  # blue
        return x, y

    return ClassificationTask(("red", "blue"), *split(n_per_class, 1), *split(16, 2), *split(32, 3), name="colours")


def test_fine_tuning_reaches_well_above_chance_on_an_easy_task():
    r = run_finetune(task=_easy_task(), budget=Budget(steps=30, evals=1), setup=QUIET)
    assert r.test_acc >= 0.9                                 # chance is 0.5
    assert r.history.loss[-1] < r.history.loss[0]
