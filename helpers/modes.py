"""The course's three modes and every per-mode size, in one place.

``COURSE_MODE`` chooses: ``smoke`` (CI: each notebook in well under a minute, numbers
meaningless, but never degenerate: at least 2 seeds wherever a lesson has seeds and at least 2
values in every grid it chooses from on validation, so every choice, significance test and
registered claim runs on real, if tiny, numbers), ``class`` (default without CUDA: each lesson at most about 5 minutes on a 2-core
laptop CPU, effects clearly visible) or ``full`` (default with CUDA: bigger data and models).

The module reads top to bottom: the modes, one frozen dataclass of sizes per lesson part (in
lesson order), then ``SIZES``, the table of every part in every mode. Each part is a typed
attribute of ``SIZES``, each mode a typed attribute of the part (``class_``, since ``class`` is a
Python keyword):

    >>> SIZES.finetune.class_.steps
    30
    >>> SIZES.finetune.in_mode("smoke").seeds
    2

Notebooks ask ``sizes("lesson part")``, which returns the part's sizes in the current mode. To try
other sizes, use ``dataclasses.replace``:

    >>> from dataclasses import replace
    >>> S = replace(sizes("pretrain_image", "class"), steps=100)
    >>> S.steps, S.width
    (100, 24)

A cached checkpoint's config takes its sizes from here field by field, each named (for example
``models.ImageModelConfig.from_sizes``), never by matching names: renaming a size field is then an
error, not a silently different cache key (``tests/test_cache_keys.py``).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from .checks import known_name

MODES = ("smoke", "class", "full")


def current_mode() -> str:
    """``$COURSE_MODE`` if set, else ``full`` with CUDA and ``class`` without."""
    mode = os.environ.get("COURSE_MODE", "").strip().lower()
    if not mode:
        return "full" if torch.cuda.is_available() else "class"
    if mode not in MODES:
        raise ValueError(f"COURSE_MODE={mode!r} is not a mode; choose one of {list(MODES)}")
    return mode


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "/".join(_short(v) for v in value)
    return str(value)


# ---------------------------------------------------------------------------------------------
# The sizes of each lesson part (one frozen dataclass each, in lesson order)
# ---------------------------------------------------------------------------------------------

class _Sizes:
    """What every sizes dataclass can do: say itself in one line (``print(S)`` or ``S.summary()``)."""

    def summary(self) -> str:
        """One line: which sizes, in which mode, and every field (tuples as ``a/b/c``).

        >>> print(sizes("peft", "class").summary())
        peft sizes, class mode: ranks 1/4/16, headline_rank 4, steps 120, seeds 3, lora_lr 0.01, bitfit_lr 0.01, task_b_images 300, latency_images 256
        """
        entries = [(name, mode, SIZES.part(name).in_mode(mode)) for name in SIZES.names() for mode in MODES]
        # the very object first: two modes may hold equal sizes (lesson 00's are the same in class and full)
        where = next(((n, m) for n, m, s in entries if s is self), None) or next(
            ((n, m) for n, m, s in entries if s == self), None)
        head = f"{where[0]} sizes, {where[1]} mode" if where else f"{type(self).__name__} sizes (changed from a mode's)"
        return head + ": " + ", ".join(f"{f.name} {_short(getattr(self, f.name))}" for f in dataclasses.fields(self))

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class Welcome(_Sizes):
    """Lesson 00: a first fine-tuning of the learner's own, pre-training included, in about a minute
    on one laptop CPU core (the pre-trained model is cached after the first run)."""
    width: int             # channels of the small model's first stage (lesson 01's narrow ResNet, narrower)
    image_size: int        # pixels, square
    steps: int             # pre-training steps on fresh batches of the general world
    batch_size: int        # pre-training batch
    lr: float              # pre-training peak rate
    labels_per_class: int  # labelled birds per species for the fine-tuning
    test_per_class: int    # test birds per species
    finetune_steps: int    # fine-tuning steps (the from-random-weights run gets the same)
    finetune_batch: int
    finetune_lr: float

@dataclass(frozen=True)
class PretrainImage(_Sizes):
    """Lesson 01: pre-training the image model on the general world."""
    image_size: int        # pixels, square
    width: int             # channels of the first stage; stages double it
    steps: int             # optimiser steps, each on a fresh batch from the world
    batch_size: int
    lr: float              # peak AdamW learning rate (warmup, then cosine decay)
    val_images: int        # fixed validation set, rendered with its own seed

@dataclass(frozen=True)
class FineTune(_Sizes):
    """Lessons 02-04: fine-tuning the image model on few-label bird species."""
    labels_per_class: tuple  # the labels-per-class curve of lesson 02
    headline_labels: int     # labels per species of the headline comparisons
    seeds: int               # seeds per setting where mean and spread are shown
    test_images: int         # fixed test set (its own seed)
    val_images: int          # fixed validation set (its own seed): every selection is made on it
    steps: int               # optimiser steps per run, whatever the training-set size
    batch_size: int
    lr: float                # peak rate for fine-tuning a pre-trained model
    scratch_lr: float        # peak rate for the same model from random weights
    probe_lr: float          # rate for training a new head on a frozen backbone
    lr_sweep: tuple          # rates of lesson 02's sweep (the last ones too high)
    evals: int               # validation evaluations along each run (for curves)
    scratch_steps: int       # budget of the converged from-scratch runs (early-stopped on validation)
    scratch_evals: int       # validation evaluations along them
    scratch_lr_grid: tuple   # from scratch's own rate is chosen on validation from these
    converged_steps: int     # fine-tuning's own budget in lesson 02's fair crossover (early-stopped)
    converged_evals: int     # validation evaluations along it
    depth_lr_grid: tuple     # lesson 03: each freeze depth's rate is chosen on validation from these

@dataclass(frozen=True)
class BirdCounter(_Sizes):
    """Lesson 05: the bird counter (count scenes, fine-tuned vs from scratch, losses, freezing)."""
    image_size: int        # count scenes, pixels square (the backbone pools globally: any size works)
    pool: int              # labelled training scenes rendered; the largest point of the labels curve
    test_scenes: int       # the standard test set
    shifted_scenes: int    # the shifted test set: half more birds than training, half unseen sky
    labels: int            # labelled scenes of the headline runs
    seeds: int             # seeds of the headline runs (fine-tuned and from scratch each)
    curve: tuple           # labelled scenes along the labels curve (the headline point included)
    curve_seeds: int       # seeds of the other curve points
    steps: int             # optimiser steps of every run: the same budget whatever the labels
    batch_size: int
    lr: float              # peak AdamW rate, fine-tuned and from scratch alike
    loss: str              # loss of the headline runs: "poisson", "mse" or "huber"
    freeze_depths: tuple   # stages frozen from the input, compared with full fine-tuning (0)
    eval_every: int        # steps between test evaluations on the live curve
    scratch_steps: int     # from scratch's own budget (headline labels, S.seeds seeds), early-stopped
    scratch_evals: int     # validation evaluations along it (the best one's weights are kept)
    scratch_lr_grid: tuple  # from scratch's own rate: the best on validation MAE of these (seed 0)

@dataclass(frozen=True)
class Peft(_Sizes):
    """Lesson 06: parameter-efficient tuning on the species task (data and budget: "finetune")."""
    ranks: tuple           # LoRA ranks compared
    headline_rank: int     # the rank of the headline LoRA number
    steps: int             # optimiser steps of every method (LoRA's B starts at zero: it needs some)
    seeds: int             # seeds of the headline methods (full, BitFit, LoRA at headline_rank)
    lora_lr: float         # few new parameters want a larger rate than full fine-tuning
    bitfit_lr: float
    task_b_images: int     # labelled images of the second task (counting 0-5 birds)
    latency_images: int    # images per inference-latency measurement

@dataclass(frozen=True)
class LMPretrain(_Sizes):
    """Lesson 07: pre-training the word-level GPT on the text world's encyclopedia."""
    context: int           # tokens per training window
    n_layer: int
    n_head: int
    d_model: int           # channels
    steps: int             # optimiser steps, each on batch_size random windows
    batch_size: int
    lr: float              # peak AdamW learning rate (warmup, then cosine decay)
    diseases: int          # size of the world: diseases and people in the fact table
    people: int

