"""The course's one training loop, shared by every lesson.

What changes between lessons is the model, the data and the loss, so the loss is passed in as
``loss_fn(model, batch) -> scalar tensor``. Everything else is here, in one function you can read
top to bottom:

- AdamW with linear warmup then cosine decay (``Optimiser``), for a budget of ``steps``
  optimiser steps (or ``epochs``); weight decay on weights only (not biases, norms,
  embeddings); optional parameter groups (layer-wise rates), checked: every trainable parameter
  in exactly one group.
- Speed (``Speed``): on CUDA, autocast (bf16, or fp16 with a gradient scaler), channels_last for conv nets,
  non_blocking host-to-device copies, optional ``torch.compile``. On x86 CPUs conv nets train
  channels_last too (``prefers_channels_last``).
- No host synchronisation per step: losses are summed on the device and read once per
  progress-bar refresh (``Monitor.log_every`` steps), where the evaluations and the hook run too.
- A non-finite loss stops training with a hint; the notebook's stop button (KeyboardInterrupt)
  ends training cleanly and leaves the model and the history so far usable.
- Under torchrun with a DistributedDataParallel model (``helpers.distributed``) it runs unchanged:
  only rank 0 shows the progress bar and calls the hook; the logged loss and the evaluation
  metrics are averaged over the ranks at each refresh (still the only sync points).

Example (a tiny classifier of which side of zero a point lies):
    >>> import torch.nn.functional as F
    >>> def loss_fn(model, batch):
    ...     x, y = batch
    ...     return F.cross_entropy(model(x), y)
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(256, 2)
    >>> y = (x[:, 0] > 0).long()
    >>> model = nn.Linear(2, 2)
    >>> history = train(model, loss_fn, Batches(x, y, batch_size=32), steps=100, optimiser=Optimiser(lr=0.05),
    ...                 device="cpu", progress=False)
    >>> history.steps_done, history.loss[-1] < history.loss[0] / 2
    (100, True)
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field, fields
from typing import Callable, Iterable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .checks import class_labels, known_name, model_inputs, paired, whole_number
from .device import autocast, autocast_dtype, prefers_channels_last, resolve_device, synchronize
from .distributed import is_main_process, mean_over_ranks, reduce_metrics, world_size

RECIPE = 2
"""The version of what ``train`` does to a model: every checkpoint config stores it, so cached
checkpoints trained by an older recipe are rebuilt (2: weight decay spares biases, norms and
embeddings; parameter groups checked)."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss. ``.history`` holds what was logged before."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """What a training run logged. Lists grow together, one entry per log refresh."""
    step: list[int] = field(default_factory=list)          # optimiser steps done
    loss: list[float] = field(default_factory=list)        # mean training loss since the last entry
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)     # wall time since the start
    samples: list[int] = field(default_factory=list)       # training samples seen
    evals: list[dict] = field(default_factory=list)        # {"step": s, metric: value, ...}
    interrupted: bool = False                               # stopped early by the user (the stop button)
    best_step: int | None = None    # the step whose weights the model holds: the last (``train``), or the
                                    # one early stopping put back (``KeepBest.restore``); None: unknown

    @property
    def steps_done(self) -> int:
        return self.step[-1] if self.step else 0

    @property
    def train_s(self) -> float:
        """Training wall time in seconds, to the last log refresh (0.0 before the first)."""
        return self.seconds[-1] if self.seconds else 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples[-1] / self.seconds[-1] if self.seconds and self.seconds[-1] > 0 else float("nan")

    def last_eval(self, metric: str):
        """The last evaluated value of ``metric``; None when the run made no evaluations. A metric
        no evaluation measured raises, listing the ones measured (a misspelling returns nothing)."""
        values = [e[metric] for e in self.evals if metric in e]
        if self.evals and not values:
            known_name("metric", metric, sorted({k for e in self.evals for k in e if k != "step"}))
        return values[-1] if values else None

    def as_dict(self) -> dict:
        """Every field (``History(**d)`` and ``from_dict`` read it back)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """The History that ``as_dict`` wrote (e.g. stored beside a cached checkpoint)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind a ``torch.compile``d (or DDP-wrapped) one: save its state_dict."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode and no gradients inside; the model's previous mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.0) -> float:
    """Learning-rate multiplier: linear warmup for ``warmup`` steps, then cosine down to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def to_device(batch, device, channels_last=False):
    """Move a tuple of tensors to ``device`` without blocking the host (pinned or not)."""
    out = []
    for t in batch:
        if torch.is_tensor(t):
            t = t.to(device, non_blocking=True)
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
        out.append(t)
    return tuple(out)


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Parameters that weight decay leaves alone: biases, norm scales and shifts (anything with
    fewer than 2 dimensions) and embedding tables. Decaying them pulls a norm's scale or a bias
    towards zero for no benefit (and BitFit would decay the only parameters it trains)."""
    ids = {id(p) for p in model.parameters() if p.ndim < 2}
    ids |= {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return ids


def optimizer_groups(model: nn.Module, param_groups=None, weight_decay: float = 0.01) -> list[dict]:
    """The AdamW parameter groups ``train`` uses: the caller's groups (or one group of every
    trainable parameter), each split into a part with ``weight_decay`` (weights of linear and
    convolution layers) and a part without (biases, norms, embeddings).

    ``param_groups`` is a list of dicts as for ``torch.optim`` (``{"params": ..., "lr": ...}``);
    ``params`` may be any iterable, generators included: each is read once, here.

    Raises:
        ValueError: a parameter in two groups, a trainable parameter in no group, or nothing
            trainable at all; the message names the parameters.
    """
    names = {id(p): n for n, p in model.named_parameters()}
    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    if isinstance(param_groups, dict) or not hasattr(param_groups, "__iter__"):
        raise TypeError(f"param_groups must be a list of dicts like [{{'params': [...], 'lr': 1e-3}}]; "
                        f"got {type(param_groups).__name__}")
    groups, group_of = [], {}
    for i, group in enumerate(param_groups):
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"param_groups[{i}] must be a dict with a 'params' entry; got {group!r:.80}")
        params = [group["params"]] if isinstance(group["params"], torch.Tensor) else list(group["params"])
        for p in params:
            if id(p) in group_of:
                raise ValueError(f"parameter {names.get(id(p), tuple(p.shape))!r} is in param_groups[{group_of[id(p)]}] "
                                 f"and param_groups[{i}]; give each parameter one group")
            group_of[id(p)] = i
        groups.append({**group, "params": params})
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in group_of]
    if missing:
        raise ValueError(f"{len(missing)} trainable parameter(s) are in no group, e.g. {missing[:4]}: add them to a "
                         f"group, or freeze them (requires_grad_(False)) if they should not train")
    if not any(p.requires_grad for g in groups for p in g["params"]):
        raise ValueError("the model has no trainable parameters: everything is frozen")
    no_decay, out = _no_decay_ids(model), []
    for group in groups:
        decay = [p for p in group["params"] if id(p) not in no_decay]
        rest = [p for p in group["params"] if id(p) in no_decay]
        if decay:
            out.append({**group, "params": decay, "weight_decay": group.get("weight_decay", weight_decay)})
        if rest:
            out.append({**group, "params": rest, "weight_decay": 0.0})
    return out


