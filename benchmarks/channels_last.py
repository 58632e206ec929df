"""Does the channels_last memory layout speed up the course's convolutional networks here?

For each model the course trains with convolutions (lesson 01's image model, lesson 05's
counter, lesson 11's generator), the course's `train` loop runs the same steps on the same
batches with `channels_last=True` and `channels_last=False`, interleaved round by round so a
noisy shared machine slows both alike. It prints one ratio per model and the layout the course
uses for it on this device (`helpers.device.prefers_channels_last`; the generator's own
`helpers.generator.training_layout`):

    python benchmarks/channels_last.py [--device auto] [--rounds 4] [--steps 20] [--mode class]

    image model (lesson 01)    ratio X.XX   (channels_last samples/s over contiguous; > 1: faster)
"""
import argparse
import statistics
import time

import torch

from helpers.device import prefers_channels_last, resolve_device, synchronize
from helpers.generator import create_generator, flow_matching_loss, generator_config, training_layout
from helpers.images import ImageWorld
from helpers.lessons.bird_counter import count_model
from helpers.losses import cross_entropy_loss, poisson_loss
from helpers.models import create_image_model, image_model_config
from helpers.modes import sizes
from helpers.training import Batches, Monitor, Optimiser, Speed, train


def cases(mode, device):
    """(name, make_model, loss_fn, batches, default layout) for each conv net the course trains."""
    image = image_model_config(mode)
    resnet_layout = prefers_channels_last(create_image_model(image), device)   # lessons 01 and 05 alike
    x, y = ImageWorld(image_size=image.image_size).render(image.batch_size * 2, seed=0, device=device)
    yield ("image model (lesson 01)", lambda: create_image_model(image, seed=0), cross_entropy_loss,
           Batches(x, y, batch_size=image.batch_size, shuffle=False), resnet_layout)
    counter = sizes("bird_counter", mode)
    x = torch.rand(counter.batch_size * 2, 3, counter.image_size, counter.image_size, device=device)
    y = torch.randint(0, 10, (len(x),), device=device).float()
    yield ("bird counter (lesson 05)", lambda: count_model(False, seed=0, train_mean=4.0, device=device),
           poisson_loss, Batches(x, y, batch_size=counter.batch_size, shuffle=False), resnet_layout)
    gen = generator_config(mode)
    x = torch.rand(gen.pretrain_batch * 2, 3, gen.image_size, gen.image_size, device=device) * 2 - 1
    yield ("generator (lesson 11)", lambda: create_generator(gen, seed=0), flow_matching_loss,
           Batches(x, batch_size=gen.pretrain_batch, shuffle=False), training_layout(device))


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--mode", default="class", help="sizes of which mode")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    print(f"device {device.type}, mode {args.mode}, {args.steps} steps a round, {args.rounds} rounds")
    for name, make, loss_fn, batches, default in cases(args.mode, device):
        rates = {True: [], False: []}
        for r in range(args.rounds + 1):            # round 0 warms both up and is not counted
            for layout in (True, False) if r % 2 else (False, True):
                model = make().to(device)
                synchronize(device)
                start = time.perf_counter()
                train(model, loss_fn, batches, steps=args.steps, optimiser=Optimiser(lr=1e-3), device=device,
                      speed=Speed(channels_last=layout), monitor=Monitor(log_every=10), progress=False)
                synchronize(device)
                if r > 0:
                    rates[layout].append(args.steps * batches.batch_size / (time.perf_counter() - start))
        ratio = statistics.median(rates[True]) / statistics.median(rates[False])
        print(f"{name:<26} contiguous {statistics.median(rates[False]):7.1f}/s, channels_last "
              f"{statistics.median(rates[True]):7.1f}/s   ratio {ratio:.2f}   (default here: "
              f"{'channels_last' if default else 'contiguous'})")


if __name__ == "__main__":
    main()
