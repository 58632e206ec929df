"""The language-model pieces of lessons 07 and 08 (and the ones after them).

- ``world_tokenizer``, ``corpus_ids``: the text world as one long stream of token ids.
- ``TokenWindows``: batches of random windows of that stream, for ``helpers.training.train``.
- ``lm_loss``: next-token cross-entropy; positions labelled -100 are ignored, which is how
  question-answer fine-tuning puts the loss on the answer tokens only (``qa_tensors``).
- ``exact_match``: the share of questions whose greedy answer is exactly right.
- ``pretrained_lm``: lesson 07's pre-trained model from the cache (a fresh copy each call), for
  the augmented or the once-only encyclopedia.
- ``medical_qa``: the question splits; ``answer``: one greedy answer; ``generate`` (from
  ``helpers.gpt``): free text.
- ``finetune_qa``: question-answer fine-tuning with early stopping on the dev diseases.

Example:
    >>> model, tok, info = pretrained_lm()
    >>> qa = medical_qa()                      # QASplits(train, dev, test)
    >>> exact_match(model, tok, qa.test)       # 0.0: it has never seen a question
    >>> answer(model, tok, qa.test[0].prompt)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .cache import cached_model
from .device import resolve_device, seed_everything, seeded
from .gpt import GPT, GPTConfig, generate
from .modes import SIZES, LMPretrain
from .runner import Budget, Setup
from .text_world import QA, TextWorld, TextWorldConfig
from .tokenizer import WordTokenizer, tokenizer_from_json
from .training import RECIPE, Batches, KeepBest, Monitor, Optimiser, evaluating, train

IGNORE = -100      # label of positions that carry no loss (F.cross_entropy's ignore_index)


# -- data --------------------------------------------------------------------------------------

def world_tokenizer(world: TextWorld) -> WordTokenizer:
    """The word tokenizer of the whole world (both encyclopedia versions and every question)."""
    return WordTokenizer.fit(world.all_text())


def corpus_ids(articles: list[str], tok) -> torch.Tensor:
    """Every article encoded and closed by <eos>, concatenated: a 1-D LongTensor."""
    return torch.tensor([i for a in articles for i in tok.encode(a, eos=True)], dtype=torch.long)


class TokenWindows:
    """``steps`` batches of ``batch_size`` random windows of ``context + 1`` tokens, as
    (inputs, targets) = (window[:-1], window[1:]), each (batch_size, context).

    Re-iterable: each pass draws new windows from the seed and the pass number, so runs repeat.
    """

    def __init__(self, ids: torch.Tensor, context: int, batch_size: int, steps: int, seed: int = 0):
        if len(ids) <= context + 1:
            raise ValueError(f"the corpus has {len(ids)} tokens; it needs more than context + 1 = {context + 1}")
        self.ids, self.context, self.batch_size, self.steps, self.seed = ids, context, batch_size, steps, seed
        self.epoch = 0

    def __len__(self):
        return self.steps

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        offsets = torch.arange(self.context + 1)
        for _ in range(self.steps):
            starts = torch.randint(0, len(self.ids) - self.context - 1, (self.batch_size, 1), generator=g)
            window = self.ids[starts + offsets]                     # (B, T + 1)
            yield window[:, :-1], window[:, 1:]


def lm_loss(model, batch, *, across_ranks: bool = True):
    """Next-token cross-entropy, averaged over every position whose label is not ``IGNORE``.

    Under DistributedDataParallel (a process group of several ranks, the model in training
    mode), the average is over the labelled positions of ALL ranks: each rank divides its sum
    by the global count (one all-reduce of a number) times the number of ranks, so DDP's
    averaged gradient is exactly the one-process gradient of the combined batch. A per-rank
    mean would be wrong whenever the ranks' pieces hold different numbers of labelled tokens,
    as answer-only fine-tuning's do (lesson 12). ``across_ranks=False``: the per-rank mean.
    """
    x, y = batch                                                    # (B, T), (B, T)
    logits = model(x)                                               # (B, T, V)
    total = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=IGNORE, reduction="sum")
    count = (y != IGNORE).sum()
    if across_ranks and model.training and dist.is_available() and dist.is_initialized() \
            and dist.get_world_size() > 1:
        count = count.clone()
        dist.all_reduce(count, op=dist.ReduceOp.SUM)                # labelled tokens of all ranks
        return total * dist.get_world_size() / count.clamp(min=1)
    return total / count.clamp(min=1)


def lm_loss_per_rank(model, batch):
    """``lm_loss`` averaged over this rank's labelled tokens only (what DDP gets wrong)."""
    return lm_loss(model, batch, across_ranks=False)


