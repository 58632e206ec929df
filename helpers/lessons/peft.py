"""Lesson 06's harness: one parameter-efficient tuning experiment on the species task, the
second task of the adapter-swap demo, the seed table and the lesson's claims."""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass

import torch

from ..augment import flip_and_shift
from ..checks import keywords_checked, one_of, whole_number
from ..claims import Claim
from ..device import resolve_device
from ..experiments import build_model
from ..images import BACKGROUNDS, BirdSpecies
from ..lora import DEFAULT, METHODS, RESNET_TARGETS, memory_report, prepare_peft
from ..losses import cross_entropy_loss
from ..modes import sizes
from ..runner import Budget, Objective, Recipe, Report, RunResult, Setup, resolve_setup, run
from ..stats import mean_and_spread
from ..surgery import BN_CHOICES, BN_DEFAULT
from ..tasks import ClassificationTask, species_data, species_task
from ..training import accuracy

LIBRARIES = ("course", "peft")     # whose LoRA run_peft trains: helpers.lora's, or Hugging Face peft's


@dataclass(frozen=True)
class Adapter:
    """How ``run_peft`` sets up its method on the fresh model (``helpers.lora.prepare_peft``).

    rank: LoRA's rank, the inner width of each adapter's A and B (method "lora" only).
    alpha: LoRA's scale numerator: the update is ``B @ A * alpha / rank`` (None: alpha = rank).
    targets: module names or globs LoRA adapts (default: the ResNet's convolutions,
        ``helpers.lora.RESNET_TARGETS``).
    name: the adapter's name (several named adapters can sit on one base model).
    bn: BatchNorm running statistics (``helpers.surgery.BN_CHOICES``): "update" (they follow
        the new data) or "frozen" (the base model's stay).
    library: whose LoRA trains (``LIBRARIES``): "course" (``helpers.lora``) or "peft" (Hugging
        Face peft, through ``helpers.peft_bridge.to_peft``; method "lora" only).

    Example:
        >>> Adapter(rank=8).rank
        8
        >>> Adapter(library="hf")
        Traceback (most recent call last):
        ...
        ValueError: Adapter.library must be one of ('course', 'peft'); got 'hf'
    """
    rank: int = 4
    alpha: float | None = None
    targets: object = RESNET_TARGETS
    name: str = DEFAULT
    bn: str = BN_DEFAULT
    library: str = "course"

    def __post_init__(self):
        whole_number("Adapter.rank", self.rank, meaning="LoRA's rank")
        if self.alpha is not None and (isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real)
                                       or not self.alpha > 0):
            raise ValueError(f"Adapter.alpha must be None (alpha = rank) or a positive number; got {self.alpha!r}")
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"Adapter.name must be a non-empty string (the adapter's name); got {self.name!r}")
        if self.bn not in BN_CHOICES:
            raise ValueError(f"Adapter.bn must be one of {BN_CHOICES}; got {self.bn!r}")
        if self.library not in LIBRARIES:
            raise ValueError(f"Adapter.library must be one of {LIBRARIES}; got {self.library!r}")


