# %% [markdown]
# # 00 · Welcome: fine-tuning, by doing it
#
# This course teaches **fine-tuning** by doing every kind of it on models small enough to train on
# a laptop: you pre-train a model on a *general* task, then fine-tune it for a *specific* one, and
# measure what that buys you. Every number a lesson shows comes from the run you just made.
#
# This first notebook checks your set-up, shows the definition the course teaches, takes a
# picture tour of the worlds the lessons draw their data from, and ends with a first fine-tuning
# of your own: pre-training and fine-tuning a small network in under a minute.

# %%
import time

import torch

from helpers.device import describe, resolve_device
from helpers.images import BACKGROUNDS, BIRD_SPECIES, CLASSES, BirdSpecies, CountWorld, ImageWorld, render_class
from helpers.losses import cross_entropy_loss
from helpers.models import ImageModelConfig, create_image_model, pretrained_image_model
from helpers.modes import MODES, current_mode, sizes
from helpers.plots import image_grid
from helpers.results import Lesson
from helpers.surgery import replace_head
from helpers.training import Batches, Monitor, Optimiser, accuracy, train

lesson = Lesson("00")
device = resolve_device("auto")
print("PyTorch", torch.__version__)

# %% [markdown]
# ## Your device and the course's mode
#
# `device="auto"` picks a CUDA GPU if there is one, then an Apple-silicon GPU (MPS), then the CPU.
# The **mode** sets how big every experiment is. It comes from the environment variable
# `COURSE_MODE`, and every lesson reads its sizes from one place, `helpers.modes`:
#
# | mode | for | each lesson takes |
# |---|---|---|
# | `smoke` | the test suite | seconds; numbers are meaningless, every code path runs |
# | `class` | a laptop CPU (default without CUDA) | at most about 5 minutes once `make prepare` has built the checkpoints, and its effect shows |
# | `full` | a CUDA GPU (default with one) | minutes on one GPU, the best results |
#
# To change the mode, start JupyterLab with e.g. `COURSE_MODE=full make lab`.

# %%
print(f"device: {describe(device)}")
print(f"mode:   {current_mode()} (one of {MODES})")
print("lesson 01 will pre-train with:", sizes("pretrain_image"))

# %% [markdown]
# ## What fine-tuning is
#
# The definition this course teaches (from the machine-learning glossary):
#
# > A second, task-specific training pass performed on a pre-trained model to refine its
# > parameters for a specific use case.
#
# First **pre-training**: train a model on a vast *general* data set. Then **fine-tuning**: train
# the pre-trained model to perform a *specific* task. Fine-tuning can modify
#
# - *all* of the pre-trained model's parameters (**full fine-tuning**, lesson 02),
# - only *some* of them, typically those nearest the output, keeping the layers nearest the input
#   unchanged (**partial fine-tuning**, lesson 03; **parameter-efficient tuning** such as LoRA, lesson 06),
# - or it can **add layers** on top (lesson 04).
#
# Fine-tuning is a form of transfer learning, so it may use a different loss or even a different
# model type than pre-training: lesson 05 turns an image classifier into a *regression* model that
# counts the birds in a picture. The course also compares fine-tuning with its neighbours,
# **prompt-based learning** (lesson 09) and **distillation** (lesson 10), and does it all for a
# language model answering medical questions (07, 08) and an image generator that learns to draw
# orcas (11). Lesson 12 scales fine-tuning out to several processes.

# %% [markdown]
# ## A tour of the image world
#
# No download is needed: the general pre-training images are *procedurally generated*. A renderer
# draws scenes with tensor operations on your device, in batches, deterministically from a seed.
# Because the renderer knows what it drew, every label is exact. The general task is to name the
# main object in the scene:

# %%
world = ImageWorld(image_size=48)
x, y = world.render(24, seed=0, device=device)
fig = image_grid(x, [CLASSES[i] for i in y.tolist()], cols=8,
                 title=f"The general world: {len(CLASSES)} classes on {len(BACKGROUNDS)} kinds of background")
fig

# %% [markdown]
# Specific tasks draw from the same world. **Bird species** (lessons 02 to 04, 06, 10) tells
# birds apart by colour and by shape details such as a crest, a face mask, and the length of the
# tail and beak:

# %%
species = BirdSpecies(image_size=48)
x, y = species.balanced(4, seed=1, device=device)
image_grid(x, [BIRD_SPECIES[i] for i in y.tolist()], cols=8, title="Fine-grained bird species")

# %% [markdown]
# **Counting birds** (lesson 05) puts several birds among things a lazy model might count too:
# planes, kites, balloons and leaves. The label is the number of birds the renderer drew.

# %%
counts = CountWorld()
x, n = counts.render(16, seed=2, device=device)
image_grid(x, [f"{int(k)} birds" for k in n.tolist()], cols=8, size=1.6, title="How many birds?")

# %% [markdown]
# **Orcas** (lesson 11) are what the image generator learns to draw from a handful of examples:

# %%
image_grid(render_class("orca", 8, seed=3, image_size=48, device=device), cols=8, title="Orcas")

