"""What the benchmarks share: the course's three model families at one mode's sizes, a timer that
interleaves the variants it compares, and medians with their spread.

Each case is ``(name, make_model, loss_fn, batch)``: a fresh model of lesson 01 (the ResNet image
model), lesson 07 (the GPT) or lesson 11 (the U-Net), its training loss, and one batch of the
lesson's shape on ``device``.
"""
from __future__ import annotations

import statistics

import torch

from helpers.generator import create_generator, flow_matching_loss, generator_config
from helpers.gpt import GPT, GPTConfig
from helpers.images import ImageWorld
from helpers.lm import lm_loss
from helpers.losses import cross_entropy_loss
from helpers.models import create_image_model, image_model_config
from helpers.modes import sizes

VOCAB = 1000        # lesson 07's word vocabulary is about a thousand entries (helpers/tokenizer.py)


def model_cases(mode: str = "class", device="cpu", vocab: int = VOCAB, batch_scale: float = 1.0):
    """The three models at ``mode``'s sizes, with a batch each (``batch_scale`` shrinks it, for tests)."""
    def bs(n):
        return max(1, int(n * batch_scale))

    image = image_model_config(mode)
    x, y = ImageWorld(image_size=image.image_size).render(bs(image.batch_size), seed=0, device=device)
    yield ("image model (lesson 01)", lambda: create_image_model(image, seed=0), cross_entropy_loss, (x, y))
    lm = sizes("lm_pretrain", mode)
    config = GPTConfig(vocab_size=vocab, context=lm.context, n_layer=lm.n_layer, n_head=lm.n_head, d_model=lm.d_model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (bs(lm.batch_size), lm.context + 1), generator=g).to(device)

    def make_gpt():
        torch.manual_seed(0)
        return GPT(config)
    yield ("GPT (lesson 07)", make_gpt, lm_loss, (ids[:, :-1], ids[:, 1:]))
    gen = generator_config(mode)
    images = torch.rand(bs(gen.pretrain_batch), 3, gen.image_size, gen.image_size, generator=g).to(device)
    yield ("U-Net (lesson 11)", lambda: create_generator(gen, seed=0), flow_matching_loss, (images,))


def median_spread(values):
    """(median, interquartile range) of a list of numbers."""
    values = sorted(values)
    if len(values) < 4:
        return statistics.median(values), (values[-1] - values[0]) if values else 0.0
    q = statistics.quantiles(values, n=4)
    return statistics.median(values), q[2] - q[0]


def median_standard_error(values) -> float:
    """The standard error of the median of ``values``: about 1.2533 sigma / sqrt(n) for roughly
    normal data, with sigma estimated robustly as IQR / 1.349. It shrinks as pairs are added (the
    IQR of single ratios does not: it is the noise of one pair)."""
    n = len(values)
    if n < 4:
        return float("inf")
    return 1.2533 * (median_spread(values)[1] / 1.349) / n ** 0.5
