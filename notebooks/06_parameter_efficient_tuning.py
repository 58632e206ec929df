# %% [markdown]
# # 06 · Parameter-efficient tuning
#
# Full fine-tuning (lesson 02) changes every weight: each new task costs a whole copy of the
# model, plus gradients and optimiser state for all of it while training. **Parameter-efficient
# tuning** keeps the pre-trained weights frozen and trains a small number of new or selected
# parameters instead:
#
# - **Linear probe**: only the new head trains (lesson 04).
# - **BitFit**: only the *bias* terms train (in our ResNet, the BatchNorm shifts), plus the head.
# - **LoRA** (low-rank adaptation): each chosen layer's weight `W` stays frozen and the model
#   learns a low-rank change `ΔW = (α/r)·B·A`, with `A` of shape (r, in) and `B` of shape (out, r).
#   With a small rank `r` this is a tiny fraction of `W`'s size.
#
# We compare them on lesson 02's task (six bird species, few labels, the same budget of
# optimiser steps): trainable share, optimiser memory, time and accuracy. Then we **merge** LoRA
# into the weights for inference at no extra cost, do the same fine-tuning with Hugging Face's
# **`peft`** library beside ours, and serve **two tasks from one base model** with two swappable
# adapters of a few kilobytes each.

# %%
import copy  # noqa: F401 (exercise 2 uses it)
import math

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.cache import data_dir
from helpers.exercises import check
from helpers.experiments import build_model
from helpers.lessons.peft import CLAIMS, Adapter, background_task, run_peft, seed_table
from helpers.lora import (
    add_lora,
    find_targets,
    load_adapter,
    memory_report,
    merge_lora,
    prepare_peft,
    save_adapter,
    unmerge_lora,
)
from helpers.modes import sizes
from helpers.plots import line_plot
from helpers.results import Lesson
from helpers.runner import QUIET, Budget, Report
from helpers.stats import difference
from helpers.tasks import species_test_set
from helpers.training import accuracy, inference_seconds

lesson = Lesson("06")
S, P = sizes("finetune"), sizes("peft")
print(P.summary())


# %% [markdown]
# ## The LoRA layer, written out
#
# This is the whole idea. The wrapper keeps the base layer (a `nn.Linear` or `nn.Conv2d`) and
# its weight untouched, and adds `scale · B·A` to it. `B` starts at **zero**, so at first the
# wrapped layer computes exactly what the base layer computed: training starts from the
# pre-trained model, not from a perturbed one. For a convolution, `A` has the base kernel's
# shape with `r` output channels, so `B·A` has exactly the base weight's shape.

# %%
# The LoRA layer (a test checks that it computes what helpers.lora.LoRA computes)
class LoRALayer(nn.Module):
    def __init__(self, base: nn.Module, rank: int = 4, alpha: float = 4.0):
        super().__init__()
        self.base = base.requires_grad_(False)                 # the pre-trained layer, frozen
        shape = base.weight.shape                              # Linear (out, in); Conv2d (out, in, kh, kw)
        fan_in = math.prod(shape[1:])
        self.A = nn.Parameter(torch.empty(rank, *shape[1:]).uniform_(-1, 1) / math.sqrt(fan_in))
        self.B = nn.Parameter(torch.zeros(shape[0], rank))     # zero: starts as the base layer
        self.scale = alpha / rank

    def delta_weight(self):                                    # ΔW = scale · B A, shaped like W
        return self.scale * (self.B @ self.A.flatten(1)).view_as(self.base.weight)

    def forward(self, x):
        if isinstance(self.base, nn.Conv2d):
            b = self.base
            return b(x) + F.conv2d(x, self.delta_weight(), None, b.stride, b.padding, b.dilation)
        return self.base(x) + F.linear(x, self.delta_weight())


# %% [markdown]
# Wrap one convolution of the pre-trained model and check: same output at the start, and how
# many parameters the adapter adds compared with the layer it adapts.

# %%
model = build_model(seed=0)                 # lesson 01's model with a new 6-way head (fresh copy)
conv = model.layer4[1].conv2
wrapped = LoRALayer(conv, rank=4)
x_test, y_test = species_test_set()
with torch.no_grad():
    h = torch.randn(2, conv.in_channels, 6, 6)
    same = torch.allclose(wrapped(h), conv(h))
