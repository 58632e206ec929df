"""Lesson 13's harness: fine-tuning on your own images and questions, and honest transfer to real images.

- ``world_image_folder(root)`` writes a folder of bird photos from the world (one sub-folder per
  species), so the lesson runs offline; point the lesson at your own folder instead.
- ``search(task, source=...)``: the lesson's short search over depth, head and LoRA, every run
  with the same budget, chosen on validation; the test set is read once, for the choice.
- ``finetune_questions(path)``: lesson 08's recipe on a JSON-lines questions file.
- ``transfer_study()``: the course's pre-trained model vs from scratch vs a linear probe on a real
  image data set (scikit-learn's handwritten digits, which ship inside the package), each tuned on
  validation, over seeds.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..cache import cached_model, data_dir, read_checkpoint, save_checkpoint
from ..claims import Claim
from ..device import resolve_device
from ..fractals import FractalWorld
from ..gpt import GPT, GPTConfig
from ..lm import exact_match, finetune_qa, pretrained_lm
from ..models import image_model_config
from ..modes import sizes
from ..own_tasks import (
    finetune_task,
    questions_task,
    read_test_once,
    scratch_twin,
    write_image_folder,
    write_questions,
)
from ..runner import Adaptation, Budget, Report, Setup
from ..stats import best_by, difference, mean_and_spread
from ..tasks import ClassificationTask, species_task
from ..tokenizer import tokenizer_from_json
from ..training import Monitor

# ---------------------------------------------------------------------------------------------
# Data the lesson writes so that it runs offline (the learner points it at theirs)
# ---------------------------------------------------------------------------------------------


def default_folder() -> Path:
    return data_dir() / "your_own"


def world_image_folder(root=None, images_per_class: int | None = None, seed: int = 13) -> Path:
    """A folder ``root/<species>/<n>.png`` of bird photos from the world (written once)."""
    root = Path(root) if root is not None else default_folder() / "birds"
    n = images_per_class or sizes("your_own").images_per_class
    marker = root / f".written-{n}-{seed}"
    if not marker.exists():
        world = species_task()
        x, y = world.balanced(n, seed=seed, device="cpu")
        write_image_folder(root, x, y, world.species)
        marker.touch()
    return root


def world_questions_file(path=None) -> Path:
    """A JSON-lines questions file from the text world's medical questions, each row with its
    fact as ``group`` (three phrasings per fact), so the split keeps a fact's phrasings together.
    Written once (again if an older file lacks the groups)."""
    from ..lm import medical_qa
    path = Path(path) if path is not None else default_folder() / "questions.jsonl"
    if not path.exists() or '"group"' not in path.read_text(encoding="utf-8").split("\n", 1)[0]:
        qa = medical_qa()
        write_questions(path, qa.train + qa.dev + qa.test)
    return path


# ---------------------------------------------------------------------------------------------
# The search, on validation; the test read once
# ---------------------------------------------------------------------------------------------

def search_grid(S=None) -> list[dict]:
    """The configurations the lesson tries: each depth with each head, then LoRA at each rank."""
    S = S or sizes("your_own")
    grid = [{"frozen_stages": d, "head": h} for d in S.depths for h in S.heads]
    return grid + [{"lora_rank": r, "head": "linear"} for r in S.lora_ranks]


def _finetune(task: ClassificationTask, config: dict, *, source, seed: int, progress: bool, device,
              lr: float | None = None, evals: int | None = None):
    """``finetune_task`` with one flat configuration of ``search_grid`` or ``TRANSFER_METHODS``
    (frozen_stages, from_scratch, head, lora_rank, steps), validation only, the model kept."""
    config = dict(config)
    adaptation = Adaptation(**{k: config.pop(k) for k in ("head", "hidden", "lora_rank") if k in config})
    budget = Budget(steps=config.pop("steps", None), evals=evals)
    return finetune_task(task, source=source, lr=lr, seed=seed, adaptation=adaptation, budget=budget,
                         report=Report(keep_model=True, read_test=False),
                         setup=Setup(device=device, progress=progress), **config)


def search(task: ClassificationTask, *, source="course", grid=None, steps: int | None = None, seed: int = 0,
           progress: bool = False, log=None, device="auto"):
    """Run every configuration of ``grid`` (default ``search_grid()``) with the same budget and
    choose the best on validation; read the test set once, for the choice.

    Returns:
        (runs, best): every RunResult (validation metrics only) and the chosen one (with its
        model, and ``test_acc`` measured once).
    """
    S = sizes("your_own")
    grid = grid or search_grid(S)
    runs = []
    for config in grid:
        r = _finetune(task, {"steps": steps or S.steps, **config}, source=source, seed=seed, progress=progress,
                      device=device)
        runs.append(r)
    best = best_by(runs, "val_acc")
    read_test_once(best, task)
    for r in runs:
        if r is not best:
            r.model = None              # keep only the chosen model
    if log is not None:
        for r in runs:
            log.add(**{k: v for k, v in r.row().items() if k not in ("cached", "task", "source", "interrupted")})
    return runs, best


# ---------------------------------------------------------------------------------------------
# Your questions: lesson 08's recipe
# ---------------------------------------------------------------------------------------------

def finetune_questions(path, *, steps: int | None = None, seed: int = 0, progress: bool = False, device="auto"):
    """Fine-tune lesson 07's language model on the questions in ``path`` (JSON lines) with lesson
    08's recipe: answer-only loss, early stopping on the dev questions, test read once.

    Returns:
        dict with model, tok, qa (the splits), before/after test exact match, unknown_words (share
        of words outside the model's vocabulary: a word-level model cannot answer with words it
        has never seen), best_step.
    """
    L = sizes("lm_finetune")
    qa = questions_task(path, seed=seed)
    model, tok, _ = pretrained_lm(verbose=False, device=device)
    words = [w for q in qa.train + qa.dev + qa.test for w in (q.prompt + " " + q.answer).split()]
    unknown = sum(tok.encode(w) == [tok.unk_id] for w in words) / max(1, len(words))
    before = exact_match(model, tok, qa.test)
    history = finetune_qa(model, tok, qa, lr=L.lr, seed=seed,
                          budget=Budget(steps=steps or sizes("your_own").qa_steps,
                                        batch_size=min(L.batch_size, len(qa.train)), eval_every=L.eval_every),
                          monitor=Monitor(desc="your questions"), setup=Setup(device=device, progress=progress))
    return {"model": model, "tok": tok, "qa": qa, "test_before": before, "test_after": exact_match(model, tok, qa.test),
            "dev_after": exact_match(model, tok, qa.dev), "unknown_words": unknown, "best_step": history.best_step}


def export_lm(model, tok, path) -> Path:
    """The fine-tuned language model and its tokenizer as one safetensors file."""
    return save_checkpoint(path, model, extra={"tokenizer": tok.to_json(), "gpt_config": vars(model.config)})


def answer_question(path, question: str, max_new_tokens: int = 6) -> str:
    """Load a file ``export_lm`` wrote and answer ``question`` greedily."""
    from ..lm import answer
    state, meta = read_checkpoint(path)
    model = GPT(GPTConfig(**meta["extra"]["gpt_config"]))
    model.load_state_dict(state)
    return answer(model.eval(), tokenizer_from_json(meta["extra"]["tokenizer"]), question, max_new_tokens)


# ---------------------------------------------------------------------------------------------
# Honest transfer to real images: scikit-learn's handwritten digits
# ---------------------------------------------------------------------------------------------

DIGIT_VAL, DIGIT_TEST = 300, 600      # fixed validation and test digits (the rest is the training pool)


def digits_available() -> bool:
    try:
        import sklearn.datasets  # noqa: F401
    except ImportError:
        return False
    return True


def digits_task(labels_per_class: int, seed: int = 0, image_size: int | None = None) -> ClassificationTask:
    """scikit-learn's 1,797 real handwritten digits (8x8 grey scans, shipped inside the package),
    upsampled to the course model's resolution as 3-channel images; ``labels_per_class`` training
    digits per class drawn with ``seed``; fixed validation and test sets."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16            # (N, 1, 8, 8) in [0, 1]
    size = image_size or image_model_config().image_size
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1).repeat(1, 3, 1, 1)
    y = torch.tensor(d.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))     # one fixed split
    test, val, pool = order[:DIGIT_TEST], order[DIGIT_TEST:DIGIT_TEST + DIGIT_VAL], order[DIGIT_TEST + DIGIT_VAL:]
    g = torch.Generator().manual_seed(seed)
    train = torch.cat([pool[y[pool] == c][torch.randperm(int((y[pool] == c).sum()), generator=g)[:labels_per_class]]
                       for c in range(10)])
    return ClassificationTask(tuple(str(c) for c in range(10)), x[train], y[train], x[val], y[val], x[test], y[test],
                              name="digits (scikit-learn)")


