"""Your own data as a task, any model as the starting point, and the fine-tuned model as a file.

- ``split_task(x, y, classes, seed=...)``: tensors split into train / validation / test, each
  class split in the same proportions (a ``ClassificationTask``).
- ``image_folder_task(root, ...)``: a folder with one sub-folder per class (``root/robin/*.jpg``);
  or with ``train/``, ``val/`` and ``test/`` folders that each hold the class sub-folders, used
  as they are. The image size follows the model (``image_size_for(source)``).
- ``questions_task(path)``: a JSON-lines file of ``{"question": ..., "answer": ...}`` rows, split
  into train / dev / test questions for ``helpers.lm.finetune_qa`` (lesson 08's recipe), by
  group: the phrasings of one fact (same ``group`` field, or else same answer and topic) never
  sit on both sides.
- ``model_from_source(source, num_classes)``: where the weights come from: ``"course"`` (lesson
  01's checkpoint, offline), a timm model name (timm's published weights, online the first time;
  ``PretrainedUnavailable`` with what to do when offline), or any ``nn.Module`` (copied).
  ``scratch_twin(source)`` is the same architecture and width with random weights, the fair
  from-scratch baseline for that source.
- ``finetune_task(task, source=..., frozen_stages=..., adaptation=Adaptation(head=..., lora_rank=...))``:
  one experiment on any task from any source; returns a ``helpers.runner.RunResult``.
- ``export_classifier(model, path, ...)`` writes the fine-tuned model as one safetensors file
  (LoRA merged in), with what is needed to rebuild it; ``load_classifier(path)`` and
  ``predict(path, image_file)`` read it back and name the class of an image file.

Example:
    >>> task = image_folder_task("my_photos", image_size=image_size_for("course"), seed=0)
    >>> r = finetune_task(task, source="course", frozen_stages=2, report=Report(keep_model=True))
    >>> export_classifier(r.model, "my_model.safetensors", classes=task.classes, recipe=r.settings)
    >>> predict("my_model.safetensors", "my_photos/robin/001.jpg")
    'robin'
"""
from __future__ import annotations

import copy
import json
import numbers
import time
from dataclasses import asdict
from pathlib import Path

import timm
import torch
import torch.nn as nn

from .augment import flip_and_shift
from .cache import read_checkpoint, save_checkpoint
from .checks import check_seed, keywords_checked
from .device import resolve_device, seeded
from .lora import add_lora, lora_layers, merge_lora, train_only_lora
from .losses import cross_entropy_loss
from .models import (
    ImageModelConfig,
    create_image_model,
    image_model_config,
    pretrained_image_model,
    pretrained_image_size,
    resolve_source,
    scratch_image_model,
)
from .modes import sizes
from .own_data import DataError, PretrainedUnavailable, load_image, load_image_folder
from .runner import Adaptation, Budget, Objective, Recipe, Report, RunResult, Setup, resolve_setup, run
from .surgery import (
    BN_DEFAULT,
    add_block,
    check_depth,
    freeze_stages,
    heads,
    replace_head,
    stages,
    unfreeze,
)
from .tasks import ClassificationTask
from .text_world import QA, QASplits
from .training import accuracy

SPLITS = ("train", "val", "test")

# ---------------------------------------------------------------------------------------------
# Tasks from your data
# ---------------------------------------------------------------------------------------------


