"""Loss functions, each ``loss_fn(model, batch) -> scalar`` for ``helpers.training.train``
(or, for distillation, a function of logits that such a loss calls).

- ``cross_entropy_loss``: classification, ``batch = (images, labels)``.
- ``mse_loss``, ``huber_loss``, ``poisson_loss``: counting (a regression to a non-negative count),
  ``batch = (images, counts)``; collected in ``COUNT_LOSSES``.
- ``distillation_loss``: soft targets from a teacher at a temperature, plus the label loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_loss(model, batch):
    """The classification loss: ``batch = (images, labels)``."""
    x, y = batch
    return F.cross_entropy(model(x), y)


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
    T = temperature
    soft = F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits / T, dim=1),
                    log_target=True, reduction="batchmean") * T * T
    if labels is None or soft_weight >= 1:
        return soft
    has_label = labels >= 0
    hard = (F.cross_entropy(student_logits[has_label], labels[has_label])
            if has_label.any() else student_logits.sum() * 0)
    return soft_weight * soft + (1 - soft_weight) * hard