@dataclass(frozen=True)
class LMFinetune(_Sizes):
    """Lesson 08: question-answer fine-tuning of the pre-trained LM."""
    steps: int             # optimiser steps (early stopping picks the best dev step among them)
    lr: float
    batch_size: int
    eval_every: int        # steps between exact-match evaluations
    seeds: int             # fine-tuning seeds (batch order) of the headline runs
    once_only_steps: int   # the once-only model's budget: it fine-tunes until it fits as well
    fit_tolerance: float   # "equal fit": seen-question accuracy within this of the augmented model's
    scratch_lr: float      # the from-scratch model's rate (random weights want a larger one)
    lora_lr: float         # LoRA's rate (adapters start at zero)
    replay_batch: int      # general-text windows mixed into every fine-tuning batch (replay)

@dataclass(frozen=True)
class Prompting(_Sizes):
    """Lesson 09: prompting and soft-prompt tuning of the pre-trained LM (fine-tuning: "lm_finetune")."""
    shots: int             # solved examples before each few-shot question
    soft_tokens: int       # trainable prompt vectors
    soft_steps: int        # optimiser steps of soft-prompt tuning
    soft_lr: float         # prompt vectors start from word embeddings and need large steps
    shots_grid: tuple      # few-shot: the numbers of examples validation chooses from
    soft_token_grid: tuple  # soft prompt: prompt lengths validation chooses from
    soft_lr_grid: tuple    # soft prompt: rates validation chooses from
    finetune_lr_grid: tuple  # fine-tuning: rates validation chooses from
    eval_every: int        # steps between validation evaluations (early stopping) of soft prompts