def _check_loss(loss, loss_fn) -> None:
    """The first loss must be a scalar tensor: a vector would be summed silently by backward's
    caller code, a Python float has no gradient."""
    name = getattr(loss_fn, "__name__", repr(loss_fn))
    if not torch.is_tensor(loss):
        raise TypeError(f"loss_fn {name} returned {type(loss).__name__} {loss!r:.40}; it must return a scalar "
                        f"tensor computed from the model's output (e.g. F.cross_entropy(model(x), y))")
    if loss.ndim != 0:
        raise ValueError(f"loss_fn {name} returned a tensor of shape {tuple(loss.shape)}; it must return a scalar: "
                         f"average it (loss.mean()) or use reduction='mean'")
    if not loss.requires_grad:
        raise ValueError(f"loss_fn {name} returned a loss with no gradient: compute it from the model's "
                         f"output, outside torch.no_grad()")


def _non_finite_inputs(batch, data) -> str:
    """Where NaN or infinity sits in the training inputs, if anywhere ('' if nowhere)."""
    found = []
    for label, tensors in (("the last batch", batch), ("the training data", getattr(data, "tensors", ()))):
        for i, t in enumerate(tensors or ()):
            if torch.is_tensor(t) and t.is_floating_point():
                bad = int((~torch.isfinite(t)).sum())
                if bad:
                    found.append(f"{label}, tensor {i} {tuple(t.shape)}: {bad} NaN or infinite value(s)")
    return "; ".join(found)


