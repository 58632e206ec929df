"""The bird counter: labels, head, losses, metrics, the photo-folder loader and its errors."""
import math

import pytest
import torch
import torch.nn as nn
from PIL import Image

from helpers.lessons.bird_counter import (
    TRAIN_BACKGROUNDS,
    count_data,
    count_metrics,
    count_model,
    count_world,
    fit_counter,
    mean_baseline,
    photo_count_data,
    predict_counts,
    run_counter,
    saliency,
    shifted_worlds,
    start_at_mean,
    write_example_photos,
)
from helpers.losses import COUNT_LOSSES, poisson_loss
from helpers.own_data import DataError, load_photo_counts
from helpers.runner import QUIET, Budget, Report, Setup
from helpers.surgery import replace_head

# --- data ---------------------------------------------------------------------------------------

def test_counts_equal_birds_drawn_including_overlaps():
    world = count_world(image_size=48)
    x, counts, visible = world.render(300, seed=0, visibility=True)
    assert x.shape == (300, 3, 48, 48) and counts.shape == (300,)
    # one visible share per bird drawn: the label is exactly the number of birds in the scene
    assert [len(v) for v in visible] == [int(c) for c in counts]
    shares = torch.cat([v for v in visible if len(v)])
    overlapped = [i for i, v in enumerate(visible) if len(v) and v.min() < 0.95]
    assert len(overlapped) >= 10, "the lesson's scenes should include partly hidden birds"
    assert shares.min() > 0.5, "every counted bird must stay mostly visible"
    assert 0 <= counts.min() and counts.max() <= world.max_birds
    assert set(range(world.max_birds + 1)) <= set(counts.int().tolist())


def test_shifted_worlds_leave_the_training_range():
    world = count_world(image_size=32)
    shifted = shifted_worlds(world)
    _, more = shifted["more birds"].render(40, seed=1)
    assert more.min() > world.max_birds
    assert shifted["sunset sky"].backgrounds == ("sunset",) and "sunset" not in TRAIN_BACKGROUNDS


def test_count_data_sets_and_subsets():
    data = count_data(n_train=40, n_test=10, n_shifted=9, image_size=32)
    assert data.x_train.shape == (40, 3, 32, 32) and len(data.y_test) == 10
    assert len(data.y_shift) == len(data.shift_kind) == 9
    x, y = data.train_subset(25, seed=3)
    assert x.shape[0] == y.shape[0] == 25
    assert torch.equal(data.train_subset(25, seed=3)[0], x)                 # repeatable
    assert not torch.equal(data.train_subset(25, seed=4)[0], x)             # another seed, other scenes
    with pytest.raises(ValueError, match="labels must be"):
        data.train_subset(41)


# --- model --------------------------------------------------------------------------------------

@pytest.mark.parametrize("pretrained", [False, True])
def test_head_gives_one_non_negative_count(pretrained):
    model = count_model(pretrained, seed=0, device="cpu")
    with torch.no_grad():            # push the head hard negative: softplus keeps counts >= 0
        model.get_classifier()[0].bias.fill_(-50.0)
    x = torch.rand(5, 3, 40, 40)
    out = model(x)
    assert out.shape == (5, 1) and (out >= 0).all()
    assert predict_counts(model, torch.rand(3, 3, 64, 64)).shape == (3,)


def test_notebook_head_swap_matches_count_model():
    from helpers.models import create_image_model, image_model_config
    model = create_image_model(image_model_config())
    replace_head(model, 1, activation="softplus")                  # the notebook's visible cell
    head = model.get_classifier()
    ours = count_model(False, device="cpu").get_classifier()
    assert [type(m) for m in head] == [type(m) for m in ours] == [nn.Linear, nn.Softplus]
    assert head[0].out_features == ours[0].out_features == 1


def test_head_starts_at_the_training_mean():
    model = start_at_mean(count_model(False, device="cpu"), 4.25)
    out = predict_counts(model, torch.rand(4, 3, 32, 32))
    assert torch.allclose(out, torch.full((4,), 4.25), atol=1e-4)


