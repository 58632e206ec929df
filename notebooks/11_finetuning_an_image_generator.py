# %% [markdown]
# # 11 · Fine-tuning an image generator to draw orcas
#
# The glossary's second example of fine-tuning: take a generative image model **pre-trained on a
# general set of images** and fine-tune it on a handful of images of one thing, here orcas, until it
# generates that thing.
#
# The plan:
#
# 1. Load (or train once) a small generator pre-trained on the general image world: skies, seas,
#    fields and sunsets with birds, boats, trees, orcas and ten other kinds of objects. It draws all
#    of them; orcas only now and then.
# 2. Fine-tune **all** its weights on a few orca images; then, for comparison, only LoRA adapters.
# 3. Train the **same network from scratch** on the same few orcas with the same budget (steps,
#    batch size, schedule).
# 4. Measure what each one draws:
#    - the **orca rate**: the share of samples that a classifier of the world labels *orca*;
#    - **diversity**: how different two samples are from each other;
#    - **memorisation**: how close each sample sits to its nearest training image, compared with how
#      close a *new* real orca sits to its nearest training image. Fine-tune too long on a few
#      images and the generator starts handing back its training set.
# 5. Sample the fine-tuned generator two ways: alone, and **guided by the pre-trained generator**
#    (explained below), a trick that only a fine-tuned model can use.

# %%
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from helpers.generation_metrics import class_rate, class_shares, diversity, memorisation_ratio, nearest, pixel_distances
from helpers.generator import (
    Guided,
    create_generator,
    flow_matching_loss,
    generator_config,
    generator_world,
    orca_images,
    pretrained_generator,
    sample,
)
from helpers.images import CLASSES
from helpers.lessons.image_generator import finetune_generator, orca_judge
from helpers.lora import add_lora, train_only_lora, trainable_share
from helpers.models import count_params
from helpers.modes import sizes
from helpers.plots import image_grid, line_plot, plot_history
from helpers.results import Lesson

lesson = Lesson("11")
S = sizes("generator")
S


# %% [markdown]
# ## The generator: flow matching with a small U-Net
#
# Why this design, out of the many kinds of image generators:
#
# - **Flow matching learns one simple thing.** Take a data image `x1` and a noise image `x0`, pick a
#   time `t` between 0 and 1, and mix them: `xt = (1 - t)·x0 + t·x1`. Along that straight line the
#   image moves with velocity `x1 - x0`. The network sees `xt` and `t` and predicts that velocity;
#   the loss is a mean squared error. No noise schedule, no variance tables.
# - **Sampling is a short, plain loop.** Start from noise drawn with a fixed seed and take a few
#   dozen Euler steps along the predicted velocity. The same seed gives the same images, which
#   makes before/after comparisons fair. A classic diffusion model (DDPM) needs hundreds of steps.
# - **The U-Net** is the network diffusion models use: it shrinks the image to see the whole scene,
#   grows it back, and passes details across with skip connections. Ours first folds 2×2 pixels
#   into channels (as diffusion transformers do with patches), which makes it four times cheaper
#   and lets a laptop CPU train it in minutes.
#
# The generator is **unconditional**: it has no class prompt. Whatever it draws is what its
# training images looked like, so "teach it to draw orcas" can only mean changing its weights:
# fine-tuning.
#
# Here is the loss written out, next to the helper the lesson trains with; the same noise and times
# give the same number.

# %%
def my_flow_matching_loss(model, images):
    x1 = images * 2 - 1                           # data, scaled to [-1, 1]
    x0 = torch.randn_like(x1)                     # noise
    t = torch.rand(len(x1))                       # one time per image
    xt = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * x1
    return ((model(xt, t) - (x1 - x0)) ** 2).mean()


demo_model = create_generator(generator_config(), seed=0)
demo_images = orca_images(8, seed=0, image_size=S.image_size)
torch.manual_seed(1)
mine = my_flow_matching_loss(demo_model, demo_images)
torch.manual_seed(1)
theirs = flow_matching_loss(demo_model, (demo_images,))
print(f"written out: {mine.item():.5f}   helpers: {theirs.item():.5f}   "
      f"U-Net parameters: {count_params(demo_model):,}")
assert torch.allclose(mine, theirs)