def _positive(cls: str, name: str, value, *, allow_none: bool = False, upper: float | None = None,
              zero: bool = False, unit: str = "") -> None:
    if value is None and allow_none:
        return
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value >= 0 if zero else value > 0) and (upper is None or value <= upper))
    if not ok:
        span = f"in [{0 if zero else '>0'}, {upper}]" if upper is not None else ("at least 0" if zero else "above 0")
        raise ValueError(f"{cls}.{name} must be {'None or ' if allow_none else ''}a number {span}"
                         f"{f' ({unit})' if unit else ''}; got {value!r}")


@dataclass(frozen=True)
class Optimiser:
    """How ``train`` optimises: AdamW with linear warmup, then cosine decay.

    lr: peak learning rate (per group via ``param_groups``).
    weight_decay: AdamW's decoupled weight decay, on the weights of linear and convolution layers
        only (biases, norm layers and embeddings are not decayed, as in nanoGPT).
    betas: AdamW's two moment decay rates, each in [0, 1).
    param_groups: a list of dicts as for ``torch.optim`` ([{"params": [...], "lr": ...}]); every
        trainable parameter in exactly one group (``optimizer_groups``). None: one group.
    warmup: share of the steps (0 to 1) with a linear warmup.
    lr_floor: where the cosine decay ends, as a share of ``lr`` (0 to 1).
    clip_grad: clip the gradient norm to this (None: no clipping).

    Example:
        >>> Optimiser(lr=0.05).lr
        0.05
        >>> Optimiser(warmup=5)
        Traceback (most recent call last):
        ...
        ValueError: Optimiser.warmup must be a number in [0, 1] (a share of the steps); got 5
    """
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.999)
    param_groups: list | None = field(default=None, compare=False)
    warmup: float = 0.05
    lr_floor: float = 0.0
    clip_grad: float | None = 1.0

    def __post_init__(self):
        _positive("Optimiser", "lr", self.lr, unit="the peak learning rate")
        _positive("Optimiser", "weight_decay", self.weight_decay, zero=True)
        if (not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                           for b in self.betas)):
            raise ValueError(f"Optimiser.betas must be two numbers in [0, 1) (AdamW's moment decays, e.g. "
                             f"(0.9, 0.999)); got {self.betas!r}")
        _positive("Optimiser", "warmup", self.warmup, zero=True, upper=1, unit="a share of the steps")
        _positive("Optimiser", "lr_floor", self.lr_floor, zero=True, upper=1, unit="a share of lr")
        _positive("Optimiser", "clip_grad", self.clip_grad, allow_none=True, unit="the largest gradient norm")


@dataclass(frozen=True)
class Speed:
    """How fast ``train`` runs; none of these changes what is learned beyond rounding.

    amp: mixed precision on CUDA (bf16 where supported, else fp16 with a gradient scaler).
    channels_last: memory layout for conv nets; None: ``prefers_channels_last`` (CUDA and x86 CPUs).
    compile: wrap the model with ``torch.compile`` for the run.
    """
    amp: bool = True
    channels_last: bool | None = None
    compile: bool = False

    def __post_init__(self):
        for name in ("amp", "channels_last", "compile"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "channels_last" and value is None):
                none = " (or None: the device decides)" if name == "channels_last" else ""
                raise TypeError(f"Speed.{name} must be True or False{none}; got {value!r}")