def test_fine_tuning_lowers_the_loss_and_saliency_leaves_weights_alone():
    data = count_data(n_train=32, n_test=8, n_shifted=2, image_size=32)
    model = count_model(False, seed=0, train_mean=data.y_train.mean().item(), device="cpu")
    history = fit_counter(model, data.x_train, data.y_train, budget=Budget(steps=25, batch_size=16, augment=False),
                          lr=3e-3, progress=False)
    assert history.loss[-1] < history.loss[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = saliency(model, data.x_test[:3])
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and math.isclose(maps.max().item(), 1.0, rel_tol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_scratch_runs_are_cached_by_scenes_and_settings(data_dir, capsys):
    data = count_data(n_train=24, n_test=8, n_shifted=2, image_size=32)
    kw = dict(labels=16, loss="poisson", budget=Budget(steps=4, batch_size=8), lr=3e-3, setup=QUIET)
    first = run_counter(data, pretrained=False, seed=0, report=Report(keep_model=True), **kw)
    assert not first.cached and len(list((data_dir / "cache").glob("counter_scratch-*"))) == 1
    again = run_counter(data, pretrained=False, seed=0, report=Report(keep_model=True), **kw)
    assert again.cached and "loaded from the cache" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert again.test_mae == pytest.approx(first.test_mae, abs=1e-4) and again.train_s == first.train_s
    assert again.history.steps_done == 4 and again.val_mae == pytest.approx(first.val_mae, abs=1e-4)
    # another seed (other scenes), another setting, or a fine-tuned run: trained, never loaded
    assert not run_counter(data, pretrained=False, seed=1, **kw).cached
    assert not run_counter(data, pretrained=False, seed=0, **{**kw, "budget": Budget(steps=5, batch_size=8)}).cached
    assert not run_counter(data, pretrained=True, seed=0, **kw).cached
    assert not run_counter(data, pretrained=False, seed=0, cache=False, **kw).cached
    assert len(list((data_dir / "cache").glob("counter_scratch-*"))) == 3


def test_keep_best_restores_the_best_validation_weights_and_caches_them(data_dir):
    data = count_data(n_train=24, n_test=8, n_shifted=2, image_size=32)
    kw = dict(labels=16, loss="poisson", lr=3e-2, setup=QUIET)
    budget = Budget(steps=6, batch_size=8, eval_every=2, keep_best=True)
    with pytest.raises(ValueError, match="keep_best=True needs eval_every"):
        run_counter(data, pretrained=False, budget=Budget(steps=6, batch_size=8, keep_best=True), **kw)
    r = run_counter(data, pretrained=False, budget=budget, report=Report(keep_model=True), **kw)
    evals = r.history.evals
    assert [e["step"] for e in evals] == [2, 4, 6]
    best = min(evals, key=lambda e: e["val_mae"])
    assert r.best_step == best["step"] and r.val_mae == pytest.approx(best["val_mae"], abs=1e-5)
    again = run_counter(data, pretrained=False, budget=budget, report=Report(keep_model=True), **kw)
    assert again.cached and again.best_step == r.best_step
    assert all(torch.equal(a, b) for a, b in zip(r.model.state_dict().values(), again.model.state_dict().values()))
    last = run_counter(data, pretrained=False, budget=Budget(steps=6, batch_size=8, eval_every=2), **kw)   # the last weights
    assert not last.cached and last.val_mae == pytest.approx(evals[-1]["val_mae"], abs=1e-5)


def test_converged_scratch_counters_pick_their_rate_on_validation(data_dir):
    from helpers.lessons.bird_counter import converged_scratch_counters, lesson_count_data
    from helpers.modes import sizes
    S = sizes("bird_counter", "smoke")
    data = lesson_count_data("smoke")
    lr, grid, seeds = converged_scratch_counters(data, mode="smoke", progress=False)
    assert [r.lr for r in grid] == list(S.scratch_lr_grid) and all(r.steps == S.scratch_steps for r in grid)
    assert lr == min(grid, key=lambda r: r.val_mae).lr
    assert len(seeds) == S.seeds and all(r.lr == lr for r in seeds) and seeds[0].cached   # seed 0 is a grid run


# --- losses and metrics ---------------------------------------------------------------------------

class Constant(nn.Module):
    def __init__(self, values):
        super().__init__()
        self.values = torch.tensor(values, dtype=torch.float32).view(-1, 1)

    def forward(self, x):
        return self.values


def test_losses_on_known_inputs():
    batch = (torch.zeros(3, 1), torch.tensor([0.0, 2.0, 5.0]))
    model = Constant([1.0, 2.0, 2.0])                           # errors 1, 0, -3
    assert math.isclose(COUNT_LOSSES["mse"](model, batch).item(), (1 + 0 + 9) / 3, rel_tol=1e-6)
    assert math.isclose(COUNT_LOSSES["huber"](model, batch).item(), (0.5 + 0 + 2.5) / 3, rel_tol=1e-6)
    # Poisson NLL (without the constant log y! term): rate - y log(rate)
    expected = sum(r - y * math.log(r + 1e-4) for r, y in [(1, 0), (2, 2), (2, 5)]) / 3
    assert math.isclose(poisson_loss(model, batch).item(), expected, rel_tol=1e-5)
    # and its minimum over the rate sits at the true count
    y = (torch.zeros(1, 1), torch.tensor([4.0]))
    losses = [poisson_loss(Constant([r]), y).item() for r in (3.0, 4.0, 5.0)]
    assert losses[1] < losses[0] and losses[1] < losses[2]


def test_count_metrics_on_known_inputs():
    m = count_metrics([0.2, 2.6, 5.0, 9.4], [0, 2, 7, 9])
    assert math.isclose(m["mae"], (0.2 + 0.6 + 2.0 + 0.4) / 4, rel_tol=1e-6)
    assert math.isclose(m["rmse"], math.sqrt((0.04 + 0.36 + 4 + 0.16) / 4), rel_tol=1e-6)
    assert m["exact_acc"] == 0.5            # 0.2 -> 0 and 9.4 -> 9 right; 2.6 -> 3 and 5 wrong
    assert m["within1_acc"] == 0.75         # 5 vs 7 is two off
    perfect = count_metrics(torch.tensor([3.0, 1.0]), torch.tensor([3.0, 1.0]))
    assert perfect == {"mae": 0.0, "rmse": 0.0, "exact_acc": 1.0, "within1_acc": 1.0}
    base = mean_baseline([1.0, 3.0], [0.0, 4.0])                 # always predicts 2
    assert base["mae"] == 2.0 and base["exact_acc"] == 0.0
    with pytest.raises(ValueError):
        count_metrics([1.0], [1.0, 2.0])


# --- your own photos ------------------------------------------------------------------------------

def _folder(tmp_path, rows, images=("a.png", "b.png")):
    for name in images:
        Image.new("RGB", (90, 60), (120, 200, 255)).save(tmp_path / name)
    (tmp_path / "counts.csv").write_text("\n".join(["filename,count", *rows]) + "\n")
    return tmp_path


def test_photo_folder_loads_at_the_lessons_resolution(tmp_path):
    folder = _folder(tmp_path, ["a.png,3", "", "b.png,0"])
    x, y, names = load_photo_counts(folder, image_size=48)
    assert x.shape == (2, 3, 48, 48) and 0 <= x.min() and x.max() <= 1
    assert y.tolist() == [3.0, 0.0] and names == ["a.png", "b.png"]


def test_example_photos_round_trip(tmp_path):
    folder = write_example_photos(tmp_path / "photos", n=4, image_size=80)
    x, y, names = load_photo_counts(folder, image_size=40)
    assert x.shape == (4, 3, 40, 40) and len(names) == 4 and (y >= 0).all()


@pytest.mark.parametrize("rows, message", [
    (["a.png,2", "c.png,1"], r"row 3: image file .*c\.png does not exist"),
    (["a.png,-1"], r"row 2: the count of 'a.png' is '-1'; counts cannot be negative"),
    (["a.png,2.5"], r"row 2: the count of 'a.png' is '2.5'; counts are whole numbers"),
    (["a.png,two"], r"row 2: the count of 'a.png' is 'two', not a number"),
    (["a.png,2", "b.png,1", "a.png,2"], r"row 4: 'a.png' is listed twice \(first in row 2\)"),
    (["a.png"], r"row 2: expected 'filename,count'"),
])
def test_photo_folder_errors_name_file_and_row(tmp_path, rows, message):
    folder = _folder(tmp_path, rows)
    with pytest.raises(DataError, match=message) as err:
        load_photo_counts(folder)
    assert "counts.csv" in str(err.value)


def test_unreadable_image_is_named(tmp_path):
    folder = _folder(tmp_path, ["a.png,1", "broken.jpg,2"])
    (folder / "broken.jpg").write_bytes(b"this is not a picture")
    with pytest.raises(DataError, match=r"counts\.csv, row 3: cannot read image .*broken\.jpg"):
        load_photo_counts(folder)


def test_missing_csv_or_header(tmp_path):
    with pytest.raises(DataError, match="no counts file"):
        load_photo_counts(tmp_path)
    (tmp_path / "counts.csv").write_text("name,birds\na.png,1\n")
    with pytest.raises(DataError, match="row 1: the header must be 'filename,count'"):
        load_photo_counts(tmp_path)
    (tmp_path / "counts.csv").write_text("filename,count\n")
    with pytest.raises(DataError, match="no rows after the header"):
        load_photo_counts(tmp_path)


def test_your_photo_folder_runs_through_the_lessons_counter_in_one_call(tmp_path, data_dir):
    folder = write_example_photos(tmp_path / "photos", n=10, image_size=48)
    data = photo_count_data(folder, image_size=32, seed=0)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (6, 2, 2) and data.world is None
    assert data.x_train.shape[1:] == (3, 32, 32) and len(data.x_shift) == 0
    everything = sorted(torch.cat([data.y_train, data.y_val, data.y_test]).tolist())
    assert everything == sorted(load_photo_counts(folder, image_size=32)[1].tolist())   # a split, nothing lost
    other = photo_count_data(folder, image_size=32, seed=1)
    assert not torch.equal(other.y_test, data.y_test) or not torch.equal(other.y_val, data.y_val)
    r = run_counter(data, labels=len(data.y_train), pretrained=True, loss="poisson", lr=1e-3,
                    budget=Budget(steps=2, batch_size=4), setup=Setup(mode="smoke", progress=False))
    assert r.steps == 2 and math.isfinite(r.val_mae) and math.isfinite(r.test_mae)
    with pytest.raises(ValueError, match="val_frac must be a fraction between 0 and 1; got 1.5"):
        photo_count_data(folder, val_frac=1.5)
    tiny = write_example_photos(tmp_path / "two", n=2, image_size=48)
    with pytest.raises(ValueError, match="2 photos are too few"):
        photo_count_data(tiny)
