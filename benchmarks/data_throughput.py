"""Can the procedural world keep the training device busy?

Measures, on one device and interleaved round by round: images/s the image world renders
(in the chunks `WorldStream` uses) and images/s lesson 01's model trains. Prints the ratio last:

    python benchmarks/data_throughput.py [--device auto] [--rounds 5] [--world objects|general]

    ratio X.X    (render images/s over training images/s; the goal is at least 10)
"""
import argparse
import statistics
import time

from helpers.device import resolve_device, synchronize
from helpers.general_world import GeneralWorld
from helpers.images import ImageWorld
from helpers.losses import cross_entropy_loss
from helpers.models import create_image_model, image_model_config
from helpers.training import Batches, Optimiser, train


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mode", default="class", help="sizes of which mode's lesson 01")
    parser.add_argument("--chunk", type=int, default=1024, help="images per render call (WorldStream's)")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed per round")
    parser.add_argument("--world", choices=("objects", "general"), default="objects",
                        help="the object world (ImageWorld) or the general world (GeneralWorld)")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    config = image_model_config(args.mode)
    world = (GeneralWorld if args.world == "general" else ImageWorld)(image_size=config.image_size)
    steps = args.steps
    x, y = world.render(config.batch_size * 4, seed=0, device=device)
    batches = Batches(x, y, batch_size=config.batch_size, shuffle=False)
    model = create_image_model(config, num_classes=world.num_classes)
    render, training = [], []
    for r in range(args.rounds + 1):
        synchronize(device)
        start = time.perf_counter()
        world.render(args.chunk, seed=r, device=device)
        synchronize(device)
        render.append(args.chunk / (time.perf_counter() - start))
        start = time.perf_counter()
        train(model, cross_entropy_loss, batches, steps=steps, optimiser=Optimiser(lr=1e-3), device=device,
              progress=False)
        synchronize(device)
        training.append(steps * config.batch_size / (time.perf_counter() - start))
    render, training = statistics.median(render[1:]), statistics.median(training[1:])
    print(f"render:   {render:9.0f} images/s ({args.world} world, {config.image_size} px, chunks of {args.chunk})")
    print(f"training: {training:9.0f} images/s (lesson 01's model in {args.mode} mode, batch {config.batch_size})")
    print(f"device {device.type}")
    print(f"ratio {render / training:.1f}")


if __name__ == "__main__":
    main()
