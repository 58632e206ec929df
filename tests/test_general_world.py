"""The general image world (lesson 01's mix): what it draws, its natural-image statistics, and the
cached model pre-trained on it."""
from dataclasses import replace

import pytest
import torch

from helpers.general_world import LEAVES, TEXTURES, GeneralWorld, _leaves_bank, dead_leaves, pink_noise, textures
from helpers.images import CLASSES

SMALL = GeneralWorld(image_size=32, num_fractals=8)       # few systems: the fractal bank builds in a second


def test_renders_images_in_range_with_labels_and_is_repeatable():
    x, y = SMALL.render(48, seed=3)
    assert x.shape == (48, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == (48,) and y.dtype == torch.int64 and 0 <= y.min() and y.max() < SMALL.num_classes
    again = SMALL.render(48, seed=3)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    other = SMALL.render(48, seed=4)
    assert not torch.equal(x, other[0]) and not torch.equal(y, other[1])


def test_keeps_the_object_classes_first_and_every_class_is_drawn():
    assert SMALL.classes[:len(CLASSES)] == CLASSES and SMALL.num_classes == len(CLASSES) + 8
    assert len(set(SMALL.classes)) == SMALL.num_classes
    x, y = SMALL.render(800, seed=0)
    assert set(y.tolist()) == set(range(SMALL.num_classes))
    parts = SMALL.parts(y)
    assert torch.equal(parts["objects"], y < len(CLASSES)) and torch.equal(parts["fractals"], ~parts["objects"])
    share = parts["objects"].float().mean().item()
    assert abs(share - SMALL.object_share) < 0.06                    # 800 draws: sd of the share is 0.018


def test_the_mix_weights_choose_what_is_drawn():
    only_fractals = replace(SMALL, object_share=0.0).render(64, seed=1)[1]
    only_objects = replace(SMALL, object_share=1.0).render(64, seed=1)[1]
    assert (only_fractals >= len(CLASSES)).all() and (only_objects < len(CLASSES)).all()


def test_rendering_on_the_device_matches_the_cpu(device):
    x, y = SMALL.render(32, seed=5)
    x_dev, y_dev = SMALL.render(32, seed=5, device=device)
    assert x_dev.device.type == device.type and torch.equal(y, y_dev.cpu())
    assert (x - x_dev.cpu()).abs().mean() < 1e-3          # the same scenes, up to the device's rounding


def _spectrum_slope(images):
    """Least-squares slope of log mean amplitude against log radial frequency (2 .. S/2 - 2)."""
    s = images.shape[-1]
    amplitude = torch.fft.fft2(images - images.mean((-2, -1), keepdim=True)).abs().flatten(0, -3).mean(0)
    f = torch.fft.fftfreq(s) * s
    radius = (f.view(-1, 1).square() + f.view(1, -1).square()).sqrt().round().long()
    rings = torch.arange(2, s // 2 - 1)
    mean = torch.stack([amplitude[radius == r].mean() for r in rings])
    lx, ly = rings.float().log(), mean.log()
    return (((lx - lx.mean()) * (ly - ly.mean())).sum() / (lx - lx.mean()).square().sum()).item()


def test_the_one_over_f_texture_has_a_one_over_f_amplitude_spectrum():
    g = torch.Generator().manual_seed(0)
    slope = _spectrum_slope(pink_noise(64, 48, g))
    assert -1.2 < slope < -0.8
    white = torch.rand(64, 3, 48, 48, generator=g)
    assert abs(_spectrum_slope(white)) < 0.2                 # the measurement tells white noise apart


def test_dead_leaves_are_flat_regions_that_hide_one_another():
    g = torch.Generator().manual_seed(0)
    leaves = dead_leaves(16, 48, g)
    assert 0 <= leaves.min() and leaves.max() <= 1
    same = (leaves[..., 1:] == leaves[..., :-1]).all(1).float().mean()
    assert same > 0.7                                        # flat colours: most neighbours are equal
    colours = [len(torch.unique(im.flatten(1), dim=1).T) for im in leaves]
    assert min(colours) >= 5                                 # many leaves show in every image
    visible = torch.tensor([len(torch.unique(ids)) for ids in _leaves_bank(48, "cpu")[:64]])
    assert (visible < LEAVES + 1).float().mean() > 0.9       # later leaves wholly hide some earlier ones
    noise = pink_noise(16, 48, g)
    assert (noise[..., 1:] == noise[..., :-1]).all(1).float().mean() < 0.1     # unlike the smooth noise


def test_textures_and_settings_refuse_bad_names_and_values():
    g = torch.Generator().manual_seed(0)
    assert textures(list(TEXTURES), 16, g).shape == (3, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown textures"):
        textures(["bricks"], 16, g)
    with pytest.raises(ValueError, match="object_share must be in"):
        GeneralWorld(object_share=1.5)
    with pytest.raises(ValueError, match="instances must be"):
        GeneralWorld(instances=(3, 2))
    with pytest.raises(ValueError, match="num_fractals must be"):
        GeneralWorld(num_fractals=0)


def test_the_general_model_is_cached_with_per_part_accuracy(data_dir):
    from helpers.models import general_pretrained_model, image_model_config
    world = GeneralWorld(image_size=image_model_config().image_size, num_fractals=8)
    config = replace(image_model_config(), steps=6)                     # a few steps: the cache is the point
    model, info = general_pretrained_model(config=config, world=world, verbose=False)
    assert model.get_classifier().out_features == world.num_classes
    assert {"val_acc", "val_acc_objects", "val_acc_fractals", "history"} <= set(info)
    assert all({"val_acc_objects", "val_acc_fractals"} <= set(e) for e in info["history"]["evals"])
    files = list((data_dir / "cache").glob("image_general_pretrained-*.safetensors"))
    assert len(files) == 1
    again, _ = general_pretrained_model(config=config, world=world, verbose=False)      # loaded, not trained
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert len(list((data_dir / "cache").glob("image_general_pretrained-*"))) == 1
    general_pretrained_model(config=config, world=replace(world, object_share=0.25), verbose=False)
    assert len(list((data_dir / "cache").glob("image_general_pretrained-*.safetensors"))) == 2
    assert not hasattr(image_model_config(), "world")        # lesson 01's model and its key are unchanged


PLAIN = replace(SMALL, object_share=0.0, instances=(1, 1), texture_weights=(0.0, 0.0, 1.0), noise=0.0, contrast=False)


def _painted(x):
    """Per image of a plain-background render without noise: the mask of pixels that differ from
    the background (the corner pixel's colour; instances stay half their size inside the image)."""
    return (x - x[:, :, :1, :1]).abs().amax(1) > 1e-6


def test_contrast_keeps_every_fractal_apart_from_its_background():
    def gaps(world):
        x, _ = world.render(64, seed=5)
        mask = _painted(x)
        assert mask.flatten(1).any(1).all()
        fractal = torch.stack([x[i][:, mask[i]].mean() for i in range(len(x))])
        return (fractal - x[:, :, 0, 0].mean(1)).abs()
    # painted in the half of the colour cube away from the background's mean: at least 0.05 apart
    # before the camera's gain (0.85-1.15) and shift, so above 0.04 after; random colours are not
    assert gaps(replace(PLAIN, contrast=True)).min() > 0.04
    assert (gaps(PLAIN) < 0.04).sum() >= 2


def _axis(mask):
    """cos(2 theta) of the principal axis of each mask's pixels: unchanged by a left-right mirror
    (theta -> -theta), spread over [-1, 1] when the shapes are turned at random."""
    out = []
    for m in mask:
        yx = m.nonzero().float()
        c = torch.cov((yx - yx.mean(0)).T)
        theta = 0.5 * torch.atan2(2 * c[0, 1], c[1, 1] - c[0, 0])
        out.append(torch.cos(2 * theta))
    return torch.stack(out)


def test_upright_fractals_keep_their_class_orientation_and_turned_ones_do_not():
    upright = replace(PLAIN, rotate=False, fractal_size=(0.8, 0.8), image_size=48)
    spread = {}
    for rotate in (False, True):
        x, y = replace(upright, rotate=rotate).render(400, seed=2)
        axes = _axis(_painted(x))
        spread[rotate] = torch.stack([axes[y == c].std() for c in y.unique()]).median().item()
    assert spread[False] < 0.25 < 0.5 < spread[True]


def test_the_grey_share_turns_that_share_grey_and_leaves_the_rest_as_they_were():
    coloured, y = SMALL.render(400, seed=5)
    x, y_grey = replace(SMALL, grey=0.5).render(400, seed=5)
    grey = (x[:, 0] == x[:, 1]).flatten(1).all(1) & (x[:, 1] == x[:, 2]).flatten(1).all(1)
    assert torch.equal(y, y_grey)
    assert abs(grey.float().mean().item() - 0.5) < 0.1                # 400 draws: sd of the share is 0.025
    assert torch.equal(x[~grey], coloured[~grey])                     # the same scenes, in colour
    luma = 0.299 * coloured[grey, 0] + 0.587 * coloured[grey, 1] + 0.114 * coloured[grey, 2]
    assert torch.allclose(x[grey, 0], luma, atol=1e-6)                # the grey ones are their own luminance
    assert not (coloured[:, 0] == coloured[:, 1]).flatten(1).all(1).any()     # none was grey before
    with pytest.raises(ValueError, match="grey must be in"):
        replace(SMALL, grey=-0.1)


def test_random_crops_zoom_into_a_part_of_the_image_of_at_least_the_given_area():
    from helpers.general_world import _random_crops
    s = 48
    ramp = torch.linspace(0, 1, s).expand(64, 3, s, s).contiguous()          # brightness grows left to right
    out = _random_crops(ramp, 0.25, torch.Generator().manual_seed(0))
    span = out[:, 0, 0, -1] - out[:, 0, 0, 0]                                # how much of the ramp each crop shows
    assert (span <= 1 + 1e-5).all() and (span >= 0.5 * (s - 1) / s - 0.03).all()     # side >= sqrt(0.25)
    assert span.min() < 0.7 < 0.9 < span.max()                               # sizes drawn across the range
    assert (out[..., 1:] >= out[..., :-1] - 1e-6).all()                      # no mirror, no turn: still a ramp
    assert torch.equal(out[:, 0], out[:, 1]) and torch.allclose(out[:, :, 0], out[:, :, -1], atol=1e-5)   # rows alike
    x, y = replace(SMALL, crop=0.5).render(64, seed=2)
    x0, y0 = SMALL.render(64, seed=2)
    assert torch.equal(y, y0) and not torch.equal(x, x0) and 0 <= x.min() and x.max() <= 1
    with pytest.raises(ValueError, match="crop must be in"):
        replace(SMALL, crop=0)


def test_points_and_rotation_are_checked():
    with pytest.raises(ValueError, match="points"):
        replace(SMALL, points=3)


def test_the_saved_curves_have_one_value_per_step_and_a_missing_file_gives_none(tmp_path):
    import json

    from helpers.lessons.your_own import load_general_curves
    saved = load_general_curves()
    assert saved is not None and saved["steps"] == sorted(saved["steps"])
    assert all(len(v) == len(saved["steps"]) and all(0 <= a <= 1 for a in v) for v in saved["curves"].values())
    assert load_general_curves(tmp_path / "absent.json") is None
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**saved, "curves": {"short": [0.5]}}))
    with pytest.raises(ValueError, match="short"):
        load_general_curves(broken)