@keywords_checked
def run_peft(method: str, *, adapter: Adapter = Adapter(), labels_per_class: int | None = None,
             task: ClassificationTask | None = None, lr: float | None = None, seed: int = 0, log=None,
             budget: Budget = Budget(), report: Report = Report(), setup: Setup = Setup()) -> RunResult:
    """Tune a FRESH copy of lesson 01's model with one method (``helpers.lora.METHODS``).

    The data, the head, the budget (optimiser steps, batch size) and the validation and test sets
    are those of ``helpers.experiments.run_finetune``, so numbers compare with lessons 02-04. The
    learning rate defaults to the lesson's rate for the method (``sizes("peft")``): a few new
    parameters want a larger rate than a whole network. ``task=`` trains on another
    ``ClassificationTask`` with as many classes as species instead (same head size).

    ``Adapter(library="peft")`` (LoRA only) trains Hugging Face peft's LoRA instead of the
    course's: the course adapter is set up as usual, then ``helpers.peft_bridge.to_peft`` hands the
    model, with that adapter's A and B and the new head, to ``peft.get_peft_model``; everything
    else (data, seed, budget, rate) is the same.

    Args:
        method: "full", "probe", "bitfit" or "lora".
        adapter: ``Adapter``: rank, alpha, targets, name, bn, library.
        labels_per_class, task: the species task at this many labels (default the headline), or
            another ``ClassificationTask``.
        lr: peak learning rate (default: the lesson's for the method).
        seed: the training images, the head, LoRA's A and the batch order.
        log: a ``RunLog``; the run's row is appended to it.
        budget: ``Budget``: steps and batch_size (default lesson 02's), augment. No evaluations
            along the run.
        report: ``Report``: note, hook, keep_model.
        setup: ``Setup``: mode, source, device, progress.
    Returns:
        RunResult with metrics val_acc, test_acc; extra: trainable_frac, optimizer_bytes (AdamW
        state), sec_per_epoch, eval_s.
    """
    one_of("method", method, METHODS)
    for name, value, kind in (("adapter", adapter, Adapter), ("budget", budget, Budget), ("report", report, Report),
                              ("setup", setup, Setup)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__}, e.g. {kind.__name__}(); got {value!r:.80}")
    if adapter.library == "peft" and method != "lora":
        raise ValueError(f"library='peft' runs peft's LoRA; method must be 'lora', got {method!r}")
    if (budget.evals or budget.eval_every or budget.keep_best or budget.test_curve or budget.stop_when is not None
            or not report.read_test):
        raise ValueError("run_peft measures validation and test once, at the end: Budget.evals, eval_every, "
                         "keep_best, test_curve, stop_when and Report.read_test are other runners'")
    rank, alpha, targets, name, bn, library = (adapter.rank, adapter.alpha, adapter.targets, adapter.name, adapter.bn,
                                               adapter.library)
    setup = resolve_setup(setup)       # the edge: read the environment once
    S, P = sizes("finetune", setup.mode), sizes("peft", setup.mode)
    device, source = setup.device, setup.source
    steps = budget.steps or S.steps
    lr = lr or {"full": S.lr, "probe": S.probe_lr, "bitfit": P.bitfit_lr, "lora": P.lora_lr}[method]
    task = species_data(labels_per_class, seed=seed, device=device, mode=setup.mode, source=source) if task is None \
        else task.to(device)

    def make():
        model = build_model(seed=seed, num_classes=task.num_classes, device=device, mode=setup.mode, source=source)
        prepare_peft(model, method, rank=rank, alpha=alpha, targets=targets, name=name, seed=seed, bn=bn)
        if library == "peft":
            # imported here, not at the top: importing peft loads transformers, which takes seconds
            from ..peft_bridge import to_peft
            model = to_peft(model, name=name, head="fc")
        return model.to(device)

    timing = {}

    def measure(model, history):
        start = time.perf_counter()
        test_acc = accuracy(model, task.x_test, task.y_test)
        timing["eval_s"] = time.perf_counter() - start
        return {"val_acc": accuracy(model, task.x_val, task.y_val), "test_acc": test_acc}

    recipe = Recipe(steps=steps, batch_size=budget.batch_size or S.batch_size, lr=lr, seed=seed,
                    augment=flip_and_shift if budget.augment is not False else None)
    settings = {"method": method, "rank": rank if method == "lora" else None, "lr": lr, "bn": bn, "seed": seed,
                "task": task.name, "library": library}
    if report.note is not None:
        settings["note"] = report.note
    result = run(make, (task.x_train, task.y_train), recipe, Objective(cross_entropy_loss, measure=measure),
                 setup=setup, settings=settings, keep_model=True, hook=report.hook,
                 desc=f"{method}" + (f" r={rank}" if method == "lora" else ""))
    memory = memory_report(result.model)
    result.trainable_params, result.total_params = memory["trainable_params"], memory["total_params"]
    result.extra.update(trainable_frac=memory["trainable_frac"], optimizer_bytes=memory["optimizer_bytes"],
                        eval_s=timing["eval_s"])
    if not report.keep_model:
        result.model = None
    if log is not None:
        log.add(**{k: v for k, v in result.row().items() if k not in ("task", "cached")})
    return result


