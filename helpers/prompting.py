"""Prompt-based learning with the course's language model (lesson 09).

Four ways to get answers out of lesson 07's pre-trained model, none or few of them changing it:

- **zero-shot**: the question as it is (``qa.test``'s prompts).
- **few-shot**: a few solved questions in the context before the question (``few_shot``); no
  weight changes, the examples are the only "training".
- **cloze**: a fill-in-the-sentence prompt in the corpus's own wording ("kel vora attacks the"),
  from ``TextWorld.fill_in_probes``, as in pattern-exploiting training.
- **soft prompt**: a few trainable vectors placed before the question's token embeddings
  (``SoftPrompt``); the model stays frozen, only the vectors learn.

Every prompt style is scored with ``helpers.lm.answers_correct`` (greedy decoding reproduces the
answer), so the numbers compare with lesson 08's fine-tuning.

Example:
    >>> model, tok, _ = pretrained_lm()
    >>> qa = medical_qa()
    >>> shots = few_shot(qa.test, qa.train, k=3)
    >>> exact_match(model, tok, shots, eos=False)
"""
from __future__ import annotations

import random
from dataclasses import replace

import torch
import torch.nn as nn

from .device import resolve_device, seed_everything
from .lm import lm_loss, qa_tensors
from .runner import Budget, Setup
from .text_world import QA
from .training import Batches, Monitor, Optimiser, train


def few_shot(pairs: list[QA], examples: list[QA], k: int = 3, seed: int = 0, tok=None,
             context: int | None = None) -> list[QA]:
    """Each question of ``pairs`` with ``k`` solved ``examples`` before it in the context.

    The examples are drawn at random (per question, from ``seed``) among questions about the
    same attribute from other diseases, and each ends with <eos>, as fine-tuning's answers do:
    "question : ... answer : liver <eos> question : ... answer : ...". With ``tok`` and
    ``context``, examples are dropped until prompt and answer fit the model's context.
    """
    rng = random.Random(seed)
    by_attribute: dict[str, list[QA]] = {}
    for e in examples:
        by_attribute.setdefault(e.attribute, []).append(e)
    out = []
    for q in pairs:
        pool = [e for e in by_attribute.get(q.attribute, examples) if e.disease != q.disease]
        shots = rng.sample(pool, min(k, len(pool)))
        while True:
            text = " ".join([f"{e.prompt} {e.answer} <eos>" for e in shots] + [q.prompt])
            if not shots or tok is None or len(tok.encode(f"{text} {q.answer}")) + 1 <= context:
                break
            shots = shots[1:]
        out.append(QA(text, q.answer, q.disease, q.attribute))
    return out


def context_tokens(tok, pairs: list[QA]) -> float:
    """Mean number of prompt tokens the model reads before answering."""
    return sum(len(tok.encode(q.prompt)) for q in pairs) / max(1, len(pairs))


class SoftPrompt(nn.Module):
    """A frozen GPT with ``n_tokens`` trainable vectors before every input.

    Forward maps ids (B, T) to logits (B, T, V) for the ids' positions only, exactly like the
    GPT itself, so ``lm_loss``, ``qa_tensors`` and ``answers_correct`` work unchanged.
    The vectors start as the embeddings of random vocabulary words (a better start than noise).
    """

    def __init__(self, gpt: nn.Module, n_tokens: int = 8, seed: int = 0):
        super().__init__()
        self.gpt = gpt.requires_grad_(False)
        g = torch.Generator().manual_seed(seed)
        words = torch.randint(3, gpt.tok_emb.num_embeddings, (n_tokens,), generator=g)
        self.prompt = nn.Parameter(gpt.tok_emb.weight[words.to(gpt.tok_emb.weight.device)].detach().clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        g, n = self.gpt, len(self.prompt)
        B, T = ids.shape
        if n + T > g.config.context:
            raise ValueError(f"{n} prompt vectors + {T} tokens exceed the context ({g.config.context})")
        x = torch.cat([self.prompt.expand(B, n, -1), g.tok_emb(ids)], dim=1)     # (B, n + T, C)
        x = x + g.pos_emb(torch.arange(n + T, device=ids.device))
        for block in g.blocks:
            x = block(x)
        logits = nn.functional.linear(g.ln_f(x), g.tok_emb.weight)              # (B, n + T, V)
        return logits[:, n:]                                                       # (B, T, V)


def train_soft_prompt(model: nn.Module, tok, train_pairs: list[QA], *, n_tokens: int = 8, lr: float = 3e-2,
                      seed: int = 0, budget: Budget = Budget(), monitor: Monitor = Monitor(),
                      setup: Setup = Setup()):
    """Soft-prompt tuning: train only the prompt vectors on ``train_pairs`` (loss on the answers).

    Args:
        n_tokens: prompt vectors put before every question.
        lr: peak learning rate (AdamW, no weight decay).
        seed: the vectors' initialisation and the batch order.
        budget: ``Budget``: steps (default 200), batch_size (default 32), eval_every (or evals).
        monitor: ``Monitor``: evaluate (e.g. a ``KeepBest``), hook, log_every; desc names the
            vectors unless given.
        setup: ``Setup``: device, progress.

    Returns (SoftPrompt, History). ``model`` itself is frozen and not changed.
    """
    if budget.keep_best or budget.test_curve or budget.augment or budget.stop_when is not None:
        raise ValueError("train_soft_prompt trains to the last step (pass a KeepBest as Monitor.evaluate to keep the "
                         "best vectors): Budget.keep_best, test_curve, augment and stop_when are the runners'")
    if monitor.eval_every is not None:
        raise ValueError("give train_soft_prompt's evaluation interval as Budget.eval_every, not Monitor.eval_every")
    steps, batch_size = budget.steps or 200, budget.batch_size or 32
    eval_every = budget.eval_every or (max(1, steps // budget.evals) if budget.evals else None)
    desc = monitor.desc if monitor.desc != Monitor().desc else f"soft prompt ({n_tokens} vectors)"
    device, progress = resolve_device(setup.device), setup.progress
    seed_everything(seed)
    soft = SoftPrompt(model.to(device), n_tokens, seed=seed).to(device)
    x, y = qa_tensors(tok, train_pairs)
    batches = Batches(x.to(device), y.to(device), batch_size=min(batch_size, len(x)), seed=seed, drop_last=True)
    history = train(soft, lm_loss, batches, steps=steps, optimiser=Optimiser(lr=lr, weight_decay=0.0), device=device,
                    monitor=replace(monitor, eval_every=eval_every, desc=desc), progress=progress)
    return soft, history