@dataclass(frozen=True)
class Monitor:
    """What ``train`` does along the way, besides training.

    evaluate: ``evaluate(model) -> {metric: value}``, run without gradients every ``eval_every``
        steps and at the end; the model's mode is restored afterwards (None: no evaluations).
    eval_every: optimiser steps between evaluations (None: only the one at the end).
    log_every: optimiser steps between progress refreshes, the only host synchronisations
        (None: about 20 refreshes per run, at least every 50 steps).
    desc: the progress bar's label.
    hook: ``hook(history)`` after each refresh, e.g. a live plot; if it has a ``finish`` method,
        ``hook.finish(history)`` once at the end, after the last evaluation.
    """
    evaluate: Callable | None = None
    eval_every: int | None = None
    log_every: int | None = None
    desc: str = "training"
    hook: Callable | None = None

    def __post_init__(self):
        for name in ("eval_every", "log_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Monitor.{name} must be None or a whole number of at least 1 (optimiser steps); "
                                 f"got {value!r}")
        for name in ("evaluate", "hook"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise TypeError(f"Monitor.{name} must be None or callable; got {value!r:.80}")


def train(model: nn.Module, loss_fn: Callable, data: Iterable, *,
          steps: int | None = None, epochs: int | None = None, optimiser: Optimiser = Optimiser(),
          device="auto", speed: Speed = Speed(), monitor: Monitor = Monitor(), progress: bool = True) -> History:
    """Train ``model`` in place on ``data`` with ``loss_fn`` and return the History.

    Args:
        model: any ``nn.Module``; it is moved to ``device``. Only parameters with
            ``requires_grad`` are optimised, so frozen layers stay frozen.
        loss_fn: ``loss_fn(model, batch) -> scalar loss tensor``; batch is a tuple of tensors
            already on the device. A loss with a ``check_data(model, tensors)`` attribute (the
            course's classification and count losses) checks the whole data once, before anything
            changes: uint8 images, labels the head cannot produce, negative counts raise.
        data: re-iterable of batches (tuples of tensors), e.g. ``Batches`` or a ``WorldStream``.
        steps: optimiser steps; ``data`` is iterated again as often as needed (the budget every
            comparison in the course states). Or ``epochs``: passes over ``data`` (needs
            ``len(data)``). Neither: one pass.
        optimiser: ``Optimiser``: lr, weight_decay, betas, param_groups, warmup, lr_floor,
            clip_grad (AdamW, linear warmup then cosine decay to ``lr_floor * lr``).
        device: "auto", "cpu", "cuda", "mps" or a ``torch.device``.
        speed: ``Speed``: amp, channels_last, compile.
        monitor: ``Monitor``: evaluate and eval_every (evaluations along the run), log_every,
            desc (the progress bar's label), hook (e.g. a live plot).
        progress: show the progress bar.
    Returns:
        History with per-refresh loss, lr, time, samples, evals; ``interrupted`` if stopped.
    Raises:
        NonFiniteLossError: the loss became NaN or infinite (the message says whether the inputs
            hold NaN or infinity, or suggests a lower learning rate).
    """
    for name, value, cls in (("optimiser", optimiser, Optimiser), ("speed", speed, Speed),
                             ("monitor", monitor, Monitor)):
        if not isinstance(value, cls):
            raise TypeError(f"{name} must be a helpers.training.{cls.__name__}, e.g. {cls.__name__}(); "
                            f"got {value!r:.80}")
    lr, weight_decay, betas, param_groups = optimiser.lr, optimiser.weight_decay, optimiser.betas, optimiser.param_groups
    warmup, lr_floor, clip_grad = optimiser.warmup, optimiser.lr_floor, optimiser.clip_grad
    amp, channels_last, compile = speed.amp, speed.channels_last, speed.compile
    evaluate, eval_every, log_every, desc, hook = (monitor.evaluate, monitor.eval_every, monitor.log_every,
                                                   monitor.desc, monitor.hook)
    device = resolve_device(device)
    if steps is not None and epochs is not None:
        raise TypeError(f"give steps or epochs, not both (got steps={steps}, epochs={epochs})")
    for name, value in (("steps", steps), ("epochs", epochs), ("log_every", log_every), ("eval_every", eval_every)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1; got {value!r}")
    if steps is None:
        if not hasattr(data, "__len__"):
            raise TypeError(f"data of type {type(data).__name__} has no len(): pass steps=N")
        steps = len(data) * (epochs or 1)
        if steps <= 0:
            raise ValueError(f"nothing to train: data has {len(data)} batches")
    total = steps
    log_every = log_every or max(1, min(50, total // 20))
    groups = optimizer_groups(model, param_groups, weight_decay)       # validates before anything moves
    check_data = getattr(loss_fn, "check_data", None)     # the loss checks the data it takes, once
    if check_data is not None and len(getattr(data, "tensors", ())) >= 2:
        check_data(model, data.tensors)
    if channels_last is None:
        channels_last = prefers_channels_last(model, device)
    model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas,
                                  fused=device.type == "cuda")
    trained = [p for g in groups for p in g["params"]]
    warmup_steps = max(1, int(warmup * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total, warmup_steps, lr_floor))
    use_amp = amp and autocast_dtype(device) is not None
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and autocast_dtype(device) == torch.float16)
    net = torch.compile(model) if compile else model

    main, ranks = is_main_process(), world_size()  # under torchrun: rank 0 alone reports
    history = History()
    loss_sum = torch.zeros((), device=device)     # summed on the device: no sync per step
    seen, step, start, batch = 0, 0, time.perf_counter(), None
    bar = tqdm(total=total, desc=desc, disable=not progress or not main, leave=True)

    def log():
        nonlocal loss_sum
        n = step - (history.step[-1] if history.step else 0)
        if n == 0:
            return
        mean_loss = (mean_over_ranks(loss_sum) / n).item()  # the one host sync per refresh
        loss_sum = torch.zeros((), device=device)
        history.step.append(step)
        history.loss.append(mean_loss)
        history.lr.append(optimizer.param_groups[0]["lr"])
        history.seconds.append(time.perf_counter() - start)
        history.samples.append(seen)
        if not math.isfinite(mean_loss):
            bar.close()
            where = _non_finite_inputs(batch, data)
            advice = (f"The inputs themselves hold NaN or infinity ({where}): clean the data first "
                      f"(drop those rows, or torch.nan_to_num)." if where else
                      f"Try a lower learning rate, e.g. lr={lr / 10:.1g}" +
                      (", or clip the gradients (clip_grad=1.0)." if clip_grad is None else
                       f" (gradients are already clipped to {clip_grad})."))
            raise NonFiniteLossError(
                f"the training loss became {mean_loss} by step {step} (learning rate "
                f"{optimizer.param_groups[0]['lr']:.2g}). {advice}", history)
        bar.set_postfix(loss=f"{mean_loss:.4f}")
        if hook is not None and main:
            hook(history)

    def run_eval():
        if evaluate is None:
            return
        with evaluating(model):
            # under DDP the plain module evaluates: a DDP forward can start collectives
            metrics = reduce_metrics(evaluate(unwrap(net) if ranks > 1 else net))
        history.evals.append({"step": step, **{k: float(v) for k, v in metrics.items()}})
        bar.set_postfix(loss=f"{history.loss[-1]:.4f}" if history.loss else "-",
                        **{k: f"{float(v):.4f}" for k, v in metrics.items()})

    model.train()
    try:
        while step < total:
            passed = step
            for batch in data:
                batch = to_device(batch, device, channels_last)
                with autocast(device, enabled=use_amp):
                    loss = loss_fn(net, batch)
                if step == 0:
                    _check_loss(loss, loss_fn)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if clip_grad is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trained, clip_grad)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach().float()
                seen += len(batch[0]) * ranks      # samples of all ranks together
                step += 1
                bar.update(1)
                if step % log_every == 0 or step == total:
                    log()
                if eval_every and step % eval_every == 0 and step < total:
                    run_eval()
                if step >= total:
                    break
            if step == passed:
                raise ValueError(f"data of type {type(data).__name__} yielded no batches")
        run_eval()
        if hook is not None and main and hasattr(hook, "finish"):
            hook.finish(history)          # e.g. a live plot draws its final state, last evaluation included
    except KeyboardInterrupt:
        history.interrupted = True      # the runner's result and run-log row carry it to the lesson
        print(f"Training stopped by you at step {step} of {total}; the model keeps its weights from "
              f"that step and the history so far is returned.")
        log()
    finally:
        bar.close()
    history.best_step = step            # the weights the model holds; KeepBest.restore may go back
    return history


class KeepBest:
    """Early stopping on validation, written once for every runner: an ``evaluate`` for ``train``
    that keeps a copy of the weights with the best ``metric``; after training,
    ``restore(model, history)`` puts them back and records their step in ``history.best_step``.

    The best is the highest value, or the lowest with ``higher_is_better=False`` (a loss); of
    equal values the earliest is kept. ``first_where(metrics) -> bool``: keep instead the FIRST
    evaluation at which it holds, once one does (``reached`` then says so); until then the best.
    ``best_value`` is the metric's value at the kept evaluation.

    Every call must land in ``history.evals`` in order (``train`` does that; an evaluation made
    before ``train``, at step 0, is inserted at ``history.evals[0]``).

    Example (a tiny model whose kept weights are those of its best evaluation):
        >>> import torch.nn.functional as F
        >>> _ = torch.manual_seed(0)
        >>> model, x, y = nn.Linear(4, 2), torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> keeper = KeepBest(lambda m: {"val_loss": F.cross_entropy(m(x), y).item()}, "val_loss",
        ...                   higher_is_better=False)
        >>> history = train(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), [(x, y)], steps=20,
        ...                 optimiser=Optimiser(lr=0.1), device="cpu", monitor=Monitor(evaluate=keeper, eval_every=5),
        ...                 progress=False)
        >>> history = keeper.restore(model, history)
        >>> history.best_step == min(history.evals, key=lambda e: e["val_loss"])["step"]
        True
    """

    def __init__(self, evaluate: Callable[[nn.Module], dict], metric: str, *, higher_is_better: bool = True,
                 first_where: Callable[[dict], bool] | None = None):
        self.evaluate, self.metric, self.sign, self.first_where = \
            evaluate, metric, 1.0 if higher_is_better else -1.0, first_where
        self.best_value, self.best_call, self.state, self.calls, self.reached = None, None, None, 0, False
        self._score = -math.inf             # sign * the kept value: the higher, the better

    def __call__(self, model: nn.Module) -> dict:
        metrics = self.evaluate(model)
        if not self.reached:
            if self.first_where is not None and self.first_where(metrics):
                self.reached = True
                self._keep(model, metrics)
            elif self.sign * metrics[self.metric] > self._score:
                self._keep(model, metrics)
        self.calls += 1
        return metrics

    def _keep(self, model: nn.Module, metrics: dict) -> None:
        self.best_value, self.best_call = metrics[self.metric], self.calls
        self._score = self.sign * metrics[self.metric]
        self.state = {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}

    def restore(self, model: nn.Module, history: History) -> History:
        """Load the kept weights into ``model`` and set ``history.best_step`` to their step
        (nothing changes if no evaluation ran). Returns the history."""
        if self.state is not None:
            unwrap(model).load_state_dict(self.state)
            history.best_step = history.evals[self.best_call]["step"]
        return history


# ---------------------------------------------------------------------------------------------
# Evaluation helpers
# ---------------------------------------------------------------------------------------------

def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256, device=None) -> torch.Tensor:
    """Model outputs for every row of ``x``, in batches, without gradients (mode restored).
    Images must be float (uint8 pixels raise, saying how to convert them)."""
    model_inputs("x", x)
    device = resolve_device(device) if device is not None else next(model.parameters()).device
    outs = []
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            with autocast(device):
                outs.append(model(x[i:i + batch_size].to(device, non_blocking=True)).float())
    return torch.cat(outs)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Share of rows whose arg-max output equals the label. ``x`` and ``y`` must pair up (one
    int64 label per row) and every label must be one the model's outputs can name."""
    model_inputs("x", x)
    paired(("x", "y"), x, y)
    out = predict(model, x, batch_size)
    class_labels("y", y, out.shape[1])
    pred = out.argmax(1)
    return (pred == y.to(pred.device)).float().mean().item()




