# %% [markdown]
# # 03 · Partial fine-tuning
#
# Full fine-tuning (lesson 02) trains every parameter. Often it is enough, and cheaper, to
# **freeze** the stages nearest the input, which compute general features (edges, colours,
# textures) that any image task needs, and to tune only the later stages and the head.
#
# In this lesson you pick how many stages to freeze (with a widget, or a plain variable), and a
# run log compares the runs: depth, trainable parameters, seconds per epoch and accuracy. Then
# two details that matter in practice: BatchNorm statistics in frozen layers, and layer-wise
# learning rates.

# %%
from functools import partial

import pandas as pd
import torch
from tqdm.auto import tqdm

from helpers.exercises import check
from helpers.experiments import build_model, run_finetune
from helpers.lessons.partial import time_per_epoch
from helpers.modes import sizes
from helpers.plots import LiveCurve, line_plot
from helpers.results import Lesson, RunLog
from helpers.stats import mean_and_spread
from helpers.surgery import (
    freeze,
    freeze_stages,
    frozen_params,
    layerwise_lr_groups,
    stage_table,
    stages,
    trainable_params,
)
from helpers.tasks import species_train_set
from helpers.widgets import depth_picker

lesson = Lesson("03")
S = sizes("finetune")
log = RunLog("03_freeze")
log.clear()            # start this lesson's comparison empty; re-running single cells appends
S

# %% [markdown]
# ## Stages: what "depth" means
#
# `stages(model)` lists the model's stages from the input side, found from the model itself
# (timm's own grouping of layers), so the same call works for a ResNet, ConvNeXt, EfficientNet,
# MobileNet or ViT. Our ResNet has a stem and four stages; the head (the new classifier) comes
# after them. `stage_table` counts parameters per stage: the late stages hold most of them.

# %%
model = build_model()
stage_names = [name for name, _ in stages(model)]
print("stages from the input:", stage_names, "+ head")
stage_table(model)

# %% [markdown]
# ## The mechanism: freezing is `requires_grad = False`
#
# A parameter with `requires_grad=False` gets no gradient, so the optimiser never changes it,
# and backpropagation can stop at the first trainable layer, which saves time. Freezing the first
# two stages by hand:

# %%
by_hand = build_model()
for name, stage in stages(by_hand)[:2]:
    for p in stage.parameters():
        p.requires_grad = False
print(f"by hand: {trainable_params(by_hand):,} trainable, {frozen_params(by_hand):,} frozen")
print(f"freeze_stages(model, 2): {trainable_params(freeze_stages(build_model(), 2)):,} trainable")

# %% [markdown]
# `freeze_stages(model, k)` does the same and a little more (BatchNorm, below), and checks `k`:
# a depth out of range raises an error that lists the valid depths and the stage names.

# %%
try:
    freeze_stages(build_model(), 9)
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## Pick a depth and train
#
# Set `FROZEN_STAGES` (0 = full fine-tuning, `len(stage_names)` = only the head trains) and run
# the cell. Every run builds a fresh model from lesson 01's checkpoint, so re-running with
# another depth never continues from the last run's weights; each run lands in the run log.

# %%
FROZEN_STAGES = 2

result = run_finetune(S.headline_labels, frozen_stages=FROZEN_STAGES, log=log, evals=5,
                      hook=LiveCurve(metric="val_acc", title=f"freeze {FROZEN_STAGES}"))
print(f"frozen stages {FROZEN_STAGES}: test accuracy {result.test_acc:.3f}, "
      f"{result.trainable_params:,} trainable parameters, {result.sec_per_epoch:.3f} s per epoch")

# %% [markdown]
# The same with a widget: move the slider, click **Train**, watch the curve. (The widget calls
# the same `run_finetune`; in a headless run nobody clicks, and nothing happens.)

# %%
depth_picker(partial(run_finetune, S.headline_labels, log=log, evals=5), stage_names,
             value=FROZEN_STAGES, metric="val_acc")

# %% [markdown]
# ## Every depth, one table
#
# Now all depths from 0 (nothing frozen) to all stages (only the head trains), and the same
# architecture from scratch as the baseline, all with the same labels and budget.
#
# `sec_per_epoch` is the training time of one pass over the training set. On a shared or busy
# machine, timing one run after another compares the moments more than the depths, so
# `time_per_epoch` times all depths *in turn*, a few steps each, over several rounds, and keeps
# each depth's fastest round.