BACKGROUND_SEEDS = (880_001, 880_002, 880_003)       # train, validation, test of the second task


def background_task(train_images: int, eval_images: int, device="auto") -> ClassificationTask:
    """Lesson 06's second task: which of the six backgrounds is behind the bird (a 6-way task
    like the species one, so the same head size), with its own train, validation and test sets."""
    device = resolve_device(device)
    size = species_task().image_size
    splits = []
    for n, seed in zip((train_images, eval_images, eval_images), BACKGROUND_SEEDS):
        per = -(-n // len(BACKGROUNDS))
        xs = [BirdSpecies(image_size=size, backgrounds=(bg,)).render(per, seed=seed + 97 * k, device=device)[0]
              for k, bg in enumerate(BACKGROUNDS)]
        x = torch.cat(xs)
        y = torch.arange(len(BACKGROUNDS), device=device).repeat_interleave(per)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].to(device)
        splits += [x[order], y[order]]
    return ClassificationTask(tuple(BACKGROUNDS), *splits, name="background behind the bird")


def seed_table(runs_by_method: dict) -> list[dict]:
    """One row per method ({method: [RunResult, ...]}): mean validation and test accuracy, the
    test spread and per-seed values."""
    rows = []
    for method, rs in runs_by_method.items():
        test, spread = mean_and_spread([r.test_acc for r in rs])
        rows.append({"method": method, "val_acc": mean_and_spread([r.val_acc for r in rs])[0], "test_acc": test,
                     "test_spread": spread, "seeds": len(rs), "test_accs": [float(r.test_acc) for r in rs]})
    return rows


CLAIMS = [
    Claim("06", "LoRA trains under 5% of the parameters and needs under 5% of full fine-tuning's optimiser state",
          lambda m: m["lora_trainable_frac"] < 0.05 and m["lora_optimizer_frac"] < 0.05),
    Claim("06", "the second task's adapter is useful: its test accuracy is at least three times chance (1/6)",
          lambda m: m["adapter_b_acc"] >= 3 / 6),
    Claim("06", "swapping adapters on one base model gives the first task's accuracy back exactly",
          lambda m: m["serving_accs"][0] == m["serving_accs"][2]),
]

# The section "The same LoRA with Hugging Face peft": the library's LoRA against the course's.
PEFT_CLAIMS = [
    Claim("06", "peft's LoRA, configured like the course's (same layers, rank, alpha, no dropout, the head in "
                "modules_to_save), trains exactly as many parameters",
          lambda m: m["peft_trainable_params"] == m["course_lora_trainable_params"]),
    Claim("06", "from the same weights, peft's model computes the course model's outputs (largest difference "
                "under 1% of the largest output)",
          lambda m: m["peft_same_weights_max_diff"] < 0.01 * m["peft_output_scale"]),
    Claim("06", "trained with the same data, seed and steps from the same initialisation, peft's LoRA and the "
                "course's tie: their test accuracies differ by no more than the course LoRA's spread over seeds",
          lambda m: abs(m["peft_acc"] - m["peft_course_acc"]) <= m["lora_acc_spread"]),
    Claim("06", "each library's saved adapter loads into the other and computes what the saving library computes "
                "from it (largest difference under 1% of the largest output)",
          lambda m: max(m["peft_files_in_course_max_diff"], m["course_files_in_peft_max_diff"])
          < 0.01 * m["peft_output_scale"]),
]
CLAIMS += PEFT_CLAIMS
