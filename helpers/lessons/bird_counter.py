"""The bird counter (lesson 05): an image classifier turned into a regressor of how many birds a
scene holds.

What is here, in the order the lesson uses it:

- Data: ``count_world`` (the lesson's counting scenes), ``count_data`` (a training pool, a
  standard test set and a shifted test set, rendered once), ``shifted_worlds`` (more birds than
  training ever showed; an unseen sunset sky).
- The model: ``count_model`` (the pre-trained backbone, or the same architecture from scratch,
  with a one-output non-negative head from ``helpers.surgery.replace_head``) and ``predict_counts``.
- Losses: ``mse_loss``, ``huber_loss``, ``poisson_loss`` (all ``loss_fn(model, batch)`` for
  ``helpers.training.train``), collected in ``COUNT_LOSSES``.
- Metrics: ``count_metrics`` (MAE, RMSE, exact-count and within-one accuracy) and
  ``mean_baseline``.
- Training: ``fit_counter`` (one run, a fixed number of steps) and ``run_counter`` (build, train,
  evaluate; returns a row for a results table). From-scratch baselines are cached by the exact
  scenes and settings; ``prepare_scratch_counters`` trains the lesson's for ``make prepare``.
- Your own photos: ``load_photo_counts`` reads a folder of images plus ``counts.csv``
  (``filename,count``) and names the file and row of every problem; ``write_example_photos``
  makes a small example folder so the lesson always has one.
- Looking inside: ``saliency`` (where the count comes from) and the lesson's figures
  (``truth_plot``, ``residual_histogram``, ``saliency_grid``).

Example:
    >>> data = count_data(n_train=1000, n_test=300, n_shifted=200, image_size=64)
    >>> model = count_model(pretrained=True, train_mean=data.y_train.mean().item())
    >>> fit_counter(model, data.x_train, data.y_train, budget=Budget(steps=200, batch_size=32), lr=2e-3)
    >>> count_metrics(predict_counts(model, data.x_test), data.y_test)["mae"]
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn

from ..augment import flip
from ..cache import data_fingerprint
from ..checks import count_targets, float_images, keywords_checked, one_of, paired
from ..claims import Claim
from ..device import resolve_device
from ..images import BACKGROUNDS, CountWorld
from ..losses import COUNT_LOSSES
from ..models import backbone_key, image_model_config, pretrained_image_model, scratch_image_model
from ..modes import sizes
from ..own_data import load_photo_counts
from ..runner import Budget, Objective, Recipe, Report, RunResult, Setup, cached_run, resolve_setup, run
from ..stats import best_by, exceeds
from ..surgery import check_depth, count_params, freeze_stages, heads, replace_head, trainable_params
from ..training import predict

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

# The sunset sky is kept out of training so the shifted test set can show an unseen background.
TRAIN_BACKGROUNDS = tuple(b for b in BACKGROUNDS if b != "sunset")
UNSEEN_BACKGROUND = "sunset"


def count_world(image_size: int = 64, max_birds: int = 9, **fields) -> CountWorld:
    """The lesson's counting scenes: 0..``max_birds`` birds among up to 5 distractors.

    Compared with ``CountWorld``'s defaults the birds are drawn about twice as large (``scale``
    (0.26, 0.34) of the half-image: 15 to 20 px long at 64 px, where lesson 01 saw birds of 20 to
    35 px) and may move further from their grid cell's centre (``jitter`` 0.6). With the
    defaults birds almost never overlap; with these settings about a quarter of the scenes hold
    a partly hidden bird, and every counted bird keeps more than half of it visible (the tests
    check both). The sunset background is left out (the shifted test set's unseen background).
    """
    settings = dict(image_size=image_size, max_birds=max_birds, scale=(0.26, 0.34), jitter=0.6,
                    backgrounds=TRAIN_BACKGROUNDS)
    settings.update(fields)
    return CountWorld(**settings)


def shifted_worlds(world: CountWorld) -> dict[str, CountWorld]:
    """Two shifts away from ``world``, each a ``CountWorld``:

    - ``"more birds"``: ``world.max_birds + 1`` to ``+ 4`` birds, more than training ever showed
      (fewer distractors, so they fit the grid).
    - ``"sunset sky"``: the usual bird counts over a background the model never saw.
    """
    top = world.max_birds + 4
    more = replace(world, min_birds=world.max_birds + 1, max_birds=top,
                   max_distractors=min(world.max_distractors, world.grid ** 2 - top))
    sunset = replace(world, backgrounds=(UNSEEN_BACKGROUND,))
    return {"more birds": more, "sunset sky": sunset}


@dataclass
class CountData:
    """Images (N, 3, S, S) in [0, 1] and counts (N,) float32 for one lesson.

    ``x_train``/``y_train`` is the labelled pool; runs with fewer labels take a subset
    (``train_subset``). The validation set (its own seed) is for every choice (loss, depth, step
    count); the test set reports. ``shift_kind`` names, for each shifted scene, which shift it
    comes from.
    """
    world: CountWorld | None          # None for your own photos (``photo_count_data``)
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_shift: torch.Tensor
    y_shift: torch.Tensor
    shift_kind: list[str]

    def train_subset(self, labels: int, seed: int = 0):
        """``labels`` scenes from the pool, a different random choice for each seed."""
        if not 0 < labels <= len(self.y_train):
            raise ValueError(f"labels must be 1..{len(self.y_train)} (the pool's size); got {labels}")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.y_train), generator=g)[:labels].to(self.y_train.device)
        return self.x_train[idx], self.y_train[idx]


def count_data(n_train: int, n_test: int, n_shifted: int, image_size: int = 64, seed: int = 0,
               device="cpu", world: CountWorld | None = None, n_val: int | None = None) -> CountData:
    """Render the training pool, the validation set (``n_val`` scenes, default ``n_test``), the
    standard test set and the shifted test set.

    Each set has its own seed, so validation and test scenes never appear in training. The
    shifted set is half "more birds" and half "sunset sky" (see ``shifted_worlds``).
    """
    world = world or count_world(image_size)
    x_train, y_train = world.render(n_train, seed=seed * 1000 + 1, device=device)
    x_val, y_val = world.render(n_test if n_val is None else n_val, seed=seed * 1000 + 9, device=device)
    x_test, y_test = world.render(n_test, seed=seed * 1000 + 2, device=device)
    xs, ys, kinds = [], [], []
    for k, (kind, shifted) in enumerate(shifted_worlds(world).items()):
        n = n_shifted // 2 if k == 0 else n_shifted - n_shifted // 2
        x, y = shifted.render(n, seed=seed * 1000 + 3 + k, device=device)
        xs.append(x), ys.append(y), kinds.extend([kind] * n)
    return CountData(world, x_train, y_train, x_val, y_val, x_test, y_test, torch.cat(xs), torch.cat(ys), kinds)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y)) if y > 0 else -20.0


def start_at_mean(model: nn.Module, train_mean: float) -> nn.Module:
    """Zero the count head's weights and set its bias so that it predicts ``train_mean``.

    The new head then starts as the predict-the-mean baseline instead of at a random count
    near 0.7, so the first steps learn birds rather than the average. (Zero weights still
    learn: their gradient is the features times the error.) Every head the model has is set (a
    distilled DeiT or LeViT averages two). Returns the model; a call that raises changes nothing.
    """
    if torch.is_tensor(train_mean) and train_mean.numel() == 1:
        train_mean = train_mean.item()
    if isinstance(train_mean, bool) or not isinstance(train_mean, numbers.Real) or not math.isfinite(train_mean) \
            or train_mean < 0:
        raise ValueError(f"train_mean must be a count >= 0 (the training counts' mean, which a non-negative "
                         f"count head can produce), got {train_mean!r}")
    outputs = []
    for path, head in heads(model):
        layers = [m for m in head.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        if not layers or layers[-1].bias is None:
            raise ValueError(f"start_at_mean sets the bias of the head's last linear layer, but the head "
                             f"{path!r} ({type(head).__name__}) has none; give the model a count head first: "
                             f"replace_head(model, 1, activation='softplus')")
        width = getattr(layers[-1], "out_features", getattr(layers[-1], "out_channels", None))
        if width != 1:
            raise ValueError(f"start_at_mean sets a count head (one output), but the head {path!r} has {width} "
                             f"outputs; replace_head(model, 1, activation='softplus') first")
        outputs.append(layers[-1])                     # the Linear before the Softplus
    with torch.no_grad():
        for fc in outputs:
            fc.weight.zero_()
            fc.bias.fill_(_inverse_softplus(train_mean))
    return model


def count_model(pretrained: bool = True, *, seed: int = 0, train_mean: float | None = None,
                freeze: int = 0, mode: str | None = None, device="auto", source: str | None = None) -> nn.Module:
    """The counter: lesson 01's backbone (or the same architecture from scratch) with a new head.

    The head is ``Linear(num_features, 1)`` followed by ``Softplus``, so the output is a
    non-negative count: (B, 3, H, W) -> (B, 1). Any input size works (the network pools globally).

    Args:
        pretrained: start from lesson 01's checkpoint (a fresh copy); False: random weights.
        seed: initialises the new head (and, from scratch, the whole network).
        train_mean: if given, the head starts out predicting it (``start_at_mean``).
        freeze: freeze this many stages from the input (``helpers.surgery.freeze_stages``).
        mode: whose lesson-01 backbone (default: the current mode's).
        source: ``helpers.models.resolve_source``'s: "course", a timm name ("timm": the course
            architecture's) or a module; None reads ``$COURSE_PRETRAINED``.
    """
    device = resolve_device(device)
    config = image_model_config(mode)
    if pretrained:
        model, _ = pretrained_image_model(config, device=device, verbose=False, source=source)
    else:
        model = scratch_image_model(config, seed=seed, source=source).to(device)   # timm's full-width arch for "timm"
    check_depth(model, freeze, "freeze")            # a bad depth names this argument and the stages
    replace_head(model, 1, activation="softplus", seed=seed)
    if train_mean is not None:
        start_at_mean(model, train_mean)
    if freeze:
        freeze_stages(model, freeze)
    return model


def predict_counts(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted counts (N,) for images (N, 3, H, W), as unrounded non-negative numbers."""
    out = predict(model, x, batch_size)
    if out[0].numel() != 1:
        raise ValueError(f"predict_counts needs a count head (one output per image); the model gives "
                         f"{out[0].numel()}: replace_head(model, 1, activation='softplus')")
    return out.reshape(len(x))


# ---------------------------------------------------------------------------------------------
# Losses: loss_fn(model, batch) with batch = (images, counts)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

def count_metrics(pred, true) -> dict[str, float]:
    """MAE, RMSE, exact-count accuracy and within-one accuracy of predicted counts.

    ``pred`` and ``true`` are (N,) tensors (or lists). MAE and RMSE use the unrounded
    predictions; the accuracies round the prediction to the nearest count first.

    Example:
        >>> count_metrics([0.2, 2.6, 5.0], [0, 2, 7])
        {'mae': 0.933.., 'rmse': 1.214.., 'exact_acc': 0.333.., 'within1_acc': 0.666..}
    """
    pred = torch.as_tensor(pred, dtype=torch.float32).flatten().cpu()
    true = torch.as_tensor(true, dtype=torch.float32).flatten().cpu()
    if pred.shape != true.shape or len(true) == 0:
        raise ValueError(f"need two equally long, non-empty lists; got {tuple(pred.shape)} and {tuple(true.shape)}")
    err = pred - true
    off = (pred.round() - true).abs()
    return {"mae": err.abs().mean().item(), "rmse": err.pow(2).mean().sqrt().item(),
            "exact_acc": (off == 0).float().mean().item(), "within1_acc": (off <= 1).float().mean().item()}


def mean_baseline(y_train, y_test) -> dict[str, float]:
    """The metrics of always predicting the training set's mean count."""
    y_test = torch.as_tensor(y_test, dtype=torch.float32)
    guess = torch.full_like(y_test, float(torch.as_tensor(y_train, dtype=torch.float32).mean()))
    return count_metrics(guess, y_test)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def fit_counter(model, x, y, *, budget: Budget, lr: float, loss: str = "mse", seed: int = 0, evaluate=None,
                hook=None, progress: bool = True):
    """Train ``model`` in place for ``budget.steps`` optimiser steps on (x, y); returns the History.

    A fixed number of steps (not epochs) gives every run the same compute budget, whatever
    the number of labels.

    Args:
        budget: ``Budget`` with steps and batch_size given (no lesson default here), augment
            (random flips), eval_every (steps between ``evaluate`` calls; or evals).
        lr: peak learning rate (AdamW, weight decay 0.01).
        loss: one of ``COUNT_LOSSES``.
        seed: the batch order and the global generator at the start of training.
        evaluate: ``evaluate(model) -> {metric: value}`` along the run (None: none).
        hook, progress: ``hook(history)`` during training, and progress bars.
    """
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a helpers.runner.Budget, e.g. Budget(steps=200, batch_size=32); "
                        f"got {budget!r:.80}")
    if budget.steps is None or budget.batch_size is None:
        raise ValueError(f"fit_counter needs Budget.steps and Budget.batch_size (it has no lesson default); "
                         f"got steps={budget.steps}, batch_size={budget.batch_size}")
    if budget.keep_best or budget.test_curve or budget.stop_when is not None:
        raise ValueError("fit_counter trains the model you hold to the last step: Budget.keep_best, test_curve and "
                         "stop_when are the runners' (run_counter stops early with keep_best)")
    if loss not in COUNT_LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {sorted(COUNT_LOSSES)}")
    float_images("x", x, check_range=True)
    count_targets("y", y)
    paired(("x", "y"), x, y)
    eval_every = budget.eval_every or (max(1, budget.steps // budget.evals) if budget.evals else None)
    recipe = Recipe(steps=budget.steps, batch_size=budget.batch_size, lr=lr, seed=seed,
                    augment=flip if budget.augment is not False else None, eval_every=eval_every)
    setup = Setup(device=next(model.parameters()).device, progress=progress)
    return run(lambda: model, (x, y), recipe, Objective(COUNT_LOSSES[loss], evaluate), setup=setup, desc="counting",
               hook=hook).history


@dataclass(frozen=True)
class ScratchCounterConfig:
    """Everything that determines one from-scratch counter (its hash names the cache file).

    ``data`` is a fingerprint of the exact training scenes and counts, so a different world, pool
    or subset is a different entry."""
    arch: dict
    data: str
    labels: int
    seed: int
    loss: str
    steps: int
    batch_size: int
    lr: float
    freeze: int
    eval_every: int | None = None
    keep_best: bool = False


@dataclass(frozen=True)
class FinetunedCounterConfig(ScratchCounterConfig):
    """The same fields for a fine-tuned counter at its own budget (early-stopped): its hash differs
    by the type's name, so it never collides with a from-scratch entry."""


def counter_config(pretrained: bool, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, *, loss: str, freeze: int,
                   mode: str | None = None, source=None) -> ScratchCounterConfig:
    """The cache key's config of a counter trained on the scenes (x, y) with ``recipe``
    (``FinetunedCounterConfig`` when it starts from the pre-trained backbone). Renaming a field
    changes every key: ``tests/test_runner.py`` holds keys that main's code computed."""
    config_type = FinetunedCounterConfig if pretrained else ScratchCounterConfig
    return config_type(arch=backbone_key(mode, source), data=data_fingerprint(x, y), labels=len(y), seed=recipe.seed,
                       loss=loss, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, freeze=freeze,
                       eval_every=recipe.eval_every, keep_best=recipe.keep_best)


@keywords_checked
def run_counter(data: CountData, *, labels: int, pretrained: bool = True, loss: str = "mse", seed: int = 0,
                lr: float | None = None, freeze: int = 0, cache: bool = True, budget: Budget = Budget(),
                report: Report = Report(), setup: Setup = Setup()) -> RunResult:
    """One experiment: a fresh model, ``labels`` training scenes, ``budget.steps`` steps; validation
    and test metrics. Returns a ``RunResult``.

    Args:
        data: the scenes (``CountData``); the run trains on ``data.train_subset(labels, seed)``.
        labels: labelled training scenes.
        pretrained: start from lesson 01's backbone (False: from scratch, same architecture).
        loss: one of ``COUNT_LOSSES``.
        seed: the training subset, the head and the batch order.
        lr: peak learning rate (default ``sizes("bird_counter").lr``).
        freeze: stages frozen from the input.
        cache: store and load from-scratch (and early-stopped fine-tuned) runs in the cache.
        budget: ``Budget``: steps and batch_size (default from ``sizes("bird_counter")``), augment
            (random flips), eval_every (or evals: validation MAE along the run, ``val_mae`` in
            the History's evals, e.g. for ``LiveCurve(metric="val_mae")``), keep_best (early
            stopping: the weights of the evaluation with the lowest validation MAE;
            ``extra["best_step"]`` says which step).
        report: ``Report``: hook (a live curve; such a run always trains), keep_model.
        setup: ``Setup``: mode, source (the pre-trained weights: "course", a timm name or a
            module; None reads ``$COURSE_PRETRAINED`` once, here; from scratch uses the same
            architecture), progress. The device is the data's.

    From-scratch runs are baselines that every class repeats identically, so (with ``cache``)
    the trained counter is stored in the cache, keyed by the exact training scenes and every
    setting (``ScratchCounterConfig``), and loaded the next time the same run is asked for;
    ``make prepare`` trains lesson 05's in advance (``prepare_scratch_counters``). Fine-tuned
    runs, the subject of the lesson, train in the lesson, except the long early-stopped ones
    (``keep_best``) of the fair comparison, cached the same way.

    The result's settings are labels, start ("fine-tuned" or "scratch"), loss, freeze, seed; its
    metrics val_mae and test_mae, test_rmse, test_exact_acc, test_within1_acc
    (``count_metrics`` on each set). ``train_s`` is the training time, also for a counter loaded
    from the cache (then ``cached`` is True and the History is the stored one).
    """
    for name, value, kind in (("budget", budget, Budget), ("report", report, Report), ("setup", setup, Setup)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a helpers.runner.{kind.__name__}, e.g. {kind.__name__}(); got {value!r:.80}")
    if budget.test_curve or budget.stop_when is not None or not report.read_test:
        raise ValueError("run_counter measures the test set once, at the end, and stops early only on the "
                         "best validation MAE: Budget.test_curve, stop_when and Report.read_test are other runners'")
    one_of("loss", loss, sorted(COUNT_LOSSES))
    x, y = data.train_subset(labels, seed)
    name = "fine-tuned" if pretrained else "scratch"
    setup = resolve_setup(setup, device=data.x_train.device)     # the edge: read the environment once
    mode, source, device = setup.mode, setup.source, setup.device
    S = sizes("bird_counter", mode)
    steps, batch_size, lr = budget.steps or S.steps, budget.batch_size or S.batch_size, lr or S.lr
    eval_every = budget.eval_every or (max(1, steps // budget.evals) if budget.evals else None)
    keep_best, hook, keep_model = bool(budget.keep_best), report.hook, report.keep_model
    if keep_best and not eval_every:
        raise ValueError("keep_best=True needs eval_every (validation evaluations to choose from); got "
                         f"eval_every={eval_every!r}")
    float_images("x", x, check_range=True)
    count_targets("y", y)
    paired(("x", "y"), x, y)

    def make():
        return count_model(pretrained, seed=seed, train_mean=y.mean().item(), freeze=freeze, mode=mode, device=device,
                           source=source)

    def validate(m):
        return {"val_mae": count_metrics(predict_counts(m, data.x_val), data.y_val)["mae"]}

    def measure(model, history):
        val = count_metrics(predict_counts(model, data.x_val), data.y_val)
        test = count_metrics(predict_counts(model, data.x_test), data.y_test)
        return {"val_mae": val["mae"], **{f"test_{k}": v for k, v in test.items()}}

    recipe = Recipe(steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                    augment=flip if budget.augment is not False else None,
                    eval_every=eval_every, keep_best=keep_best)
    objective = Objective(COUNT_LOSSES[loss], validate if eval_every else None, "val_mae", higher_is_better=False,
                          measure=measure)
    settings = {"labels": labels, "start": name, "loss": loss, "freeze": freeze, "seed": seed, "lr": lr}

    def train_it(hook=None, keep_model=True):
        return run(make, (x, y), recipe, objective, setup=setup, settings=settings, hook=hook, keep_model=keep_model,
                   desc=f"{name}, {labels} labels, {loss}, seed {seed}")

    if (pretrained and not keep_best) or not cache or hook is not None:
        return train_it(hook, keep_model)
    kind = "counter_finetuned" if pretrained else "counter_scratch"
    config = counter_config(pretrained, x, y, recipe, loss=loss, freeze=freeze, mode=mode, source=source)
    model, history, _, cached = cached_run(kind, config, make, train_it, device=device)
    if cached:
        print(f"{name}, {labels} labels, {loss}, seed {seed}, lr {lr:g}: loaded from the cache "
              f"(trained earlier with these exact scenes and settings in {history.train_s:.0f} s)")
    return RunResult(settings=settings, metrics=measure(model, history), trainable_params=trainable_params(model),
                     total_params=count_params(model), steps=history.steps_done, train_s=history.train_s,
                     history=history, model=model if keep_model else None, cached=cached,
                     extra={"best_step": history.best_step})


def scratch_counter_converged(data: CountData, *, lr: float, seed: int = 0, mode: str | None = None,
                              progress: bool = True) -> RunResult:
    """From scratch with its own budget: ``S.scratch_steps`` steps at ``S.labels`` labels and rate
    ``lr``, keeping the weights of the best of ``S.scratch_evals`` validation evaluations (early
    stopping). Cached like every from-scratch counter; ``make prepare`` builds them."""
    S = sizes("bird_counter", mode)
    return run_counter(data, labels=S.labels, pretrained=False, loss=S.loss, seed=seed, lr=lr,
                       budget=Budget(steps=S.scratch_steps, batch_size=S.batch_size, keep_best=True,
                                     eval_every=max(1, S.scratch_steps // S.scratch_evals)),
                       setup=Setup(mode=mode, progress=progress))


def finetuned_counters_converged(data: CountData, *, mode: str | None = None, progress: bool = True) -> list[RunResult]:
    """Fine-tuned at the same own budget as from scratch (``S.scratch_steps`` steps, early-stopped
    on validation MAE) at fine-tuning's rate ``S.lr``, over ``S.seeds`` seeds, so that neither side
    of the fair comparison is stopped while still improving. Cached (``make prepare``)."""
    S = sizes("bird_counter", mode)
    budget = Budget(steps=S.scratch_steps, batch_size=S.batch_size, keep_best=True,
                    eval_every=max(1, S.scratch_steps // S.scratch_evals))
    return [run_counter(data, labels=S.labels, pretrained=True, loss=S.loss, seed=seed, lr=S.lr, budget=budget,
                        setup=Setup(mode=mode, progress=progress)) for seed in range(S.seeds)]


def scratch_counter_lr_runs(data: CountData, *, mode: str | None = None, progress: bool = True) -> list[RunResult]:
    """One converged from-scratch counter per rate of ``S.scratch_lr_grid`` (seed 0); the rate
    with the lowest validation MAE is from scratch's own (``best_by(runs, "val_mae", ...)``)."""
    S = sizes("bird_counter", mode)
    return [scratch_counter_converged(data, lr=lr, seed=0, mode=mode, progress=progress) for lr in S.scratch_lr_grid]


def converged_scratch_counters(data: CountData, *, mode: str | None = None, progress: bool = True):
    """From scratch at its own rate (chosen on validation MAE) and budget, over ``S.seeds`` seeds.
    Returns (rate, rate-grid runs, the seeds' runs); seed 0 at the chosen rate is a grid run."""
    S = sizes("bird_counter", mode)
    grid = scratch_counter_lr_runs(data, mode=mode, progress=progress)
    lr = best_by(grid, "val_mae", higher_is_better=False).lr
    return lr, grid, [scratch_counter_converged(data, lr=lr, seed=seed, mode=mode, progress=progress)
                      for seed in range(S.seeds)]


def prepare_scratch_counters(mode: str | None = None) -> list[RunResult]:
    """Train (or find in the cache) every from-scratch counter lesson 05 runs in ``mode``.

    The same runs as the lesson's sections 4 (``S.seeds`` seeds at ``S.labels`` labels, at
    fine-tuning's budget and at from scratch's own: ``converged_scratch_counters``) and the labels
    curve (``S.curve_seeds`` seeds at each other point of ``S.curve``), on the same scenes, with
    ``mode``'s backbone. Used by ``make prepare``; returns their results.
    """
    S = sizes("bird_counter", mode)
    data = lesson_count_data(mode)
    runs = [(S.labels, seed) for seed in range(S.seeds)]
    runs += [(labels, seed) for labels in S.curve if labels != S.labels for seed in range(S.curve_seeds)]
    budget = Budget(steps=S.steps, batch_size=S.batch_size)
    same_budget = [run_counter(data, labels=labels, pretrained=False, loss=S.loss, seed=seed, lr=S.lr, budget=budget,
                               setup=Setup(mode=mode)) for labels, seed in runs]
    _, grid, converged = converged_scratch_counters(data, mode=mode)
    return same_budget + grid + converged + finetuned_counters_converged(data, mode=mode)


def lesson_count_data(mode: str | None = None, device="cpu") -> CountData:
    """Lesson 05's scenes in ``mode``: the pool, validation, test and shifted sets its sizes name
    (rendered on the CPU by default, as the lesson does, so the cache keys of prepared runs match)."""
    S = sizes("bird_counter", mode)
    return count_data(n_train=S.pool, n_test=S.test_scenes, n_shifted=S.shifted_scenes, image_size=S.image_size,
                      device=resolve_device(device))


# ---------------------------------------------------------------------------------------------
# Your own photos: a folder of images and counts.csv with rows "filename,count"
# ---------------------------------------------------------------------------------------------


def photo_count_data(folder, *, image_size: int | None = None, val_frac: float = 0.2, test_frac: float = 0.2,
                     seed: int = 0, csv_name: str = "counts.csv") -> CountData:
    """Your own photos with a ``counts.csv`` as the lesson's data, in one call: read by
    ``helpers.own_data.load_photo_counts`` (which names the file and row of every problem), then
    split at random with ``seed`` into training, validation and test photos (``val_frac``,
    ``test_frac``; at least one photo each). ``run_counter(data, labels=len(data.y_train), ...)``
    then fine-tunes and evaluates on them like on the world's scenes; there is no shifted set.
    ``image_size`` defaults to the lesson's (``sizes("bird_counter").image_size``)."""
    for name, frac in (("val_frac", val_frac), ("test_frac", test_frac)):
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            raise ValueError(f"{name} must be a fraction between 0 and 1; got {frac!r}")
    if val_frac + test_frac >= 1:
        raise ValueError(f"val_frac + test_frac must leave photos to train on; got {val_frac} + {test_frac}")
    x, y, names = load_photo_counts(folder, csv_name=csv_name, image_size=image_size or sizes("bird_counter").image_size)
    n = len(y)
    n_val, n_test = max(1, round(n * val_frac)), max(1, round(n * test_frac))
    if n - n_val - n_test < 1:
        raise ValueError(f"{folder}: {n} photos are too few to split into training, validation and test; "
                         f"add photos (at least 3)")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val, test, train = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    empty = x[:0]
    return CountData(None, x[train], y[train], x[val], y[val], x[test], y[test], empty, y[:0], [])


def write_example_photos(folder, n: int = 12, image_size: int = 160, seed: int = 7,
                         world: CountWorld | None = None) -> Path:
    """Write ``n`` rendered scenes as PNG "photos" (larger than the lesson's resolution, so
    loading them resizes like real photos) and their ``counts.csv``. Returns the folder."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    world = replace(world or count_world(), image_size=image_size)
    x, y = world.render(n, seed=seed)
    rows = ["filename,count"]
    for i in range(n):
        name = f"scene_{i:02d}.png"
        pixels = (x[i].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        Image.fromarray(pixels).save(folder / name)
        rows.append(f"{name},{int(y[i])}")
    (folder / "counts.csv").write_text("\n".join(rows) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------
# Where the model looks
# ---------------------------------------------------------------------------------------------

def saliency(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """How much each pixel moves the predicted count: |d count / d pixel|, max over colour.

    Args:
        x: (N, 3, H, W) images. Returns: (N, H, W), each map scaled to [0, 1].
    The model is put in eval mode for the pass and restored after; its weights do not change.
    """
    float_images("x", x)
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().to(next(model.parameters()).device).requires_grad_(True)
        model(x).sum().backward()
        sal = x.grad.abs().amax(dim=1)                              # (N, H, W)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    sal = sal / sal.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
    return sal.detach().cpu()


# ---------------------------------------------------------------------------------------------
# Figures (returned, never shown or saved)
# ---------------------------------------------------------------------------------------------

def truth_plot(pred, true, title: str = "predicted against true count", max_count: int | None = None):
    """Predicted (y) against true count (x), jittered sideways, with the ideal diagonal and
    the mean prediction at each true count."""
    paired(("pred", "true"), pred, true)
    pred = torch.as_tensor(pred).float().cpu().numpy()
    true = torch.as_tensor(true).float().cpu().numpy()
    top = max_count if max_count is not None else int(max(true.max(), pred.max())) + 1
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.scatter(true + rng.uniform(-0.2, 0.2, len(true)), pred, s=6, alpha=0.35, label="scenes")
    ax.plot([0, top], [0, top], color="grey", ls="--", label="perfect")
    ks = np.unique(true)
    ax.plot(ks, [pred[true == k].mean() for k in ks], color="C3", marker="o", label="mean prediction")
    ax.set_xlabel("true count"), ax.set_ylabel("predicted count")
    ax.set_xlim(-0.5, top + 0.5), ax.set_ylim(-0.5, top + 0.5)
    ax.grid(alpha=0.3), ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)          # detached: the cell that ends with it shows it once
    return fig


def residual_histogram(pred, true, title: str = "residuals (predicted - true)"):
    """Histogram of predicted minus true count."""
    paired(("pred", "true"), pred, true)
    res = (torch.as_tensor(pred).float() - torch.as_tensor(true).float()).cpu().numpy()
    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    edge = max(1.0, float(np.abs(res).max()))
    ax.hist(res, bins=np.linspace(-edge, edge, 41), color="C0")
    ax.axvline(0, color="grey", ls="--")
    ax.set_xlabel("predicted - true count"), ax.set_ylabel("scenes")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    plt.close(fig)          # detached: the cell that ends with it shows it once
    return fig


def saliency_grid(images, maps, titles=None, size: float = 1.8):
    """Each scene (top row) above its saliency map drawn over a grey copy (bottom row)."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(n * size, 2 * size + 0.4), squeeze=False)
    for i in range(n):
        img = images[i].detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy()
        axes[0, i].imshow(img, interpolation="nearest")
        axes[1, i].imshow(img.mean(-1), cmap="gray", alpha=0.5, interpolation="nearest")
        axes[1, i].imshow(maps[i].numpy(), cmap="inferno", alpha=0.7, interpolation="bilinear")
        if titles is not None:
            axes[0, i].set_title(str(titles[i]), fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.tight_layout()
    plt.close(fig)          # detached: the cell that ends with it shows it once
    return fig


CLAIMS = [
    Claim("05", "the fine-tuned counter's error is below a quarter of predicting the mean count",
          lambda m: m["mae_finetuned"] < m["mae_mean_baseline"] / 4),
    Claim("05", "fine-tuned counts better than from scratch with the same labels and budget "
                "(lower MAE; real: a paired t-test over the seeds, 95%)",
          # paired: seed i draws the same labelled scenes and batch order for both starts
          lambda m: exceeds(m["maes_scratch"], m["maes_finetuned"], paired=True)),
    # Each at its own long budget, the gap is small and its reality depends on the run (beyond
    # 2 SE with two threads per job on 2026-12-02, 0.052 ± 0.025; within it with one thread,
    # 0.040 ± 0.022; the t-test the course now uses is stricter still): the lesson prints that
    # verdict from its numbers. What holds in every run,
    # and is the lesson's point, is how much the same-budget comparison overstates the gap.
    Claim("05", "the same-budget comparison overstates fine-tuning's lead: each at its own long budget "
                "(early-stopped on validation MAE, from scratch at its own rate), from scratch's MAE gap to "
                "fine-tuning is less than half the gap at the same budget",
          lambda m: m["mae_scratch_converged"] - m["mae_finetuned_long"] < 0.5 * (m["mae_scratch"] - m["mae_finetuned"])),
]