class Batches:
    """Mini-batches over tensors that already sit on the training device (no DataLoader, no
    workers, no copies). Reshuffled every epoch from its own seed, so runs repeat exactly.

    Example:
        >>> batches = Batches(torch.zeros(200, 3), torch.zeros(200), batch_size=64, seed=0)
        >>> len(batches)      # batches per epoch, the last one short
        4
        >>> [len(x) for x, y in batches]
        [64, 64, 64, 8]
    """

    def __init__(self, *tensors, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, augment: Callable | None = None):
        if not tensors:
            raise ValueError("Batches needs at least one tensor, e.g. Batches(x, y, batch_size=32)")
        whole_number("batch_size", batch_size)
        n = len(tensors[0])
        if any(len(t) != n for t in tensors):
            raise ValueError(f"tensors differ in length: {[len(t) for t in tensors]}")
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tensors, batch_size, shuffle, drop_last
        self.augment, self.epoch, self.seed = augment, 0, seed

    def __len__(self):
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.tensors[0])
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.tensors[0].device)
        else:
            order = torch.arange(n, device=self.tensors[0].device)
        self.epoch += 1
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            batch = tuple(t[idx] for t in self.tensors)
            yield self.augment(batch) if self.augment else batch


def inference_seconds(model: nn.Module, x: torch.Tensor, repeats: int = 5) -> float:
    """Seconds to classify the images ``x`` (the fastest of ``repeats`` runs: on a shared machine
    the fastest run is closest to the model's own cost).

    The model is first put in the memory layout that training uses on this device
    (``prefers_channels_last``; only the layout changes, not the weights), so that a trained model
    and a fresh one are timed alike."""
    device = next(model.parameters()).device
    layout = torch.channels_last if prefers_channels_last(model, device) else torch.contiguous_format
    model.to(memory_format=layout)
    best = float("inf")
    predict(model, x[:8])                                 # warm up
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        predict(model, x)
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best
