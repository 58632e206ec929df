# %% [markdown]
# # 02 · Full fine-tuning
#
# Lesson 01 pre-trained an image model on the general world: fourteen kinds of objects on many
# backgrounds. Now a *specific* task arrives with very few labels: tell six **bird species**
# apart from a handful of labelled photos per species.
#
# **Full fine-tuning** starts from the pre-trained weights, swaps the 14-way classifier for a new
# 6-way head, and trains *all* parameters on the few labels. We compare it with the same
# architecture trained **from scratch** on the same images with the same budget (the same number
# of optimiser steps), across several training-set sizes and three seeds each, and then see what
# a too-high learning rate does to the pre-trained features.

# %%
import pandas as pd
from IPython.display import display
from tqdm.auto import tqdm

from helpers.exercises import check
from helpers.experiments import run_finetune
from helpers.models import pretrained_image_model
from helpers.modes import sizes
from helpers.plots import image_grid, line_plot, plot_history
from helpers.results import Lesson, RunLog
from helpers.stats import mean_and_spread
from helpers.surgery import stage_table, trainable_params
from helpers.tasks import species_task, species_test_set, species_train_set

lesson = Lesson("02")
S = sizes("finetune")
S

# %% [markdown]
# ## The task: six bird species, few labels
#
# The species differ in colours (body, breast, wing, beak) and in small shape details (crest,
# face mask, tail, beak length). Pose, size, background and light vary, so "the red one" is not
# always easy. Each training set holds exactly `labels_per_class` images per species; a fixed
# test set with its own seed measures every run.

# %%
task = species_task()
x_show, y_show = species_train_set(2, seed=0)
x_test, y_test = species_test_set()
print(f"species: {task.species}; test set: {len(x_test)} images of {tuple(x_test.shape[1:])}")
image_grid(x_show, titles=[task.species[i] for i in y_show], cols=6, title="two training images per species")

# %% [markdown]
# ## The mechanism: a new head on the pre-trained body
#
# Full fine-tuning is three lines: load lesson 01's weights, give the model a new classifier with
# one output per species, and leave every parameter trainable. (`pretrained_image_model()` returns
# a *fresh copy* of the checkpoint every call, so nothing here changes the weights other cells use.)

# %%
model, info = pretrained_image_model(verbose=False)
model.reset_classifier(task.num_classes)          # timm: a new, randomly initialised 6-way head
print(f"pre-trained on the general world to val_acc={info['val_acc']:.3f}; "
      f"trainable now: {trainable_params(model):,} parameters (all of them)")
stage_table(model)

# %% [markdown]
# `run_finetune` does exactly this (through `helpers.surgery.replace_head`), then trains with
# AdamW for a fixed number of steps on the few labelled images (random flips and small shifts as
# augmentation) and measures the test accuracy. With `from_scratch=True` it starts from random
# weights instead, with its own, higher learning rate (`S.scratch_lr`; random weights need
# bigger steps, and a fair baseline gets the rate that suits it). Each call builds its model fresh, so you can re-run any cell in any order.
#
# One run, with its training curve:

# %%
one = run_finetune(S.headline_labels, seed=0, evals=5)
print(f"{S.headline_labels} labels per species: test accuracy {one.test_acc:.3f} after "
      f"{one.steps} steps ({one.train_s:.1f} s)")
fig = plot_history(one.history, metric="val_acc", title="full fine-tuning")
fig

# %% [markdown]
# ## Fine-tuned vs from scratch, across labels per class
#
# For every training-set size and three seeds (each seed draws other training images and another
# head initialisation), we run both. The run log collects every run; re-running the cell appends.

# %%
log = RunLog("02_curve")
log.clear()            # this lesson's comparison starts empty; later re-runs of cells append
runs = []
settings = [(n, seed, scratch) for n in S.labels_per_class for seed in range(S.seeds) for scratch in (False, True)]
for n, seed, scratch in tqdm(settings, desc="runs"):
    runs.append(run_finetune(n, seed=seed, from_scratch=scratch, log=log, progress=False))
log.table()

# %%
curve, ft_mean, ft_err, sc_mean, sc_err = [], [], [], [], []
for n in S.labels_per_class:
    ft = mean_and_spread([r.test_acc for r in runs if r.labels_per_class == n and not r.from_scratch])
    sc = mean_and_spread([r.test_acc for r in runs if r.labels_per_class == n and r.from_scratch])
    curve.append({"labels_per_class": n, "scratch_acc": sc[0], "finetuned_acc": ft[0],
                  "scratch_spread": sc[1], "finetuned_spread": ft[1]})
curve_table = pd.DataFrame(curve).set_index("labels_per_class")
display(curve_table.round(3))
fig = line_plot(list(S.labels_per_class),
                {"fine-tuned": curve_table["finetuned_acc"].tolist(), "from scratch": curve_table["scratch_acc"].tolist()},
                xlabel="labels per species", ylabel="test accuracy", logx=True,
                errors={"fine-tuned": curve_table["finetuned_spread"].tolist(),
                        "from scratch": curve_table["scratch_spread"].tolist()},
                title=f"mean and spread over {S.seeds} seeds")
fig.axes[0].axhline(1 / task.num_classes, color="grey", ls=":", label="chance")
fig.axes[0].legend(fontsize=8)
fig

# %%
headline = curve_table.loc[S.headline_labels]
for n, row in curve_table.iterrows():
    print(f"{n:>4} labels per species: fine-tuning gains {100 * (row.finetuned_acc - row.scratch_acc):+.1f} points")
