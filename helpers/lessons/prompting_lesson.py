"""Lesson 09's harness: every method scored on the same held-out items, each with its own settings
chosen on validation items, and the lesson's registered claims.

The items are the facts of the test diseases (diseases no fine-tuning question mentions), one per
(disease, fact), asked in wordings NO method trained on: a question phrasing fine-tuning never
used (``TextWorld.heldout_questions``) or, for the cloze method, a sentence phrasing the corpus
never used (``TextWorld.heldout_cloze``). The validation items are the same for the dev diseases.
Every method is scored the same way: greedy decoding reproduces the answer's words
(``exact_match(..., eos=False)``).
"""
from __future__ import annotations

import math

from ..claims import Claim
from ..lm import exact_match, finetune_qa
from ..prompting import few_shot, train_soft_prompt
from ..runner import Budget, Setup
from ..stats import difference_of_proportions
from ..text_world import QASplits
from ..training import KeepBest, Monitor


def score(model, tok, items) -> float:
    """Exact match without requiring <eos>: a prompted model was never taught to stop."""
    return exact_match(model, tok, items, eos=False)


def binomial_se(acc: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` independent items."""
    return math.sqrt(max(acc * (1 - acc), 1e-12) / n)


def choose_shots(model, tok, examples, val_items, shots_grid, context: int) -> tuple[int, list[dict]]:
    """The number of solved examples with the best validation accuracy (ties: the fewest)."""
    rows = [{"shots": k, "val_acc": score(model, tok, few_shot(val_items, examples, k=k, tok=tok, context=context))}
            for k in shots_grid]
    return max(rows, key=lambda r: (r["val_acc"], -r["shots"]))["shots"], rows


def choose_cloze(model, tok, world, val_diseases, phrasings=(0, 1)) -> tuple[int, list[dict]]:
    """The held-out sentence phrasing with the best validation accuracy."""
    rows = [{"phrasing": p, "val_acc": score(model, tok, world.heldout_cloze(val_diseases, phrasing=p))}
            for p in phrasings]
    return max(rows, key=lambda r: (r["val_acc"], -r["phrasing"]))["phrasing"], rows


def tune_soft_prompt(model, tok, train_pairs, val_items, *, token_grid, lr_grid, steps: int, eval_every: int,
                     batch_size: int, progress: bool = True):
    """Soft-prompt tuning for every (prompt length, rate) of the grid, each run early stopped on
    the validation items (the vectors of its best evaluation are kept). Returns the best
    SoftPrompt, its settings and a table of every run."""
    best, rows = None, []
    for n_tokens in token_grid:
        for lr in lr_grid:
            keeper = KeepBest(lambda m: {"val_acc": score(m, tok, val_items)}, "val_acc")
            soft, history = train_soft_prompt(model, tok, train_pairs, n_tokens=n_tokens, lr=lr,
                                              budget=Budget(steps=steps, batch_size=batch_size, eval_every=eval_every),
                                              monitor=Monitor(evaluate=keeper), setup=Setup(progress=progress))
            keeper.restore(soft, history)
            row = {"soft_tokens": n_tokens, "lr": lr, "best_step": history.best_step, "val_acc": keeper.best_value}
            rows.append(row)
            if best is None or row["val_acc"] > best[1]["val_acc"]:
                best = (soft, row)
    return best[0], best[1], rows


def tune_finetuning(make_model, tok, qa, val_items, test_items, *, lr_grid, steps: int, eval_every: int,
                    batch_size: int, progress: bool = True):
    """Full fine-tuning on the seen diseases' questions at every rate of the grid, each early
    stopped on the validation items. Returns the best model, its settings and the table."""
    splits = QASplits(train=qa.train, dev=val_items, test=test_items)
    best, rows = None, []
    for lr in lr_grid:
        model = make_model()
        history = finetune_qa(model, tok, splits, lr=lr,
                              budget=Budget(steps=steps, batch_size=batch_size, eval_every=eval_every),
                              monitor=Monitor(desc=f"fine-tuning, lr {lr:g}"), setup=Setup(progress=progress))
        row = {"lr": lr, "best_step": history.best_step, "val_acc": score(model, tok, val_items)}
        rows.append(row)
        if best is None or row["val_acc"] > best[1]["val_acc"]:
            best = (model, row)
    return best[0], best[1], rows


def _beats(m, a, b):
    """``a`` answers more of the same items than ``b``, and the difference is real. One run of each
    method on ``items`` items: the evidence is the items, so a two-proportion z-test (95%,
    two-sided), not a t-test over seeds."""
    d = difference_of_proportions(m[a], m[b], int(m["items"]))
    return d.real and d.diff > 0


CLAIMS = [
    Claim("09", "fine-tuning answers more held-out items than few-shot prompting (real: a two-proportion z-test on the items, 95%)",
          lambda m: _beats(m, "finetuned_acc", "few_shot_acc")),
    Claim("09", "fine-tuning answers more held-out items than a tuned soft prompt (real: a two-proportion z-test on the items, 95%)",
          lambda m: _beats(m, "finetuned_acc", "soft_prompt_acc")),
    Claim("09", "a cloze prompt in an unseen phrasing beats the zero-shot question (real: a two-proportion z-test on the items, 95%)",
          lambda m: _beats(m, "cloze_prompt_acc", "zero_shot_acc")),
]
