# %% [markdown]
# # 04 · Adding layers
#
# Lessons 02 and 03 replaced the classifier with one new linear layer and chose how much of the
# backbone to tune. Here we look at the *new* layers themselves, on top of a frozen or tuned
# backbone:
#
# - **linear probe**: backbone frozen, a new linear head. Cheap; measures how good the
#   pre-trained features are as they are.
# - **MLP head**: backbone frozen, a small multi-layer head (a hidden layer and a non-linearity),
#   which can combine features in ways a linear layer cannot.
# - **extra block**: backbone frozen, a new trainable residual block after the last stage, then a
#   linear head: new capacity that still works on feature maps.
# - **LP-FT** (linear probe, then fine-tune): first train the linear head on the frozen
#   backbone, then fine-tune everything. A fine-tuning run that starts with a *random* head sends
#   large, random gradients into the pre-trained backbone during its first steps; starting from a
#   trained head avoids that.
# - **full fine-tuning** (lesson 02) as the reference.

# %%
import pandas as pd
import torch
from tqdm.auto import tqdm

from helpers.exercises import check
from helpers.experiments import build_model, run_finetune
from helpers.models import pretrained_image_model
from helpers.modes import sizes
from helpers.plots import plot_history
from helpers.results import Lesson, RunLog
from helpers.stats import mean_and_spread
from helpers.surgery import add_block, freeze_stages, replace_head, stage_table, stages, trainable_params
from helpers.tasks import species_test_set

lesson = Lesson("04")
S = sizes("finetune")
log = RunLog("04_heads")
log.clear()
N = len(stages(build_model()))        # stages in the backbone: freezing N leaves only new layers
S

# %% [markdown]
# ## The mechanism: new layers on a frozen backbone
#
# `replace_head` swaps the classifier for a linear layer or a small MLP; `add_block` inserts a
# residual block after the last stage. The block starts as the identity (its last BatchNorm scale
# is zero), so adding it does not change the model's outputs until it trains. Freezing all `N`
# backbone stages leaves only the new layers trainable:

# %%
x_test, y_test = species_test_set()
for name, kwargs in [("linear probe", dict(hidden=None)), ("MLP head", dict(hidden=64))]:
    m, _ = pretrained_image_model(verbose=False)
    freeze_stages(replace_head(m, 6, **kwargs), N)
    print(f"{name:>13}: head {m.get_classifier()}; trainable {trainable_params(m):,}")

m, _ = pretrained_image_model(verbose=False)
with torch.no_grad():
    before = m.forward_features(x_test[:4].to(next(m.parameters()).device))
    add_block(m)
    after = m.forward_features(x_test[:4].to(next(m.parameters()).device))
print(f"extra block: {sum(p.numel() for p in m.layer4.extra.parameters()):,} new parameters; "
      f"features unchanged at the start: {torch.allclose(before, after, atol=1e-5)}")
stage_table(m)

# %% [markdown]
# ## Five ways, three seeds each
#
# Same labels (`S.headline_labels` per species), same number of steps for every method. The head-only
# methods use a higher learning rate (`S.probe_lr`), since only new, randomly initialised layers
# train. LP-FT spends the first half of the same budget of `S.steps` steps on the probe and the
# second half on full fine-tuning, so it trains no longer than the other methods (the probe steps
# are also cheaper, as no gradient flows into the backbone).

