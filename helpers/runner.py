"""The one experiment runner: a fresh model, data, ``train``, early stopping, evaluation, a result.

Every experiment in the course has the same shape, whatever the lesson: build a FRESH model
(lesson 01's weights, timm's, or random ones) with its surgery done, make shuffled batches of the
training set, train a stated budget of optimiser steps, keep the weights of the best validation
evaluation when asked (early stopping, the one ``KeepBest``), measure, and return one
``RunResult``. ``run`` is that, written once; a lesson's runner (``run_finetune``, ``run_counter``,
``run_peft``, ``run_student``, ``finetune_task``) checks its arguments, builds its model and a
``Recipe``, and calls it. ``cached_run`` stores a run that every class repeats identically (a
converged from-scratch baseline) in the cache, keyed by a config of the caller's.

- ``Recipe``: how a run trains (a frozen dataclass: steps, batch size, rate, seed, weight decay,
  augmentation, evaluations, early stopping, an optional linear-probe phase first).
- ``Objective``: what it optimises and how it is judged (the loss, the validation metrics along
  the run, the metric early stopping watches, and the final measurements).
- ``Setup``: where and how loudly it runs (mode, source of weights, device, progress bars);
  ``QUIET`` is ``Setup(progress=False)``.

The runners' typed settings (issue 25: a lesson passes settings, grouped once there are more than
about ten), shared where the meaning is the same:

- ``Budget``: how long a runner trains and how it evaluates (steps, batch size, augmentation,
  evaluations, early stopping, test curve).
- ``Adaptation``: how a pre-trained image model is adapted beyond its frozen depth (BatchNorm,
  head, layer-wise rates, LP-FT, LoRA).
- ``Report``: what a runner hands back besides its numbers (note, hook, the model, the test set).

Example (a tiny model; the lessons pass their image models):
    >>> import torch, torch.nn as nn, torch.nn.functional as F
    >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    >>> def loss(m, batch):
    ...     return F.cross_entropy(m(batch[0]), batch[1])
    >>> def val(m):
    ...     return {"val_loss": F.cross_entropy(m(x), y).item()}
    >>> objective = Objective(loss, val, "val_loss", higher_is_better=False,
    ...                       measure=lambda m, h: {"val_loss": val(m)["val_loss"]})
    >>> recipe = Recipe(steps=20, batch_size=16, lr=0.05, eval_every=5, keep_best=True)
    >>> r = run(lambda: nn.Linear(4, 2), (x, y), recipe, objective, setup=Setup(device="cpu", progress=False))
    >>> r.steps, r.history.best_step == min(r.history.evals, key=lambda e: e["val_loss"])["step"]
    (20, True)
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from typing import Callable

import torch.nn as nn

from .cache import cached_model, checkpoint_path, config_key, data_fingerprint
from .device import resolve_device, seed_everything
from .models import resolve_source
from .modes import current_mode
from .surgery import BN_CHOICES, BN_DEFAULT, count_params, freeze_stages, stages, trainable_params, unfreeze
from .training import Batches, History, KeepBest, Monitor, Optimiser, train

HEADS = ("linear", "mlp", "block")
"""The new heads an image runner can put on a model (``Adaptation.head``)."""


@dataclass(frozen=True)
class Setup:
    """Where and how a run happens, resolved once at the lesson's edge and passed down.

    ``mode``: the course mode whose sizes and checkpoints to use (None: the current one).
    ``source``: where pre-trained weights come from, in ``helpers.models.resolve_source``'s
    vocabulary ("course", a timm model name, an ``nn.Module``).
    ``device``: "auto", "cpu", "cuda", "mps" or a ``torch.device``.
    ``progress``: show progress bars.
    """
    mode: str | None = None
    source: object = None
    device: object = "auto"
    progress: bool = True

    @classmethod
    def resolve(cls, mode: str | None = None, source=None, device="auto", progress: bool = True) -> "Setup":
        """The setup at a lesson's entry, everything resolved once: the mode (None: ``$COURSE_MODE``,
        via ``current_mode``), the source (``resolve_source``: None reads ``$COURSE_PRETRAINED``)
        and the device ("auto": cuda, then mps, then cpu). Below the entry nothing reads the
        environment again."""
        mode = mode or current_mode()
        return cls(mode=mode, source=resolve_source(source, mode), device=resolve_device(device), progress=progress)

    def resolved(self) -> "Setup":
        """This setup with everything resolved once (``Setup.resolve``): what a runner does at its edge."""
        return Setup.resolve(self.mode, self.source, self.device, self.progress)

    def __post_init__(self):
        if self.mode is not None and not isinstance(self.mode, str):
            raise TypeError(f"Setup.mode must be None (the current mode) or a mode's name such as 'smoke'; "
                            f"got {self.mode!r}")
        if not isinstance(self.progress, bool):
            raise TypeError(f"Setup.progress must be True or False (show progress bars); got {self.progress!r}")


QUIET = Setup(progress=False)
"""No progress bars; mode, source and device from the environment at the runner's edge (a lesson's
loops of many runs pass ``setup=QUIET``)."""


def resolve_setup(setup: "Setup | None", **flat) -> "Setup":
    """A runner's edge: ``setup`` (None: the default ``Setup()``) with the flat arguments that are
    not None put in (e.g. ``finetune_task``'s own ``source``), resolved once (``Setup.resolve``);
    below it nothing reads the environment.

    >>> resolve_setup(Setup(mode="smoke", device="cpu", progress=False), source="course")
    Setup(mode='smoke', source='course', device=device(type='cpu'), progress=False)
    """
    if setup is not None and not isinstance(setup, Setup):
        raise TypeError(f"setup must be a helpers.runner.Setup, e.g. Setup(progress=False); got {setup!r:.80}")
    setup = setup or Setup()
    changes = {k: v for k, v in flat.items() if v is not None}
    return replace(setup, **changes).resolved() if changes else setup.resolved()


def _whole(cls: str, name: str, value, minimum: int, unit: str, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{cls}.{name} must be {'None (the lesson default) or ' if allow_none else ''}a whole "
                         f"number of at least {minimum} ({unit}); got {value!r}")


def _flag(cls: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{cls}.{name} must be True or False; got {value!r}")


@dataclass(frozen=True)
class Budget:
    """How long a runner trains and how it evaluates along the way (shared by ``run_finetune``,
    ``finetune_task``, ``run_counter`` and ``fit_counter``; None: the lesson's sizes).

    steps: the budget in optimiser steps (the same whatever the training-set size).
    batch_size: training examples per step (cut to the training-set size).
    augment: random flips (and shifts) of every training batch (None: the runner's own choice, True
        for the image and count runners; False: none).
    evals: validation evaluations along the run (0: none; the last one is at the end).
    eval_every: optimiser steps between validation evaluations, instead of ``evals`` (give one).
    keep_best: early stopping: keep the weights of the best validation evaluation, not the last
        (None: the runner's own choice: no for the image runners, yes for ``finetune_qa``).
    stop_when: ``stop_when(metrics) -> bool``: keep instead the weights of the FIRST evaluation
        at which it holds, if one does (``KeepBest``'s ``first_where``; ``finetune_qa`` only).
    test_curve: the evaluations along the run also measure the test set (for a curve that is
        shown, never for a choice).

    Example:
        >>> Budget(steps=200, evals=4).steps
        200
        >>> Budget(steps=0)
        Traceback (most recent call last):
        ...
        ValueError: Budget.steps must be None (the lesson default) or a whole number of at least 1
        (optimiser steps); got 0
    """
    steps: int | None = None
    batch_size: int | None = None
    augment: bool | None = None
    evals: int | None = None
    eval_every: int | None = None
    keep_best: bool | None = None
    test_curve: bool = False
    stop_when: Callable | None = None

    def __post_init__(self):
        _whole("Budget", "steps", self.steps, 1, "optimiser steps")
        _whole("Budget", "batch_size", self.batch_size, 1, "examples per step")
        _whole("Budget", "evals", self.evals, 0, "validation evaluations along the run")
        _whole("Budget", "eval_every", self.eval_every, 1, "optimiser steps between validation evaluations")
        if self.evals is not None and self.eval_every is not None:
            raise ValueError(f"Budget: give evals (how many evaluations) or eval_every (steps between them), not "
                             f"both; got evals={self.evals}, eval_every={self.eval_every}")
        if self.augment is not None:
            _flag("Budget", "augment", self.augment)
        if self.keep_best is not None:
            _flag("Budget", "keep_best", self.keep_best)
        _flag("Budget", "test_curve", self.test_curve)
        if self.stop_when is not None and not callable(self.stop_when):
            raise TypeError(f"Budget.stop_when must be None or callable as stop_when(metrics) -> bool; "
                            f"got {self.stop_when!r:.80}")
        if self.keep_best and self.evals == 0:
            raise ValueError("Budget.keep_best=True (early stopping) needs evaluations along the run to choose "
                             "from; got evals=0 (give evals >= 1, eval_every, or None for the lesson's)")


@dataclass(frozen=True)
class Adaptation:
    """How a pre-trained image model is adapted, beyond how many stages freeze (``run_finetune``
    and ``finetune_task``; ``frozen_stages`` stays a runner argument of its own).

    bn: BatchNorm statistics in frozen stages (``helpers.surgery.BN_CHOICES``): "update" (they
        adapt to the data) or "frozen" (kept).
    head: the new head: "linear", "mlp" (a hidden layer of ``hidden`` units) or "block" (an
        extra residual block after the last stage, then a linear layer).
    hidden: units of the MLP head's hidden layer (used with ``head="mlp"``).
    lr_decay: layer-wise rates: each stage nearer the input trains at ``lr_decay`` times the rate
        of the stage after it, a share in (0, 1] (None: one rate for all).
    linear_probe_steps: LP-FT: first train only the head this many optimiser steps, counted in
        the budget's steps (0: no probe).
    lora_rank: LoRA adapters of this rank (``finetune_task``; None: none).
    lora_targets: module names LoRA adapts (None: every Linear and ordinary Conv2d of the backbone).

    Example:
        >>> Adaptation(head="mlp", hidden=16).hidden
        16
        >>> Adaptation(head="tower")
        Traceback (most recent call last):
        ...
        ValueError: Adaptation.head must be one of ('linear', 'mlp', 'block'); got 'tower'
    """
    bn: str = BN_DEFAULT
    head: str = "linear"
    hidden: int = 64
    lr_decay: float | None = None
    linear_probe_steps: int = 0
    lora_rank: int | None = None
    lora_targets: tuple | None = None

    def __post_init__(self):
        if self.bn not in BN_CHOICES:
            raise ValueError(f"Adaptation.bn must be one of {BN_CHOICES}; got {self.bn!r}")
        if self.head not in HEADS:
            raise ValueError(f"Adaptation.head must be one of {HEADS}; got {self.head!r}")
        _whole("Adaptation", "hidden", self.hidden, 1, "the MLP head's hidden units", allow_none=False)
        if self.lr_decay is not None and (isinstance(self.lr_decay, bool) or not isinstance(self.lr_decay, numbers.Real)
                                          or not 0 < self.lr_decay <= 1):
            raise ValueError(f"Adaptation.lr_decay must be None (one rate for all) or a number in (0, 1], each "
                             f"stage's rate as a share of the next one's (e.g. 0.5); got {self.lr_decay!r}")
        _whole("Adaptation", "linear_probe_steps", self.linear_probe_steps, 0, "optimiser steps", allow_none=False)
        _whole("Adaptation", "lora_rank", self.lora_rank, 1, "the adapters' rank")
        if isinstance(self.lora_targets, str):
            raise TypeError(f"Adaptation.lora_targets must be a list of module names (or None: every Linear and "
                            f"Conv2d); got the string {self.lora_targets!r}")


@dataclass(frozen=True)
class Report:
    """What a runner hands back besides its ``RunResult``'s numbers.

    note: a free-text column in the run's settings and its ``log`` row (None: none).
    hook: ``hook(history)`` during training, e.g. a ``LiveCurve`` (None: none).
    keep_model: also return the trained model (``result.model``).
    read_test: measure test accuracy at the end; a search passes False and reads the test set
        once, for the configuration it chose on validation (``read_test_once``).
    """
    note: str | None = None
    hook: Callable | None = None
    keep_model: bool = False
    read_test: bool = True

    def __post_init__(self):
        if self.note is not None and not isinstance(self.note, str):
            raise TypeError(f"Report.note must be None or a string (a column in the log); got {self.note!r}")
        if self.hook is not None and not callable(self.hook):
            raise TypeError(f"Report.hook must be None or callable as hook(history), e.g. a LiveCurve; "
                            f"got {self.hook!r:.80}")
        _flag("Report", "keep_model", self.keep_model)
        _flag("Report", "read_test", self.read_test)


@dataclass(frozen=True)
class Recipe:
    """How a run trains: the optimisation and the early stopping, with their units.

    steps: the budget in optimiser steps (the same whatever the training-set size).
    batch_size: images per step (cut to the training-set size).
    lr: peak learning rate; ``param_groups(model)`` may give per-group rates instead.
    seed: the batch order and the global generator at the start of training.
    weight_decay: AdamW's decoupled weight decay.
    augment: ``augment(batch) -> batch`` applied to every training batch (None: none).
    eval_every: steps between validation evaluations (None: only one, at the end; none at all
        when the objective has no ``validate``).
    keep_best: early stopping: keep the weights of the best validation evaluation.
    probe_steps, probe_lr, probe_bn: first train the head alone for this many steps at this rate,
        BatchNorm statistics in the frozen stages as ``probe_bn`` says (LP-FT); they count in the
        run's steps and seconds.
    """
    steps: int
    batch_size: int
    lr: float
    seed: int = 0
    weight_decay: float = 0.01
    augment: Callable | None = None
    eval_every: int | None = None
    keep_best: bool = False
    probe_steps: int = 0
    probe_lr: float | None = None
    probe_bn: str = BN_DEFAULT


@dataclass(frozen=True)
class Objective:
    """What a run optimises and how it is judged.

    loss: ``loss(model, batch) -> scalar`` for ``train``.
    validate: ``validate(model) -> {metric: value}``, the evaluations along the run (None: none).
    metric: the metric of ``validate`` that early stopping watches (``Recipe.keep_best``).
    higher_is_better: whether a larger ``metric`` is better (accuracy) or worse (MAE, a loss).
    measure: ``measure(model, history) -> metrics`` of the finished (restored) model, the
        ``val_*`` ones for every choice and the ``test_*`` ones to report.
    """
    loss: Callable
    validate: Callable | None = None
    metric: str | None = None
    higher_is_better: bool = True
    measure: Callable = field(default=lambda model, history: {})


@dataclass
class RunResult:
    """What one experiment run did and measured; the same fields for every runner.

    Attributes:
        settings: every setting that made the run (method, labels, depth, rate, seed, ...).
        metrics: the measured numbers: ``val_*`` (for every choice) and ``test_*`` (to report).
        trainable_params, total_params: parameters the optimiser changed, and all of them.
        steps: optimiser steps done (the budget); train_s: training seconds.
        history: the training History; model: the trained model if ``keep_model=True``.
        cached: the run was loaded from the cache (a baseline every class repeats identically).
        extra: numbers about the run: every runner's best_step (the step whose weights the model
            holds), epochs, sec_per_step and sec_per_epoch, then the lesson's own
            (``backbone_change``, ``trainable_frac``, ...).
        start_state_hash: fingerprint of the weights before training (``state_hash``): two runs
            with the same seed start from equal weights.

    ``r.test_acc`` reads ``r.metrics["test_acc"]`` (then settings, then extra), so a result reads
    like the table row it becomes (``r.row()``).
    """
    settings: dict
    metrics: dict
    trainable_params: int
    total_params: int
    steps: int
    train_s: float
    history: History | None = None
    model: nn.Module | None = None
    cached: bool = False
    extra: dict = field(default_factory=dict)
    start_state_hash: str | None = None

    def __getattr__(self, name):
        for part in ("metrics", "settings", "extra"):
            values = self.__dict__.get(part, {})
            if name in values:
                return values[name]
        known = [k for part in ("metrics", "settings", "extra") for k in self.__dict__.get(part, {})]
        raise AttributeError(f"RunResult has no {name!r}; it has {sorted(known)} and the fields "
                             f"trainable_params, total_params, steps, train_s, history, model, cached")

    @property
    def interrupted(self) -> bool:
        return bool(self.history is not None and self.history.interrupted)

    def row(self) -> dict:
        """The run as one flat table row: settings, metrics, cost (scalars only)."""
        scalars = {k: v for k, v in self.extra.items() if isinstance(v, (int, float, str, bool)) or v is None}
        return {**self.settings, **self.metrics, "trainable_params": self.trainable_params,
                "steps": self.steps, "train_s": self.train_s, **scalars, "cached": self.cached,
                "interrupted": self.interrupted}


def fastest_seconds_per_step(history: History) -> float:
    """Seconds per step from the fastest stretch between progress refreshes: a shared CPU slows
    some stretches at random; the fastest is closest to the model's own cost."""
    t, k = [0.0] + history.seconds, [0] + history.step
    per_step = [(t[i + 1] - t[i]) / (k[i + 1] - k[i]) for i in range(1, len(t) - 1) if k[i + 1] > k[i]]
    if per_step:
        return min(per_step)
    return (history.seconds[-1] if history.seconds else float("nan")) / max(1, history.steps_done)


def state_hash(model: nn.Module) -> str:
    """A short fingerprint of every weight and buffer: equal hashes mean equal models."""
    state = sorted(model.state_dict().items())
    return data_fingerprint(*(t for _, t in state)) + config_key([name for name, _ in state])[:4]


def run(model: Callable[[], nn.Module], data: tuple, recipe: Recipe, objective: Objective, *,
        setup: Setup = Setup(), surgery: Callable | None = None, settings: dict | None = None,
        desc: str = "training", hook=None, keep_model: bool = False) -> RunResult:
    """One experiment: ``model()`` (a FRESH model, its surgery done), trained on ``data`` with
    ``recipe`` and judged by ``objective``. Returns a ``RunResult``. (``lambda: model`` trains a
    model you hold, in place.)

    Args:
        model: makes the fresh model (on ``setup.device``); called once, inside the run.
        data: the training tensors, e.g. (images, labels), on the training device.
        surgery: ``surgery(model) -> param_groups or None``, applied after the model is made (and
            after the probe phase of LP-FT): freezing, and per-group learning rates.
        settings: the run's settings as the caller names them (the result's ``settings``).
        desc, hook: the progress bar's label, and ``hook(history)`` during training.
        keep_model: also return the trained model (``result.model``).
    The History's ``best_step`` counts from the tuning phase; the result's extra holds best_step
    counted from the start of the run (the step whose weights the model holds), sec_per_step,
    sec_per_epoch and epochs for every runner.
    """
    device = resolve_device(setup.device)
    if recipe.keep_best and (objective.validate is None or objective.metric is None):
        raise ValueError("keep_best=True (early stopping) needs the objective's validate and metric to choose by")
    net = model()
    start_hash = state_hash(net)
    batches = Batches(*data, batch_size=min(recipe.batch_size, len(data[0])), seed=recipe.seed,
                      augment=recipe.augment)
    validate = objective.validate
    keeper = KeepBest(validate, objective.metric, higher_is_better=objective.higher_is_better) \
        if recipe.keep_best else None
    seed_everything(recipe.seed)
    probe = None
    if recipe.probe_steps:
        probe = _train_head_alone(net, objective.loss, batches, recipe, setup)
    groups = surgery(net) if surgery is not None else None
    steps = recipe.steps - recipe.probe_steps
    history = train(net, objective.loss, batches, steps=steps,
                    optimiser=Optimiser(lr=recipe.lr, weight_decay=recipe.weight_decay, param_groups=groups),
                    device=device,
                    monitor=Monitor(evaluate=keeper or validate, eval_every=recipe.eval_every, desc=desc, hook=hook),
                    progress=setup.progress)
    if keeper is not None:
        keeper.restore(net, history)               # early stopping: the best validation weights
    best_step = history.best_step            # counted from the start of the run, the probe's steps included
    if probe is not None and best_step is not None:
        best_step += probe.steps_done
    sec_per_step = fastest_seconds_per_step(history)
    extra = {"best_step": best_step, "epochs": history.steps_done / len(batches),
             "sec_per_step": sec_per_step, "sec_per_epoch": sec_per_step * len(batches)}
    if probe is not None:
        extra["linear_probe_history"] = probe
    return RunResult(
        settings=dict(settings or {}), metrics=objective.measure(net, history),
        trainable_params=trainable_params(net), total_params=count_params(net),
        steps=history.steps_done + (probe.steps_done if probe else 0),
        train_s=history.train_s + (probe.train_s if probe else 0.0),
        history=history, model=net if keep_model else None, extra=extra, start_state_hash=start_hash)


def _train_head_alone(model, loss, batches, recipe: Recipe, setup: Setup) -> History:
    """LP-FT's first stage: every stage frozen, the head trains ``recipe.probe_steps`` steps; then everything is unfrozen again."""
    freeze_stages(model, len(stages(model)), bn=recipe.probe_bn)
    history = train(model, loss, batches, steps=recipe.probe_steps, optimiser=Optimiser(lr=recipe.probe_lr),
                    device=resolve_device(setup.device), monitor=Monitor(desc="linear probe"), progress=setup.progress)
    unfreeze(model)
    return history


def cached_run(name: str, config, model: Callable[[], nn.Module], train_it: Callable[[], RunResult], *,
               device="cpu") -> tuple[nn.Module, History, dict, bool]:
    """A run every class repeats identically (a converged baseline), from the cache or run now.

    ``config`` (a frozen dataclass of the caller's) keys the cache file ``<name>-<key>``;
    ``model()`` makes an untrained model of the right architecture to load the weights into;
    ``train_it()`` runs the experiment and returns its ``RunResult`` with the model kept. The
    History (with its kept step), the training seconds and the trainable parameters are stored
    beside the weights.

    Returns (model on ``device``, History, the stored metadata, whether it came from the cache).
    """
    cached = checkpoint_path(name, config).exists()

    def build(net):
        r = train_it()
        net.load_state_dict(r.model.state_dict())
        return {"history": r.history.as_dict(), "best_step": r.history.best_step, "train_s": r.train_s,
                "trainable_params": r.trainable_params, "interrupted": r.interrupted}

    net, info = cached_model(name, config, model, build, device=device, verbose=False)
    # entries cached before History carried best_step hold it beside the history
    history = History.from_dict({"best_step": info.get("best_step"), **info["history"]})
    return net, history, info, cached


def kept_value(history: History, metric: str):
    """``metric`` at the evaluation of the weights the model holds (``history.best_step``: the
    one early stopping kept, else the last step); None when no evaluation was made there."""
    values = [e[metric] for e in history.evals if e["step"] == history.best_step and metric in e]
    return values[-1] if values else None
