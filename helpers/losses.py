"""Loss functions, each ``loss_fn(model, batch) -> scalar`` for ``helpers.training.train``
(or, for distillation, a function of logits that such a loss calls).

- ``cross_entropy_loss``: classification, ``batch = (images, labels)``.
- ``mse_loss``, ``huber_loss``, ``poisson_loss``: counting (a regression to a non-negative count),
  ``batch = (images, counts)``; collected in ``COUNT_LOSSES``.
- ``distillation_loss``: soft targets from a teacher at a temperature, plus the label loss.

A loss may carry ``check_data(model, tensors)``: ``train`` calls it once on the whole data (when
the data has ``tensors``, as ``Batches`` does), before anything changes, so that labels the head
cannot produce or uint8 images raise an error that says so, not an IndexError from inside the loss
at step 0 (or a device-side assert on a GPU). The losses themselves stay free of host syncs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .checks import class_labels, count_targets, model_inputs


def _one_output(model, x):
    """The model's output for the first row of ``x``: eval mode, no gradients, the mode restored
    after, so nothing in the model changes (not even BatchNorm statistics)."""
    from .training import evaluating, unwrap
    net = unwrap(model)
    p = next(net.parameters(), None)
    row = x[:1].to(p.device) if p is not None else x[:1]
    with evaluating(net):
        return net(row)


def _check_class_data(model, tensors):
    """``(images, labels)``: inputs a model takes (not uint8 pixels), int64 labels the head can
    produce."""
    x, y = tensors[0], tensors[1]
    model_inputs("the images (the data's first tensor)", x, check_range=True)
    out = _one_output(model, x)
    if torch.is_tensor(out) and out.ndim == 2:
        class_labels("the labels (the data's second tensor)", y, out.shape[1])


def cross_entropy_loss(model, batch):
    """The classification loss: ``batch = (images, labels)``."""
    x, y = batch
    return F.cross_entropy(model(x), y)


cross_entropy_loss.check_data = _check_class_data


def mse_loss(model, batch):
    """Mean squared error: assumes Gaussian noise of the same size at every count."""
    x, y = batch
    return F.mse_loss(model(x).reshape(-1).float(), y)


def huber_loss(model, batch, delta: float = 1.0):
    """Huber: squared error within ``delta`` of the truth, absolute error beyond it, so a few
    badly wrong scenes pull less than under MSE."""
    x, y = batch
    return F.huber_loss(model(x).reshape(-1).float(), y, delta=delta)


def poisson_loss(model, batch):
    """Poisson negative log-likelihood: the output is the rate of a Poisson count, whose
    variance grows with the count (an error of 1 matters less among 9 birds than among 1)."""
    x, y = batch
    rate = model(x).reshape(-1).float()
    return F.poisson_nll_loss(rate, y, log_input=False, full=False, eps=1e-4)


def _check_count_data(model, tensors):
    """``(images, counts)``: inputs a model takes, float counts >= 0, one output per image."""
    x, y = tensors[0], tensors[1]
    model_inputs("the images (the data's first tensor)", x, check_range=True)
    count_targets("the counts (the data's second tensor)", y)
    out = _one_output(model, x)
    if torch.is_tensor(out) and out.numel() != 1:
        raise ValueError(f"a count loss needs one output per image (a count); the model gives "
                         f"{out.numel()} ({tuple(out.shape[1:])}): give it a count head, "
                         f"replace_head(model, 1, activation='softplus')")


for _loss in (mse_loss, huber_loss, poisson_loss):
    _loss.check_data = _check_count_data

COUNT_LOSSES = {"mse": mse_loss, "huber": huber_loss, "poisson": poisson_loss}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      labels: torch.Tensor | None = None, temperature: float = 4.0,
                      soft_weight: float = 0.9) -> torch.Tensor:
    """Soft-target loss at ``temperature`` plus (optionally) the ordinary label loss.

    Args:
        student_logits, teacher_logits: (B, classes).
        labels: (B,) class indices, or -1 where an image has no label; None: soft term only.
        soft_weight: w, the soft term's share; the labelled images' cross-entropy gets 1 - w.
    Returns:
        a scalar.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student_logits and teacher_logits must pair up, one row of class scores per image; "
                         f"got shapes {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if labels is not None and tuple(labels.shape) != tuple(student_logits.shape[:1]):
        raise ValueError(f"labels must hold one class index (or -1) per row of the logits; got shape "
                         f"{tuple(labels.shape)} for {student_logits.shape[0]} rows")
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits / T, dim=1),
                    log_target=True, reduction="batchmean") * T * T
    if labels is None or soft_weight >= 1:
        return soft
    has_label = labels >= 0
    hard = (F.cross_entropy(student_logits[has_label], labels[has_label])
            if has_label.any() else student_logits.sum() * 0)
    return soft_weight * soft + (1 - soft_weight) * hard