# %%
methods = {
    "linear probe": dict(frozen_stages=N, head="linear", lr=S.probe_lr),
    "MLP head": dict(frozen_stages=N, head="mlp", lr=S.probe_lr),
    "extra block": dict(frozen_stages=N, head="block", lr=S.probe_lr),
    "LP-FT": dict(frozen_stages=0, head="linear", linear_probe_steps=S.steps // 2),
    "full fine-tuning": dict(frozen_stages=0, head="linear"),
}
runs = {name: [] for name in methods}
for name, kwargs in tqdm([(n, methods[n]) for n in methods for _ in range(S.seeds)], desc="runs"):
    seed = len(runs[name])
    runs[name].append(run_finetune(S.headline_labels, seed=seed, log=log, progress=False, note=name, **kwargs))

rows = []
for name, rs in runs.items():
    mean, spread = mean_and_spread([r.test_acc for r in rs])
    rows.append({"method": name, "test_acc": mean, "spread": spread,
                 "trainable_params": rs[0].trainable_params, "train_s": sum(r.train_s for r in rs) / len(rs)})
table = pd.DataFrame(rows).set_index("method")
table.round(3)

# %%
fig = plot_history(runs["full fine-tuning"][0].history, runs["LP-FT"][0].history,
                   labels=["full fine-tuning (random head)", "LP-FT (trained head)"], metric="val_acc",
                   title="fine-tuning phase, seed 0")
fig

# %% [markdown]
# Reading the table:
#
# - The **linear probe** shows how far the frozen pre-trained features go on their own.
# - The **MLP head** and the **extra block** add capacity on top of the frozen features; they help
#   when the classes are not linearly separable in feature space, and can over-fit with very few
#   labels. The extra block can re-combine *spatial* features before pooling, which a head cannot.
# - **LP-FT** starts fine-tuning from a trained head, so the first steps do not push random
#   gradients into the backbone; it is at least as good as the probe it starts from, because
#   fine-tuning continues from there.
# - **Full fine-tuning** adapts every layer; with enough labels it is usually the strongest, with
#   very few the frozen variants can match it at a fraction of the cost.
#
# ## Exercises
#
# **Exercise 1.** Lesson 05 turns this image model into a *bird counter*: one output, a number
# of birds, which can never be negative. Give a fresh pre-trained model a head with **one
# output** and a **softplus** activation (`replace_head(..., activation="softplus")`), and store
# the model in `counter`.

# %% tags=["exercise"]
counter = None

# %% jupyter={"source_hidden": true} tags=["solution"]
counter, _ = pretrained_image_model(verbose=False)
counter = replace_head(counter, 1, activation="softplus")


# %% tags=["check"]
def _counter_ok():
    with torch.no_grad():
        out = counter(x_test[:8].to(next(counter.parameters()).device))
    return out.shape == (8, 1) and bool((out >= 0).all())

check("a one-output, non-negative head", _counter_ok,
      hint="counter, _ = pretrained_image_model(); replace_head(counter, 1, activation='softplus')")

# %% [markdown]
# **Exercise 2.** Run an MLP head with 16 hidden units (`hidden=16`) on the frozen backbone, seed
# 0, and store the result dict in `small_mlp`. Is it better or worse than the 64-unit head above?

# %% tags=["exercise"]
small_mlp = None   # run_finetune(...)

# %% jupyter={"source_hidden": true} tags=["solution"]
small_mlp = run_finetune(S.headline_labels, frozen_stages=N, head="mlp", hidden=16, lr=S.probe_lr, seed=0,
                         log=log, note="MLP head, 16 units")
print(f"16 units: {small_mlp.test_acc:.3f}; 64 units (seed 0): {runs['MLP head'][0].test_acc:.3f}")

# %% tags=["check"]
check("a 16-unit MLP head on the frozen backbone",
      lambda: small_mlp.head == "mlp" and small_mlp.frozen_stages == N
      and small_mlp.trainable_params < runs["MLP head"][0].trainable_params,
      hint="run_finetune(S.headline_labels, frozen_stages=N, head='mlp', hidden=16, lr=S.probe_lr)")

# %% [markdown]
# ## Results

# %%
lesson.record({
    "linear_probe_acc": table.loc["linear probe", "test_acc"],
    "mlp_head_acc": table.loc["MLP head", "test_acc"],
    "lp_ft_acc": table.loc["LP-FT", "test_acc"],
    "full_ft_acc": table.loc["full fine-tuning", "test_acc"],
})
table.round(3)