TRANSFER_METHODS = {
    "fine-tuned": {"frozen_stages": 0},
    "linear probe": {"frozen_stages": None},       # every stage frozen (filled in with the stage count)
    "from scratch": {"from_scratch": True},
}


def transfer_study(*, source="course", methods=None, progress: bool = False, device="auto"):
    """Pre-trained vs from scratch vs linear probe on the digits, each method's learning rate tuned
    on validation (seed 0), then every method run over ``transfer_seeds`` seeds at its rate. Fine-
    tuning and from scratch also get ``scratch_long`` times the budget (tuned the same way), in case
    the shared budget stops either before its validation accuracy has stopped improving; the verdict
    compares each at the budget its validation accuracy prefers.

    ``source``: the pre-trained model (``finetune_task``'s: "course", a timm name or an ``nn.Module``
    such as ``fractal_pretrained_model()``); ``methods``: run only these (default all five).

    Returns:
        (rows, summary): one row per run; summary {method: {"lr", "steps", "test": [per seed], "val": [...]}}.
    """
    S = sizes("your_own")
    from ..surgery import stages
    n_stages = len(stages(scratch_twin(source)))       # the linear probe freezes every stage of the source
    every = dict(copy.deepcopy(TRANSFER_METHODS))
    every["linear probe"]["frozen_stages"] = n_stages
    long = S.transfer_steps * S.scratch_long
    every[f"fine-tuned, {S.scratch_long}x budget"] = {"frozen_stages": 0, "steps": long}
    every[f"from scratch, {S.scratch_long}x budget"] = {"from_scratch": True, "steps": long}
    unknown = [m for m in methods or () if m not in every]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; valid methods are {list(every)}")
    methods = {m: every[m] for m in methods or every}
    rows, summary = [], {}
    tasks = {seed: digits_task(S.transfer_labels, seed) for seed in range(S.transfer_seeds)}
    for method, config in methods.items():
        config = {"steps": S.transfer_steps, **config}
        tuning = []
        for lr in S.transfer_lrs:                       # tune the rate on validation, seed 0
            r = _finetune(tasks[0], config, source=source, lr=lr, seed=0, evals=1, progress=progress,
                          device=device)
            tuning.append(r)
        best = best_by(tuning, "val_acc")
        runs = [best] + [_finetune(tasks[s], config, source=source, lr=best.lr, seed=s, evals=1,
                                   progress=progress, device=device)
                         for s in range(1, S.transfer_seeds)]
        for s, r in enumerate(runs):
            read_test_once(r, tasks[s])
            r.model = None
            rows.append({"method": method, "seed": s, "lr": best.lr, "steps": r.steps, "val_acc": r.val_acc,
                         "test_acc": r.test_acc, "trainable_params": r.trainable_params})
        summary[method] = {"lr": best.lr, "steps": best.steps, "test": [r.test_acc for r in runs],
                           "val": [r.val_acc for r in runs]}
    return rows, summary


