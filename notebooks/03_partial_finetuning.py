# %% [markdown]
# # 03 · Partial fine-tuning
#
# Full fine-tuning (lesson 02) trains every parameter. Partial fine-tuning **freezes** the stages
# nearest the input and tunes only the later stages and the head. The hypothesis behind it: those
# early stages compute general features (edges, colours, textures) that any image task needs, so
# keeping them costs little accuracy and saves time. This lesson tests it on lesson 02's
# bird-species task.
#
# You pick how many stages to freeze (a plain variable or a widget); then every depth, each at
# its own learning rate chosen on validation, over three seeds, in one table: trainable
# parameters, seconds per epoch, accuracy. Then BatchNorm statistics in frozen layers, and
# layer-wise learning rates.

# %%

import pandas as pd
import torch
from tqdm.auto import tqdm

from helpers.exercises import check
from helpers.experiments import build_model, run_finetune, scratch_converged
from helpers.lessons.partial import CLAIMS, choose_rates, freezing_finding, seed_rows, time_per_epoch
from helpers.modes import sizes
from helpers.plots import LiveCurve, line_plot
from helpers.results import Lesson
from helpers.runner import QUIET, Adaptation, Budget, Report
from helpers.stats import best_by, difference, mean_and_spread
from helpers.surgery import (
    freeze,  # noqa: F401 (exercise 1 uses it)
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
log = lesson.run_log("03_freeze")
log.clear()            # start this lesson's comparison empty; re-running single cells appends
print(S.summary())

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

result = run_finetune(S.headline_labels, frozen_stages=FROZEN_STAGES, log=log, budget=Budget(evals=5),
                      report=Report(hook=LiveCurve(metric="val_acc", title=f"freeze {FROZEN_STAGES}")))
print(f"frozen stages {FROZEN_STAGES}: validation accuracy {result.val_acc:.3f}, "
      f"{result.trainable_params:,} trainable parameters, {result.sec_per_epoch:.3f} s per epoch")

# %% [markdown]
# The same with a widget: move the slider, click **Train**, watch the curve. It shows
# **validation** accuracy only, the number made for choosing: a depth picked by clicking is then
# picked on validation, and the test set is read once, for the choice, in the table below. (The
# widget calls the same `run_finetune`; in a headless run nobody clicks, and nothing happens.)

# %%
def train_depth(*, frozen_stages, hook):
    return run_finetune(S.headline_labels, frozen_stages=frozen_stages, log=log, budget=Budget(evals=5),
                        report=Report(hook=hook))


depth_picker(train_depth, stage_names, value=FROZEN_STAGES, metric="val_acc", log=log)

# %% [markdown]
# ## Every depth, one table
#
# Now all depths from 0 (nothing frozen) to all stages (only the head trains), each over
# `S.seeds` seeds, with the same labels and the same budget of `S.steps` steps. A frozen
# backbone under a new, random head wants a larger rate than a fully tuned network (lesson 04's
# linear probe trains at `S.probe_lr`), so one shared rate would compare rates as much as depths.
# Each depth therefore gets **its own rate**, the one of `S.depth_lr_grid` with the best mean
# validation accuracy (`choose_rates`); the test column is read for that rate. The baseline is
# lesson 02's converged from-scratch model (its own rate and a budget at which its validation
# accuracy stopped improving; cached by `make prepare`).
#
# `sec_per_epoch` is the training time of one pass over the training set. On a shared or busy
# machine, timing one run after another compares the moments more than the depths, so
# `time_per_epoch` times all depths *in turn*, a few steps each, over several rounds, and keeps
# each depth's fastest round.

# %%
depths = list(range(len(stage_names) + 1))
grid_runs = {(k, lr): [] for k in depths for lr in S.depth_lr_grid}
for k, lr, seed in tqdm([(k, lr, seed) for k in depths for lr in S.depth_lr_grid for seed in range(S.seeds)],
                        desc="depths x rates x seeds"):
    grid_runs[(k, lr)].append(run_finetune(S.headline_labels, frozen_stages=k, lr=lr, seed=seed, log=log,
                                           setup=QUIET))
depth_lr, depth_runs = choose_rates(grid_runs)          # each depth's rate, chosen on validation
rate_table = pd.DataFrame([{"frozen_stages": k, "lr": lr, "val_acc": mean_and_spread([r.val_acc for r in runs])[0]}
                           for (k, lr), runs in grid_runs.items()]).pivot(index="frozen_stages", columns="lr")
scratch = [scratch_converged(S.headline_labels, seed=seed, progress=False) for seed in range(S.seeds)]
scratch_acc, scratch_spread = mean_and_spread([r.test_acc for r in scratch])
timing = time_per_epoch(depths, S.headline_labels)
print("mean validation accuracy of every depth at every rate (each row's best is its rate):")
rate_table.round(3)

# %%
freeze_table = pd.DataFrame(seed_rows(depth_runs, "frozen_stages")).set_index("frozen_stages")
freeze_table.insert(1, "sec_per_epoch", [timing[k] for k in freeze_table.index])
freeze_table.insert(1, "lr", [depth_lr[k] for k in freeze_table.index])
freeze_table["frozen"] = ["nothing"] + [" to ".join(dict.fromkeys([stage_names[0], stage_names[k - 1]]))
                                         for k in range(1, len(stage_names) + 1)]
shown = ["frozen", "lr", "trainable_params", "sec_per_epoch", "val_acc", "test_acc", "test_spread", "seeds"]
print(f"from scratch (converged, {scratch[0].steps} steps, mean of {len(scratch)} seeds): "
      f"test accuracy {scratch_acc:.3f} ± {scratch_spread:.3f}")
freeze_table[shown].round(4)

# %%
fig = line_plot(list(freeze_table.index), {"fine-tuned": freeze_table["test_acc"].tolist()},
                xlabel="frozen stages (from the input)", ylabel="test accuracy",
                errors={"fine-tuned": freeze_table["test_spread"].tolist()},
                title=f"{S.headline_labels} labels per species, each depth at its own rate, "
                      f"mean and spread over {S.seeds} seeds")
fig.axes[0].axhline(scratch_acc, color="tab:orange", ls="--", label="from scratch (converged)")
ax2 = fig.axes[0].twinx()
ax2.plot(freeze_table.index, freeze_table["sec_per_epoch"], color="grey", marker="s", alpha=0.6)
ax2.set_ylabel("seconds per epoch (grey)")
fig.axes[0].legend(fontsize=8)
fig

# %%
best_k = int(best_by(seed_rows(depth_runs, "frozen_stages"), "val_acc")["frozen_stages"])
print(f"best depth on validation: {best_k} frozen stages (val {freeze_table.loc[best_k, 'val_acc']:.3f}, "
      f"test {freeze_table.loc[best_k, 'test_acc']:.3f})")
# Paired t-tests: every depth ran on the same seeds, and a seed draws the same labelled images
# and batch order whatever the depth.
for k in depths[1:]:
    print(f"  {k} frozen vs nothing frozen: " + difference(freeze_table.loc[k, "test_accs"],
                                                          freeze_table.loc[0, "test_accs"], paired=True).describe(
        f"{k} frozen", "nothing frozen"))
near = [k for k in depths if k != best_k and not difference(freeze_table.loc[k, "val_accs"],
                                                             freeze_table.loc[best_k, "val_accs"], paired=True).real]
print(f"depths that tie with the best on validation (not significant, paired t-test at 95%): {near or 'none'}")

# %% [markdown]
# Reading the table: the more stages are frozen, the fewer parameters train, and with every stage
# frozen an epoch takes less time than with none (no gradients for the frozen weights, and
# backpropagation stops at the first trainable layer; both are registered claims). The cell above
# says, from the seeds, which depths differ from full fine-tuning by a paired t-test at 95% (lesson
# 02) and which tie: with three seeds and a 600-image test set, differences of a few points can be noise, so a
# "best depth" read off one seed is mostly luck. What this says about the hypothesis:

# %%
print(freezing_finding({k: freeze_table.loc[k, "test_accs"] for k in depths},
                       {k: freeze_table.loc[k, "trainable_params"] for k in depths}))
print(f"Rates chosen on validation: {', '.join(f'{k} frozen {depth_lr[k]:g}' for k in depths)}; "
      f"from scratch (converged): {scratch_acc:.3f}.")

# %% [markdown]
# The run log keeps every run of this lesson, including the ones from the cells above:

# %%
log.table()

# %% [markdown]
# ## BatchNorm in frozen stages
#
# Freezing the *weights* of a BatchNorm layer does not freeze its *running statistics*: they are
# buffers, not parameters, and in train mode every forward pass updates them with the batch's own
# mean and variance (and normalises with those). So a "frozen" stage still changes. With
# `bn="frozen"` `freeze_stages` keeps the BatchNorm layers of frozen stages in eval mode, even
# after `model.train()`; with `bn="update"` (the course's default, `helpers.surgery.BN_DEFAULT`,
# used by every lesson) the statistics keep adapting.

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
# Does it matter for accuracy? Both settings, at two depths, over the seeds, each depth at the
# rate validation chose for it above:

# %%
bn_runs = {}
for k in (2, len(stage_names)):
    for bn in ("frozen", "update"):
        bn_runs[(k, bn)] = (depth_runs[k] if bn == "update" else    # the depth table's runs used "update"
                            [run_finetune(S.headline_labels, frozen_stages=k, adaptation=Adaptation(bn=bn),
                                          lr=depth_lr[k], seed=s, log=log, setup=QUIET) for s in range(S.seeds)])
bn_rows = seed_rows(bn_runs, "setting")
for row in bn_rows:
    row["frozen_stages"], row["bn"] = row.pop("setting")
bn_table = pd.DataFrame(bn_rows)[["frozen_stages", "bn", "val_acc", "val_spread", "test_acc", "test_spread", "seeds"]]
bn_choice = {}
for k in (2, len(stage_names)):
    upd, frz = bn_runs[(k, "update")], bn_runs[(k, "frozen")]
    bn_choice[k] = best_by([{"bn": "update", "val_acc": mean_and_spread([r.val_acc for r in upd])[0]},
                            {"bn": "frozen", "val_acc": mean_and_spread([r.val_acc for r in frz])[0]}], "val_acc")["bn"]
    # paired: both BatchNorm modes ran on the same seeds (the same labelled images)
    print(f"{k} frozen stages, test: " + difference([r.test_acc for r in upd], [r.test_acc for r in frz],
                                                    paired=True).describe(
        "statistics updated", "statistics frozen") + f"; validation picks {bn_choice[k]!r}")
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
# groups to pass to `train(optimiser=Optimiser(param_groups=...))`
# (`run_finetune(adaptation=Adaptation(lr_decay=...))` does that). Below, the head gets the rate validation chose for full fine-tuning.

# %%
for g in layerwise_lr_groups(build_model(), lr=depth_lr[0], decay=0.5):
    print(f"{g['name']:>8}: lr {g['lr']:.2e}, {sum(p.numel() for p in g['params']):>9,} parameters")

# %%
lw_runs = {"one rate": depth_runs[0],                # full fine-tuning from the depth table, at its chosen rate
           "layer-wise, decay 0.5": [run_finetune(S.headline_labels, lr=depth_lr[0], seed=s, log=log, setup=QUIET,
                                                  adaptation=Adaptation(lr_decay=0.5)) for s in range(S.seeds)]}
lw_table = pd.DataFrame(seed_rows(lw_runs, "rates")).set_index("rates")
print(f"with {S.steps} steps: " + difference(lw_table.loc["layer-wise, decay 0.5", "test_accs"],     # same seeds: paired
                                            lw_table.loc["one rate", "test_accs"], paired=True).describe(
    "layer-wise", "one rate"))
lw_table[["val_acc", "val_spread", "test_acc", "test_spread", "seeds"]].round(3)

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

# %% tags=["check"]
def _frozen(model):
    return {name for name, p in model.named_parameters() if not p.requires_grad}


check("frozen by name",
      lambda: _frozen(named_model) == _frozen(freeze_stages(build_model(), 2)),
      hint="print(named_model) shows every module's name; the stem is more than its convolution")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# named_model = freeze(build_model(), ["conv1", "bn1", "layer1"])
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** From `freeze_table`, choose the depth (number of frozen stages) you would use:
# the one with the best mean accuracy **on the set made for choosing**. Store it in `best_depth`,
# and that depth's mean accuracy on the same set in `best_depth_acc`.

# %% tags=["exercise"]
best_depth = None
best_depth_acc = None

# %% tags=["check"]
check("best depth, chosen on validation",
      lambda: best_depth == int(freeze_table["val_acc"].idxmax())
      and abs(best_depth_acc - freeze_table.loc[best_depth, "val_acc"]) < 1e-9,
      hint="the set made for choosing is validation, never test: take the depth whose validation accuracy "
           "is highest, and that row's value")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# best_depth = int(freeze_table["val_acc"].idxmax())
# best_depth_acc = float(freeze_table.loc[best_depth, "val_acc"])
# print(f"best depth on validation: {best_depth} ({freeze_table.loc[best_depth, 'frozen']}), "
#       f"val {best_depth_acc:.3f}; its test accuracy, reported once: {freeze_table.loc[best_depth, 'test_acc']:.3f}")
# ```
#
# </details>

# %% [markdown]
# **Exercise 3.** Make layer-wise groups where each stage gets a *third* of the rate of the stage
# after it, with `lr=1e-3`, and store them in `groups`. What rate does the stem get?

# %% tags=["exercise"]
groups = None

# %% tags=["check"]
check("decay of one third",
      lambda: groups[-1]["lr"] == 1e-3 and abs(groups[0]["lr"] - 1e-3 / 3 ** len(stage_names)) < 1e-12,
      hint="the lesson's helper for layer-wise rates takes the last stage's rate and a factor by which each "
           "stage's rate is multiplied to give the one before it")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# groups = layerwise_lr_groups(build_model(), lr=1e-3, decay=1 / 3)
# print(f"stem rate: {groups[0]['lr']:.2e}")
# ```
#
# </details>

# %% [markdown]
# ## Results

# %%
metrics = {
    "freeze_table": [{"frozen_stages": int(k), "trainable_params": int(r.trainable_params),
                      "sec_per_epoch": float(r.sec_per_epoch), "val_acc": float(r.val_acc),
                      "test_acc": float(r.test_acc), "test_spread": float(r.test_spread), "seeds": int(r.seeds),
                      "test_accs": list(r.test_accs)} for k, r in freeze_table.iterrows()],
    "best_depth": best_k, "scratch_converged_acc": scratch_acc,
    "bn_table": [{k: (float(v) if isinstance(v, float) else int(v) if k in ("frozen_stages", "seeds") else v)
                  for k, v in row.items()} for row in bn_table.to_dict("records")],
    "bn_choice": {str(k): v for k, v in bn_choice.items()},
}
lesson.finish(metrics, CLAIMS)
freeze_table[shown].round(4)
