"""Your own data as tasks: a real image folder, a photo folder with counts, a questions file, in
the formats a learner has; the one-call experiments on them; export and predict."""
import json

import pytest
import timm
import torch
import torch.nn as nn

from helpers.experiments import run_finetune
from helpers.lessons.your_own import (
    answer_question,
    digits_available,
    digits_task,
    export_lm,
    finetune_questions,
    search,
    world_image_folder,
    world_questions_file,
)
from helpers.own_data import DataError, PretrainedUnavailable, load_photo_counts
from helpers.own_tasks import (
    export_classifier,
    finetune_task,
    image_folder_task,
    image_size_for,
    model_from_source,
    predict,
    questions_task,
    scratch_twin,
    split_indices,
    split_task,
    write_image_folder,
)
from helpers.runner import QUIET, Adaptation, Budget, Report
from helpers.surgery import stages


@pytest.fixture
def smoke(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_MODE", "smoke")
    monkeypatch.setenv("COURSE_DATA", str(tmp_path / "data"))
    return tmp_path


def colour_folder(root, n=6, size=20):
    """Three classes of photos: red, green and blue squares with noise (PNG and JPEG files)."""
    from PIL import Image
    g = torch.Generator().manual_seed(0)
    for c, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(n):
            img = torch.rand(size, size, 3, generator=g) * 0.3
            img[..., c] += 0.7
            Image.fromarray((img.clamp(0, 1) * 255).byte().numpy()).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    (root / "red" / "Thumbs.db").write_bytes(b"\0")          # litter a photo tool leaves
    return root


def test_split_is_stratified_seeded_and_disjoint():
    y = torch.arange(3).repeat_interleave(10)
    a, b = split_indices(y, seed=1), split_indices(y, seed=1)
    assert all(torch.equal(a[s], b[s]) for s in a)
    assert not torch.equal(a["train"], split_indices(y, seed=2)["train"])
    every = torch.cat([a["train"], a["val"], a["test"]])
    assert sorted(every.tolist()) == list(range(30))
    for s in a:
        assert set(y[a[s]].tolist()) == {0, 1, 2}, f"{s} lacks a class"
    with pytest.raises(DataError, match="at least 3"):
        split_indices(torch.tensor([0, 0, 0, 1, 1]))


def test_image_folder_task_and_presplit_folders(tmp_path):
    task = image_folder_task(colour_folder(tmp_path / "photos"), image_size=16, seed=0)
    assert task.classes == ("blue", "green", "red") and task.x_train.shape[1:] == (3, 16, 16)
    assert len(task.x_train) + len(task.x_val) + len(task.x_test) == 18
    pre = tmp_path / "pre"
    for s in ("train", "val", "test"):
        colour_folder(pre / s, n=3)
    task = image_folder_task(pre, image_size=16)
    assert len(task.x_train) == len(task.x_val) == len(task.x_test) == 9


def test_model_sources(smoke):
    from helpers.models import image_model_config
    assert image_size_for("course") == image_model_config().image_size
    assert image_size_for("resnet18") == 224                      # timm's pretrained configuration
    with pytest.raises(ValueError, match="timm model name"):
        model_from_source("resnet_nonexistent")
    with pytest.raises(TypeError):
        model_from_source(3)
    torch.manual_seed(1)              # not seed 0: earlier tests may leave the global generator at seed 0's state
    mine = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    copy_ = model_from_source(mine)
    assert copy_ is not mine and torch.equal(copy_[0].weight, mine[0].weight)
    twin = scratch_twin(mine, seed=0)
    assert not torch.equal(twin[0].weight, mine[0].weight)
    # the fair baseline of the course model is the course architecture, same width
    assert [p.shape for p in scratch_twin("course").parameters()] == \
        [p.shape for p in model_from_source("course").parameters()]


def test_timm_weights_offline_say_what_to_do(smoke, monkeypatch):
    import helpers.own_data as own_data

    def offline(arch, num_classes):
        raise PretrainedUnavailable("could not load timm's pretrained 'resnet18' weights (offline).")
    monkeypatch.setattr(own_data, "timm_pretrained", offline)       # what every runner's timm source calls
    with pytest.raises(PretrainedUnavailable, match="source='course'"):
        model_from_source("resnet18", 3)


def test_one_call_experiments_on_your_folder(smoke, tmp_path):
    task = image_folder_task(colour_folder(tmp_path / "photos"), image_size=image_size_for("course"))
    two = Budget(steps=2)
    r = run_finetune(task=task, budget=two, frozen_stages=1, setup=QUIET)          # lessons 02-04's runner
    assert 0 <= r.test_acc <= 1 and r.settings["task"] == "photos"
    for kwargs in ({"frozen_stages": 2, "adaptation": Adaptation(head="mlp")}, {"adaptation": Adaptation(lora_rank=2)},
                   {"adaptation": Adaptation(head="block")}, {"from_scratch": True}):
        r = finetune_task(task, budget=two, setup=QUIET, **kwargs)
        assert 0 <= r.val_acc <= 1 and 0 <= r.test_acc <= 1
    lora = finetune_task(task, budget=two, adaptation=Adaptation(lora_rank=2), setup=QUIET)
    full = finetune_task(task, budget=two, setup=QUIET)
    assert lora.trainable_params < full.trainable_params
    # any nn.Module, at its own resolution
    mine = timm.create_model("test_convnext", pretrained=False, num_classes=7)
    r = finetune_task(image_folder_task(tmp_path / "photos", image_size=32), source=mine, budget=two,
                      frozen_stages=1, setup=QUIET)
    assert r.settings["source"] == "ConvNeXt" and r.stages == len(stages(mine))


def test_photo_counts_folder_in_real_format(tmp_path):
    folder = colour_folder(tmp_path / "garden", n=3)
    rows = ["filename;count"] + [f"{p.parent.name}/{p.name};{i % 4}" for i, p in
                                 enumerate(sorted(folder.glob("*/*.*"))) if p.name != "Thumbs.db"]
    (folder / "counts.csv").write_bytes("\ufeff".encode() + "\r\n".join(rows).encode())   # Excel's export
    x, counts, names = load_photo_counts(folder, image_size=16)
    assert len(x) == 9 and counts.tolist() == [i % 4 for i in range(9)]
    task = split_task(x, (counts > 1).long(), ("few", "many"), seed=0)
    assert task.num_classes == 2


def test_search_export_and_predict(smoke, tmp_path):
    root = world_image_folder(tmp_path / "birds")
    task = image_folder_task(root, seed=0)
    runs, best = search(task)
    assert len(runs) >= 2
    assert best.val_acc == max(r.val_acc for r in runs)                 # chosen on validation
    assert [r for r in runs if "test_acc" in r.metrics] == [best]       # test read once
    path = export_classifier(best.model, tmp_path / "model.safetensors", classes=task.classes,
                             recipe=best.settings, image_size=task.image_size)
    image = next((root / task.classes[0]).glob("*.png"))
    name = predict(path, image)
    assert name in task.classes
    from helpers.own_data import load_image
    with torch.no_grad():
        want = task.classes[int(best.model.eval()(load_image(image, task.image_size)[None]).argmax())]
    assert name == want
    top = predict(path, image, top=3)
    assert len(top) == 3 and top[0][0] == name and top[0][1] >= top[1][1] >= top[2][1]


def test_lora_export_merges(smoke, tmp_path):
    task = image_folder_task(colour_folder(tmp_path / "photos"), image_size=image_size_for("course"))
    r = finetune_task(task, budget=Budget(steps=2), adaptation=Adaptation(lora_rank=2),
                      report=Report(keep_model=True), setup=QUIET)
    path = export_classifier(r.model, tmp_path / "m.safetensors", classes=task.classes, recipe=r.settings,
                             image_size=task.image_size)
    from helpers.own_tasks import load_classifier
    model, classes, size = load_classifier(path)
    with torch.no_grad():
        assert torch.allclose(model(task.x_test), r.model.eval()(task.x_test), atol=1e-4)


def test_questions_file(smoke, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a ?", "answer": "b"}\n{"question": "a ?"}\n')
    with pytest.raises(DataError, match="line 2"):
        questions_task(bad)
    path = world_questions_file(tmp_path / "q.jsonl")
    assert json.loads(path.read_text().splitlines()[0]).keys() == {"question", "answer", "topic", "kind", "group"}
    out = finetune_questions(path, steps=2)
    assert 0 <= out["test_after"] <= 1 and out["unknown_words"] == 0
    f = export_lm(out["model"], out["tok"], tmp_path / "lm.safetensors")
    q = out["qa"].test[0].prompt
    from helpers.lm import answer
    assert answer_question(f, q) == answer(out["model"].eval(), out["tok"], q)


def _sides(qa):
    return {side: {(q.disease, q.answer) for q in getattr(qa, side)} for side in ("train", "dev", "test")}


def test_questions_split_keeps_every_phrasing_of_a_fact_on_one_side(tmp_path):
    """The world's file (three phrasings per fact, a group field) and a learner's file without
    groups (grouped by answer and topic): no fact is on two sides, and every side has questions."""
    from helpers.lm import medical_qa
    world = world_questions_file(tmp_path / "world.jsonl")
    qa = questions_task(world, seed=1)
    facts = {side: {(q.disease, q.attribute) for q in getattr(qa, side)} for side in ("train", "dev", "test")}
    assert all(facts.values())
    assert not facts["train"] & facts["test"] and not facts["train"] & facts["dev"] and not facts["dev"] & facts["test"]
    every = medical_qa()
    n = len(every.train) + len(every.dev) + len(every.test)
    assert len(qa.train) + len(qa.dev) + len(qa.test) == n and 0.1 < len(qa.test) / n < 0.3
    # the same file as a learner might write it: a topic but no group (grouped by answer and topic)
    rows = [json.loads(line) for line in world.read_text().splitlines()]
    own = tmp_path / "own.jsonl"
    own.write_text("".join(json.dumps({"question": r["question"], "answer": r["answer"], "topic": r["topic"]}) + "\n"
                           for r in rows))
    sides = _sides(questions_task(own, seed=1))
    assert not sides["train"] & sides["test"] and not sides["train"] & sides["dev"]
    bare = tmp_path / "bare.jsonl"                          # no topic, no group: grouped by answer
    bare.write_text("".join(json.dumps({"question": f"q {i} ?", "answer": a}) + "\n"
                            for i, a in enumerate("aabbccddee")))
    by_answer = {side: {q.answer for q in getattr(questions_task(bare), side)} for side in ("train", "dev", "test")}
    assert all(by_answer.values()) and not by_answer["train"] & by_answer["test"]
    two = tmp_path / "two.jsonl"
    two.write_text("".join(json.dumps({"question": f"q {i} ?", "answer": a}) + "\n" for i, a in enumerate("aabb")))
    with pytest.raises(DataError, match="2 group"):
        questions_task(two)


@pytest.mark.skipif(not digits_available(), reason="scikit-learn is not installed (pip install '.[real-images]')")
def test_digits_task():
    task = digits_task(3, seed=0, image_size=16)
    assert task.num_classes == 10 and len(task.x_train) == 30
    assert task.x_train.shape[1:] == (3, 16, 16) and 0 <= float(task.x_train.min()) <= float(task.x_train.max()) <= 1
    assert not torch.equal(digits_task(3, seed=1, image_size=16).x_train, task.x_train)
    assert torch.equal(digits_task(3, seed=1, image_size=16).x_test, task.x_test)      # fixed test set


def test_write_image_folder_roundtrip(tmp_path):
    x = torch.rand(4, 3, 8, 8)
    write_image_folder(tmp_path / "f", x, torch.tensor([0, 1, 0, 1]), ("a", "b"))
    assert sorted(p.parent.name for p in (tmp_path / "f").glob("*/*.png")) == ["a", "a", "b", "b"]