def transfer_metrics(summary) -> dict:
    """Flat metrics for the results file: mean test accuracy per method and the gap to scratch."""
    out = {}
    for method, s in summary.items():
        k = ("probe" if method == "linear probe" else "ft" if method.startswith("fine-tuned") else "scratch") + \
            ("_long" if "budget" in method else "")
        out[f"digits_{k}_test"], out[f"digits_{k}_test_sd"] = mean_and_spread(s["test"])
    ft, sc = (_best_budget(summary, arm) for arm in ("fine-tuned", "from scratch"))
    # paired: seed s draws the same labelled digits for every method (tasks[s] in transfer_study)
    d = difference(summary[ft]["test"], summary[sc]["test"], paired=True)
    out["digits_ft_minus_scratch_p"] = d.p
    out["digits_ft_minus_scratch"], out["digits_ft_minus_scratch_real"] = d.diff, bool(d.real)
    out["digits_ft_best_test"], out["digits_scratch_best_test"] = (mean_and_spread(summary[m]["test"])[0] for m in (ft, sc))
    out["digits_ft_best_steps"], out["digits_scratch_best_steps"] = summary[ft]["steps"], summary[sc]["steps"]
    out["digits_seeds"] = len(summary["fine-tuned"]["test"])
    return out


def _best_budget(summary, arm: str) -> str:
    """The method of ``arm`` (its plain and its long budget) with the higher mean validation accuracy."""
    return max((m for m in summary if m.startswith(arm)), key=lambda m: sum(summary[m]["val"]) / len(summary[m]["val"]))


