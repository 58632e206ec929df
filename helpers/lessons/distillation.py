"""Knowledge distillation on the species task (lesson 10): a big fine-tuned teacher, a small student.

The teacher is lesson 01's model fine-tuned on the few species labels (``helpers.experiments.run_finetune``).
The student is the same kind of timm ResNet at a fraction of the width, from random weights.
It learns from the teacher's *soft targets*: the teacher's class probabilities softened by a
temperature T, which say not only "robin" but "robin, a bit like a cardinal, nothing like a gull".

    loss = w · T² · KL(softmax(teacher / T) || softmax(student / T)) + (1 - w) · CE(student, labels)

The T² keeps the soft term's gradients at the scale of the hard term's when T changes (the
gradient of the softened KL shrinks as 1/T²). Images without labels still have soft targets, so
the teacher can label extra, unlabelled images: the student then learns from many more examples
than the few labelled ones.

Example:
    >>> teacher = finetune_teacher(seed=0)["model"]
    >>> x, soft, y = transfer_set(teacher, labels_per_class=10, unlabelled=1500)
    >>> r = run_student("kd", x, y, soft, seed=0)
    >>> r["test_acc"], r["params"]
"""
from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..augment import flip_and_shift
from ..device import resolve_device, seed_everything
from ..experiments import run_finetune
from ..losses import distillation_loss
from ..models import count_params, create_image_model, image_model_config
from ..modes import sizes
from ..tasks import species_task, species_test_set, species_train_set
from ..training import Batches, accuracy, predict, train

UNLABELLED_SEED = 770_001     # the unlabelled images' seed: no labelled set or test set uses it
KINDS = ("labels", "kd")




def create_student(width: int | None = None, seed: int = 0) -> nn.Module:
    """A fresh, random small ResNet for the species task: lesson 01's architecture at ``width``."""
    width = width or sizes("distill").student_width
    config = replace(image_model_config(), width=width)
    return create_image_model(config, num_classes=species_task().num_classes, seed=seed)


def finetune_teacher(seed: int = 0, progress: bool = True, device="auto") -> dict:
    """The teacher: lesson 01's model fine-tuned on the species labels (lesson 02's recipe).
    Returns ``run_finetune``'s dict, with the model under "model"."""
    return run_finetune(seed=seed, keep_model=True, progress=progress, device=device)


def unlabelled_images(n: int, device="auto") -> torch.Tensor:
    """``n`` species images whose labels the lesson throws away (its own seed)."""
    x, _ = species_task().render(n, seed=UNLABELLED_SEED, device=resolve_device(device))
    return x


def transfer_set(teacher: nn.Module, labels_per_class: int | None = None, unlabelled: int = 0,
                 seed: int = 0, device="auto"):
    """The images a student learns from, with the teacher's logits and the labels (-1: none).

    The few labelled training images of ``seed`` (the same ones the teacher saw), then
    ``unlabelled`` images without labels. Returns (x, teacher_logits, labels).
    """
    device = resolve_device(device)
    labels_per_class = labels_per_class or sizes("finetune").headline_labels
    x, y = species_train_set(labels_per_class, seed=seed, device=device)
    if unlabelled:
        xu = unlabelled_images(unlabelled, device=device)
        x = torch.cat([x, xu])
        y = torch.cat([y, torch.full((len(xu),), -1, dtype=y.dtype, device=device)])
    return x, predict(teacher, x), y




def run_student(kind: str, x: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None = None,
                *, seed: int = 0, steps: int | None = None, lr: float | None = None,
                temperature: float | None = None, soft_weight: float | None = None,
                width: int | None = None, progress: bool = True, keep_model: bool = False,
                device="auto") -> dict:
    """Train a FRESH student on (x, y): on the labels alone (``kind="labels"``; unlabelled rows,
    y = -1, are dropped) or by distillation from ``teacher_logits`` (``kind="kd"``). Returns a
    dict with test_acc, params, train_s, history (and "model" if ``keep_model``)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    D = sizes("distill")
    device = resolve_device(device)
    steps, lr = steps or D.steps, lr or D.lr
    T = temperature or D.temperature
    w = D.soft_weight if soft_weight is None else soft_weight
    student = create_student(width, seed=seed).to(device)
    if kind == "labels":
        keep = y >= 0
        tensors = (x[keep], y[keep])

        def loss_fn(model, batch):
            return F.cross_entropy(model(batch[0]), batch[1])
    else:
        if teacher_logits is None:
            raise ValueError("kind='kd' needs the teacher's logits (see transfer_set)")
        tensors = (x, y, teacher_logits)

        def loss_fn(model, batch):
            images, labels, soft = batch
            return distillation_loss(model(images), soft, labels, T, w)
    batches = Batches(*tensors, batch_size=min(D.batch_size, len(tensors[0])), seed=seed,
                      augment=flip_and_shift)
    x_test, y_test = species_test_set(device=device)
    seed_everything(seed)
    history = train(student, loss_fn, batches, epochs=math.ceil(steps / len(batches)), max_steps=steps,
                    lr=lr, device=device, log_every=max(1, steps // 10), progress=progress,
                    desc=f"student ({kind}, {len(tensors[0])} images)")
    result = {"kind": kind, "images": len(tensors[0]), "seed": seed, "test_acc": accuracy(student, x_test, y_test),
              "params": count_params(student), "train_s": history.seconds[-1], "history": history}
    if keep_model:
        result["model"] = student
    return result