@dataclass(frozen=True)
class Distill(_Sizes):
    """Lesson 10: a fine-tuned teacher distilled into a small student on the species task."""
    student_width: int     # channels of the student's first stage (the teacher has lesson 01's)
    unlabelled: int        # extra species images without labels, labelled by the teacher
    steps: int             # optimiser steps of each student run
    batch_size: int
    lr: float              # students start from random weights
    temperature: float     # softens both distributions in the distillation loss
    soft_weight: float     # share of the soft-target term in the loss (the rest: labels)
    seeds: int
    views: int             # augmented views of every transfer image, drawn once and scored by the teacher

@dataclass(frozen=True)
class Generator(_Sizes):
    """Lesson 11: the image generator, its judge, and fine-tuning on a few orcas."""
    image_size: int        # pixels, square
    width: int             # U-Net channels at full resolution
    pretrain_steps: int    # pre-training steps on fresh batches of the general world
    pretrain_batch: int
    pretrain_lr: float
    ema_decay: float       # pre-training keeps this exponential average of the weights
    judge_steps: int       # training steps of the classifier that measures the orca rate
    finetune_images: int   # orcas in the fine-tuning set
    finetune_steps: int    # steps of fine-tuning, and of the from-scratch baseline
    finetune_batch: int
    rates: tuple           # the grid of peak rates each method chooses from, on held-out orcas
    seeds: int             # seeds per method for the headline orca rates
    val_images: int        # held-out orcas that choose the rates (never trained on, never the reference)
    guidance: float        # weight of guidance by the pre-trained generator when sampling
    lora_rank: int         # rank of the LoRA adapters on every convolution of the U-Net
    lora_lr: float         # LoRA's peak rate (adapters start at zero and want a larger one)
    eval_samples: int      # generated images per measurement
    sample_steps: int      # Euler steps per sample
    curve_points: int      # validation-loss measurements along each run