def transfer_verdict(summary) -> str:
    """What the numbers say, as a sentence printed from them: fine-tuned against from scratch, each
    at the budget its validation accuracy chose."""
    m = transfer_metrics(summary)
    ft, sc = m["digits_ft_best_test"], m["digits_scratch_best_test"]
    budgets = f"{m['digits_ft_best_steps']} and {m['digits_scratch_best_steps']} steps, chosen on validation"
    if not m["digits_ft_minus_scratch_real"]:
        p = m["digits_ft_minus_scratch_p"]
        why = "one seed: too few to test" if p is None else f"not significant: paired t-test over the seeds, p = {p:.3f}"
        return (f"On real digits the world's pre-training and training from scratch tie: fine-tuned {ft:.1%} vs "
                f"from scratch {sc:.1%} ({budgets}; {why}).")
    better = "helps" if m["digits_ft_minus_scratch"] > 0 else "hurts"
    return (f"On real digits the world's pre-training {better}: fine-tuned {ft:.1%} vs from scratch {sc:.1%} "
            f"({budgets}; real: paired t-test over {m['digits_seeds']} seeds, p = {m['digits_ft_minus_scratch_p']:.3f}).")


# ---------------------------------------------------------------------------------------------
# A second world for pre-training: fractals (FractalDB's recipe), measured on the same digits
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FractalPretrainConfig:
    """Keys the cached fractal-pre-trained model: lesson 01's network and budget, and the world."""
    arch: dict          # lesson 01's ImageModelConfig: width, image size, steps, batch, rate
    world: dict         # the FractalWorld
    recipe: int = 1


def fractal_world(mode: str | None = None) -> FractalWorld:
    """The fractal world at lesson 01's image size (64 systems, FractalDB's parameters)."""
    return FractalWorld(image_size=image_model_config(mode).image_size)


def fractal_pretrained_model(mode: str | None = None, *, device="auto", verbose: bool = True):
    """Lesson 01's network pre-trained on ``fractal_world`` with lesson 01's budget (the same
    steps, batch, rate and weight decay), cached; ``make prepare`` builds it. Returns (model, info)
    with ``info["val_acc"]`` on held-out fractals."""
    from ..models import create_image_model, pretrain_image_model
    config, world = image_model_config(mode), fractal_world(mode)
    key = FractalPretrainConfig(arch=asdict(config), world=asdict(world))
    device = resolve_device(device)

    def build(model):
        history, val_acc = pretrain_image_model(model, config, device=device, world=world,
                                                val_images=sizes("pretrain_image", mode).val_images)
        return {"val_acc": val_acc, "history": history.as_dict(), "interrupted": history.interrupted}

    return cached_model("image_fractal_pretrained", key,
                        lambda: create_image_model(config, num_classes=world.num_classes, seed=config.seed),
                        build, device=device, verbose=verbose)


FRACTAL_METHODS = ("fine-tuned", "linear probe")