# %% [markdown]
# ## The judge: who says a sample is an orca?
#
# To count orcas among thousands of samples we need a classifier of the world. We use a narrow
# ResNet built exactly like lesson 01's model, trained on the generator's world at the generator's
# resolution (it is cached, so this is quick after `make prepare`). Before trusting it we check two
# things: it must call **real** orcas orcas, and it must rarely call other things orcas, above all
# whales, the orca's nearest look-alike.

# %%
judge, judge_info = orca_judge()
real_orcas = orca_images(S.eval_samples, seed=999, image_size=S.image_size)    # never trained on
others, other_labels = generator_world(S.image_size).render(4 * S.eval_samples, seed=998)
others = others[other_labels != CLASSES.index("orca")]
judge_real_rate = class_rate(judge, real_orcas, "orca")
judge_false_rate = class_rate(judge, others, "orca")
print(f"judge accuracy on fresh scenes of the world: {judge_info['val_acc']:.3f}")
print(f"real orcas labelled orca:       {judge_real_rate:.3f}")
print(f"other objects labelled orca:    {judge_false_rate:.3f}")

# %% [markdown]
# ## Before fine-tuning: what the pre-trained generator draws
#
# `pretrained_generator()` returns a fresh copy of the cached checkpoint every time (or trains it,
# once, if the cache is empty: several minutes on a laptop CPU). We draw samples with a fixed seed and ask the
# judge what they show. With 14 kinds of objects in the world, orcas should be a small share: this
# is `orca_rate_pretrained`, the rate before any fine-tuning.

# %%
pretrained, pre_info = pretrained_generator()
pre_samples = sample(pretrained, S.eval_samples, seed=0, steps=S.sample_steps)
orca_rate_pretrained = class_rate(judge, pre_samples, "orca")
shares = class_shares(judge, pre_samples)
print(f"orca rate before fine-tuning: {orca_rate_pretrained:.3f}")
print("what the judge sees in the samples:", ", ".join(f"{k} {v:.2f}" for k, v in shares.items() if v > 0))
fig = image_grid(pre_samples[:24], cols=12, size=1.0, title="pre-trained generator, before fine-tuning")
display(fig)
plt.close(fig)

# %% [markdown]
# ## The few orcas
#
# The fine-tuning set is a small number of orca images from the same world. A separate set of
# fresh orcas, never trained on, is the reference for memorisation: their distance to the nearest
# training orca is what "a new orca" looks like.

# %%
finetune_set = orca_images(S.finetune_images, seed=1, image_size=S.image_size)
print(f"{len(finetune_set)} orca images to fine-tune on")
fig = image_grid(finetune_set[:16], cols=16, size=0.9, title="part of the fine-tuning set")
display(fig)
plt.close(fig)


# %% [markdown]
# Every measurement below samples with the same seeds, so the runs differ only in their weights.
# `evaluate` runs during training, every few steps, to draw the curves.

# %%
def measure(model, n=S.eval_samples, steps=S.sample_steps, seed=1):
    """Orca rate, memorisation ratio and diversity of ``n`` samples of ``model``."""
    samples = sample(model, n, seed=seed, steps=steps, progress=False)
    return {"orca_rate": class_rate(judge, samples, "orca"),
            "memorisation_ratio": memorisation_ratio(samples, finetune_set, real_orcas),
            "diversity": diversity(samples)}