print(f"At {S.headline_labels} labels per species (mean of {S.seeds} seeds): fine-tuned "
      f"{headline.finetuned_acc:.3f} vs from scratch {headline.scratch_acc:.3f}: "
      f"{100 * (headline.finetuned_acc - headline.scratch_acc):+.1f} points.")

# %% [markdown]
# The pre-trained model already knows what a bird looks like: edges, colour patches, body parts,
# backgrounds to ignore. With few labels it only has to learn which of those features tell the
# species apart. From scratch, the same few images must teach everything, and the model mostly
# memorises them. Look at how the gap changes with the number of labels (the cell above prints
# it): with enough data and training, a model from scratch catches up, and pre-training matters
# less; with few labels and a short budget, pre-training is most of the accuracy.
#
# ## A learning rate too high destroys the pre-trained features
#
# Fine-tuning is usually done with a *smaller* learning rate than training from scratch: the
# weights are already good, and big steps push them far from where they were. Below, the same
# fine-tuning run with rates from small to large. `backbone_change` measures how far the
# backbone's weights moved, relative to their size (||w - w0|| / ||w0||).

# %%
sweep = []
for lr in tqdm(S.lr_sweep, desc="learning rates"):
    r = run_finetune(S.headline_labels, lr=lr, seed=0, log=log, progress=False)
    sweep.append({"lr": lr, "test_acc": r.test_acc, "backbone_change": r.backbone_change})
sweep_table = pd.DataFrame(sweep).set_index("lr")
display(sweep_table.round(4))
fig = line_plot(list(S.lr_sweep), {"fine-tuned": sweep_table["test_acc"].tolist()},
                xlabel="peak learning rate", ylabel="test accuracy", logx=True,
                title=f"{S.headline_labels} labels per species, seed 0")
fig.axes[0].axhline(headline.scratch_acc, color="tab:orange", ls="--", label="from scratch (mean)")
fig.axes[0].legend(fontsize=8)
fig

# %%
best_lr = sweep_table["test_acc"].idxmax()
worst = sweep_table.loc[max(S.lr_sweep)]
print(f"best rate in the sweep: {best_lr:g}; at the highest rate, {max(S.lr_sweep):g}, the backbone moved "
      f"{worst.backbone_change:.2f} of its own size and the test accuracy is {worst.test_acc:.3f} "
      f"(from scratch: {headline.scratch_acc:.3f}).")

# %% [markdown]
# With a very high rate the first steps, driven by a random new head, push large gradients
# into the backbone: the weights move far from the pre-trained ones and the knowledge in them is
# lost; what is left is a from-scratch run on a few images, often worse. A small rate keeps the
# backbone close to the pre-trained weights and adapts it gently.
#
# ## Exercises
#
# **Exercise 1.** Build the full fine-tuning model by hand: a fresh pre-trained model with a new
# head for the six species. Store it in `my_model`. (Hint: `pretrained_image_model` and timm's
# `reset_classifier`.)

# %% tags=["exercise"]
my_model = None   # your model here

# %% jupyter={"source_hidden": true} tags=["solution"]
my_model, _ = pretrained_image_model(verbose=False)
my_model.reset_classifier(task.num_classes)

# %% tags=["check"]
check("a new 6-way head, everything trainable",
      lambda: my_model(x_test[:2].to(next(my_model.parameters()).device)).shape == (2, task.num_classes)
      and trainable_params(my_model) == sum(p.numel() for p in my_model.parameters()),
      hint="pretrained_image_model() returns (model, info); then model.reset_classifier(6)")

# %% [markdown]
# **Exercise 2.** Does augmentation matter with few labels? Run fine-tuning with
# `S.headline_labels` labels per species and seed 0, but with `augment=False`. Store the result
# dict of `run_finetune` in `no_aug` and compare its `test_acc` with the run above (`one`).

# %% tags=["exercise"]
no_aug = None     # run_finetune(...)

# %% jupyter={"source_hidden": true} tags=["solution"]
no_aug = run_finetune(S.headline_labels, seed=0, augment=False, log=log)
print(f"without augmentation {no_aug.test_acc:.3f}, with {one.test_acc:.3f}")

# %% tags=["check"]
check("a run without augmentation",
      lambda: no_aug.augment is False and no_aug.labels_per_class == S.headline_labels
      and 0 <= no_aug.test_acc <= 1,
      hint="run_finetune(S.headline_labels, seed=0, augment=False)")

# %% [markdown]
# **Exercise 3.** From `curve_table`, compute how many points (0 to 100) fine-tuning gains over
# scratch at the *smallest* number of labels per species. Store it in `gain_smallest`.

# %% tags=["exercise"]
gain_smallest = None

# %% jupyter={"source_hidden": true} tags=["solution"]
smallest = curve_table.iloc[0]
gain_smallest = 100 * (smallest.finetuned_acc - smallest.scratch_acc)
print(f"{gain_smallest:+.1f} points at {curve_table.index[0]} labels per species")

# %% tags=["check"]
check("gain at the smallest label count",
      lambda: abs(gain_smallest - 100 * (curve_table.finetuned_acc.iloc[0] - curve_table.scratch_acc.iloc[0])) < 1e-6,
      hint="curve_table.iloc[0] is the smallest size; multiply the difference by 100")

# %% [markdown]
# ## Results
#
# The lesson records the headline comparison (means over seeds at the headline label count) and
# the whole curve.

# %%
lesson.record({
    "scratch_acc": float(headline.scratch_acc),
    "finetuned_acc": float(headline.finetuned_acc),
    "curve": [{"labels_per_class": int(n), "scratch_acc": float(row.scratch_acc),
               "finetuned_acc": float(row.finetuned_acc)} for n, row in curve_table.iterrows()],
})
curve_table.round(3)