def fractal_transfer_study(*, progress: bool = False, device="auto"):
    """``transfer_study``'s fine-tuned arms (both budgets) and linear probe, started from the
    fractal-pre-trained network instead of the object world's: the same digits, seeds, rate grid
    and budgets. Returns (rows, summary) like ``transfer_study``."""
    S = sizes("your_own")
    model, _ = fractal_pretrained_model(device=device, verbose=False)
    methods = FRACTAL_METHODS + (f"fine-tuned, {S.scratch_long}x budget",)
    return transfer_study(source=model, methods=methods, progress=progress, device=device)


def fractal_metrics(world_summary, fractal_summary) -> dict:
    """Fractal pre-training against the object world's, fine-tuned at the budget validation
    prefers for each, and each linear probe; the differences with their reality (a paired t-test
    over the seeds, 95%: seed s draws the same labelled digits for both pre-trainings)."""
    out = {}
    ft_world, ft_fractal = (_best_budget(s, "fine-tuned") for s in (world_summary, fractal_summary))
    out["fractal_ft_best_test"] = mean_and_spread(fractal_summary[ft_fractal]["test"])[0]
    out["fractal_ft_best_steps"] = fractal_summary[ft_fractal]["steps"]
    out["fractal_probe_test"] = mean_and_spread(fractal_summary["linear probe"]["test"])[0]
    d = difference(fractal_summary[ft_fractal]["test"], world_summary[ft_world]["test"], paired=True)
    out["fractal_minus_world_ft"], out["fractal_minus_world_ft_real"] = d.diff, bool(d.real)
    sc = _best_budget(world_summary, "from scratch")
    d = difference(fractal_summary[ft_fractal]["test"], world_summary[sc]["test"], paired=True)
    out["fractal_minus_scratch"], out["fractal_minus_scratch_real"] = d.diff, bool(d.real)
    d = difference(fractal_summary["linear probe"]["test"], world_summary["linear probe"]["test"], paired=True)
    out["fractal_minus_world_probe"], out["fractal_minus_world_probe_real"] = d.diff, bool(d.real)
    return out


def fractal_verdict(world_summary, fractal_summary) -> str:
    """The comparison as sentences printed from the numbers."""
    m = fractal_metrics(world_summary, fractal_summary)

    def versus(key, what):
        diff, real = m[key], m[f"{key}_real"]
        if not real:
            return f"ties with {what} ({100 * diff:+.1f} points, not significant by a paired t-test at 95%)"
        return (f"{'beats' if diff > 0 else 'falls behind'} {what} by {100 * abs(diff):.1f} points "
                f"(real: a paired t-test at 95%)")

    world_probe = f"the object world's ({mean_and_spread(world_summary['linear probe']['test'])[0]:.1%})"
    return (f"Fine-tuned from the fractals ({m['fractal_ft_best_test']:.1%} at {m['fractal_ft_best_steps']} steps) "
            f"{versus('fractal_minus_world_ft', 'fine-tuning from the object world')} and "
            f"{versus('fractal_minus_scratch', 'from scratch')}. A linear probe on its frozen features "
            f"({m['fractal_probe_test']:.1%}) {versus('fractal_minus_world_probe', world_probe)}.")


# The digits' direction is NOT registered: the lesson prints it from the numbers (transfer_verdict),
# whatever it shows.
CLAIMS = [
    Claim("13", "the search's chosen configuration reaches above-chance test accuracy on the world's bird folder",
          lambda m: m["own_best_test"] > 1.5 / m["own_classes"]),
    Claim("13", "the exported model predicts the same class as the model in memory",
          lambda m: m["export_agrees"] == 1.0),
]


# ---------------------------------------------------------------------------------------------
# The transfer benchmark on several real tasks (benchmarks/transfer.py): its saved numbers, printed
# ---------------------------------------------------------------------------------------------

def transfer_results_path() -> Path:
    """Where ``benchmarks/transfer.py --out`` results are kept in the repository: docs/transfer_results.json."""
    return Path(__file__).resolve().parents[2] / "docs" / "transfer_results.json"