def measure_quickly(model):          # fewer, coarser samples for the curves during training
    return measure(model, n=max(16, S.eval_samples // 4), steps=max(4, S.sample_steps // 2))


def measure_both(model):             # the fine-tuned model alone, and guided by the pre-trained one
    guided = measure_quickly(Guided(model, pretrained, S.guidance))
    return {**measure_quickly(model), "guided_orca_rate": guided["orca_rate"]}


eval_every = max(1, S.finetune_steps // S.curve_points)
print(f"budget for both runs: {S.finetune_steps} steps of {S.finetune_batch} images; "
      f"measured every {eval_every} steps")

# %% [markdown]
# ## Fine-tuning: all weights, starting from the pre-trained generator

# %%
finetuned, _ = pretrained_generator(verbose=False)          # a fresh copy: re-running starts over
start = time.perf_counter()
ft_history = finetune_generator(finetuned, finetune_set, steps=S.finetune_steps, batch_size=S.finetune_batch,
                                lr=S.finetune_lr, evaluate=measure_both, eval_every=eval_every,
                                desc="fine-tuning")
ft_seconds = time.perf_counter() - start

# %% [markdown]
# ## The baseline: the same network from scratch, same images, same budget
#
# A fresh U-Net with random weights trains on the same orcas for the same number of steps, batch
# size and learning-rate schedule: the only difference is where the weights start.

# %%
scratch = create_generator(generator_config(), seed=0)
start = time.perf_counter()
scratch_history = finetune_generator(scratch, finetune_set, steps=S.finetune_steps, batch_size=S.finetune_batch,
                                     lr=S.finetune_lr, evaluate=measure_quickly, eval_every=eval_every,
                                     desc="from scratch")
scratch_seconds = time.perf_counter() - start

# %% [markdown]
# ## LoRA: fine-tuning small adapters instead of every weight
#
# Lesson 06's LoRA works on convolutions too: every convolution of the U-Net keeps its pre-trained
# weight frozen and gains a low-rank change that starts at zero. Same orcas, same steps and batch
# size; adapters start at zero and take a larger learning rate.

# %%
lora_model, _ = pretrained_generator(verbose=False)
add_lora(lora_model, ["stem", "down1", "down2", "down3", "mid", "up3", "up2", "up1", "out"], rank=S.lora_rank)
train_only_lora(lora_model)
print(f"LoRA rank {S.lora_rank}: {trainable_share(lora_model):.1%} of the weights train")
start = time.perf_counter()
lora_history = finetune_generator(lora_model, finetune_set, steps=S.finetune_steps, batch_size=S.finetune_batch,
                                  lr=S.lora_lr, desc="LoRA fine-tuning")
lora_seconds = time.perf_counter() - start

# %% [markdown]
# ## Guidance: let the pre-trained generator point the way
#
# The fine-tuned generator still carries much of the general world in its weights, so sampled
# alone it draws some half-finished shapes that the judge does not call orcas (most often "bird"). But we still have the
# model we started from. At every sampling step we can ask both for a velocity and move along
#
# `v = v_finetuned + w · (v_finetuned − v_pretrained)`
#
# The difference `v_finetuned − v_pretrained` is what fine-tuning added: "more orca, less of the
# rest of the world". With `w = 0` this is the fine-tuned model alone; `w > 0` exaggerates the
# difference. This is **classifier-free guidance**, the trick text-to-image diffusion models use,
# with the pre-trained generator in the role of the unprompted model. It costs a second forward
# pass per step and changes no weights. The model trained from scratch has no pre-trained partner,
# so it can't use this: it is one more thing that pre-training buys.
#
# ## What each generator draws
#
# The table measures the full set of samples of every model. **Orca rate**: the share the judge
# labels orca. **Memorisation ratio**: the median distance from a sample to its nearest training
# orca, divided by the median distance from a fresh real orca to its nearest training orca; about
# 1 means the samples are as new as fresh orcas, near 0 means copies. **Diversity**: the mean
# distance between two samples (real orcas are shown for reference).

# %%
ft_plain_samples = sample(finetuned, S.eval_samples, seed=0, steps=S.sample_steps)
ft_samples = sample(Guided(finetuned, pretrained, S.guidance), S.eval_samples, seed=0, steps=S.sample_steps)
scratch_samples = sample(scratch, S.eval_samples, seed=0, steps=S.sample_steps)
lora_plain_samples = sample(lora_model, S.eval_samples, seed=0, steps=S.sample_steps)
lora_samples = sample(Guided(lora_model, pretrained, S.guidance), S.eval_samples, seed=0, steps=S.sample_steps)
rows = []
for name, samples, seconds in [("pre-trained, not fine-tuned", pre_samples, 0.0),
                               ("fine-tuned, sampled alone", ft_plain_samples, ft_seconds),
                               (f"fine-tuned, guided (w={S.guidance})", ft_samples, ft_seconds),
                               (f"LoRA rank {S.lora_rank}, sampled alone", lora_plain_samples, lora_seconds),
                               (f"LoRA rank {S.lora_rank}, guided (w={S.guidance})", lora_samples, lora_seconds),
                               ("from scratch, same budget", scratch_samples, scratch_seconds),
                               ("real orcas (reference)", real_orcas, 0.0)]:
    rows.append({"generator": name, "orca_rate": class_rate(judge, samples, "orca"),
                 "memorisation_ratio": memorisation_ratio(samples, finetune_set, real_orcas),
                 "diversity": diversity(samples), "train_seconds": seconds})
table = pd.DataFrame(rows).set_index("generator")
# The headline compares like with like: each generator sampled on its own, same budget.
orca_rate_finetuned = table.loc["fine-tuned, sampled alone", "orca_rate"]
orca_rate_guided = table.loc[f"fine-tuned, guided (w={S.guidance})", "orca_rate"]
orca_rate_scratch = table.loc["from scratch, same budget", "orca_rate"]
memorisation = table.loc["fine-tuned, sampled alone", "memorisation_ratio"]
table.round(3)


# %% [markdown]
# ## Samples beside their nearest training images
#
# Each pair shows a sample (left) and the training orca closest to it in pixels (right), with
# their distance. A sample that is a copy sits at a small distance from its partner; a new orca is
# as far from its nearest training image as fresh real orcas are (the dashed reference below).

# %%
def pairs_grid(samples, title, n=8):
    dist, idx = nearest(samples[:n], finetune_set)
    images = torch.stack([img for i in range(n) for img in (samples[i], finetune_set[idx[i]])])
    titles = [t for i in range(n) for t in (f"sample {i}", f"nearest d={dist[i]:.2f}")]
    return image_grid(images, titles=titles, cols=8, size=1.2, title=title)


for samples, title in [(ft_plain_samples, "fine-tuned, sampled alone: samples and their nearest training orcas"),
                       (ft_samples, "fine-tuned, guided: samples and their nearest training orcas"),
                       (scratch_samples, "from scratch: samples and their nearest training orcas")]:
    fig = pairs_grid(samples, title)
    display(fig)
    plt.close(fig)
reference = nearest(real_orcas, finetune_set)[0].median().item()
print(f"a fresh real orca's median distance to its nearest training orca: {reference:.3f}")

# %% [markdown]
# ## How the measures move with the number of fine-tuning steps
#
# The pre-trained generator learns "draw orcas" within few steps, because it already knows how to
# draw seas, skies and dark shapes with fins. The network trained from scratch has to learn all of
# that from a few images in the same steps: it gets there too, by learning those few images by
# heart, but later. Train both for more steps (see the exercise's `dataclasses.replace`) and the
# gap closes: the budget decides how much pre-training buys. Watch the memorisation ratio as fine-tuning goes on: it
# drifts down as the samples move toward the training images. This lesson stops long before the
# samples become copies; exercise 2 shows what a copying generator would score, and the table
# compares. (The from-scratch samples score *above* 1 not because they are inventive, but because
# they are still far from any orca at all.)

# %%
steps_axis = [e["step"] for e in ft_history.evals]
fig = line_plot(steps_axis, {"fine-tuned": [e["orca_rate"] for e in ft_history.evals],
                             "fine-tuned, guided": [e["guided_orca_rate"] for e in ft_history.evals],
                             "from scratch": [e["orca_rate"] for e in scratch_history.evals]},
                xlabel="training step", ylabel="orca rate", title="orca rate during training")
fig.axes[0].axhline(orca_rate_pretrained, color="grey", ls=":", label="before fine-tuning")
fig.axes[0].legend(fontsize=8)
display(fig)
plt.close(fig)
fig = line_plot(steps_axis, {"fine-tuned": [e["memorisation_ratio"] for e in ft_history.evals],
                             "from scratch": [e["memorisation_ratio"] for e in scratch_history.evals]},
                xlabel="training step", ylabel="memorisation ratio", title="memorisation during training")
fig.axes[0].axhline(1.0, color="grey", ls="--", label="as new as fresh real orcas")
fig.axes[0].legend(fontsize=8)
display(fig)
plt.close(fig)
plot_history(ft_history, lora_history, scratch_history, labels=["fine-tuned", "LoRA", "from scratch"],
             title="training loss")

# %% [markdown]
# ## Exercise 1: the most copied sample
#
# Using `nearest(samples, references)` (it returns each sample's distance to its nearest reference
# image, and that image's index), find **which fine-tuned sample sits closest to a training
# orca**. Set `closest_sample` to its index in `ft_samples` and `closest_distance` to that distance.
# Then look at the pair: is it a copy, or just a similar orca?

# %% tags=["exercise"]
closest_sample = None        # an index into ft_samples
closest_distance = None      # its distance to the nearest training orca

# %% jupyter={"source_hidden": true} tags=["solution"]
dist, idx = nearest(ft_samples, finetune_set)
closest_sample = int(dist.argmin())
closest_distance = float(dist.min())
fig = image_grid(torch.stack([ft_samples[closest_sample], finetune_set[idx[closest_sample]]]),
                 titles=["closest sample", f"training orca, d={closest_distance:.3f}"], cols=2, size=1.8)
display(fig)
plt.close(fig)

# %% tags=["check"]
from helpers.exercises import check

check("the most copied sample",
      lambda: closest_sample is not None
      and abs(closest_distance - float(pixel_distances(ft_samples[closest_sample:closest_sample + 1],
                                                         finetune_set).min())) < 1e-5
      and closest_distance <= float(pixel_distances(ft_samples, finetune_set).min()) + 1e-5,
      hint="dist, idx = nearest(ft_samples, finetune_set); then dist.argmin() and dist.min()")

# %% [markdown]
# ## Exercise 2: what a memorising generator scores
#
# A generator that has memorised its training set hands back training images, slightly changed.
# Build such a "generator's output" yourself: take the fine-tuning images, repeat them to
# `S.eval_samples` images, and add a little noise (`0.03 * torch.randn_like(...)`, then clamp to
# [0, 1]). Set `copy_ratio` to its memorisation ratio (`memorisation_ratio(samples, finetune_set,
# real_orcas)`). Compare it with the fine-tuned generator's ratio: how far is that from copying?

# %% tags=["exercise"]
copy_ratio = None

# %% jupyter={"source_hidden": true} tags=["solution"]
copies = finetune_set[torch.arange(S.eval_samples) % len(finetune_set)]
copies = (copies + 0.03 * torch.randn_like(copies)).clamp(0, 1)
copy_ratio = memorisation_ratio(copies, finetune_set, real_orcas)
print(f"noisy copies: {copy_ratio:.3f}   fine-tuned generator: {memorisation:.3f}   "
      f"fresh real orcas: 1 by definition")

# %% tags=["check"]
check("memorisation ratio of copies",
      lambda: copy_ratio is not None and 0 < copy_ratio < 0.6,
      hint="copies = finetune_set[torch.arange(S.eval_samples) % len(finetune_set)], add noise, clamp, "
           "then memorisation_ratio(copies, finetune_set, real_orcas)")

# %% [markdown]
# ## Results
#
# The table above and the record below are this run's numbers. What they mean:
#
# - **Orca rate.** Before fine-tuning the generator rarely draws an orca (the judge sees fish,
#   birds, cars, kites...). Fine-tuned on a few orcas and sampled on its own, it draws orcas most of
#   the time (`orca_rate_finetuned`); sampled with guidance by the pre-trained model, nearly always
#   (`orca_rate_guided`). The same network trained on the same orcas from scratch, with the same
#   budget, draws far fewer recognisable orcas: it had to learn seas, skies and shapes from a few
#   images.
# - **Memorisation.** The ratio says whether the orcas are new or copies. Watch it when you train
#   longer on fewer images (try `dataclasses.replace(S, finetune_steps=..., finetune_images=...)`):
#   if it heads toward the noisy copies of exercise 2, stop earlier, fine-tune fewer weights (LoRA,
#   lesson 06) or add images.
# - **Diversity.** Compare the samples' diversity with that of real orcas: a generator that
#   collapses to a few orcas has lower diversity even when every sample is an orca.

# %%
lesson.record({
    "orca_rate_finetuned": orca_rate_finetuned,
    "orca_rate_guided": orca_rate_guided,
    "orca_rate_scratch": orca_rate_scratch,
    "orca_rate_pretrained": orca_rate_pretrained,
    "memorisation_ratio": memorisation,
    "finetune_images": len(finetune_set),
})
table.round(3)