# %% [markdown]
# The text lessons (07 to 09) use a generated encyclopedia of a made-up world, with people, towns,
# animals and diseases, so that "what the model learned in pre-training" can be measured exactly.
#
# ## How to use the course
#
# - **Run a lesson top to bottom** (Run ▸ Run All Cells). Slow cells show a progress bar; the stop
#   button (■) ends a training run cleanly and keeps what it learned so far.
# - **Caches.** Pre-trained models are saved under `data/cache/` the first time a lesson builds
#   them, keyed by the settings that made them; later lessons load them in a second. A teacher can
#   build them all in advance with `make prepare` (15 min 32 s in class mode on a quiet 2-core
#   machine, 2026-12-02). Without it, a lesson whose model is missing builds it first, with a
#   progress bar and a printed estimate of how long (lesson 02 then takes about 7 minutes, 08 about
#   13, instead of 3 and 4).
# - **Re-run cells freely.** Every experiment cell builds its model fresh from the cached
#   checkpoint, so re-running "freeze 2 stages" and then "freeze 4 stages" compares two clean runs;
#   a run log collects them into a table.
# - **Results.** Each lesson ends by recording its headline numbers in `data/results/<mode>.json`;
#   `make course` runs every lesson headless and prints them as a table.
# - **Exercises** have a starter cell you edit and a check cell below it that tells you whether
#   your answer is right (after *Run All* with the exercise untouched it says "not yet"). The
#   solution comes after the check, folded: click "Solution" to open it, and copy it into the
#   starter if you want to see the check pass.

# %% [markdown]
# ### Exercise: make the world harder
#
# Every world is a frozen dataclass; `dataclasses.replace` makes a variant. Make a version of
# `world` whose scenes have **twice the sensor noise** and only the `"noise"` background, and render
# 8 images from it into `hard_x`.

# %% tags=["exercise"]
from dataclasses import replace

hard_world = None   # your variant of `world`
hard_x = None       # 8 images rendered from it

# %% tags=["check"]
from helpers.exercises import check


def _graininess(images):   # how much neighbouring pixels differ: sensor noise raises it
    return (images[..., 1:] - images[..., :-1]).abs().mean().item()


def _rendered_from_the_harder_world(images):
    """Closer in graininess to the harder world's scenes than to the lesson's own (fresh seeds)."""
    harder = _graininess(replace(world, noise=2 * world.noise, backgrounds=("noise",)).render(32, seed=999)[0])
    plain = _graininess(world.render(32, seed=999)[0])
    return abs(_graininess(images.cpu()) - harder) < abs(_graininess(images.cpu()) - plain)


check("a harder world",
      lambda: hard_world.noise == 2 * world.noise and hard_world.backgrounds == ("noise",)
      and tuple(hard_x.shape) == (8, 3, world.image_size, world.image_size) and _rendered_from_the_harder_world(hard_x),
      hint="print(world) lists its fields: change the two the exercise names, then draw the images from the "
           "new world, not the old one")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# hard_world = replace(world, noise=2 * world.noise, backgrounds=("noise",))
# hard_x, _ = hard_world.render(8, seed=4, device=device)
# ```
#
# </details>

# %%
image_grid(hard_x, cols=8, title="Your harder world") if hard_x is not None else None

# %% [markdown]
# ## Your first fine-tuning
#
# The whole course in one cell, on a small network (lesson 01's kind of ResNet, narrower, on
# 32-pixel images). First it is **pre-trained** on the general world: `W.steps` steps of naming
# the main object in fresh scenes (the first run trains it: about half a minute on one CPU core;
# later runs load it from the cache). Then it is **fine-tuned**: its 14-class head is
# swapped for a new one with the six bird species, and all of it trains for `W.finetune_steps`
# steps on `W.labels_per_class` labelled birds per species. The same network from random weights
# gets the same labels, steps and rate, so the gap is what pre-training bought at this budget
# (lesson 02 makes the comparison fair, with seeds and a budget of the random start's own).

# %%
W = sizes("welcome")
start = time.perf_counter()
small = ImageModelConfig.from_sizes(W)                # width, image size, steps, batch, rate from W
pretrained, info = pretrained_image_model(small, device=device)    # trained now, or loaded from the cache
birds = BirdSpecies(image_size=W.image_size)
x_birds, y_birds = birds.balanced(W.labels_per_class, seed=5, device=device)
x_test_birds, y_test_birds = birds.balanced(W.test_per_class, seed=6, device=device)


def fine_tune(model, desc):
    replace_head(model, len(BIRD_SPECIES), seed=0)          # a new head: six species instead of 14 classes
    train(model, cross_entropy_loss, Batches(x_birds, y_birds, batch_size=W.finetune_batch, seed=0),
          steps=W.finetune_steps, optimiser=Optimiser(lr=W.finetune_lr), device=device, monitor=Monitor(desc=desc))
    return accuracy(model, x_test_birds, y_test_birds)


finetuned_acc = fine_tune(pretrained, "fine-tuning")
scratch_acc = fine_tune(create_image_model(small), "from random weights")
print(f"pre-trained: {info['val_acc']:.3f} validation accuracy on the general world's {len(CLASSES)} classes")
print(f"bird species, {W.labels_per_class} labels each, {W.finetune_steps} steps: fine-tuned {finetuned_acc:.3f}, "
      f"from random weights {scratch_acc:.3f}, chance {1 / len(BIRD_SPECIES):.3f} "
      f"({len(y_test_birds)} test birds; {time.perf_counter() - start:.0f} s for this cell)")
