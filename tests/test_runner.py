"""The one experiment runner (helpers/runner.py): early stopping, the probe phase, and the cache
keys of the converged baselines, which a refactor must keep."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.cache import config_key
from helpers.experiments import scratch_config
from helpers.lessons.bird_counter import counter_config
from helpers.runner import Objective, Recipe, Setup, kept_value, run
from helpers.tasks import ClassificationTask

CPU = Setup(device="cpu", progress=False)


def toy():
    torch.manual_seed(0)
    x = torch.randn(96, 4)
    y = (x[:, 0] > 0).long()
    return x, y


def linear():
    torch.manual_seed(1)
    return nn.Linear(4, 2)


def objective(x, y, **kw):
    def val(m):
        return {"val_loss": F.cross_entropy(m(x), y).item()}
    return Objective(lambda m, b: F.cross_entropy(m(b[0]), b[1]), val, "val_loss", higher_is_better=False,
                     measure=lambda m, h: {"val_loss": val(m)["val_loss"], "kept": kept_value(h, "val_loss")}, **kw)


def test_early_stopping_restores_the_best_evaluations_weights():
    x, y = toy()
    # validation labels that disagree with training's: the more the model learns, the worse it
    # validates, so the best evaluation is an early one, not the last
    judge = objective(x, 1 - y)
    recipe = Recipe(steps=40, batch_size=8, lr=0.5, eval_every=4, keep_best=True)
    r = run(linear, (x, y), recipe, judge, setup=CPU)
    evals = r.history.evals
    best = min(evals, key=lambda e: e["val_loss"])
    assert r.history.best_step == r.best_step == best["step"]
    assert r.metrics["val_loss"] == pytest.approx(best["val_loss"], rel=1e-6)      # the model holds those weights
    assert r.metrics["kept"] == best["val_loss"]
    last = run(linear, (x, y), Recipe(steps=40, batch_size=8, lr=0.5, eval_every=4), judge, setup=CPU)
    assert last.history.evals == evals                   # the same run, but it keeps the last weights
    assert last.best_step == 40 and last.metrics["val_loss"] == pytest.approx(evals[-1]["val_loss"], rel=1e-6)
    assert best["step"] < 40, "the toy should overshoot, or the test proves nothing"


def test_a_run_starts_fresh_and_repeats_exactly():
    x, y = toy()

    recipe = Recipe(steps=10, batch_size=16, lr=0.1, seed=3)
    a, b = (run(linear, (x, y), recipe, objective(x, y), setup=CPU) for _ in range(2))
    assert a.start_state_hash == b.start_state_hash
    assert a.history.loss == b.history.loss and a.metrics == b.metrics
    c = run(linear, (x, y), Recipe(steps=10, batch_size=16, lr=0.1, seed=4), objective(x, y), setup=CPU)
    assert c.history.loss != a.history.loss                       # the seed orders the batches


def test_the_probe_phase_trains_the_head_alone_and_counts_in_the_budget():
    x, y = toy()

    def make():
        torch.manual_seed(0)
        return _StageModel()
    recipe = Recipe(steps=10, batch_size=16, lr=0.05, probe_steps=4, probe_lr=0.1, eval_every=2, keep_best=True)
    r = run(make, (x, y), recipe, objective(x, y), setup=CPU, keep_model=True)
    probe = r.extra["linear_probe_history"]
    assert probe.steps_done == 4 and r.history.steps_done == 6 and r.steps == 10
    assert r.best_step == r.history.best_step + 4


class _StageModel(nn.Module):
    """Two 'stages' and a head, named as ``helpers.surgery.stages`` finds them in a ResNet."""
    def __init__(self):
        super().__init__()
        self.layer1, self.layer2, self.fc = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.layer2(torch.relu(self.layer1(x)))))


def test_keep_best_without_a_validation_metric_is_refused():
    x, y = toy()
    with pytest.raises(ValueError, match="keep_best"):
        run(lambda: nn.Linear(4, 2), (x, y), Recipe(steps=2, batch_size=8, lr=0.1, keep_best=True),
            Objective(lambda m, b: F.cross_entropy(m(b[0]), b[1])), setup=CPU)


# The keys below were computed by the code on main before the runner refactor (commit 78e1935),
# from the same inputs: the converged baselines that `make prepare` cached there must still be found.
MAIN_KEYS = {
    ("species", "smoke"): "0545c483a7ba", ("species", "class"): "e05f9b1534ac",
    ("scratch", "smoke"): "543afe156e4a", ("scratch", "class"): "4fa9ccfb676f",
    ("scratch_best", "smoke"): "6c76becfbf93", ("scratch_best", "class"): "e08e06cf2bd1",
    ("finetuned", "smoke"): "263d835bd1af", ("finetuned", "class"): "7f411272ae16",
}


@pytest.mark.parametrize("mode", ["smoke", "class"])
def test_cache_keys_of_the_converged_baselines_are_mains(mode, monkeypatch):
    monkeypatch.delenv("COURSE_PRETRAINED", raising=False)
    x, y = torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 0, 1])
    task = ClassificationTask(("a", "b"), x, y, torch.ones(2, 3, 8, 8), torch.tensor([0, 1]),
                              torch.ones(2, 3, 8, 8), torch.tensor([0, 1]), name="t")
    assert config_key(scratch_config(task, 2, seed=1, lr=0.003, mode=mode)) == MAIN_KEYS[("species", mode)]
    counts = torch.tensor([0., 2., 5., 1.])
    cases = {"scratch": (False, Recipe(steps=30, batch_size=4, lr=0.002, seed=2), "poisson", 0),
             "scratch_best": (False, Recipe(steps=30, batch_size=4, lr=0.002, eval_every=5, keep_best=True), "mse", 0),
             "finetuned": (True, Recipe(steps=30, batch_size=4, lr=0.002, eval_every=5, keep_best=True), "mse", 1)}
    for name, (pretrained, recipe, loss, freeze) in cases.items():
        config = counter_config(pretrained, x, counts, recipe, loss=loss, freeze=freeze, mode=mode)
        assert config_key(config) == MAIN_KEYS[(name, mode)], name