print(f"layer4.1.conv2: weight {tuple(conv.weight.shape)} = {conv.weight.numel():,} parameters; "
      f"LoRA rank 4 adds A {tuple(wrapped.A.shape)} + B {tuple(wrapped.B.shape)} = "
      f"{wrapped.A.numel() + wrapped.B.numel():,} ({(wrapped.A.numel() + wrapped.B.numel()) / conv.weight.numel():.1%}); "
      f"output unchanged at start: {same}")

# %% [markdown]
# `helpers.lora` does the same, for any timm model (and the course's language model), by module
# name or glob pattern, with several named adapters per layer, merging, and saving. It computes
# `B(A x)` instead of `(B A) x`, which is cheaper when the rank is small; the result is the same.
# Here we target every 3x3 convolution inside the residual blocks (`"layer*.*.conv*"`):

# %%
targets = find_targets(build_model(seed=0), "layer*.*.conv*")
print(f"{len(targets)} layers: {list(targets)[:4]} ...")
rows = []
for method, rank in [("full", None), ("probe", None), ("bitfit", None)] + [("lora", r) for r in P.ranks]:
    m = prepare_peft(build_model(seed=0), method, rank=rank or 4)
    rep = memory_report(m)
    rows.append({"method": method, "rank": rank, "trainable_params": rep["trainable_params"],
                 "trainable_frac": rep["trainable_frac"],
                 "optimizer_kib": rep["optimizer_bytes"] / 1024, "grad_kib": rep["grad_bytes"] / 1024})
pd.DataFrame(rows).round(4)

# %% [markdown]
# AdamW keeps two running averages for every trainable parameter, so the optimiser's memory is
# twice the trainable parameters' size (and the gradients once more). For a large model this,
# not the weights, is what stops full fine-tuning from fitting on a GPU; here the numbers are
# small, but the ratios are those of any model.
#
# ## Same task, same budget: full, probe, BitFit, LoRA
#
# Each run builds a fresh model from lesson 01's checkpoint and trains `P.steps` optimiser steps
# on `S.headline_labels` labelled images per species (the data of lesson 02; a budget a little
# larger than lesson 02's, because LoRA's adapters start at zero and need some steps to grow). The parameter-efficient methods use a
# larger learning rate (a few new parameters, starting at zero, need bigger steps). BatchNorm
# running statistics are not parameters: by default (`bn="update"`, as in every lesson) they
# follow the new data in every method, the probe included (they are a few numbers per channel,
# and we store them with each adapter below). For BitFit we also measure `bn="frozen"`, to
# separate what the trained biases do from what adapting statistics does.

# %%
log = lesson.run_log("06_peft")
log.clear()
budget = Budget(steps=P.steps)
runs = [run_peft(method, budget=budget, log=log) for method in ("full", "probe", "bitfit")]
runs += [run_peft("lora", adapter=Adapter(rank=r), budget=budget, log=log,
                  report=Report(keep_model=r == P.headline_rank)) for r in P.ranks]
table = pd.DataFrame([{k: r.row()[k] for k in ("method", "rank", "trainable_params", "trainable_frac",
                                                "optimizer_bytes", "sec_per_epoch", "val_acc", "test_acc")}
                      for r in runs])
