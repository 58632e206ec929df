"""The image world: deterministic, right shapes and ranges, labels exact by construction."""
import pytest
import torch

from helpers.images import (
    BACKGROUNDS,
    BIRD_SPECIES,
    CLASSES,
    BirdSpecies,
    CountWorld,
    ImageWorld,
    WorldStream,
    render_class,
)


def test_at_least_twelve_classes_and_four_species():
    assert len(CLASSES) >= 12 and len(set(CLASSES)) == len(CLASSES)
    assert len(BIRD_SPECIES) >= 4


def test_render_shapes_ranges_and_labels():
    x, y = ImageWorld(image_size=40).render(64, seed=0)
    assert x.shape == (64, 3, 40, 40) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert y.dtype == torch.int64 and 0 <= y.min() and y.max() < len(CLASSES)


def test_same_seed_same_scenes_other_seed_other_scenes():
    world = ImageWorld(image_size=32)
    a, ya = world.render(16, seed=3)
    b, yb = world.render(16, seed=3)
    c, _ = world.render(16, seed=4)
    assert torch.equal(a, b) and torch.equal(ya, yb)
    assert not torch.equal(a, c)


def test_label_is_the_object_drawn():
    """A world of one class labels everything with that class, and the object is really there:
    the scene differs from the same scene rendered with another class."""
    for name in ("orca", "bird", "house"):
        world = ImageWorld(image_size=32, classes=(name,), clutter=0.0)
        x, y = world.render(8, seed=1)
        assert (y == 0).all()
        other = ImageWorld(image_size=32, classes=("sun",), clutter=0.0).render(8, seed=1)[0]
        assert (x - other).abs().mean() > 0.01


def test_every_class_and_background_renders_visibly():
    for name in CLASSES:
        for bg in BACKGROUNDS:
            world = ImageWorld(image_size=32, classes=(name,), backgrounds=(bg,), noise=0.0, clutter=0.0)
            x, _ = world.render(2, seed=0)
            empty = ImageWorld(image_size=32, classes=(name,), backgrounds=(bg,), noise=0.0,
                               scale=(1e-3, 1e-3), clutter=0.0).render(2, seed=0)[0]
            assert (x - empty).abs().sum(1).gt(0.1).float().mean() > 0.02, (name, bg)


def test_bad_names_list_the_valid_choices():
    with pytest.raises(ValueError, match="valid classes"):
        ImageWorld(classes=("unicorn",))
    with pytest.raises(ValueError, match="valid backgrounds"):
        ImageWorld(backgrounds=("mars",))
    with pytest.raises(ValueError, match="valid species"):
        BirdSpecies(species=("dodo",))
    with pytest.raises(ValueError, match="valid classes"):
        render_class("dragon", 2, seed=0)


def test_bird_species_balanced_sets():
    task = BirdSpecies(image_size=32)
    x, y = task.balanced(3, seed=0)
    assert x.shape == (3 * len(BIRD_SPECIES), 3, 32, 32)
    assert torch.bincount(y, minlength=len(BIRD_SPECIES)).tolist() == [3] * len(BIRD_SPECIES)


def test_count_labels_equal_birds_drawn_and_birds_stay_visible():
    world = CountWorld(image_size=48, max_birds=9)
    x, counts, visible = world.render(48, seed=5, visibility=True)
    assert x.shape == (48, 3, 48, 48)
    assert [len(v) for v in visible] == counts.long().tolist()
    assert counts.min() >= 0 and counts.max() <= 9
    for shares in visible:
        if len(shares):
            assert shares.min() > 0.3, "a counted bird must not be hidden"


def test_count_world_validates_its_layout():
    with pytest.raises(ValueError, match="does not fit"):
        CountWorld(max_birds=12, max_distractors=8, grid=4)


def test_world_stream_is_repeatable_and_fresh():
    world = ImageWorld(image_size=24)
    s1 = list(WorldStream(world, batch_size=8, steps=3, seed=1, chunk=16))
    s2 = list(WorldStream(world, batch_size=8, steps=3, seed=1, chunk=16))
    assert len(s1) == 3 and all(torch.equal(a[0], b[0]) for a, b in zip(s1, s2))
    assert not torch.equal(s1[0][0], s1[1][0])


def test_render_on_test_device(device):
    x, y = ImageWorld(image_size=24).render(4, seed=0, device=device)
    assert x.device.type == device.type and y.device.type == device.type


def _reference():
    import importlib.util
    import json
    from pathlib import Path
    here = Path(__file__).parent / "data"
    spec = importlib.util.spec_from_file_location("capture_image_world_hashes", here / "capture_image_world_hashes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, json.loads((here / "image_world_hashes.json").read_text())


def test_renderer_draws_the_reference_images_bit_for_bit():
    """Any change to the renderer (a speed-up) must draw WORLD_VERSION 2's images exactly: the
    hashes were captured from the renderer before any speed-up. Only a WORLD_VERSION bump (which
    rebuilds every cache) may change them, together with the reference file."""
    from helpers.images import WORLD_VERSION
    module, reference = _reference()
    assert WORLD_VERSION == 2, "a new world version needs new reference hashes (see tests/data/capture_image_world_hashes.py)"
    cases = module.cases()
    assert set(cases) == set(reference)
    skip = {"ImageWorld s40 seed11 n1024"}            # the large case: run the capture script for it
    differ = [name for name, make in cases.items() if name not in skip and module.digest(*make()) != reference[name]]
    assert not differ, f"renderer output changed for {differ[:5]} ({len(differ)} cases)"


def test_rendered_tensors_are_ordinary_tensors():
    """The renderer paints in inference mode; what it returns must still work with autograd."""
    x, y = ImageWorld(image_size=24).render(8, seed=0)
    counts = CountWorld(image_size=32).render(4, seed=0)
    assert not any(t.is_inference() for t in (x, y, *counts))
    weight = torch.ones(3, requires_grad=True)
    (x.mean((0, 2, 3)) * weight).sum().backward()
    assert weight.grad is not None


def test_windows_hold_every_pixel_a_part_covers(monkeypatch):
    """Each object is painted only inside a window around the pixels its parts can cover: for
    any pose (far beyond the worlds' ranges), that paints the same layer, bit for bit, as painting
    the whole image."""
    import numpy as np

    from helpers import images
    g = torch.Generator().manual_seed(0)
    for size in (19, 32):
        n = 300
        names = [CLASSES[i] for i in torch.randint(0, len(CLASSES), (n,), generator=g).tolist()]
        cx, cy = (torch.rand(n, generator=g) * 2.4 - 1.2 for _ in range(2))
        scale = torch.rand(n, generator=g) * 1.2 + 0.03
        angle = (torch.rand(n, generator=g) * 2 - 1) * 3.2
        flip = torch.rand(n, generator=g) < 0.5
        species = torch.randint(0, len(BIRD_SPECIES), (n,), generator=g)
        args = (names, cx, cy, scale, angle, flip, species, size)
        windowed = images.render_objects(*args, torch.Generator().manual_seed(1), "cpu")
        with monkeypatch.context() as m:
            m.setattr(images, "_span", lambda lo, hi, s: (np.zeros_like(lo), (s, s)))
            m.setattr(images, "_OWN_WINDOW_SAVES", float("inf"))
            whole = images.render_objects(*args, torch.Generator().manual_seed(1), "cpu")
        assert all(torch.equal(a, b) for a, b in zip(windowed, whole)), size
        assert windowed[1].sum() > 0
