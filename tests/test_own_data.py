"""Loaders for the learner's own data, and the switch to timm's published weights (offline here)."""
import pytest
from PIL import Image

from helpers.own_data import DataError, PretrainedUnavailable, load_cifar10, load_image_folder, timm_pretrained


def make_folder(root, classes=("crow", "robin"), per_class=2, size=20):
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * k, 100, 20 * i)
            Image.new("RGB", (size + 7 * i, size), colour).save(root / name / f"{i}.png")
    return root


def test_image_folder_loads_in_the_real_format(tmp_path):
    x, y, names = load_image_folder(make_folder(tmp_path / "birds"), image_size=16)
    assert names == ("crow", "robin")
    assert x.shape == (4, 3, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [0, 0, 1, 1]
    assert x[2, 0].mean().item() == pytest.approx(40 / 255, abs=0.01)   # robin's red channel


def test_unknown_class_folder_lists_the_valid_ones(tmp_path):
    root = make_folder(tmp_path / "birds", classes=("crow", "dodo"))
    with pytest.raises(DataError, match=r"unknown class folder\(s\) \['dodo'\]; valid classes are \['crow', 'robin'\]"):
        load_image_folder(root, 16, classes=("crow", "robin"))


def test_unreadable_image_is_named(tmp_path):
    root = make_folder(tmp_path / "birds")
    bad = root / "crow" / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_image_folder(root, 16)


def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_image_folder(tmp_path / "nowhere", 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty", 16)


def test_cifar10_without_its_files_says_where_to_put_them(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path)


def test_timm_weights_offline_give_a_message_not_a_stack_trace(monkeypatch):
    import timm

    def offline(*args, pretrained=False, **kwargs):
        # What timm raises offline depends on its version and the hub (OSError, hub errors,
        # timeouts after retries); all of them must end in the same short message.
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedUnavailable, match="internet connection"):
        timm_pretrained("resnet18", num_classes=6)
    with pytest.raises(PretrainedUnavailable, match="no pretrained weights"):
        timm_pretrained("not_a_model_at_all")


def test_one_source_vocabulary_resolved_in_one_place(monkeypatch):
    """"course", a timm name ("timm": the course architecture's) or a module, for every runner; the
    environment only where nothing is given, and "course" always means lesson 01's model."""
    import torch.nn as nn

    from helpers.models import resolve_source
    monkeypatch.setenv("COURSE_PRETRAINED", "imagenet")
    with pytest.raises(ValueError, match=r"COURSE_PRETRAINED='imagenet': choose 'course'"):
        resolve_source()
    assert resolve_source("timm") == "resnet18"              # an explicit choice wins over the environment
    with pytest.raises(ValueError, match=r"source='tf': choose 'course'.*timm model name"):
        resolve_source("tf")
    with pytest.raises(TypeError, match="nn.Module"):
        resolve_source(3)
    monkeypatch.setenv("COURSE_PRETRAINED", "timm")
    assert resolve_source() == "resnet18" and resolve_source("course") == "course"
    mine = nn.Linear(2, 2)
    assert resolve_source(mine) is mine and resolve_source("convnext_atto") == "convnext_atto"
    monkeypatch.delenv("COURSE_PRETRAINED")
    assert resolve_source() == "course"
    assert all(resolve_source(resolve_source(s)) == resolve_source(s) for s in ("course", "timm", "resnet18"))


def test_timm_by_name_or_by_timm_is_one_network_in_every_runner(monkeypatch):
    """``source="timm"`` and the course architecture's timm name are the same network, with the same
    cache keys and image size, for lesson 02-05's runners and lesson 13's ``finetune_task`` alike;
    under ``COURSE_PRETRAINED=timm``, "course" still builds the course CNN."""
    from helpers.experiments import build_model
    from helpers.models import backbone_key, pretrained_image_size
    from helpers.own_tasks import image_size_for, scratch_twin
    monkeypatch.delenv("COURSE_PRETRAINED", raising=False)
    assert backbone_key("smoke", "timm") == backbone_key("smoke", "resnet18") != backbone_key("smoke")
    assert backbone_key("smoke", "convnext_atto")["arch"] == "convnext_atto"
    assert pretrained_image_size("smoke", "timm") == image_size_for("resnet18") == image_size_for("timm") == 224

    def shapes(m):
        return [p.shape for p in m.parameters()]
    assert shapes(build_model(from_scratch=True, num_classes=6, mode="smoke", device="cpu", source="resnet18")) == \
        shapes(build_model(from_scratch=True, num_classes=6, mode="smoke", device="cpu", source="timm")) == \
        shapes(scratch_twin("timm", 6, device="cpu"))
    monkeypatch.setenv("COURSE_PRETRAINED", "timm")
    course = scratch_twin("course", 6, device="cpu")                  # the narrow course CNN, not timm's
    assert sum(p.numel() for p in course.parameters()) < \
        sum(p.numel() for p in scratch_twin("timm", 6, device="cpu").parameters()) / 4


def test_cached_runs_on_timm_networks_never_share_an_entry_with_the_course_network(monkeypatch):
    """Lesson 05's scenes do not depend on the source, so a from-scratch counter keyed only on
    lesson 01's configuration would load the course CNN's weights into timm's ResNet."""
    from dataclasses import asdict

    from helpers.cache import config_key
    from helpers.lessons.bird_counter import ScratchCounterConfig
    from helpers.models import backbone_key, image_model_config
    monkeypatch.delenv("COURSE_PRETRAINED", raising=False)
    assert backbone_key("smoke") == asdict(image_model_config("smoke"))     # the course's cache keys unchanged

    def key(**source):
        return config_key(ScratchCounterConfig(arch=backbone_key("smoke", **source), data="d", labels=8, seed=0,
                                               loss="mse", steps=3, batch_size=4, lr=0.01, freeze=0))
    assert key() == key(source="course") != key(source="timm")
    monkeypatch.setenv("COURSE_PRETRAINED", "timm")
    assert key() == key(source="timm")


def test_with_timm_weights_the_baseline_and_the_images_follow_the_pretrained_model(monkeypatch):
    """COURSE_PRETRAINED=timm: from scratch is timm's full-width architecture (not the narrow course
    CNN) and the species images come at the pretrained configuration's input size."""
    import timm

    from helpers.experiments import build_model
    from helpers.models import image_model_config, pretrained_image_size, scratch_image_model
    from helpers.tasks import species_task
    config = image_model_config("smoke")
    expected = timm.create_model(config.arch, pretrained=False, num_classes=6)
    assert pretrained_image_size("smoke") == config.image_size
    monkeypatch.setenv("COURSE_PRETRAINED", "timm")
    size = int(timm.get_pretrained_cfg(config.arch).input_size[-1])
    assert pretrained_image_size("smoke") == size == species_task(mode="smoke").image_size != config.image_size
    scratch = build_model(from_scratch=True, num_classes=6, mode="smoke", device="cpu")
    assert [p.shape for p in scratch.parameters()] == [p.shape for p in expected.parameters()]
    assert sum(p.numel() for p in scratch_image_model(config, 6, source="course").parameters()) < \
        sum(p.numel() for p in expected.parameters()) / 4


def test_the_runners_take_the_source_explicitly_and_it_wins_over_the_environment(monkeypatch):
    """Lessons 02-05's runners pass ``source`` down to the builders, the images and the cache keys,
    so a harness called with it never reads ``$COURSE_PRETRAINED``."""
    import timm

    from helpers.experiments import build_model
    from helpers.lessons.bird_counter import count_model
    from helpers.models import backbone_key, image_model_config
    from helpers.tasks import species_data, species_task
    config = image_model_config("smoke")
    timm_shapes = [p.shape for p in timm.create_model(config.arch, pretrained=False, num_classes=6).parameters()]
    monkeypatch.setenv("COURSE_PRETRAINED", "timm")
    course = build_model(from_scratch=True, num_classes=6, mode="smoke", device="cpu", source="course")
    assert [p.shape for p in course.parameters()] != timm_shapes
    assert species_task(mode="smoke", source="course").image_size == config.image_size
    assert species_data(3, mode="smoke", device="cpu", source="course").x_train.shape[-1] == config.image_size
    monkeypatch.delenv("COURSE_PRETRAINED")
    counter = count_model(pretrained=False, mode="smoke", device="cpu", source="timm")
    assert [p.shape for p in counter.parameters()][:-2] == timm_shapes[:-2]          # a new 1-output head
    assert backbone_key("smoke", "timm") != backbone_key("smoke")


def test_a_course_network_handed_over_as_a_module_gets_the_images_at_its_own_size(data_dir):
    """A network the course built (lesson 01's, the fractal or general world's, a learner's own copy)
    passed as ``source=model`` is shown images at the size it learnt at, not at the 224 px of the
    ImageNet configuration timm attaches to every resnet18: the same run as ``source="course"``."""
    from helpers.experiments import run_finetune
    from helpers.models import create_image_model, image_model_config, pretrained_image_model, pretrained_image_size
    from helpers.runner import Budget, Setup
    from helpers.tasks import species_task
    config = image_model_config("smoke")
    fresh = create_image_model(config)
    assert pretrained_image_size("smoke", fresh) == config.image_size == species_task(mode="smoke", source=fresh).image_size
    assert not any(k in fresh.pretrained_cfg for k in ("url", "hf_hub_id"))       # no claim to ImageNet weights
    model, _ = pretrained_image_model(config, device="cpu", verbose=False)
    runs = [run_finetune(2, seed=0, budget=Budget(steps=3, evals=1), setup=Setup(mode="smoke", source=source,
                                                                                   device="cpu", progress=False))
            for source in ("course", model)]
    assert runs[0].val_acc == runs[1].val_acc and runs[0].test_acc == runs[1].test_acc
