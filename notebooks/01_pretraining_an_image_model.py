# %% [markdown]
# # 01 · Pre-training an image model
#
# Fine-tuning starts from a **pre-trained model**: one trained on a large, *general* data set. In
# this lesson you make that model. A small convolutional network, built with
# [timm](https://github.com/huggingface/pytorch-image-models), learns to name the main object in
# scenes from the procedural image world. The lessons after this one fine-tune it.
#
# What you will see: the data, the model and its size, pre-training with a live curve, the
# confusion matrix, and the filters the first layer learned. The trained model is saved in the
# course's cache, so the later lessons load it in a second.

# %%

from helpers.device import resolve_device
from helpers.images import CLASSES, ImageWorld
from helpers.models import create_image_model, image_model_config, pretrained_image_model
from helpers.modes import sizes
from helpers.plots import LiveCurve, confusion_matrix, conv_filters, image_grid, plot_history
from helpers.results import Lesson
from helpers.surgery import count_params
from helpers.training import History, accuracy, predict

lesson = Lesson("01")
device = resolve_device("auto")
S = sizes("pretrain_image")
config = image_model_config()
print(S.summary())

# %% [markdown]
# ## The general data set
#
# The world renders fresh scenes for every training batch, so the model never sees the same image
# twice (`steps × batch_size` images in all). A fixed validation set, rendered from its own seed,
# measures how well it generalises.

# %%
world = ImageWorld(image_size=S.image_size)
x_val, y_val = world.render(S.val_images, seed=10_000 + config.seed, device=device)
print(f"{len(CLASSES)} classes; validation set: {tuple(x_val.shape)}")
print(f"training will see {S.steps * S.batch_size:,} fresh images")
image_grid(x_val[:16], [CLASSES[i] for i in y_val[:16].tolist()], cols=8)

# %% [markdown]
# ## The model
#
# A ResNet-18 from timm at a fraction of its usual width: the same architecture as the
# ImageNet models people fine-tune every day, small enough for a laptop. Because it is an ordinary
# timm model, everything in the next lessons also works on any other timm architecture. A ResNet
# is a **stem** (the first convolution) followed by four **stages** of residual blocks, each
# halving the resolution and doubling the channels, then a **head**: global average pooling and a
# linear classifier.

# %%
model = create_image_model(config)
print(f"{config.arch} at width {config.width}: {count_params(model):,} parameters")
for name, child in model.named_children():
    n = count_params(child)
    if n:
        print(f"  {name:<8} {n:>10,}")
print("classifier:", model.get_classifier())

# %% [markdown]
# ## Pre-training
#
# `pretrained_image_model()` is the one call every later lesson uses. If the cache holds a model
# made with exactly this configuration it loads it; otherwise it trains one now, with the
# course's training loop (AdamW, warmup then cosine decay, mixed precision on a GPU) and saves it.
# Set `RETRAIN = True` to train again even when a cached model exists (about 2 minutes on a
# 2-core laptop in class mode).

# %%
RETRAIN = False

model, info = pretrained_image_model(config, device=device, rebuild=RETRAIN,
                                     hook=LiveCurve(metric="val_acc", title="pre-training"))
history = History(**info["history"])
print(f"trained on {info['train_images']:,} images at {info['images_per_s']:.0f} images/s")
plot_history(history, metric="val_acc", title="pre-training on the general world")

# %% [markdown]
# ## How good is it?

# %%
val_acc = accuracy(model, x_val, y_val)
pred = predict(model, x_val)[:, :len(CLASSES)].argmax(1)      # the object classes (a general-world model has more)
print(f"validation accuracy: {val_acc:.3f} (chance: {1 / len(CLASSES):.3f})")
confusion_matrix(y_val, pred, CLASSES, title="validation set, rows sum to 1")

# %% [markdown]
# Look at the off-diagonal cells: which classes does the model still mix up, and do they look
# alike? The pairs it confuses most, counted, and a gallery of its mistakes:

# %%
mixups = {}
for t, p in zip(y_val.tolist(), pred.tolist()):
    if t != p:
        mixups[(CLASSES[t], CLASSES[p])] = mixups.get((CLASSES[t], CLASSES[p]), 0) + 1
for (t, p), n in sorted(mixups.items(), key=lambda kv: -kv[1])[:3]:
    print(f"{t} taken for {p}: {n} of {int((y_val == CLASSES.index(t)).sum())} validation {t}s")
wrong = (pred != y_val).nonzero().flatten()[:16]
if len(wrong):
    fig = image_grid(x_val[wrong], [f"{CLASSES[p]}?\n({CLASSES[t]})" for p, t in
                                    zip(pred[wrong].tolist(), y_val[wrong].tolist())], cols=8,
                     title="mistakes: predicted? (true)")
else:
    fig = None
    print("no mistakes on the validation set")
fig

# %% [markdown]
# ## What the first layer learned
#
# Each small image is one filter of the stem's convolution, the layer nearest the input. Filters
# that respond to edges and colours would be general: almost any image task could use them. That
# is why the layers nearest the input are the usual candidates to keep frozen when fine-tuning, a
# hypothesis lesson 03 tests.

# %%
conv_filters(model.conv1.weight, cols=8)

