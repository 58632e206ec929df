"""Lesson 08's harness: question-answer fine-tuning runs over seeds, the knowledge-augmentation
ablation at equal fit, forgetting measured fact by fact (full fine-tuning, LoRA, replay), and the
lesson's registered claims."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..claims import Claim
from ..lm import Replay, answers_correct, exact_match, finetune_qa
from ..lora import add_lora, train_only_lora, trainable_share
from ..runner import Budget, Setup
from ..stats import mean_and_spread
from ..training import Monitor

LORA_TARGETS = ["blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc", "blocks.*.mlp.proj"]

# Allen-Zhu and Li, "Physics of Language Models, Part 3.1" (2023): held-out accuracy of question
# answering after fine-tuning, pre-trained on biographies stated once ("bioS single") against
# biographies with several phrasings, permuted sentences and full names (their best augmentation).
PAPER_HELDOUT_NO_AUGMENTATION = 0.10
PAPER_HELDOUT_AUGMENTED = 0.96


def with_lora(model, rank: int = 8, seed: int = 0):
    """``model`` with rank-``rank`` LoRA adapters on every attention and MLP layer, only they train."""
    add_lora(model, LORA_TARGETS, rank=rank, seed=seed)
    train_only_lora(model)
    return model


def general_retention(before, after) -> float:
    """Of the general facts answered right before fine-tuning (bool tensor ``before``), the share
    still answered right after (``after``): retention measured fact by fact."""
    kept = before.sum().item()
    return (after & before).sum().item() / kept if kept else float("nan")


@dataclass(frozen=True)
class Retention:
    """General knowledge to check after fine-tuning: ``probes`` (QA pairs of general facts) and
    ``before``, the pre-trained model's verdicts on them (a bool tensor, one per probe, from
    ``answers_correct(model, tok, probes, eos=False)``)."""
    probes: list
    before: torch.Tensor

    def __post_init__(self):
        if not torch.is_tensor(self.before) or self.before.dtype != torch.bool or len(self.before) != len(self.probes):
            raise ValueError(f"Retention.before must be a bool tensor with one verdict per probe ({len(self.probes)}); "
                             f"got {type(self.before).__name__} "
                             f"{tuple(self.before.shape) if torch.is_tensor(self.before) else ''}")


def run_qa(model, tok, qa, *, lr: float, budget: Budget, monitor: Monitor, seed: int = 0, replay: Replay | None = None,
           general: Retention | None = None, setup: Setup = Setup()) -> dict:
    """Fine-tune ``model`` in place (``helpers.lm.finetune_qa``) and measure it.

    Args:
        lr, budget, seed, replay, setup: ``finetune_qa``'s (``budget.stop_when``: restore the
            first step where it held).
        monitor: ``Monitor``: desc is the run's label (the row's "label" and the progress bar's);
            hook, e.g. a ``LiveCurve``.
        general: ``Retention``: general probes and the pre-trained model's verdicts on them.

    Returns a row: label, seed, lr, steps, kept_step (the weights restored: best dev step, or the
    first step where ``budget.stop_when(metrics)`` held), seen_acc (every fine-tuning question),
    heldout_acc (test diseases), dev_acc, and with ``general`` also general_acc and
    general_retention; ``history`` the curves.
    """
    history = finetune_qa(model, tok, qa, lr=lr, budget=budget, seed=seed, replay=replay, monitor=monitor,
                          setup=setup)
    label, keep, steps = monitor.desc, budget.stop_when, budget.steps
    row = {"label": label, "seed": seed, "lr": lr, "steps": steps, "kept_step": history.best_step,
           "reached_fit": any(keep(e) for e in history.evals) if keep is not None else None,
           "seen_acc": exact_match(model, tok, qa.train), "dev_acc": exact_match(model, tok, qa.dev),
           "heldout_acc": exact_match(model, tok, qa.test), "trainable_share": trainable_share(model)}
    if general is not None:
        after = answers_correct(model, tok, general.probes, eos=False)
        row["general_acc"] = after.float().mean().item()
        row["general_retention"] = general_retention(general.before, after)
    row["history"] = history
    return row


def summary(rows: list[dict], metric: str) -> tuple[float, float]:
    """Mean and spread (sample standard deviation) of ``metric`` over ``rows`` (one per seed)."""
    return mean_and_spread([r[metric] for r in rows])


def reachable_knowledge(pretrained, finetuned, tok, world, qa) -> float:
    """Share of the test diseases' facts the fine-tuned model answers (mean over the three
    question phrasings) among the facts the pre-trained model completes as a sentence."""
    names = [qa.test[i].disease for i in range(0, len(qa.test), 3 * 5)]
    probe_ok = answers_correct(pretrained, tok, world.fill_in_probes(names), eos=False)
    question_ok = answers_correct(finetuned, tok, qa.test).view(-1, 3).float().mean(1)     # per fact
    return question_ok[probe_ok].mean().item() if probe_ok.any() else 0.0


def _row(m, method):
    return next(r for r in m["forgetting"] if r["method"] == method)


def _retention(m, method):
    """``method``'s general retention; 0 when the pre-trained model knew no general fact (the
    retention is then NaN, recorded as None): with nothing known, nothing was kept."""
    retention = _row(m, method)["general_retention"]
    return 0.0 if retention is None and m["general_known_before"] == 0 else retention


CLAIMS = [
    Claim("08", "fine-tuning the pre-trained model answers far more held-out questions than from scratch "
                "(at least 20 points)",
          lambda m: m["heldout_acc_finetuned"] > m["heldout_acc_scratch"] + 0.2),
    Claim("08", "the ablation compares at equal fit: the once-only model's accuracy on the seen questions is "
                "within the stated tolerance of the augmented model's",
          lambda m: abs(m["seen_acc_no_augmentation"] - m["seen_acc_finetuned"]) <= m["fit_tolerance"]),
    Claim("08", "at equal fit, knowledge augmentation still answers more held-out questions than once-only "
                "pre-training (real: a paired t-test over the seeds, 95%)",
          lambda m: m["augmentation_gap_real"] and m["heldout_acc_finetuned"] > m["heldout_acc_no_augmentation"]),
    Claim("08", "replay keeps more general facts than full fine-tuning without it",
          lambda m: _retention(m, "replay") > _retention(m, "full")),
]