def load_transfer_results(path=None) -> dict | None:
    """The benchmark's saved results (``mode``, ``tasks`` with each one's role, ``rows``: one per
    task, labels, world, arm and seed), or None when the file is not there."""
    import json
    path = Path(path) if path is not None else transfer_results_path()
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def load_general_curves(path=None) -> dict | None:
    """The saved curves of lesson 01's network pre-trained on the general world, per part of its
    mix, beside the object world's (docs/general_world_curves.json: ``steps``, ``curves``
    {name: held-out accuracy at each step}, ``chance`` per part, ``about``: which run made them), or
    None when the file is not there (an installed package without the repository's docs)."""
    import json
    path = Path(path) if path is not None else transfer_results_path().with_name("general_world_curves.json")
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    bad = [name for name, values in saved["curves"].items() if len(values) != len(saved["steps"])]
    if bad:
        raise ValueError(f"{path}: curves {bad} do not have one value per step ({len(saved['steps'])} steps)")
    return saved


def _in_order(rows, fields):
    return list(dict.fromkeys(tuple(r[f] for f in fields) for r in rows))


def _test_accs(rows, task, labels, world, arm) -> list[float]:
    picked = sorted((r for r in rows if (r["task"], r["labels"], r["world"], r["arm"]) == (task, labels, world, arm)),
                    key=lambda r: r["seed"])
    return [r["test_acc"] for r in picked]


def transfer_table(rows) -> list[str]:
    """One line per (task, labels per class, world, arm): mean test accuracy +- sd over the seeds,
    the learning rate chosen on validation and the mean step early stopping kept."""
    lines = [f"{'task':<9}{'role':<8}{'labels':>7}  {'world':<9}{'arm':<14}{'test acc':>20}  {'lr':>7}  {'steps':>6}"]
    for task, labels, world, arm in _in_order(rows, ("task", "labels", "world", "arm")):
        picked = [r for r in rows if (r["task"], r["labels"], r["world"], r["arm"]) == (task, labels, world, arm)]
        mean, sd = mean_and_spread([r["test_acc"] for r in picked])
        steps = sum(r["best_step"] for r in picked) / len(picked)
        acc = f"{mean:.3f} +- {sd:.3f} (n={len(picked)})"
        lines.append(f"{task:<9}{picked[0]['role']:<8}{labels:>7}  {world:<9}{arm:<14}{acc:>20}  "
                     f"{picked[0]['lr']:>7g}  {steps:>6.0f}")
    return lines


def _versus(a, b) -> str:
    d = difference(a, b, paired=True)
    if d.p is None:
        return f"differs by {100 * d.diff:+.1f} points from (one seed: too few to test)"
    word = ("beats" if d.diff > 0 else "falls behind") if d.real else "ties with"
    return f"{word} ({100 * d.diff:+.1f} points, paired t-test p = {d.p:.3f})"


def transfer_verdicts(rows) -> list[str]:
    """The course's rule (a paired t-test over the seeds, 95%: a seed draws the same labelled images
    for every arm and world) on fine-tuned vs from scratch for each world, task and labels per
    class, and on each world's linear probe vs the fractal world's."""
    worlds = [w for (w,) in _in_order(rows, ("world",)) if w != "-"]
    lines = []
    for task, labels in _in_order(rows, ("task", "labels")):
        scratch = _test_accs(rows, task, labels, "-", "from scratch")
        for w in worlds:
            lines.append(f"{task}, {labels}/class, {w} world: fine-tuned "
                         f"{_versus(_test_accs(rows, task, labels, w, 'fine-tuned'), scratch)} from scratch")
        if "fractal" in worlds:
            fractal = _test_accs(rows, task, labels, "fractal", "linear probe")
            for w in worlds:
                if w != "fractal":
                    lines.append(f"{task}, {labels}/class, {w} world: its linear probe "
                                 f"{_versus(_test_accs(rows, task, labels, w, 'linear probe'), fractal)} "
                                 f"the fractal world's")
    return lines


def transfer_roles(results) -> list[str]:
    """Each task of saved results that has measured rows, with its role: "choose" (a world's recipe
    may be chosen on it) or "judge" (it played no part in any choice)."""
    measured = {r["task"] for r in results["rows"]}
    return [f"{name}: {t['role']} ({t['about']})" for name, t in results["tasks"].items() if name in measured]