@dataclass(frozen=True)
class Scaling(_Sizes):
    """Lesson 12: lesson 02's fine-tuning in one process and on ``ranks`` processes (DDP)."""
    ranks: int              # processes of the distributed run
    labels_per_class: int   # labelled images per species
    steps: int              # optimiser steps of each run
    batch_size: int         # GLOBAL batch: all ranks together (each gets batch_size / ranks)
    lr: float               # peak AdamW rate, the same for one process with that batch
    test_images: int        # test images, split between the ranks for evaluation
    timeout_s: int          # seconds before the notebook stops a torchrun launch
    lm_steps: int           # steps of the language-model runs (lesson 08's answer-only fine-tuning)
    lm_lr: float

@dataclass(frozen=True)
class YourOwn(_Sizes):
    """Lesson 13: your own images and questions, and transfer to real images (scikit-learn's digits)."""
    images_per_class: int  # images per species in the folder the lesson writes from the world
    steps: int             # optimiser steps of every search run (the same budget for each)
    depths: tuple          # frozen stages tried by the search (from the input)
    heads: tuple           # heads tried by the search
    lora_ranks: tuple      # LoRA ranks tried by the search (base weights frozen)
    transfer_labels: int   # labelled digits per class in the real-image transfer study
    transfer_seeds: int    # seeds (draws of the labelled digits) per method
    transfer_lrs: tuple    # learning rates each method is tuned over, on validation
    transfer_steps: int    # the shared budget of the transfer study (optimiser steps)
    scratch_long: int      # the from-scratch baseline also gets this many times the budget
    qa_steps: int          # question fine-tuning steps (early stopping on the dev questions)


# ---------------------------------------------------------------------------------------------
# Every part in every mode
# ---------------------------------------------------------------------------------------------

SizesT = TypeVar("SizesT", bound=_Sizes)


@dataclass(frozen=True)
class ByMode(Generic[SizesT]):
    """One lesson part's sizes in each mode, all of one type: ``.smoke``, ``.class_``, ``.full``,
    or ``.in_mode(mode)`` for a mode held in a variable (default: the current mode)."""
    smoke: SizesT
    class_: SizesT                # "class" is a Python keyword
    full: SizesT

    def __post_init__(self):
        kinds = {type(self.smoke), type(self.class_), type(self.full)}
        if len(kinds) != 1:
            raise TypeError(f"a lesson part holds one kind of sizes in every mode; got {sorted(k.__name__ for k in kinds)}")

    def in_mode(self, mode: str | None = None) -> SizesT:
        """The sizes in ``mode`` (default: the current mode); an unknown mode raises
        ``UnknownNameError`` listing the modes."""
        mode = known_name("mode", mode, MODES) if mode else current_mode()
        return getattr(self, "class_" if mode == "class" else mode)


@dataclass(frozen=True)
class CourseSizes:
    """Every lesson part's sizes in every mode, one typed attribute per part (``SIZES.peft.full.steps``)."""
    welcome: ByMode[Welcome]                 # lesson 00
    pretrain_image: ByMode[PretrainImage]    # lesson 01
    finetune: ByMode[FineTune]               # lessons 02-04 (and the data and budget of 06, 10)
    bird_counter: ByMode[BirdCounter]        # lesson 05
    peft: ByMode[Peft]                       # lesson 06
    lm_pretrain: ByMode[LMPretrain]          # lesson 07
    lm_finetune: ByMode[LMFinetune]          # lessons 08-09
    prompting: ByMode[Prompting]             # lesson 09
    distill: ByMode[Distill]                 # lesson 10
    generator: ByMode[Generator]             # lesson 11
    scaling: ByMode[Scaling]                 # lesson 12
    your_own: ByMode[YourOwn]                # lesson 13

    def names(self) -> tuple[str, ...]:
        """The lesson parts, in lesson order."""
        return tuple(f.name for f in dataclasses.fields(self))

    def part(self, name: str) -> ByMode:
        """The part called ``name``; an unknown name raises ``UnknownNameError`` listing the parts."""
        return getattr(self, known_name("lesson part", name, sorted(self.names())))