# %% [markdown]
# ## A more general world
#
# The object world teaches this network to name birds and boats, and it does that well. But do
# its features help on images from outside the world, such as real photographs or handwriting?
# Lesson 13 measures it on real handwritten digits, and its linear probe there is poor. Research on
# pre-training without real photos shows what helps (Baradad et al. 2021; Kataoka et al. 2020;
# Anderson and Farrell 2022). It is not realism but variety, plus a few statistics that every
# natural image shares:
#
# - **1/f spectra**: a photo has big smooth areas and finer and finer detail; the strength of a
#   pattern falls as one over its frequency. The *1/f noise* below has exactly that spectrum.
# - **occlusion**: near things hide far things, at every size. *Dead leaves* stacks flat discs and
#   rectangles, many small and few large, each hiding part of the ones under it.
# - **many distinct shapes**: *fractals*, each class drawn by its own small set of geometric rules,
#   one or two copies per image, each in a colour that stands out from what lies behind it.
#
# The **general world** (`GeneralWorld`) mixes these with the object scenes in one label space: the
# object classes first (so every later lesson still has its birds), then the fractal classes.
# Object scenes sometimes stand on these textures too. One sample of each ingredient:

# %%
from helpers.general_world import GeneralWorld

general = GeneralWorld(image_size=S.image_size)
examples, titles = general.showcase(device=device)
print(f"{general.num_classes} classes: {len(CLASSES)} object classes, then {general.num_fractals} fractal classes; "
      f"{general.object_share:.0%} of its images are object scenes")
image_grid(examples, titles, cols=4, title="the general world: objects, objects on textures, fractals, dead leaves, 1/f noise")

# %% [markdown]
# `helpers.models.general_pretrained_model()` pre-trains this lesson's network on the general world
# with this lesson's budget (about two minutes on one thread in class mode). Its curves, one per
# part of the mix, were saved from such a run, beside this lesson's model and the general world's
# first version, whose fractals were turned at random, sparser and often hard to see:

# %%
from helpers.lessons.your_own import load_general_curves
from helpers.plots import line_plot

saved = load_general_curves()
if saved is None:
    print("No saved curves here (docs/general_world_curves.json): general_pretrained_model() draws them again")
else:
    print("; ".join(f"{name}: {values[-1]:.2f}" for name, values in saved["curves"].items())
          + f" (held-out accuracy after {saved['steps'][-1]} steps; chance "
          + ", ".join(f"{part} {p:.2f}" for part, p in saved["chance"].items()) + ")")
    curves = line_plot(saved["steps"], saved["curves"], "pre-training step", "held-out accuracy",
                       title="pre-training on each part of the mix")
curves if saved is not None else None

# %% [markdown]
# A part the network does not learn can teach it little, and the first version's fractals stayed near
# chance. The object half pays for sharing the budget, so this lesson's model, the one every later
# lesson fine-tunes, is still pre-trained on the object world alone. Lesson 13 shows
# `benchmarks/transfer.py`'s table: which world's features carry over to real images.

# %% [markdown]
# ## Exercises
#
# **1. Parameters by part.** How many parameters does the last stage, `model.layer4`, hold? Put
# the number in `layer4_params`, computed from the model (not typed in).

# %% tags=["exercise"]
layer4_params = None

# %% tags=["check"]
from helpers.exercises import check

check("parameters of layer4",
      lambda: layer4_params == count_params(model.layer4),
      hint="a stage is a module: its .parameters() are tensors, and a tensor's .numel() is how many numbers it holds")
print(f"layer4 holds {count_params(model.layer4) / count_params(model):.0%} of the model's parameters")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# layer4_params = sum(p.numel() for p in model.layer4.parameters())
# ```
#
# </details>

# %% [markdown]
# **2. A harder world.** The model never saw scenes with three times the sensor noise. Render 512
# such scenes into `x_noisy, y_noisy` (hint: `dataclasses.replace(world, noise=...)`) and measure
# the model's accuracy on them as `noisy_acc`. Does pre-training on clean scenes transfer to noisy
# ones?

# %% tags=["exercise"]
from dataclasses import replace

x_noisy = y_noisy = None   # 512 scenes with three times the noise, and their labels
noisy_acc = None

# %% tags=["check"]
def _graininess(images):   # how much neighbouring pixels differ: sensor noise raises it
    return (images[..., 1:] - images[..., :-1]).abs().mean().item()


def _three_times_the_noise(images):
    """Closer in graininess to scenes with 3x the noise than to 1x or 9x (fresh seeds)."""
    grain = _graininess(images.cpu())
    near = [abs(grain - _graininess(replace(world, noise=k * world.noise).render(64, seed=999)[0])) for k in (1, 3, 9)]
    return near[1] == min(near)


check("accuracy on a noisier world",
      lambda: tuple(x_noisy.shape[:1]) == (512,) and _three_times_the_noise(x_noisy)
      and abs(noisy_acc - accuracy(model, x_noisy, y_noisy)) < 1e-9,
      hint="a variant of the world with its noise field three times larger draws the scenes; the lesson "
           "has already measured accuracy once, on clean scenes: do the same on these")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# noisy_world = replace(world, noise=3 * world.noise)
# x_noisy, y_noisy = noisy_world.render(512, seed=777, device=device)
# noisy_acc = accuracy(model, x_noisy, y_noisy)
# print(f"accuracy with 3x noise: {noisy_acc:.3f} (clean: {val_acc:.3f})")
# ```
#
# </details>

# %% [markdown]
# ## Record the results
#
# The lesson's headline numbers go into the course's results file (`data/results/<mode>.json`);
# `make course` prints them for every lesson.

# %%
lesson.finish({"val_acc": val_acc, "train_images": info["train_images"],
               "params": count_params(model), "images_per_s": info["images_per_s"]},
              interrupted=info["interrupted"])      # pre-training stopped early: flagged, not cached
