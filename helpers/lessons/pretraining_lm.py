"""Lesson 07's harness: the pre-training curves (train against validation, the kept step) and the
lesson's registered claims."""
from __future__ import annotations

import matplotlib.pyplot as plt

from ..claims import Claim


def loss_curves(info: dict, title: str = "pre-training"):
    """Training-text and validation-text loss at every evaluation of pre-training, the loss on
    the validation facts, the unigram baseline, and the step whose weights were kept (lowest
    validation fact loss). Returns the figure."""
    evals = info["history"]["evals"]
    steps = [e["step"] for e in evals]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(steps, [e["train_loss"] for e in evals], marker="o", ms=3, label="training text")
    ax.plot(steps, [e["val_loss"] for e in evals], marker="o", ms=3, label="validation text (held-out phrasings)")
    if all("val_fact_loss" in e for e in evals):
        ax.plot(steps, [e["val_fact_loss"] for e in evals], marker="o", ms=3,
                label="validation facts (held-out phrasings)")
    ax.axhline(info["unigram_loss"], color="grey", ls="--", label="unigram baseline")
    ax.axvline(info["best_step"], color="black", ls=":", label=f"kept: step {info['best_step']}")
    ax.set_xlabel("step"), ax.set_ylabel("next-token loss"), ax.set_title(title)
    ax.set_yscale("log")
    ax.grid(alpha=0.3), ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig


def overfitting_summary(info: dict) -> dict:
    """The numbers the lesson's over-fitting paragraph is printed from."""
    evals = info["history"]["evals"]
    return {"best_step": info["best_step"], "steps": info["steps"],
            "val_loss_min": min(e["val_loss"] for e in evals),
            "val_loss_min_step": min(evals, key=lambda e: e["val_loss"])["step"],
            "passes_at_best": info["best_step"] * info["tokens"] / max(1, info["steps"]) / info["corpus_tokens"],
            "passes": info["tokens"] / info["corpus_tokens"],
            "gap_at_best": info["val_loss"] - info["train_loss"],
            "gap_at_val_min": min(evals, key=lambda e: e["val_loss"])["val_loss"]
            - min(evals, key=lambda e: e["val_loss"])["train_loss"],
            "gap_final": info["val_loss_final"] - info["train_loss_final"]}


CLAIMS = [
    Claim("07", "the kept checkpoint's validation loss is below the unigram baseline (the model uses context)",
          lambda m: m["val_loss"] < m["unigram_loss"]),
    Claim("07", "the loss on the held-out phrasings is lowest before the end of pre-training and higher at the "
                "end (over-fitting to the training phrasings)",
          lambda m: m["val_loss_min_step"] < m["steps"] and m["val_loss_final"] > m["val_loss_min"] + 0.02),
    Claim("07", "the gap between validation and training loss is wider at the end than where the validation "
                "loss was lowest",
          lambda m: m["gap_final"] > m["gap_at_val_min"]),
]
