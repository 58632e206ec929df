"""Lesson 11's generator and its measures: shapes, learning, determinism, metrics on known inputs."""
from dataclasses import replace

import pytest
import torch

from helpers.generation_metrics import class_rate, class_shares, diversity, memorisation_ratio, nearest, pixel_distances
from helpers.generator import (
    Guided,
    UNet,
    create_generator,
    flow_matching_loss,
    generator_config,
    generator_world,
    orca_images,
    sample,
)
from helpers.images import CLASSES
from helpers.lessons.image_generator import finetune_generator

TINY = replace(generator_config("smoke"), image_size=16, width=8)


def test_unet_keeps_the_image_shape():
    model = UNet(width=8, image_size=16)
    x, t = torch.randn(5, 3, 16, 16), torch.rand(5)
    assert model(x, t).shape == (5, 3, 16, 16)
    assert UNet(width=16, image_size=32)(torch.randn(2, 3, 32, 32), torch.rand(2)).shape == (2, 3, 32, 32)


def test_same_seed_same_weights():
    a, b = create_generator(TINY, seed=3), create_generator(TINY, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_flow_matching_loss_falls_on_a_tiny_set():
    images = orca_images(4, seed=0, image_size=16)

    def mean_loss(model):                          # the same noise and times before and after
        torch.manual_seed(0)
        with torch.no_grad():
            return sum(flow_matching_loss(model, (images,)).item() for _ in range(8)) / 8

    model = create_generator(TINY, seed=0)
    before = mean_loss(model)
    history = finetune_generator(model, images, steps=40, batch_size=4, lr=3e-3, progress=False, device="cpu")
    after = mean_loss(model)
    assert after < 0.8 * before, (before, after, history.loss)


def test_sampling_is_deterministic_for_a_seed():
    model = create_generator(TINY, seed=0)
    a = sample(model, 6, seed=11, steps=3, progress=False)
    b = sample(model, 6, seed=11, steps=3, progress=False)
    c = sample(model, 6, seed=12, steps=3, progress=False)
    assert a.shape == (6, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert model.training, "sampling restores the model's mode"


def test_world_and_orcas_have_the_generator_size():
    x, y = generator_world(16).render(4, seed=0)
    assert x.shape == (4, 3, 16, 16) and y.shape == (4,)
    orcas = orca_images(3, seed=0, image_size=16)
    assert orcas.shape == (3, 3, 16, 16)
    assert torch.equal(orcas, orca_images(3, seed=0, image_size=16))


def test_distances_and_nearest_on_known_images():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.stack([torch.full((3, 4, 4), 0.5), torch.full((3, 4, 4), 0.1)])
    assert torch.allclose(pixel_distances(a, b), torch.tensor([[0.5, 0.1]]))
    d, i = nearest(a, b)
    assert i.item() == 1 and d.item() == pytest.approx(0.1)


def test_memorisation_ratio_is_zero_for_copies_and_about_one_for_new_images():
    train = orca_images(16, seed=0, image_size=16)
    fresh = orca_images(64, seed=1, image_size=16)
    more_fresh = orca_images(64, seed=2, image_size=16)
    assert memorisation_ratio(train[torch.arange(64) % 16], train, fresh) == pytest.approx(0.0, abs=1e-6)
    assert memorisation_ratio(more_fresh, train, fresh) == pytest.approx(1.0, abs=0.2)


def test_diversity_is_zero_for_one_repeated_image():
    one = orca_images(1, seed=0, image_size=16).expand(8, -1, -1, -1)
    assert diversity(one) == pytest.approx(0.0, abs=1e-6)
    assert diversity(orca_images(8, seed=0, image_size=16)) > 0.05


class _Constant(torch.nn.Module):
    """A fake judge that labels every image by the brightness of its first pixel."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        orca = CLASSES.index("orca")
        logits = torch.zeros(len(x), len(CLASSES))
        logits[:, orca] = (x[:, 0, 0, 0] > 0.5).float()           # bright first pixel -> "orca"
        return logits + 0 * self.w


def test_class_rate_counts_the_judges_labels():
    images = torch.zeros(10, 3, 4, 4)
    images[:3, 0, 0, 0] = 1.0                                     # three "orcas"
    judge = _Constant()
    assert class_rate(judge, images, "orca") == pytest.approx(0.3)
    shares = class_shares(judge, images)
    assert shares["orca"] == pytest.approx(0.3) and sum(shares.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="valid classes"):
        class_rate(judge, images, "unicorn")
    judge.image_size = 8                                          # images are resized for the judge
    assert class_rate(judge, images, "orca") == pytest.approx(0.3)


def test_guidance_with_weight_zero_or_the_same_base_is_the_model_alone():
    model, base = create_generator(TINY, seed=0), create_generator(TINY, seed=1)
    x, t = torch.randn(3, 3, 16, 16), torch.rand(3)
    with torch.no_grad():
        v = model(x, t)
        assert torch.allclose(Guided(model, base, 0.0)(x, t), v)
        assert torch.allclose(Guided(model, model, 2.0)(x, t), v, atol=1e-6)
        assert torch.allclose(Guided(model, base, 1.0)(x, t), 2 * v - base(x, t), atol=1e-5)


def test_lora_on_the_unet_starts_as_the_base_model():
    from helpers.lora import add_lora, train_only_lora
    model = create_generator(TINY, seed=0)
    x, t = torch.randn(2, 3, 16, 16), torch.rand(2)
    with torch.no_grad():
        before = model(x, t)
    add_lora(model, ["stem", "down1", "down2", "down3", "mid", "up3", "up2", "up1", "out"], rank=2)
    train_only_lora(model)
    with torch.no_grad():
        assert torch.allclose(model(x, t), before, atol=1e-6)
    assert all("lora" in n for n, p in model.named_parameters() if p.requires_grad)