# %%
depths = list(range(len(stage_names) + 1))
depth_runs = [run_finetune(S.headline_labels, frozen_stages=k, log=log, progress=False)
              for k in tqdm(depths, desc="depths")]
scratch = run_finetune(S.headline_labels, from_scratch=True, log=log, progress=False)
timing = time_per_epoch(depths, S.headline_labels)
freeze_table = pd.DataFrame([{"frozen_stages": r.frozen_stages, "trainable_params": r.trainable_params,
                              "sec_per_epoch": timing[r.frozen_stages], "test_acc": r.test_acc}
                             for r in depth_runs]).set_index("frozen_stages")
freeze_table["frozen"] = ["nothing"] + [" to ".join(dict.fromkeys([stage_names[0], stage_names[k - 1]]))
                                         for k in range(1, len(stage_names) + 1)]
print(f"from scratch (same budget): test accuracy {scratch.test_acc:.3f}")
freeze_table.round(4)

# %%
fig = line_plot(list(freeze_table.index), {"fine-tuned": freeze_table["test_acc"].tolist()},
                xlabel="frozen stages (from the input)", ylabel="test accuracy",
                title=f"{S.headline_labels} labels per species")
fig.axes[0].axhline(scratch.test_acc, color="tab:orange", ls="--", label="from scratch")
ax2 = fig.axes[0].twinx()
ax2.plot(freeze_table.index, freeze_table["sec_per_epoch"], color="grey", marker="s", alpha=0.6)
ax2.set_ylabel("seconds per epoch (grey)")
fig.axes[0].legend(fontsize=8)
fig

# %% [markdown]
# Reading the table: the more stages are frozen, the fewer parameters train and the faster each
# epoch runs (no gradients for the frozen weights, and backpropagation stops at the first
# trainable layer). Compare each depth with the from-scratch line: even with only the head
# trained, the pre-trained features carry much of the task. Accuracy usually falls as more is
# frozen, because frozen stages cannot adapt to the fine colour and shape details of the species;
# where the best trade-off lies depends on the data (with very few labels, freezing more can guard
# against over-fitting) and on how much time each epoch may cost.
#
# The run log keeps every run of this lesson, including the ones from the cells above:

# %%
log.table()

# %% [markdown]
# ## BatchNorm in frozen stages
#
# Freezing the *weights* of a BatchNorm layer does not freeze its *running statistics*: they are
# buffers, not parameters, and in train mode every forward pass updates them with the batch's own
# mean and variance (and normalises with those). So a "frozen" stage still changes. With
# `bn="frozen"` (the default) `freeze_stages` keeps the BatchNorm layers of frozen stages in eval
# mode, even after `model.train()`; with `bn="update"` the statistics keep adapting.

# %%
x_birds, _ = species_train_set(S.headline_labels, seed=0)
for bn in ("frozen", "update"):
    m = freeze_stages(build_model(), 2, bn=bn).train()
    before = m.bn1.running_mean.clone()
    with torch.no_grad():
        m(x_birds.to(before.device))           # one forward pass in train mode
    moved = (m.bn1.running_mean - before).abs().max().item()
    print(f"bn={bn!r}: stem BatchNorm in train mode: {m.bn1.training}; its running mean moved by {moved:.4f}")

# %% [markdown]
# Does it matter for accuracy? Both settings, at two depths, over the seeds:

# %%
bn_rows = []
for k in (2, len(stage_names)):
    for bn in ("frozen", "update"):
        accs = [run_finetune(S.headline_labels, frozen_stages=k, bn=bn, seed=s, log=log, progress=False).test_acc
                for s in range(S.seeds)]
        mean, spread = mean_and_spread(accs)
        bn_rows.append({"frozen_stages": k, "bn": bn, "test_acc": mean, "spread": spread})
bn_table = pd.DataFrame(bn_rows)
for k, part in bn_table.groupby("frozen_stages"):
    acc = dict(zip(part.bn, part.test_acc))
    print(f"{k} frozen stages: statistics updated {acc['update']:.3f} vs kept frozen {acc['frozen']:.3f}")
bn_table.round(3)