def qa_tensors(tok, pairs: list[QA], answer_only: bool = True, eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt + answer + <eos> (if ``eos``) as (inputs, labels), right-padded to the longest.

    Labels are ``IGNORE`` on the prompt (when ``answer_only``) and on padding, so the loss and
    the exact-match check look at the answer tokens and the closing <eos> only.
    """
    rows = []
    for q in pairs:
        prompt, answer = tok.encode(q.prompt), tok.encode(" " + q.answer, eos=eos)
        ids = prompt + answer
        labels = ids[1:]
        if answer_only:
            labels = [IGNORE] * (len(prompt) - 1) + labels[len(prompt) - 1:]
        rows.append((ids[:-1], labels))
    T = max(len(r[0]) for r in rows)
    x = torch.full((len(rows), T), tok.pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, (ids, labels) in enumerate(rows):
        x[i, :len(ids)], y[i, :len(labels)] = torch.tensor(ids), torch.tensor(labels)
    return x, y


# -- evaluation --------------------------------------------------------------------------------

def answers_correct(model, tok, pairs: list[QA], batch_size: int = 512, eos: bool = True) -> torch.Tensor:
    """For each question, whether greedy decoding after the prompt yields exactly the answer
    and then <eos> (a bool tensor). With ``eos=False`` the answer need not end there (for
    fill-in-the-sentence probes, where the sentence goes on).

    Greedy decoding reproduces the answer exactly if and only if, at every answer position, the
    most likely next token given the correct tokens so far is the correct one. So one forward
    pass over prompt + answer (teacher forcing) gives the same verdict as generating token by
    token, much faster.
    """
    if not pairs:
        return torch.zeros(0, dtype=torch.bool)
    device = next(model.parameters()).device
    x, y = qa_tensors(tok, pairs, eos=eos)
    out = []
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            pred = model(xb).argmax(-1)                             # (B, T)
            ok = (pred == yb) | (yb == IGNORE)
            out.append(ok.all(dim=1).cpu())
    return torch.cat(out)


def exact_match(model, tok, pairs: list[QA], eos: bool = True) -> float:
    """Share of ``pairs`` (prompt, answer) the model answers exactly right, greedily."""
    return answers_correct(model, tok, pairs, eos=eos).float().mean().item() if pairs else float("nan")


def answer(model, tok, prompt: str, max_new_tokens: int = 6) -> str:
    """The model's greedy answer to one prompt, up to <eos>."""
    ids = torch.tensor(tok.encode(prompt))
    out = generate(model, ids, max_new_tokens, temperature=0.0, stop_id=tok.eos_id)[len(ids):].tolist()
    return tok.decode(out[:out.index(tok.eos_id)] if tok.eos_id in out else out)


def corpus_loss(model, ids: torch.Tensor, context: int, max_windows: int = 256, batch_size: int = 64) -> float:
    """Mean next-token loss over non-overlapping windows of ``ids`` (at most ``max_windows``)."""
    device = next(model.parameters()).device
    n = min(max_windows, (len(ids) - 1) // context)
    x = ids[:n * context].view(n, context)
    y = ids[1:n * context + 1].view(n, context)
    total = 0.0
    with evaluating(model):
        for i in range(0, n, batch_size):
            total += lm_loss(model, (x[i:i + batch_size].to(device), y[i:i + batch_size].to(device))).item() \
                * len(x[i:i + batch_size])
    return total / n


def unigram_loss(train_ids: torch.Tensor, val_ids: torch.Tensor, vocab_size: int) -> float:
    """The loss of a model that ignores context and predicts word frequencies (add-one smoothed):
    the bar a language model must get under to have learned anything about order."""
    counts = torch.bincount(train_ids, minlength=vocab_size).float() + 1
    logp = (counts / counts.sum()).log()
    return -logp[val_ids].mean().item()


# -- pre-training ------------------------------------------------------------------------------

@dataclass(frozen=True)
class LMConfig:
    """Everything that determines a pre-trained LM checkpoint (its hash names the cache file)."""
    context: int
    n_layer: int
    n_head: int
    d_model: int
    steps: int
    batch_size: int
    lr: float
    world: TextWorldConfig            # the fact table's size (and the world version)
    augmented: bool = True            # the encyclopedia version (the ablation's switch)
    # Which weights are kept: "last" (the last step), or "fact loss, non-test diseases": the
    # evaluation with the lowest loss on the facts of the diseases that lesson 08 fine-tunes on or
    # stops on (its train and dev diseases). The test diseases' facts never choose a checkpoint, so
    # lessons 08 and 09 can test on them (lesson 09's cloze items are those facts).
    keep: str = "last"
    seed: int = 0
    recipe: int = RECIPE

    @classmethod
    def from_sizes(cls, S: LMPretrain, *, augmented: bool) -> LMConfig:
        """The config that a mode's pre-training sizes give, on the augmented encyclopedia or the
        once-only one. Every key field names the size field that feeds it, so renaming a size field
        raises an AttributeError here instead of quietly changing the cache key."""
        # Early stopping on the held-out phrasings suits the augmented model only: the once-only model
        # never saw a second phrasing of anything, so that text would stop it before it has stored its
        # own (lesson 08's ablation gives both the same steps; it keeps its last weights).
        return cls(context=S.context, n_layer=S.n_layer, n_head=S.n_head, d_model=S.d_model, steps=S.steps,
                   batch_size=S.batch_size, lr=S.lr, world=TextWorldConfig(diseases=S.diseases, people=S.people),
                   augmented=augmented, keep=KEEP_ON_FACTS if augmented else "last")

KEEP_ON_FACTS = "fact loss, non-test diseases"


def lm_config(augmented: bool = True, mode: str | None = None) -> LMConfig:
    """Lesson 07's config of ``mode`` (default: the current mode), sizes from ``helpers.modes``."""
    return LMConfig.from_sizes(SIZES.lm_pretrain.in_mode(mode), augmented=augmented)


def gpt_config(config: LMConfig, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, context=config.context, n_layer=config.n_layer,
                     n_head=config.n_head, d_model=config.d_model)


def create_lm(config: LMConfig, tok, seed: int | None = None) -> GPT:
    """A fresh, randomly initialised GPT for ``config`` (the from-scratch baseline)."""
    with seeded(config.seed if seed is None else seed):     # the global generator is left alone
        return GPT(gpt_config(config, len(tok)))


@dataclass
class LMData:
    """The world, its tokenizer, the training stream and the general validation stream."""
    world: TextWorld
    tok: WordTokenizer
    train_ids: torch.Tensor
    val_ids: torch.Tensor      # the same facts in held-out phrasings (never in training) and order
    val_facts: list[QA]        # the non-test diseases' facts as held-out-phrasing sentences up to the fact


def lm_data(config: LMConfig) -> LMData:
    """The validation text states the world's facts in ``HELDOUT_TEMPLATES``, phrasings the
    training text never uses: its loss measures generalisation to new phrasings. ``val_facts``
    are its disease sentences cut before the fact (both held-out phrasings of each), for the
    diseases that are not in ``medical_qa().test``: the facts that choose the kept checkpoint
    are never the ones lessons 08 and 09 test on."""
    world = TextWorld(config.world)
    tok = world_tokenizer(world)
    train_ids = corpus_ids(world.encyclopedia(config.augmented), tok)
    val_ids = corpus_ids(world.encyclopedia(True, seed=config.world.seed + 1000, heldout_phrasings=True), tok)
    test_diseases = {q.disease for q in world.medical_qa().test}
    names = [d["name"] for d in world.diseases if d["name"] not in test_diseases]
    val_facts = world.heldout_cloze(names, phrasing=0) + world.heldout_cloze(names, phrasing=1)
    return LMData(world, tok, train_ids, val_ids, val_facts)


def fact_loss(model, tok, pairs: list[QA], batch_size: int = 512) -> float:
    """Mean next-token loss on the answer tokens of ``pairs`` (prompt, fact), teacher-forced:
    how sure the model is of the facts when asked in that wording."""
    device = next(model.parameters()).device
    x, y = qa_tensors(tok, pairs, eos=False)
    total, count = 0.0, 0
    with evaluating(model):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            n = (yb != IGNORE).sum().item()
            total += lm_loss(model, (xb, yb)).item() * n
            count += n
    return total / max(1, count)


def pretrain_lm(model: GPT, config: LMConfig, data: LMData, *, device="auto", progress: bool = True,
                hook=None, evaluate=None, eval_every: int | None = None, keep_best: bool = True):
    """Train ``model`` on the encyclopedia (lesson 07); returns the History.

    Every evaluation measures ``val_loss`` (every token of the held-out-phrasings text),
    ``train_loss`` (the training text, the same number of windows) and ``val_fact_loss`` (the
    facts of the non-test diseases in held-out phrasings, ``data.val_facts``); ``evaluate(model) -> dict`` adds
    metrics. With ``keep_best`` the weights of the evaluation with the lowest ``val_fact_loss``
    are restored at the end (early stopping on validation), and ``history.best_step`` says
    which step that was. Why the facts and not every token: the held-out phrasings' own words
    (new sentence shapes) stop being predictable early, while the facts, what pre-training is
    for, are still being stored; lesson 07 shows both curves.
    """
    device = resolve_device(device)
    stream = TokenWindows(data.train_ids, config.context, config.batch_size, config.steps, seed=config.seed)

    def metrics(m):
        out = {"val_loss": corpus_loss(m, data.val_ids, config.context, max_windows=64),
               "train_loss": corpus_loss(m, data.train_ids, config.context, max_windows=64),
               "val_fact_loss": fact_loss(m, data.tok, data.val_facts)}
        return {**out, **(evaluate(m) if evaluate else {})}

    keeper = KeepBest(metrics, "val_fact_loss", higher_is_better=False)
    seed_everything(config.seed)
    history = train(model, lm_loss, stream, steps=config.steps,
                    optimiser=Optimiser(lr=config.lr, weight_decay=0.1, warmup=0.05, lr_floor=0.1), device=device,
                    monitor=Monitor(evaluate=keeper, eval_every=eval_every or max(1, config.steps // 8),
                                    desc="pre-training", hook=hook),
                    progress=progress)
    return keeper.restore(model, history) if keep_best else history


def pretrained_lm(augmented: bool = True, config: LMConfig | None = None, *, device="auto",
                  rebuild: bool = False, verbose: bool = True, hook=None, evaluate=None,
                  progress_samples: bool = False):
    """A fresh copy of lesson 07's pre-trained LM: from the cache, or trained now.

    Args:
        augmented: which encyclopedia it was pre-trained on (lesson 08's ablation uses False).
        hook, evaluate: passed to ``train`` when the model is trained now (a live curve, metrics).
        progress_samples: print a generated sample at every evaluation while training.
    Returns:
        (model, tok, info): the model on ``device`` (train mode), its tokenizer (stored with the
        checkpoint), and what was stored: ``val_loss``, ``unigram_loss``, ``tokens``,
        ``tokens_per_s``, ``seconds``, the training ``history``, ``samples`` generated during
        training (a list of {"step", "text"}). The weights are those of the evaluation with the
        lowest validation fact loss (``best_step``; ``val_loss`` and ``val_fact_loss`` are theirs,
        ``val_loss_final`` and ``val_fact_loss_final`` the last step's): training goes on to ``config.steps`` so the lesson can show the over-fitting
        after the best step, but the checkpoint kept is the best one.
    """
    config = config or lm_config(augmented)
    device = resolve_device(device)
    data = lm_data(config)

    # 16 evaluations (at most one per 5 steps, so a short smoke run does not spend its time on them)
    samples, every, calls = [], max(1, config.steps // min(16, max(1, config.steps // 5))), [0]
    prompt = data.world.diseases[0]["name"]

    def evaluate_and_sample(m):
        # a sample at every other evaluation, so lesson 07 can show how the text improves
        calls[0] += 1
        step = min(config.steps, calls[0] * every)
        if calls[0] % 2 == 0 or step == config.steps:
            ids = generate(m, torch.tensor(data.tok.encode(prompt)), 24, temperature=0.8, top_k=20, seed=0)
            samples.append({"step": step, "text": data.tok.decode(ids)})
            if progress_samples:
                print(f"step {step:>5}: {samples[-1]['text']}")
        return evaluate(m) if evaluate else {}

    def build(model):
        # config.keep says which weights are kept (lm_config: the fact loss for the augmented
        # model, the last step for the once-only one)
        history = pretrain_lm(model, config, data, device=device, hook=hook, evaluate=evaluate_and_sample,
                              eval_every=every, keep_best=config.keep != "last")
        tokens = history.samples[-1] * config.context if history.samples else 0
        best = next(e for e in history.evals if e["step"] == history.best_step)
        return {"val_loss": best["val_loss"], "train_loss": best["train_loss"], "best_step": history.best_step,
                "val_fact_loss": best["val_fact_loss"], "val_fact_loss_final": history.last_eval("val_fact_loss"),
                "val_loss_final": history.last_eval("val_loss"), "train_loss_final": history.last_eval("train_loss"),
                "steps": history.steps_done,
                "unigram_loss": unigram_loss(data.train_ids, data.val_ids, len(data.tok)),
                "tokens": tokens, "corpus_tokens": len(data.train_ids),
                "tokens_per_s": tokens / history.seconds[-1] if history.seconds else float("nan"),
                "seconds": history.train_s,
                "interrupted": history.interrupted, "history": history.as_dict(),
                "samples": samples, "tokenizer": data.tok.to_json(), "config": asdict(config)}

    name = "lm_pretrained" if config.augmented else "lm_pretrained_once_only"
    model, info = cached_model(name, config, lambda: create_lm(config, data.tok), build,
                               rebuild=rebuild, device=device, verbose=verbose)
    tok = tokenizer_from_json(info["tokenizer"])
    return model.train(), tok, info


def medical_qa(config: LMConfig | None = None):
    """The medical question splits (train / dev / test) of the world the LM was pre-trained on."""
    return TextWorld((config or lm_config()).world).medical_qa()


def pretrained_lm_once_only(**kwargs):
    """Lesson 08's ablation model: pre-trained on the once-only encyclopedia (same budget)."""
    return pretrained_lm(augmented=False, **kwargs)


# -- fine-tuning -------------------------------------------------------------------------------

class WithReplay:
    """Each batch of ``batches`` (x, y) joined by a batch of ``windows`` (general text):
    (x, y, x_general, y_general), for ``replay_loss``."""

    def __init__(self, batches, windows):
        self.batches, self.windows = batches, windows

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        general = iter(self.windows)
        for batch in self.batches:
            try:
                xg, yg = next(general)
            except StopIteration:
                general = iter(self.windows)
                xg, yg = next(general)
            yield (*batch, xg, yg)


def replay_loss(model, batch, weight: float = 1.0):
    """Answer loss on the questions plus ``weight`` times the next-token loss on general text."""
    x, y, xg, yg = batch
    return lm_loss(model, (x, y)) + weight * lm_loss(model, (xg, yg))


@dataclass(frozen=True)
class Replay:
    """General text replayed beside the questions while fine-tuning (``finetune_qa``), the
    classic cure for forgetting.

    ids: a token stream of general text (e.g. the pre-training corpus, a 1-D tensor of token ids).
    batch: random windows of it in every step's batch (sequences).
    context: tokens per window (cut to the model's context).
    """
    ids: torch.Tensor
    batch: int = 8
    context: int = 64

    def __post_init__(self):
        if not torch.is_tensor(self.ids) or self.ids.ndim != 1:
            raise TypeError(f"Replay.ids must be a 1-D tensor of token ids (a text stream); got "
                            f"{type(self.ids).__name__}{tuple(self.ids.shape) if torch.is_tensor(self.ids) else ''}")
        for name in ("batch", "context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Replay.{name} must be a whole number of at least 1 "
                                 f"({'windows per step' if name == 'batch' else 'tokens per window'}); got {value!r}")


def finetune_qa(model: GPT, tok, qa, *, lr: float, budget: Budget, seed: int = 0, replay: Replay | None = None,
                monitor: Monitor = Monitor(desc="fine-tuning"), setup: Setup = Setup()):
    """Fine-tune ``model`` in place on ``qa.train`` with the loss on answer tokens only.

    Every ``budget.eval_every`` steps it measures exact match on the fine-tuned questions
    (``seen_acc``), the dev diseases (``dev_acc``) and the test diseases (``heldout_acc``).
    With early stopping (``budget.keep_best``, on unless False) the weights of the best
    ``dev_acc`` are restored at the end: the dev diseases are held out like the test ones, so they
    tell when more fine-tuning starts to cost held-out answers, without looking at the test set.

    Args:
        lr: peak learning rate (AdamW, no weight decay, 5% warmup).
        budget: ``Budget``: steps (required), batch_size (default 32), eval_every (or evals;
            default every 10 steps), keep_best (None or True: early stopping on ``dev_acc``),
            stop_when (``stop_when(metrics) -> bool``: restore instead the weights of the FIRST
            evaluation for which it is true, with or without early stopping; if it never holds,
            the best dev step is restored as usual).
        seed: the batch order (and the replayed windows').
        replay: ``Replay`` (general text replayed in every step's batch; None: none).
        monitor: ``Monitor``: evaluate (extra metrics at every evaluation), desc, hook, log_every.
        setup: ``Setup``: device, progress (the model is given: no mode or source).
    Returns:
        History; its ``evals`` list the curves, and ``history.best_step`` the restored step.
    """
    if not isinstance(budget, Budget) or budget.steps is None:
        raise ValueError(f"finetune_qa needs a Budget with steps, e.g. Budget(steps=200); got {budget!r:.80}")
    if budget.test_curve or budget.augment:
        raise ValueError("finetune_qa measures the test questions at every evaluation and does not augment: "
                         "Budget.test_curve and augment are the image runners'")
    if monitor.eval_every is not None:
        raise ValueError("give finetune_qa's evaluation interval as Budget.eval_every, not Monitor.eval_every")
    if setup.source is not None:
        raise ValueError(f"finetune_qa fine-tunes the model it is given: Setup.source must be None; got {setup.source!r}")
    if replay is not None and not isinstance(replay, Replay):
        raise TypeError(f"replay must be None or a Replay(ids, batch=..., context=...); got {replay!r:.80}")
    steps, batch_size = budget.steps, budget.batch_size or 32
    eval_every = budget.eval_every or (max(1, steps // budget.evals) if budget.evals else 10)
    early_stopping, keep, extra_eval = budget.keep_best is not False, budget.stop_when, monitor.evaluate
    device, progress = resolve_device(setup.device), setup.progress
    x, y = qa_tensors(tok, qa.train)
    seen_probe = qa.train[::3]

    def metrics(m):
        out = {"seen_acc": exact_match(m, tok, seen_probe), "dev_acc": exact_match(m, tok, qa.dev),
               "heldout_acc": exact_match(m, tok, qa.test)}
        return {**out, **(extra_eval(m) if extra_eval else {})}

    keeper = KeepBest(metrics, "dev_acc", first_where=keep)
    batches = Batches(x.to(device), y.to(device), batch_size=batch_size, seed=seed, drop_last=True)
    loss_fn = lm_loss
    if replay is not None:
        context = min(replay.context, getattr(getattr(model, "config", None), "context", replay.context))
        windows = TokenWindows(replay.ids, context, replay.batch, steps, seed=seed + 1)
        batches, loss_fn = WithReplay(batches, windows), replay_loss
    seed_everything(seed)
    model.to(device)
    with evaluating(model):
        first = keeper(model)             # step 0: the pre-trained model before any fine-tuning
    history = train(model, loss_fn, batches, steps=steps, optimiser=Optimiser(lr=lr, weight_decay=0.0, warmup=0.05),
                    device=device, monitor=replace(monitor, evaluate=keeper, eval_every=eval_every),
                    progress=progress)
    history.evals.insert(0, {"step": 0, **{k: float(v) for k, v in first.items()}})
    return keeper.restore(model, history) if early_stopping or keeper.reached else history