SIZES = CourseSizes(
    welcome=ByMode(
        smoke=Welcome(width=8, image_size=32, steps=20, batch_size=32, lr=3e-3, labels_per_class=4,
                      test_per_class=8, finetune_steps=4, finetune_batch=16, finetune_lr=1e-3),
        class_=Welcome(width=12, image_size=32, steps=300, batch_size=64, lr=3e-3, labels_per_class=10,
                       test_per_class=50, finetune_steps=40, finetune_batch=24, finetune_lr=1e-3),
        full=Welcome(width=12, image_size=32, steps=300, batch_size=64, lr=3e-3, labels_per_class=10,
                     test_per_class=50, finetune_steps=40, finetune_batch=24, finetune_lr=1e-3),
    ),
    pretrain_image=ByMode(
        smoke=PretrainImage(image_size=32, width=8, steps=30, batch_size=32, lr=3e-3, val_images=256),
        class_=PretrainImage(image_size=48, width=24, steps=1200, batch_size=64, lr=3e-3, val_images=2048),
        full=PretrainImage(image_size=48, width=48, steps=6000, batch_size=256, lr=3e-3, val_images=8192),
    ),
    finetune=ByMode(
        smoke=FineTune(labels_per_class=(2, 4), headline_labels=4, seeds=2, test_images=48, val_images=48, steps=4,
                       batch_size=16, lr=1e-3, scratch_lr=3e-3, probe_lr=1e-2, lr_sweep=(1e-3, 1e-1), evals=1,
                       scratch_steps=8, scratch_evals=2, scratch_lr_grid=(3e-3, 1e-2),
                       converged_steps=8, converged_evals=2, depth_lr_grid=(1e-3, 1e-2)),
        class_=FineTune(labels_per_class=(5, 10, 50), headline_labels=10, seeds=3, test_images=600,
                        val_images=600, steps=30, batch_size=24, lr=1e-3, scratch_lr=1e-2, probe_lr=1e-2,
                        lr_sweep=(1e-4, 1e-3, 1e-2, 1e-1), evals=1,
                        scratch_steps=600, scratch_evals=12, scratch_lr_grid=(3e-3, 1e-2),
                        converged_steps=300, converged_evals=10, depth_lr_grid=(1e-3, 3e-3, 1e-2)),
        full=FineTune(labels_per_class=(5, 10, 20, 50, 100), headline_labels=10, seeds=3, test_images=3000,
                      val_images=3000, steps=400, batch_size=64, lr=1e-3, scratch_lr=3e-3, probe_lr=1e-2,
                      lr_sweep=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), evals=8,
                      scratch_steps=3000, scratch_evals=15, scratch_lr_grid=(1e-3, 3e-3, 1e-2),
                      converged_steps=1600, converged_evals=16,
                      depth_lr_grid=(3e-4, 1e-3, 3e-3, 1e-2)),
    ),
    bird_counter=ByMode(
        smoke=BirdCounter(image_size=32, pool=64, test_scenes=32, shifted_scenes=16, labels=32, seeds=2,
                          curve=(16, 32, 64), curve_seeds=1, steps=3, batch_size=16, lr=3e-3,
                          loss="poisson", freeze_depths=(2, 4), eval_every=2,
                          scratch_steps=6, scratch_evals=2, scratch_lr_grid=(3e-3, 1e-2)),
        class_=BirdCounter(image_size=64, pool=2000, test_scenes=400, shifted_scenes=200, labels=1000, seeds=3,
                           curve=(250, 1000, 2000), curve_seeds=1, steps=300, batch_size=32, lr=5e-3,
                           loss="poisson", freeze_depths=(2, 4), eval_every=100,
                           scratch_steps=900, scratch_evals=6, scratch_lr_grid=(5e-3, 1e-2)),
        full=BirdCounter(image_size=64, pool=2000, test_scenes=2000, shifted_scenes=1000, labels=1000, seeds=3,
                         curve=(250, 500, 1000, 2000), curve_seeds=3, steps=600, batch_size=64, lr=3e-3,
                         loss="poisson", freeze_depths=(1, 2, 3, 4, 5), eval_every=50,
                         scratch_steps=2400, scratch_evals=12, scratch_lr_grid=(1e-3, 3e-3, 1e-2)),
    ),
    peft=ByMode(
        smoke=Peft(ranks=(1, 4), headline_rank=4, steps=4, seeds=2, lora_lr=1e-2, bitfit_lr=1e-2, task_b_images=32,
                   latency_images=32),
        class_=Peft(ranks=(1, 4, 16), headline_rank=4, steps=120, seeds=3, lora_lr=1e-2, bitfit_lr=1e-2, task_b_images=300,
                    latency_images=256),
        full=Peft(ranks=(1, 2, 4, 8, 16, 32), headline_rank=4, steps=400, seeds=3, lora_lr=1e-2, bitfit_lr=1e-2,
                  task_b_images=2000, latency_images=1024),
    ),
    lm_pretrain=ByMode(
        smoke=LMPretrain(context=48, n_layer=2, n_head=2, d_model=32, steps=30, batch_size=16, lr=3e-3,
                         diseases=20, people=20),
        class_=LMPretrain(context=128, n_layer=4, n_head=4, d_model=128, steps=800, batch_size=32, lr=3e-3,
                          diseases=100, people=60),
        full=LMPretrain(context=128, n_layer=6, n_head=4, d_model=192, steps=3000, batch_size=64, lr=2e-3,
                        diseases=200, people=240),
    ),
    lm_finetune=ByMode(
        smoke=LMFinetune(steps=10, lr=3e-4, batch_size=16, eval_every=5, seeds=2, once_only_steps=20,
                         fit_tolerance=0.05, scratch_lr=3e-3, lora_lr=3e-3, replay_batch=4),
        class_=LMFinetune(steps=120, lr=3e-4, batch_size=32, eval_every=10, seeds=3, once_only_steps=480,
                          fit_tolerance=0.05, scratch_lr=3e-3, lora_lr=3e-3, replay_batch=8),
        full=LMFinetune(steps=400, lr=3e-4, batch_size=32, eval_every=20, seeds=3, once_only_steps=1600,
                        fit_tolerance=0.03, scratch_lr=3e-3, lora_lr=3e-3, replay_batch=16),
    ),
    prompting=ByMode(
        smoke=Prompting(shots=1, soft_tokens=4, soft_steps=5, soft_lr=3e-2, shots_grid=(1, 2), soft_token_grid=(2, 4),
                        soft_lr_grid=(1e-2, 3e-2), finetune_lr_grid=(3e-4, 1e-3), eval_every=5),
        class_=Prompting(shots=3, soft_tokens=8, soft_steps=150, soft_lr=3e-2, shots_grid=(1, 2, 3),
                         soft_token_grid=(4, 16), soft_lr_grid=(1e-2, 1e-1), finetune_lr_grid=(3e-4, 1e-3),
                         eval_every=25),
        full=Prompting(shots=5, soft_tokens=16, soft_steps=600, soft_lr=3e-2, shots_grid=(1, 2, 3, 5),
                       soft_token_grid=(4, 8, 16, 32), soft_lr_grid=(1e-2, 3e-2, 1e-1), finetune_lr_grid=(1e-4, 3e-4, 1e-3),
                       eval_every=50),
    ),
    distill=ByMode(
        smoke=Distill(student_width=4, unlabelled=64, steps=4, batch_size=16, lr=3e-3, temperature=4.0,
                      soft_weight=0.9, seeds=2, views=2),
        class_=Distill(student_width=8, unlabelled=1000, steps=150, batch_size=64, lr=3e-3, temperature=4.0,
                       soft_weight=0.9, seeds=5, views=4),
        full=Distill(student_width=12, unlabelled=8000, steps=2000, batch_size=128, lr=3e-3, temperature=4.0,
                     soft_weight=0.9, seeds=3, views=8),
    ),
    generator=ByMode(
        smoke=Generator(image_size=16, width=8, pretrain_steps=20, pretrain_batch=32, pretrain_lr=2e-3, ema_decay=0.9,
                        judge_steps=20, finetune_images=16, finetune_steps=10, finetune_batch=16,
                        rates=(1e-3, 3e-3), seeds=2, val_images=16, guidance=1.0, lora_rank=2, lora_lr=5e-3, eval_samples=16, sample_steps=4, curve_points=1),
        class_=Generator(image_size=32, width=32, pretrain_steps=6000, pretrain_batch=32, pretrain_lr=2e-3, ema_decay=0.999,
                         judge_steps=600, finetune_images=32, finetune_steps=200, finetune_batch=32,
                         rates=(1e-3, 3e-3, 1e-2), seeds=3, val_images=64, guidance=1.0, lora_rank=8, lora_lr=5e-3, eval_samples=256, sample_steps=24, curve_points=5),
        full=Generator(image_size=32, width=64, pretrain_steps=20000, pretrain_batch=128, pretrain_lr=2e-3, ema_decay=0.9995,
                       judge_steps=3000, finetune_images=32, finetune_steps=600, finetune_batch=32,
                       rates=(1e-3, 3e-3, 1e-2), seeds=3, val_images=128, guidance=1.0, lora_rank=8, lora_lr=5e-3, eval_samples=1024, sample_steps=48, curve_points=8),
    ),
    scaling=ByMode(
        smoke=Scaling(ranks=2, labels_per_class=4, steps=4, batch_size=8, lr=1e-3, test_images=48, timeout_s=150,
                      lm_steps=3, lm_lr=3e-4),
        class_=Scaling(ranks=2, labels_per_class=10, steps=30, batch_size=20, lr=1e-3, test_images=600,
                       timeout_s=300, lm_steps=20, lm_lr=3e-4),
        full=Scaling(ranks=2, labels_per_class=20, steps=200, batch_size=64, lr=1e-3, test_images=1200,
                     timeout_s=600, lm_steps=50, lm_lr=3e-4),
    ),
    your_own=ByMode(
        smoke=YourOwn(images_per_class=6, steps=2, depths=(0, 3), heads=("linear", "mlp"), lora_ranks=(2,),
                      transfer_labels=3, transfer_seeds=2, transfer_lrs=(1e-3, 1e-2), transfer_steps=2, scratch_long=2,
                      qa_steps=4),
        class_=YourOwn(images_per_class=30, steps=30, depths=(0, 3), heads=("linear", "mlp"), lora_ranks=(4,),
                       transfer_labels=10, transfer_seeds=3, transfer_lrs=(1e-3, 1e-2), transfer_steps=60,
                       scratch_long=3, qa_steps=120),
        full=YourOwn(images_per_class=100, steps=200, depths=(0, 2, 3, 4), heads=("linear", "mlp", "block"),
                     lora_ranks=(4, 8), transfer_labels=10, transfer_seeds=5, transfer_lrs=(3e-4, 1e-3, 3e-3, 1e-2),
                     transfer_steps=200, scratch_long=4, qa_steps=400),
    ),
)


def sizes(name: str, mode: str | None = None):
    """The sizes of lesson part ``name`` in ``mode`` (default: the current mode): the notebooks'
    short form of ``SIZES.<name>.in_mode(mode)``.

    An unknown name or mode raises ``UnknownNameError`` (a KeyError) listing the valid ones."""
    return SIZES.part(name).in_mode(mode)

