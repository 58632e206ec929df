"""The fractal world (lesson 13's second pre-training world): what it draws and how it fails."""
import pytest
import torch

from helpers.fractals import FractalWorld, _chaos_game, _plot


def test_renders_images_in_range_with_labels_and_is_repeatable():
    world = FractalWorld(image_size=32, num_classes=8)
    x, y = world.render(24, seed=3)
    assert x.shape == (24, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < 8
    again = world.render(24, seed=3)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    assert not torch.equal(x, world.render(24, seed=4)[0])


def test_every_class_is_a_contracting_system_whose_attractor_fills_its_box():
    world = FractalWorld(num_classes=12, min_fill=0.2)
    maps, probs = world.systems()
    assert maps.shape == (12, 4, 2, 3) and torch.allclose(probs.sum(1), torch.ones(12))
    used = probs > 0
    assert ((used.sum(1) >= 2) & (used.sum(1) <= 4)).all()
    assert (torch.linalg.matrix_norm(maps[used][:, :, :2], ord=2) < 1).all()
    fill = _plot(_chaos_game(maps, probs, 4000, torch.Generator().manual_seed(0)), 32).mean((1, 2))
    assert (fill >= 0.15).all()            # other draws of the chaos game fill about as much


def test_instances_of_one_class_differ_and_classes_differ_more():
    """The jitter makes instances (not copies); a class is still its own shape: an image is closer
    to its class's other instances than to other classes' images, on average, in occupancy."""
    world = FractalWorld(image_size=32, num_classes=4, noise=0.0)
    g = torch.Generator().manual_seed(0)
    maps, probs = world.systems()
    shapes = []
    for c in range(4):
        m = maps[c:c + 1].repeat(6, 1, 1, 1)
        m[:, 0] *= torch.linspace(0.9, 1.1, 6)[:, None, None]
        shapes.append(_plot(_chaos_game(m, probs[c:c + 1].repeat(6, 1), 1600, g), 32))
    same = torch.stack([(s[0] - s[1:]).abs().mean() for s in shapes]).mean()
    other = torch.stack([(shapes[a][0] - shapes[b][1:]).abs().mean() for a in range(4) for b in range(4) if a != b]).mean()
    assert 0 < same < other


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="num_classes must be a whole number >= 2; got 1"):
        FractalWorld(num_classes=1)
    with pytest.raises(ValueError, match=r"jitter must be in \[0, 1\); got 1.5"):
        FractalWorld(jitter=1.5)


def test_the_fractal_verdict_follows_the_numbers():
    from helpers.lessons.your_own import fractal_metrics, fractal_verdict

    def arm(test, val=None, steps=60):
        return {"lr": 0.01, "steps": steps, "test": test, "val": val or test}

    world = {"fine-tuned": arm([0.80, 0.82, 0.81]), "fine-tuned, 3x budget": arm([0.84, 0.85, 0.86], steps=180),
             "from scratch": arm([0.78, 0.80, 0.79]), "from scratch, 3x budget": arm([0.85, 0.86, 0.84], steps=180),
             "linear probe": arm([0.45, 0.47, 0.46])}
    fractal = {"fine-tuned": arm([0.86, 0.84, 0.85]), "fine-tuned, 3x budget": arm([0.85, 0.86, 0.845], steps=180),
               "linear probe": arm([0.80, 0.79, 0.81])}
    m = fractal_metrics(world, fractal)
    assert m["fractal_ft_best_steps"] == 180                   # the budget validation prefers, not the test
    assert not m["fractal_minus_world_ft_real"] and m["fractal_minus_world_probe_real"]
    text = fractal_verdict(world, fractal)
    assert "ties with fine-tuning from the object world" in text
    assert "beats the object world's (46.0%) by 34.0 points" in text