if torch.cuda.is_available():
    print(f"peak CUDA memory so far: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
table.round(4)

# %% [markdown]
# One seed is one draw of the head's initialisation and the batch order; differences of a few
# points between two single runs can be chance. For the headline methods we add more seeds and
# compare means.

# %%
more = [run_peft(method, adapter=Adapter(rank=P.headline_rank), budget=budget, seed=seed, log=log, setup=QUIET)
        for seed in range(1, P.seeds) for method in ("full", "bitfit", "lora")]
bitfit_frozen_bn = [run_peft("bitfit", adapter=Adapter(bn="frozen"), budget=budget, seed=seed, log=log, setup=QUIET)
                    for seed in range(P.seeds)]
headline_runs = [r for r in runs if r.method in ("full", "bitfit") or r.rank == P.headline_rank] + more
by_method = {m: [r for r in headline_runs if r.method == m] for m in ("full", "bitfit", "lora")}
by_method["bitfit, BN statistics frozen"] = bitfit_frozen_bn
seeds_table = pd.DataFrame(seed_table(by_method)).set_index("method")
seeds_table[["val_acc", "test_acc", "test_spread", "seeds"]].round(4)

# %%
lora_runs = [r for r in runs if r.method == "lora"]
fig = line_plot([r.trainable_frac * 100 for r in lora_runs], {"LoRA": [r.test_acc for r in lora_runs]},
                xlabel="trainable parameters (% of the model)", ylabel="test accuracy", logx=True,
                title=f"{S.headline_labels} labels per species, {P.steps} steps")
ax = fig.axes[0]
for r, style in zip(runs[:3], ["k--", "k:", "k-."]):
    ax.axhline(r.test_acc, ls=style[1:], color="k", alpha=0.6, label=f"{r.method} ({r.trainable_frac:.2%})")
ax.legend(fontsize=8)
fig

# %%
full = runs[0]
headline = next(r for r in lora_runs if r.rank == P.headline_rank)
bitfit_run = runs[2]
full_acc, bitfit_acc, lora_acc, bitfit_frozen_acc = (
    seeds_table.loc[m, "test_acc"] for m in ("full", "bitfit", "lora", "bitfit, BN statistics frozen"))
accs = {m: seeds_table.loc[m, "test_accs"] for m in seeds_table.index}
# The differences below are paired t-tests: every method ran on the same seeds (the same data and
# batch order per seed).
print(f"mean of {P.seeds} seeds, {P.steps} steps each: full fine-tuning {full_acc:.3f} training "
      f"{full.trainable_frac:.0%} of the parameters")
print(f"LoRA rank {P.headline_rank}: {lora_acc:.3f} training {headline.trainable_frac:.2%}; optimiser state "
      f"{headline.optimizer_bytes / full.optimizer_bytes:.1%} of full fine-tuning's. "
      + difference(accs["lora"], accs["full"], paired=True).describe("LoRA", "full fine-tuning"))
print(f"time per epoch (seed 0): LoRA {headline.sec_per_epoch / full.sec_per_epoch:.0%} and BitFit "
      f"{bitfit_run.sec_per_epoch / full.sec_per_epoch:.0%} of full fine-tuning's, while training "
      f"{headline.trainable_frac:.1%} and {bitfit_run.trainable_frac:.2%} of the parameters")
print(f"BitFit: {bitfit_acc:.3f} training {bitfit_run.trainable_frac:.2%}. "
      + difference(accs["bitfit"], accs["full"], paired=True).describe("BitFit", "full fine-tuning"))
print(f"BitFit with the base model's BatchNorm statistics kept: {bitfit_frozen_acc:.3f}. "
      + difference(accs["bitfit"], accs["bitfit, BN statistics frozen"], paired=True).describe(
          "BitFit with statistics adapting", "BitFit with statistics frozen"))

# %% [markdown]
# What to read in the table: the linear probe trains the fewest parameters but cannot change
# any feature; BitFit can shift every feature map a little (the last printed line separates the
# trained shifts from the BatchNorm statistics adapting to the new images); LoRA can rotate and
# mix features in each adapted layer, with a knob (the rank) between "almost nothing" and "almost
# everything". Time falls far less than the parameter count (the line above prints both): the
# forward and backward passes through every layer above the first adapter still run; only the
# weight gradients and the optimiser's work shrink. The savings these methods are built for are
# memory and storage.
#
# ## Merging: zero extra latency
#
# During training the adapter is a side path. For inference, `merge_lora` adds `ΔW` into each
# base weight, after which the model is exactly the base architecture again: same speed, same
# outputs. `unmerge_lora` takes it out again (to switch adapters or keep training).

# %%
lora_model = headline.model.eval()        # the trained rank-{P.headline_rank} model from the table
x_lat = x_test[:P.latency_images]
t_side = inference_seconds(lora_model, x_lat)
before = lora_model(x_lat[:16]).detach()
merge_lora(lora_model)
t_merged = inference_seconds(lora_model, x_lat)
max_diff = (lora_model(x_lat[:16]).detach() - before).abs().max().item()
t_base = inference_seconds(build_model(seed=0).eval(), x_lat)
print(f"{len(x_lat)} images: base model {t_base * 1000:.0f} ms, LoRA as a side path {t_side * 1000:.0f} ms, "
      f"merged {t_merged * 1000:.0f} ms; largest output change from merging: {max_diff:.1e}")
unmerge_lora(lora_model)
print(f"unmerged again: largest change {(lora_model(x_lat[:16]).detach() - before).abs().max().item():.1e}")

# %% [markdown]
# ## The same LoRA with Hugging Face `peft`
#
# Written out, LoRA is a few lines. In practice you will use a library, and the one most people
# use is Hugging Face's `peft`, which adapts any PyTorch model, timm's included: a `LoraConfig`
# names the layers, the rank `r`, `lora_alpha` and `lora_dropout`, and `get_peft_model` wraps
# those layers. `helpers.peft_bridge` writes the config of our adapter (the same layers by their
# full names, the same rank, alpha equal to the rank, no dropout because ours has none, and the new
# head in `modules_to_save`, peft's name for "trains too"), builds peft's model from a copy of ours
# with our `A` and `B` copied into peft's `lora_A` and `lora_B`, and moves saved adapters between
# the two formats. Everything stays on this machine: peft wraps a local `nn.Module` and reads and
# writes a local folder; nothing comes from the Hugging Face hub.

# %%
from peft import PeftModel
from safetensors.torch import load_file

from helpers.lora import lora_layers
from helpers.peft_bridge import load_peft_adapter, lora_config, output_difference, peft_mismatch, save_as_peft, to_peft

ours = prepare_peft(build_model(seed=0), "lora", rank=P.headline_rank)   # the course's LoRA, as in the table
config = lora_config(ours, head="fc")
theirs = to_peft(ours, head="fc")      # get_peft_model(a copy of the base model, config), our A and B copied in
print(f"LoraConfig: r={config.r}, lora_alpha={config.lora_alpha}, lora_dropout={config.lora_dropout}, "
      f"{len(config.target_modules)} target_modules, modules_to_save={config.modules_to_save}")
n_ours, n_all_ours = memory_report(ours)["trainable_params"], memory_report(ours)["total_params"]
n_theirs, n_all_theirs = theirs.get_nb_trainable_parameters()
head_params = sum(p.numel() for p in ours.fc.parameters())
print(f"trainable parameters: course {n_ours:,}, peft {n_theirs:,}; in all: course {n_all_ours:,}, peft "
      f"{n_all_theirs:,} ({n_all_theirs - n_all_ours:,} more; the head has {head_params:,})")
layer = "layer4.1.conv2"
mine = ours.get_submodule(layer)
print(f"the course's {layer}: A {tuple(mine.lora_A['default'].shape)}, B {tuple(mine.lora_B['default'].shape)}; "
      f"peft's:")
print(theirs.base_model.model.get_submodule(layer))
agree = [p for p, wrapper in lora_layers(ours).items() if peft_mismatch(wrapper) is None]
print(f"adapted layers where the two compute the same thing: {len(agree)} of {len(lora_layers(ours))}")

# %% [markdown]
# Both wrap a convolution the same way: `A` is a convolution with the base layer's kernel,
# stride and padding into `r` channels, `B` a 1x1 convolution back to the output channels. We
# keep `B` as an (out, r) matrix and use it as a 1x1 kernel; peft keeps it as an (out, r, 1, 1)
# kernel: the same numbers. Both start `B` at zero but draw `A` differently, which is why the
# bridge copies our `A` across. A few convolutions are wrapped differently by the two (a dilated
# one, a padding mode other than zeros, a timm subclass with a forward of its own such as
# `ScaledStdConv2d`): `peft_mismatch` names the reason and the bridge refuses such layers rather
# than hand over a model that computes something else (the last printed line counts the layers
# compared).
#
# The trainable counts agree. The totals do not, by one head: peft wraps a module named in
# `modules_to_save` and trains a copy of it, keeping the original so that the adapter can be
# switched off.
#
# From the same weights, the same outputs? The trained rank-4 adapter from the table, handed to
# peft:

# %%
twin = to_peft(headline.model, head="fc")
same_weights_diff, scale = output_difference(headline.model, twin, x_test)
print(f"{len(x_test)} test images: largest output difference {same_weights_diff:.1e} (outputs up to {scale:.1f})")

# %% [markdown]
# Now train both from the same start: the same data, seed, steps and learning rate; the only
# change is whose LoRA trains (`run_peft(..., adapter=Adapter(library="peft"))` hands the freshly
# prepared model to `to_peft` before training, so peft's adapter starts from our `A` and a zero `B`).

# %%
pair = {lib: run_peft("lora", adapter=Adapter(rank=P.headline_rank, library=lib), budget=budget,
                      report=Report(keep_model=True), setup=QUIET)
        for lib in ("course", "peft")}
trained_diff, trained_scale = output_difference(pair["course"].model, pair["peft"].model, x_test)
acc_gap = pair["peft"].test_acc - pair["course"].test_acc
lora_spread = float(seeds_table.loc["lora", "test_spread"])
if trained_diff == 0:
    verdict = "identical to the last bit, so the same accuracy"
else:
    verdict = (f"apart by rounding only (same start, same arithmetic; the two lay B out differently in memory, "
               f"so the convolution routines may round differently, and training carries the last bits on): "
               f"test accuracies {abs(acc_gap):.3f} apart, against the course LoRA's spread of {lora_spread:.3f} "
               f"over {P.seeds} seeds")
print(f"trained alike for {P.steps} steps: largest output difference {trained_diff:.1e}: {verdict}")
pd.DataFrame([{"library": lib, "trainable_params": r.trainable_params, "val_acc": r.val_acc,
               "test_acc": r.test_acc, "sec_per_epoch": r.sec_per_epoch} for lib, r in pair.items()]).round(4)

# %% [markdown]
# Saved adapters: peft's `save_pretrained` writes a folder with `adapter_config.json` (the
# `LoraConfig`) and `adapter_model.safetensors`; ours is one safetensors file with the ranks in
# its metadata. The tensors are the same; only their names (and `B`'s shape) differ. Each side
# loads the other's: `load_peft_adapter` reads peft's folder with no peft code, mapping the names,
# and `save_as_peft` has peft itself write our adapter in its format.

# %%
folder = data_dir() / "adapters"
pair["peft"].model.save_pretrained(str(folder / "species_peft"))
save_as_peft(pair["course"].model, folder / "species_course_as_peft", head="fc")
course_file = save_adapter(pair["course"].model, folder / "species_course.safetensors", extra="fc")
print("peft's folder:", sorted(p.name for p in (folder / "species_peft").iterdir()))
peft_keys = load_file(folder / "species_peft" / "adapter_model.safetensors")
course_keys = load_file(course_file)
pd.DataFrame([{"peft": k, "peft shape": tuple(peft_keys[k].shape), "course": c, "course shape": tuple(course_keys[c].shape)}
              for k, c in [(f"base_model.model.{layer}.lora_A.weight", f"{layer}.lora_A"),
                           (f"base_model.model.{layer}.lora_B.weight", f"{layer}.lora_B"),
                           ("base_model.model.fc.weight", "extra.fc.weight")]])

# %%
loaded = {("peft", "peft"): PeftModel.from_pretrained(build_model(seed=0), str(folder / "species_peft")),
          ("peft", "course"): load_peft_adapter(build_model(seed=0), folder / "species_peft"),
          ("course", "peft"): PeftModel.from_pretrained(build_model(seed=0), str(folder / "species_course_as_peft")),
          ("course", "course"): load_adapter(build_model(seed=0), course_file)}
peft_files_diff, s1 = output_difference(loaded["peft", "peft"], loaded["peft", "course"], x_test)
course_files_diff, s2 = output_difference(loaded["course", "course"], loaded["course", "peft"], x_test)
print(f"peft's folder: loaded by the course vs by peft, largest output difference {peft_files_diff:.1e}")
print(f"the course's adapter: loaded by peft (from the folder peft wrote) vs by the course, {course_files_diff:.1e}")
stats_file = save_adapter(pair["course"].model, folder / "species_course_stats.safetensors", extra="fc", norm_stats=True)
with_stats_acc = accuracy(load_adapter(build_model(seed=0), stats_file), x_test, y_test)
pd.DataFrame([{"trained by": lib, "loaded by": "(the trained model itself)", "test_acc": r.test_acc}
              for lib, r in pair.items()]
             + [{"trained by": a, "loaded by": b, "test_acc": accuracy(m, x_test, y_test)} for (a, b), m in loaded.items()]
             + [{"trained by": "course", "loaded by": "course, with BatchNorm statistics", "test_acc": with_stats_acc}]
             ).round(4)

# %% [markdown]
# Loaded across, the adapters compute what they computed where they were saved (the two
# differences printed above). Compare the rows loaded from files with the first two: the
# training updated the BatchNorm running statistics (`bn="update"`, as everywhere in this lesson),
# and neither peft's folder nor our file without `norm_stats=True` holds them, so a loaded
# adapter runs on the base model's statistics. Our file can carry them (the last row); peft's
# format holds the adapter and the `modules_to_save` only, so there you would list the BatchNorm
# layers in `modules_to_save` (which also trains their scale and shift) or keep the statistics
# frozen while training (`bn="frozen"`).

# %%
peft_metrics = {
    "peft_trainable_params": int(n_theirs), "course_lora_trainable_params": int(n_ours),
    "peft_all_params": int(n_all_theirs), "course_all_params": int(n_all_ours),
    "peft_layers_agree": len(agree), "peft_layers": len(lora_layers(ours)),
    "peft_same_weights_max_diff": same_weights_diff, "peft_output_scale": min(scale, trained_scale, s1, s2),
    "peft_acc": pair["peft"].test_acc, "peft_val_acc": pair["peft"].val_acc,
    "peft_course_acc": pair["course"].test_acc, "peft_course_val_acc": pair["course"].val_acc,
    "peft_trained_max_diff": trained_diff, "lora_acc_spread": lora_spread,
    "peft_files_in_course_max_diff": peft_files_diff, "course_files_in_peft_max_diff": course_files_diff,
    "peft_reload_acc": accuracy(loaded["peft", "peft"], x_test, y_test),
    "course_reload_acc": accuracy(loaded["course", "course"], x_test, y_test),
    "course_reload_with_stats_acc": with_stats_acc,
}

# %% [markdown]
# ## One base model, two tasks, two small adapters
#
# A second task on the same kind of images: **where was the photo taken?** Which of the six
# backgrounds (sky, sea, grass, clouds, sunset, noise) is behind the bird, a 6-way
# classification with its own training, validation and test images. We train a second LoRA
# adapter (and its own head) for it on the same frozen base model, and save each adapter, with
# its head, as its own small file. Serving a task is then loading its adapter onto the one base
# model.

# %%
task_b = background_task(P.task_b_images, len(x_test))
task_b_run = run_peft("lora", adapter=Adapter(rank=P.headline_rank, name="background"), budget=budget,
                      report=Report(keep_model=True), task=task_b)
xb_test, yb_test = task_b.x_test, task_b.y_test
adapters = data_dir() / "adapters"
files = {"species": save_adapter(headline.model, adapters / "species.safetensors", extra="fc", norm_stats=True),
         "background": save_adapter(task_b_run.model, adapters / "background.safetensors", extra="fc",
                                    norm_stats=True)}
base_bytes = sum(p.numel() * 4 for p in build_model(seed=0).parameters())
for task, f in files.items():
    print(f"{task}: {f.stat().st_size / 1024:.0f} KiB on disk (the base model: {base_bytes / 1024:.0f} KiB)")

# %%
server = build_model(seed=0).eval()        # ONE base model
serving = []
for task, (xt, yt) in [("species", (x_test, y_test)), ("background", (xb_test, yb_test)),
                       ("species", (x_test, y_test))]:
    load_adapter(server, files[task], name=task)     # kilobytes: the adapter and its head
    serving.append({"task": task, "active adapter": task, "test_acc": accuracy(server, xt, yt)})
print(f"chance on each task: {1 / 6:.3f}; accuracy of the trained models before saving: "
      f"species {headline.test_acc:.3f}, background {task_b_run.test_acc:.3f}")
pd.DataFrame(serving)


# %% [markdown]
# The same frozen base weights serve both tasks; switching costs reading a small file (the
# adapter, its head and its BatchNorm statistics), and switching back gives the first task's
# accuracy again exactly.
#
# ## Exercises
#
# **Exercise 1.** How many parameters does a rank-`r` LoRA adapter add to a `nn.Conv2d` with
# `c_in` input channels, `c_out` output channels and a `k x k` kernel? Write the formula as a
# function `lora_params(c_in, c_out, k, r)`.

# %% tags=["exercise"]
def lora_params(c_in, c_out, k, r):
    return None   # your formula here


# %% tags=["check"]
def _count(c_in, c_out, k, r):
    layer = add_lora(nn.Sequential(nn.Conv2d(c_in, c_out, k)), "0", rank=r)[0]
    return sum(p.numel() for p in layer.lora_A.parameters()) + sum(p.numel() for p in layer.lora_B.parameters())
check("LoRA parameter count", lambda: all(lora_params(*a) == _count(*a) for a in [(8, 16, 3, 2), (32, 8, 1, 4), (5, 7, 5, 1)]),
      hint="print the A and B of the wrapped layer at the top of the lesson: their weight shapes, in terms of "
           "c_in, c_out, k and r, give the count (LoRA adds no biases)");

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# def lora_params(c_in, c_out, k, r):
#     return r * c_in * k * k + c_out * r      # A: (r, c_in, k, k); B: (c_out, r)
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** Merge by hand. Take the `wrapped` layer from the top of the lesson, give its
# `B` some non-zero values (done below), and build `merged_conv`: a plain `nn.Conv2d` like the
# base one whose weight is `W + ΔW`. It must compute what `wrapped` computes.

# %% tags=["exercise"]
with torch.no_grad():
    wrapped.B.normal_(0, 0.1)
merged_conv = None   # your plain nn.Conv2d here

# %% tags=["check"]
check("merged by hand", lambda: isinstance(merged_conv, nn.Conv2d)
      and torch.allclose(merged_conv(h), wrapped(h), atol=1e-5) and not torch.allclose(wrapped(h), conv(h)),
      hint="start from a copy of the base layer (not the layer itself, which the adapter wraps), and add the "
           "adapter's weight change, which the wrapped layer can compute, to the copy's weight without tracking gradients");

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# merged_conv = copy.deepcopy(wrapped.base)
# with torch.no_grad():
#     merged_conv.weight += wrapped.delta_weight()
# ```
#
# </details>

# %% [markdown]
# **Exercise 3 (open).** LoRA on the last stage only: run `run_peft("lora",
# adapter=Adapter(rank=4, targets="layer4"))` and compare its trainable share and accuracy with the table above. Which
# layers matter most for telling species apart?
#
# ## Results

# %%
metrics = {
    "full_ft_acc": float(full_acc),             # means over P.seeds seeds
    "bitfit_acc": float(bitfit_acc),
    "bitfit_frozen_bn_acc": float(bitfit_frozen_acc),
    "lora_acc": float(lora_acc),
    "lora_trainable_frac": headline.trainable_frac,
    "lora_optimizer_frac": headline.optimizer_bytes / full.optimizer_bytes,
    "lora_table": [{"rank": r.rank, "trainable_frac": r.trainable_frac, "acc": r.test_acc}
                   for r in lora_runs],
    "adapter_b_acc": float(task_b_run.test_acc), "adapter_b_task": task_b.name,
    "serving_accs": [float(row["test_acc"]) for row in serving],
    **{f"{m.replace(', BN statistics frozen', '_frozen_bn')}_accs": list(v) for m, v in accs.items()},
    "seeds": P.seeds, "steps": P.steps,
    **peft_metrics,                             # the section "The same LoRA with Hugging Face peft"
}
lesson.finish(metrics, CLAIMS)
table.round(4)