def _check_fraction(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ValueError(f"{what} must be a fraction between 0 and 1 (e.g. 0.2), got {value!r}")


def split_indices(y: torch.Tensor, val_frac: float = 0.2, test_frac: float = 0.2, seed: int = 0):
    """Stratified train / val / test indices: every class is shuffled (seeded) and cut in the same
    proportions, with at least one image of each class in every split.

    Raises:
        DataError: a class with fewer than 3 images (it cannot be in all three splits).
    """
    _check_fraction(val_frac, "val_frac")
    _check_fraction(test_frac, "test_frac")
    if val_frac + test_frac >= 1:
        raise ValueError(f"val_frac + test_frac must leave images to train on; got {val_frac} + {test_frac}")
    gen = torch.Generator().manual_seed(seed)
    parts = {s: [] for s in SPLITS}
    for c in sorted(set(y.tolist())):
        idx = (y == c).nonzero().flatten()
        if len(idx) < 3:
            raise DataError(f"class {c} has {len(idx)} image(s); each class needs at least 3 (one each for "
                            f"training, validation and test), better 10 or more")
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = max(1, round(val_frac * len(idx)))
        n_test = max(1, round(test_frac * len(idx)))
        n_val, n_test = min(n_val, len(idx) - 2), min(n_test, len(idx) - 1 - min(n_val, len(idx) - 2))
        parts["test"].append(idx[:n_test])
        parts["val"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {s: torch.cat(v).sort().values for s, v in parts.items()}


def split_task(x: torch.Tensor, y: torch.Tensor, classes, *, val_frac: float = 0.2, test_frac: float = 0.2,
               seed: int = 0, name: str = "your task") -> ClassificationTask:
    """Images ``x`` (N, 3, S, S) in [0, 1] and labels ``y`` (N,) as a ``ClassificationTask``, split
    per class with ``seed`` (the same seed gives the same split)."""
    y = torch.as_tensor(y, dtype=torch.int64)
    idx = split_indices(y, val_frac, test_frac, seed)
    return ClassificationTask(tuple(classes), *(t for s in SPLITS for t in (x[idx[s]], y[idx[s]])), name=name)


def image_folder_task(root, image_size: int | None = None, *, val_frac: float = 0.2, test_frac: float = 0.2,
                      seed: int = 0, name: str | None = None) -> ClassificationTask:
    """A folder of your images as a task.

    ``root/<class>/<image>``: split into train / val / test per class with ``seed``.
    ``root/train/<class>/...``, ``root/val/...``, ``root/test/...``: the splits as given (the
    same classes in each). ``image_size`` defaults to the course model's resolution; pass
    ``image_size_for(source)`` for another model.
    """
    root = Path(root)
    image_size = image_size or pretrained_image_size()
    name = name or root.name
    if all((root / s).is_dir() for s in SPLITS):
        x, y, classes = load_image_folder(root / "train", image_size)
        tensors = [x, y]
        for s in ("val", "test"):
            xs, ys, _ = load_image_folder(root / s, image_size, classes=classes)
            tensors += [xs, ys]
        return ClassificationTask(classes, *tensors, name=name)
    x, y, classes = load_image_folder(root, image_size)
    return split_task(x, y, classes, val_frac=val_frac, test_frac=test_frac, seed=seed, name=name)


def question_group(row: dict) -> str:
    """The group a questions-file row belongs to: its ``group`` field, or else its answer and its
    ``topic`` (if any). Rows of one group are phrasings of one fact; the split keeps them together.
    Grouping by answer alone, when a file has no ``group`` and no ``topic``, is cautious: two facts
    with the same answer are kept together too (a smaller, but never leaky, test set)."""
    if row.get("group") not in (None, ""):
        return f"group: {row['group']}"
    return f"answer: {row['answer'].strip().lower()} | topic: {str(row.get('topic', '')).strip().lower()}"


def questions_task(path, *, dev_frac: float = 0.2, test_frac: float = 0.2, seed: int = 0) -> QASplits:
    """A JSON-lines file of ``{"question": "...", "answer": "..."}`` rows as train / dev / test
    questions (``helpers.text_world.QASplits``) for ``helpers.lm.finetune_qa``.

    The split is by **group** (``question_group``): a row may carry ``"group"`` (any text naming
    the fact it asks about) and ``"topic"``; rows with the same group, or without one the same
    answer and topic, are phrasings of one fact and land on the same side. A split by row would
    put one phrasing of a fact in training and another in the test, and measure recall of a
    trained fact, not what the test is for. Groups are shuffled with ``seed`` and dealt to test,
    then dev, until each holds about its fraction of the rows.

    Raises:
        DataError naming the file and line: not JSON, a missing or empty field, a question twice;
        or naming the file: fewer than 3 rows or 3 groups.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (expected JSON lines such as "
                        f'{{"question": "what treats kel vora ?", "answer": "rest"}})')
    rows, groups, first = [], [], {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {line_no}: not JSON ({err.msg})") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip()
                                                for k in ("question", "answer")):
            raise DataError(f"{path}, line {line_no}: expected an object with non-empty text fields "
                            f"'question' and 'answer', found {line.strip()[:80]!r}")
        q = row["question"].strip()
        if q in first:
            raise DataError(f"{path}, line {line_no}: the question {q!r} appears twice (first on line {first[q]})")
        first[q] = line_no
        rows.append(QA(q, row["answer"].strip(), row.get("topic", ""), row.get("kind", "")))
        groups.append(question_group(row))
    if len(rows) < 3:
        raise DataError(f"{path}: {len(rows)} question(s); at least 3 are needed (train, dev and test)")
    _check_fraction(dev_frac, "dev_frac")
    _check_fraction(test_frac, "test_frac")
    names = list(dict.fromkeys(groups))                   # in file order, then shuffled by the seed
    if len(names) < 3:
        raise DataError(f"{path}: {len(names)} group(s) of questions (rows with the same 'group', or else the "
                        f"same answer and topic); at least 3 are needed, one each for train, dev and test")
    order = [names[i] for i in torch.randperm(len(names), generator=torch.Generator().manual_seed(seed)).tolist()]
    n_test, n_dev = max(1, round(test_frac * len(rows))), max(1, round(dev_frac * len(rows)))
    size = {g: groups.count(g) for g in names}
    side, taken = {}, {"test": 0, "dev": 0}
    for k, g in enumerate(order):
        left = len(order) - k                             # groups not dealt yet, this one included
        if taken["test"] < n_test and left > 2:           # leave a group each for dev and train
            split = "test"
        elif taken["dev"] < n_dev and left > 1:
            split = "dev"
        else:
            split = "train"
        side[g] = split
        if split != "train":
            taken[split] += size[g]
    by_split = {"train": [], "dev": [], "test": []}
    for g in order:                                       # shuffled groups, each group's rows in file order
        by_split[side[g]] += [r for r, rg in zip(rows, groups) if rg == g]
    return QASplits(**by_split)


def write_questions(path, pairs) -> Path:
    """Write questions (``QA`` objects or (question, answer) pairs) as a JSON-lines file. A ``QA``
    with a topic (``QA.disease``) and a kind (``QA.attribute``) also writes them, and the fact
    they name as its ``group`` (``"<topic>: <kind>"``), so ``questions_task`` keeps the
    phrasings of one fact on one side of the split."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for q in pairs:
            question, ans = (q.prompt, q.answer) if isinstance(q, QA) else q
            row = {"question": question, "answer": ans}
            if isinstance(q, QA) and q.disease and q.attribute:
                row |= {"topic": q.disease, "kind": q.attribute, "group": f"{q.disease}: {q.attribute}"}
            f.write(json.dumps(row) + "\n")
    return path


def write_image_folder(root, x: torch.Tensor, y: torch.Tensor, classes) -> Path:
    """Write images (N, 3, S, S) in [0, 1] as PNG files ``root/<class>/<n>.png`` (the format of
    ``image_folder_task``)."""
    from PIL import Image
    root = Path(root)
    for i, (img, label) in enumerate(zip(x, y.tolist())):
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        arr = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        Image.fromarray(arr).save(folder / f"{i:05d}.png")
    return root


# ---------------------------------------------------------------------------------------------
# Where the weights come from
# ---------------------------------------------------------------------------------------------

def _describe_source(source) -> str:
    return source if isinstance(source, str) else type(source).__name__


def image_size_for(source) -> int:
    """The square input side the model was pre-trained at: the course model's resolution, timm's
    pretrained configuration (``input_size``) for a timm name, or the module's own
    ``pretrained_cfg`` (else the course resolution). ``source``: ``resolve_source``'s vocabulary."""
    return pretrained_image_size(source=resolve_source(source))


def model_from_source(source="course", num_classes: int | None = None, *, device="auto", verbose: bool = False):
    """A FRESH pre-trained model from ``source`` (its own head still on; ``finetune_task`` replaces it).

    ``"course"``: lesson 01's checkpoint (cached). A timm name (or ``"timm"``, the course
    architecture's): timm's published weights (``PretrainedUnavailable`` with what to do when the
    machine is offline). An ``nn.Module``: a deep copy, so the original is never changed. The
    vocabulary is ``helpers.models.resolve_source``'s, the same for every runner.
    """
    source = resolve_source(source)
    try:
        model, _ = pretrained_image_model(device=resolve_device(device), verbose=verbose, source=source)
    except PretrainedUnavailable as err:
        raise PretrainedUnavailable(f"{err} Or pass source='course' (lesson 01's model, offline) or any "
                                    f"nn.Module you built.") from None
    return model


def scratch_twin(source="course", num_classes: int | None = None, *, seed: int = 0, device="auto") -> nn.Module:
    """The same architecture and width as ``source``, with random weights: the fair from-scratch
    baseline (a full-width ImageNet ResNet is not compared with the narrow course CNN)."""
    source = resolve_source(source)
    return scratch_image_model(num_classes=num_classes, seed=seed, source=source).to(resolve_device(device))


# ---------------------------------------------------------------------------------------------
# One experiment on any task from any source
# ---------------------------------------------------------------------------------------------

def _strip_lora(model: nn.Module) -> nn.Module:
    """Merge LoRA adapters into their base layers and put the plain layers back (in place)."""
    merge_lora(model)
    for path in list(lora_layers(model)):
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        base = getattr(parent, attr).base
        base.requires_grad_(True)
        setattr(parent, attr, base)
    return model


@keywords_checked
def finetune_task(task: ClassificationTask, *, source=None, frozen_stages: int = 0, lr: float | None = None,
                  seed: int = 0, from_scratch: bool = False, log=None, adaptation: Adaptation = Adaptation(),
                  budget: Budget = Budget(), report: Report = Report(), setup: Setup = Setup()) -> RunResult:
    """Fine-tune a fresh model from ``source`` on ``task``; validation and test accuracy.

    The same typed groups as ``run_finetune`` (``helpers.runner``), with ``source`` an argument of
    its own here: it is this experiment's variable (which model to start from).

    Args:
        source: "course", a timm model name ("timm": the course architecture's), or an
            ``nn.Module`` (``helpers.models.resolve_source``; None: ``setup.source``, and when
            that is None too, ``$COURSE_PRETRAINED``).
        frozen_stages: freeze the first k stages (``len(stages(model))``: a linear probe).
        lr: peak learning rate, default from ``sizes("finetune")`` (the scratch or LoRA rate for
            those runs).
        seed: the head's initialisation, LoRA's and the batch order.
        from_scratch: the same architecture with random weights (``scratch_twin``).
        log: a ``RunLog``; the run's row is appended to it.
        adaptation: ``Adaptation``: bn, head ("linear", "mlp" of ``hidden`` units, "block"),
            lora_rank (LoRA of this rank on ``lora_targets``, default every Linear and ordinary
            Conv2d of the backbone; the base weights freeze, the adapters and the head train).
            Layer-wise rates and LP-FT are ``run_finetune``'s.
        budget: ``Budget``: steps, batch_size (default from ``sizes("finetune")``), augment,
            evals. Early stopping and test curves are ``run_finetune``'s.
        report: ``Report``: note, hook, keep_model, read_test (a search passes False and reads
            the test set once, for the configuration it chose on validation:
            ``read_test_once(result, task)``).
        setup: ``Setup``: mode, device, progress (and source, when ``source`` is None).
    Returns:
        RunResult with metrics val_acc (the last validation evaluation) and test_acc; extra:
        the runner's (best_step, epochs, sec_per_step, sec_per_epoch), stages, eval_s.
    """
    for name, value, kind in (("adaptation", adaptation, Adaptation), ("budget", budget, Budget),
                              ("report", report, Report)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be a helpers.runner.{kind.__name__}, e.g. {kind.__name__}(); got {value!r:.80}")
    if adaptation.lr_decay is not None or adaptation.linear_probe_steps:
        raise ValueError("finetune_task has no layer-wise rates or LP-FT: Adaptation.lr_decay and "
                         "linear_probe_steps are run_finetune's")
    if budget.keep_best or budget.test_curve or budget.stop_when is not None:
        raise ValueError("finetune_task keeps the last weights and measures no test curve: Budget.keep_best and "
                         "test_curve are run_finetune's (stop_when finetune_qa's)")
    setup = resolve_setup(setup, source=source)   # the edge: read the environment once
    source, device = setup.source, setup.device
    head, hidden, lora_rank, lora_targets = adaptation.head, adaptation.hidden, adaptation.lora_rank, \
        adaptation.lora_targets
    augment, read_test, hook, keep_model = budget.augment is not False, report.read_test, report.hook, report.keep_model
    S, P = sizes("finetune", setup.mode), sizes("peft", setup.mode)
    steps = budget.steps or S.steps
    check_seed(seed)
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if lora_rank and from_scratch:
        raise ValueError("LoRA adapts pre-trained weights; from_scratch=True has none to adapt")
    lr = lr or (S.scratch_lr if from_scratch else P.lora_lr if lora_rank else S.lr)
    evals = S.evals if budget.evals is None else budget.evals
    task = task.to(device)
    n_stages = []

    def make():
        model = (scratch_twin(source, task.num_classes, seed=seed, device=device) if from_scratch
                 else model_from_source(source, task.num_classes, device=device))
        n_stages.append(len(stages(model)))
        check_depth(model, frozen_stages, "frozen_stages")     # raises, naming this model's depths and stages
        with seeded(seed):
            if head == "block":
                add_block(model)
            replace_head(model, task.num_classes, hidden=hidden if head == "mlp" else None)
        model.to(device)
        freeze_stages(model, frozen_stages, bn=adaptation.bn)
        if head == "block":
            unfreeze(model, "*.extra")
        if lora_rank:
            head_paths = [path for path, _ in heads(model)]           # both heads of a distilled model
            targets = lora_targets or [n for n, m in model.named_modules()
                                       if (isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1))
                                       and not any(n == h or n.startswith(h + ".") for h in head_paths)]
            add_lora(model, targets, rank=lora_rank, seed=seed)
            train_only_lora(model, also=head_paths + (["*.extra"] if head == "block" else []))
        return model

    timing = {}

    def measure(model, history):
        start = time.perf_counter()
        val_acc = history.last_eval("val_acc")
        if val_acc is None:
            val_acc = accuracy(model, task.x_val, task.y_val)
        metrics = {"val_acc": val_acc, **({"test_acc": accuracy(model, task.x_test, task.y_test)} if read_test else {})}
        timing["eval_s"] = time.perf_counter() - start
        return metrics

    batch_size = min(budget.batch_size or S.batch_size, len(task.x_train))
    recipe = Recipe(steps=steps, batch_size=batch_size, lr=lr, seed=seed, augment=flip_and_shift if augment else None,
                    eval_every=budget.eval_every or (max(1, steps // evals) if evals else steps))
    objective = Objective(cross_entropy_loss, lambda m: {"val_acc": accuracy(m, task.x_val, task.y_val)}, "val_acc",
                          measure=measure)
    settings = {"task": task.name, "source": _describe_source(source), "frozen_stages": frozen_stages,
                "head": head, "hidden": hidden if head == "mlp" else None, "lora_rank": lora_rank,
                "from_scratch": from_scratch, "lr": lr, "steps": steps, "batch_size": batch_size, "seed": seed}
    if adaptation.bn != BN_DEFAULT:
        settings["bn"] = adaptation.bn
    if report.note is not None:
        settings["note"] = report.note
    result = run(make, (task.x_train, task.y_train), recipe, objective, setup=setup,
                 settings=settings, hook=hook, keep_model=keep_model,
                 desc=("scratch" if from_scratch else f"freeze {frozen_stages}") + f", {head}"
                 + (f", LoRA r={lora_rank}" if lora_rank else ""))
    result.extra.update(stages=n_stages[0], eval_s=timing["eval_s"])
    if log is not None:
        log.add(**{k: v for k, v in result.row().items() if k not in ("cached",)})
    return result


def read_test_once(result: RunResult, task: ClassificationTask) -> float:
    """Read the test set once for a kept run (``keep_model=True``); recorded in its metrics."""
    if result.model is None:
        raise ValueError("the run kept no model; run it with keep_model=True")
    task = task.to(next(result.model.parameters()).device)
    result.metrics["test_acc"] = accuracy(result.model, task.x_test, task.y_test)
    return result.metrics["test_acc"]


# ---------------------------------------------------------------------------------------------
# The fine-tuned model as a file, and predicting with it
# ---------------------------------------------------------------------------------------------

def export_classifier(model: nn.Module, path, *, classes, recipe: dict, image_size: int) -> Path:
    """Write ``model`` (LoRA merged in) as one safetensors file with what rebuilds it.

    ``recipe``: the run's settings (``RunResult.settings``): source, head, hidden. Sources
    "course" and timm names rebuild from the file alone; a model from your own ``nn.Module``
    loads back with ``load_classifier(path, model=your_fresh_module)``.
    """
    model = _strip_lora(copy.deepcopy(model)).cpu()
    source = recipe.get("source", "course")
    meta = {"classes": list(classes), "image_size": image_size, "source": source,
            "head": recipe.get("head", "linear"), "hidden": recipe.get("hidden"),
            "arch_config": asdict(image_model_config()) if source == "course" else None,
            "mean_std": None}
    return save_checkpoint(path, model, extra=meta)


def load_classifier(path, *, model: nn.Module | None = None, device="auto"):
    """Read a file ``export_classifier`` wrote. Returns (model in eval mode, class names, image size)."""
    state, meta = read_checkpoint(path)
    info = meta["extra"]
    classes = tuple(info["classes"])
    if model is None:
        if info["source"] == "course":
            config = ImageModelConfig(**info["arch_config"])
            model = create_image_model(config)
        elif info["source"] in timm.list_models() or info["source"].split(".")[0] in timm.list_models():
            model = timm.create_model(info["source"], pretrained=False)
        else:
            raise ValueError(f"{path} holds a {info['source']} model the course cannot rebuild by itself; "
                             f"pass load_classifier(path, model=a_fresh_{info['source']})")
        if info["head"] == "block":
            add_block(model)
        replace_head(model, len(classes), hidden=info["hidden"] if info["head"] == "mlp" else None)
    model.load_state_dict(state)
    return model.to(resolve_device(device)).eval(), classes, int(info["image_size"])


def predict(path, image_file, *, model: nn.Module | None = None, top: int = 1):
    """The class name of ``image_file`` according to the exported model at ``path`` (with
    ``top > 1``: the ``top`` most likely names with their probabilities)."""
    net, classes, size = load_classifier(path, model=model, device="cpu")
    x = load_image(image_file, size)[None]                          # (1, 3, S, S)
    with torch.no_grad():
        p = net(x).softmax(-1)[0]
    if top == 1:
        return classes[int(p.argmax())]
    best = p.topk(min(top, len(classes)))
    return [(classes[int(i)], float(v)) for v, i in zip(best.values, best.indices)]