# %% [markdown]
# The statistics the pre-trained model collected describe the whole general world; the bird
# images are a narrower distribution. Updating them adapts the normalisation to the new data
# (often helpful when the data differ a lot), but then the frozen weights that follow see inputs
# normalised differently from what they were trained on, and with tiny batches the statistics are
# noisy. Which wins is an empirical question: the table answers it for this task.
#
# ## Layer-wise learning rates
#
# A middle way between freezing and full fine-tuning: train everything, but with smaller
# learning rates nearer the input. `layerwise_lr_groups(model, lr, decay)` gives the head `lr`,
# the last stage `lr * decay`, the one before `lr * decay**2`, and so on: optimiser parameter
# groups to pass to `train(param_groups=...)` (`run_finetune(lr_decay=...)` does that).

# %%
for g in layerwise_lr_groups(build_model(), lr=S.lr, decay=0.5):
    print(f"{g['name']:>8}: lr {g['lr']:.2e}, {sum(p.numel() for p in g['params']):>9,} parameters")

# %%
lw_rows = []
for decay in (None, 0.5):
    accs = [run_finetune(S.headline_labels, lr_decay=decay, seed=s, log=log, progress=False).test_acc
            for s in range(S.seeds)]
    mean, spread = mean_and_spread(accs)
    lw_rows.append({"rates": "one rate" if decay is None else f"layer-wise, decay {decay}",
                    "test_acc": mean, "spread": spread})
lw_table = pd.DataFrame(lw_rows)
print(f"layer-wise minus one rate: {100 * (lw_table.test_acc[1] - lw_table.test_acc[0]):+.1f} points "
      f"with {S.steps} steps")
lw_table.round(3)

# %% [markdown]
# Smaller rates near the input keep the general features close to the pre-trained ones, which
# protects them when the new data are few or noisy, and makes a too-high rate less harmful.
# The price is slower adaptation of those layers: with a short budget and a task that needs the
# early features to change (fine colour and shape details), one rate for all can adapt more in
# the same number of steps. Try `decay=0.8`, or more steps, and compare.

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Freeze by *name* instead of depth: on a fresh model (`build_model()`), freeze
# the stem (`conv1`, `bn1`) and `layer1` with `freeze(model, [...])`. Store the model in
# `named_model`. It should have as many trainable parameters as `freeze_stages(model, 2)`.

# %% tags=["exercise"]
named_model = build_model()
# freeze(named_model, [...])

# %% jupyter={"source_hidden": true} tags=["solution"]
named_model = freeze(build_model(), ["conv1", "bn1", "layer1"])

# %% tags=["check"]
check("frozen by name",
      lambda: trainable_params(named_model) == trainable_params(freeze_stages(build_model(), 2)),
      hint="freeze(named_model, ['conv1', 'bn1', 'layer1'])")

# %% [markdown]
# **Exercise 2.** From `freeze_table`, find the depth (number of frozen stages) with the best
# test accuracy, and store it in `best_depth`.

# %% tags=["exercise"]
best_depth = None

# %% jupyter={"source_hidden": true} tags=["solution"]
best_depth = int(freeze_table["test_acc"].idxmax())
print(f"best depth: {best_depth} ({freeze_table.loc[best_depth, 'frozen']})")

# %% tags=["check"]
check("best depth", lambda: freeze_table.loc[best_depth, "test_acc"] == freeze_table["test_acc"].max(),
      hint="freeze_table['test_acc'].idxmax()")

# %% [markdown]
# **Exercise 3.** Make layer-wise groups where each stage gets a *third* of the rate of the stage
# after it, with `lr=1e-3`, and store them in `groups`. What rate does the stem get?

# %% tags=["exercise"]
groups = None

# %% jupyter={"source_hidden": true} tags=["solution"]
groups = layerwise_lr_groups(build_model(), lr=1e-3, decay=1 / 3)
print(f"stem rate: {groups[0]['lr']:.2e}")

# %% tags=["check"]
check("decay of one third",
      lambda: groups[-1]["lr"] == 1e-3 and abs(groups[0]["lr"] - 1e-3 / 3 ** len(stage_names)) < 1e-12,
      hint="layerwise_lr_groups(build_model(), lr=1e-3, decay=1/3)")

# %% [markdown]
# ## Results

# %%
lesson.record({"freeze_table": [{"frozen_stages": int(k), "trainable_params": int(r.trainable_params),
                                 "sec_per_epoch": float(r.sec_per_epoch), "test_acc": float(r.test_acc)}
                                for k, r in freeze_table.iterrows()]})
freeze_table.round(4)
