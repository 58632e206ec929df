# %% [markdown]
# # 12 · Scaling out: the same fine-tuning on several processes
#
# When one GPU is too slow, the usual next step is **data parallelism**: N copies of the same
# training script, one per GPU, each given a different piece of every batch, their gradients
# averaged before each optimiser step. PyTorch ships the machinery: **`torchrun`** starts the
# processes and tells each who it is; **`DistributedDataParallel`** (DDP) averages the gradients
# during `backward()`.
#
# We run lesson 02's fine-tuning (lesson 01's network with a new species head) in one ordinary
# process, then on two processes with `torchrun` (on a laptop: two CPU processes talking through
# `gloo`; on GPUs: one GPU per process and `nccl`), and check what matters: **the two runs follow
# the same loss trajectory**, step by step. Two processes sharing a laptop's cores need not be
# faster (the table at the end shows both runs' seconds); the point is that the *method* is the
# one you use on 8 GPUs.

# %%
import os

import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from helpers.cache import data_dir
from helpers.exercises import check
from helpers.experiments import build_model
from helpers.lessons.scaling import CLAIMS, finetune, launch, parse_args
from helpers.losses import cross_entropy_loss
from helpers.models import pretrained_image_model
from helpers.modes import sizes
from helpers.plots import line_plot
from helpers.results import Lesson
from helpers.surgery import freeze_bn_statistics
from helpers.tasks import species_train_set

lesson = Lesson("12")
S = sizes("scaling")
_ = pretrained_image_model()      # lesson 01's checkpoint: loaded (or built once) before the ranks need it
if torch.cuda.is_available() and torch.cuda.device_count() < S.ranks:
    # nccl needs one GPU per process: with fewer GPUs, both runs of this lesson use the CPU (gloo)
    os.environ["TORCH_DEVICE"] = "cpu"
    print(f"{torch.cuda.device_count()} GPU(s) for {S.ranks} processes: both runs use the CPU")
print(S.summary())

# %% [markdown]
# ## Data parallelism in one picture
#
# ```
#             global batch of B images (the same on every rank: same data, same seed)
#            ┌───────────────┬───────────────┐
#  rank 0:   │  B/2 images   │               │  forward, backward -> gradient g0
#  rank 1:   │               │  B/2 images   │  forward, backward -> gradient g1
#            └───────────────┴───────────────┘
#  all-reduce during backward():  g = (g0 + g1) / 2   on BOTH ranks
#  optimiser step on both ranks with the same g  ->  the two copies stay identical
# ```
#
# Each rank holds a full copy of the model and optimiser state. Because the loss is a *mean* over
# the batch, the mean of the two half-batch gradients **is** the gradient of the whole batch: two
# ranks with B/2 images each take the step one process takes with B images. In a few lines, without
# processes (BatchNorm statistics frozen; why, below):

# %%
model = freeze_bn_statistics(build_model(seed=0))     # a fresh lesson-02 model, BN in eval mode
x, y = species_train_set(S.labels_per_class, seed=0)
xb, yb = x[:S.batch_size], y[:S.batch_size]           # one global batch


def gradient(images, labels):
    model.zero_grad()
    cross_entropy_loss(model, (images, labels)).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


whole = gradient(xb, yb)
pieces = [gradient(xs, ys) for xs, ys in zip(xb.tensor_split(2), yb.tensor_split(2))]
averaged = (pieces[0] + pieces[1]) / 2                # what DDP's all-reduce computes
gap = (whole - averaged).abs().max().item()
print(f"{whole.numel():,} gradient entries; largest |whole - average of halves| = {gap:.2e} of a largest entry "
      f"{whole.abs().max().item():.2e}: " + ("float32 rounding, the same gradient" if gap < 1e-5 * whole.abs().max().item()
                                            else "more than rounding: look for a layer that depends on the batch"))

# %% [markdown]
# ## The script, and how to launch it from a terminal
#
# `helpers/lessons/scaling.py` is an ordinary training script (its `finetune` function, with
# `setup`, `wrap_ddp` and `RankShard` from `helpers/distributed.py`). The lines that make it
# distributed:
#
# ```python
# rank, world, device = setup()          # reads RANK, WORLD_SIZE, ... set by torchrun; gloo or nccl
# with main_process_first():             # rank 0 builds a missing checkpoint, the others then load it
#     model = build_model(...)           # lesson 01's weights + a new species head (lesson 02)
# freeze_stages(model, k)                # surgery (freezing, LoRA) BEFORE wrapping: DDP registers
# model = wrap_ddp(model, device)        #   the parameters that need gradients once, here
# batches = RankShard(Batches(x, y, batch_size=GLOBAL_BATCH, seed=0))   # this rank's piece
# history = train(model, cross_entropy_loss, batches, ...)  # the course's train(), unchanged
# ```
#
# `train()` notices the process group: only rank 0 shows progress and writes checkpoints and
# results; the logged loss and the evaluation metrics are averaged over the ranks. From a terminal,
# in the repository:
#
# ```bash
# # two processes on this machine (CPU: gloo; with 2+ GPUs: nccl, one GPU per process)
# torchrun --standalone --nproc_per_node 2 -m helpers.lessons.scaling --out data/ddp.json
# # the same fine-tuning in one plain process, for comparison
# python -m helpers.lessons.scaling --out data/single.json
# # several machines: the same command on each, with --nnodes, --node_rank and a rendezvous address
# torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_endpoint host0:29500 -m helpers.lessons.scaling
# ```
#
# `--batch-size` is the **global** batch: each of N ranks gets `batch_size / N` images per step.
# `python -m helpers.lessons.scaling --help` lists the other options (`--bn`, `--frozen-stages`,
# `--lora`, `--steps`, ...).
#
# ## Run 1: one process
#
# The function the ranks run, called in the notebook's own process (no process group, so
# `wrap_ddp` leaves the model as it is).

# %%
single = finetune(parse_args(["--steps", str(S.steps)]))

# %% [markdown]
# ## Run 2: two processes with torchrun
#
# The notebook starts `torchrun` as a subprocess, as you would in a terminal (the command is
# printed), and shows its log. Only rank 0 prints.

# %%
ddp_out = data_dir() / "runs" / "12_ddp.json"
ddp, log = launch(S.ranks, out=ddp_out, timeout_s=S.timeout_s, steps=S.steps)
print(log)
if ddp is None:
    raise RuntimeError("the torchrun launch failed: its log is printed above")

# %% [markdown]
# ## Did two processes do what one did?
#
# Both runs start from the same weights and see the same global batches, flips and shifts, at the
# same rate. If DDP averages the gradients as promised, the losses match step by step.

# %%
steps = list(range(1, len(single["loss"]) + 1))
compare = pd.DataFrame({"step": steps, "one process": single["loss"],
                        f"{ddp['ranks']} processes (DDP)": ddp["loss"]}).set_index("step")
compare["abs diff"] = (compare.iloc[:, 0] - compare.iloc[:, 1]).abs()
max_abs_diff = float(compare["abs diff"].max())
first = min(5, len(steps))
print(f"largest |loss difference|: {compare['abs diff'].iloc[:first].max():.1e} over the first {first} "
      f"steps, {max_abs_diff:.1e} over all {len(steps)}; test accuracy: one process "
      f"{single['test_acc']:.3f}, DDP {ddp['test_acc']:.3f}")
fig = line_plot(steps, {"one process": single["loss"], f"{ddp['ranks']} processes (DDP)": ddp["loss"]},
                xlabel="optimiser step", ylabel="training loss (global batch)",
                title="the same trajectory, one or two processes")
display(fig)
plt.close(fig)
compare.style.format("{:.6f}")


# %% [markdown]
# In a longer run the first steps may agree to float32 rounding and later steps differ a little
# more, without DDP being inexact: summing a gradient in two halves rounds differently from
# summing it at once (the mechanism cell printed that difference), and training amplifies tiny
# differences (AdamW turns a tiny, noisy gradient into a full-size step). The fair yardstick is one
# process that does DDP's arithmetic itself: the mean of the two halves' losses, each half through
# the model separately. Mathematically it is the same run as the other two.

# %%
def two_halves_loss(model, batch):
    """The batch's loss as the mean of its two halves' losses: DDP's arithmetic in one process."""
    x, y = batch
    return sum(cross_entropy_loss(model, (xs, ys)) for xs, ys in zip(x.tensor_split(2), y.tensor_split(2))) / 2


halves = finetune(parse_args(["--steps", str(S.steps), "--print-every", str(S.steps)]), loss_fn=two_halves_loss)
compare["one process, two halves"] = halves["loss"]
floor = float((compare["one process"] - compare["one process, two halves"]).abs().max())
ddp_vs_halves = float((compare[f"{ddp['ranks']} processes (DDP)"] - compare["one process, two halves"]).abs().max())
print(f"largest |loss difference| from the one-process run: DDP {max_abs_diff:.1e}, "
      f"the same process with the batch in two halves {floor:.1e}\n"
      f"largest |loss difference| between DDP and the two-halves process: {ddp_vs_halves:.1e}")
fig = line_plot(steps, {"DDP": (compare["abs diff"] + 1e-9).tolist(),
                        "one process, two halves": ((compare["one process"] - compare["one process, two halves"]).abs() + 1e-9).tolist()},
                xlabel="optimiser step", ylabel="|loss - one-process loss| (+1e-9)",
                title="DDP differs from one process as much as rounding does")
fig.axes[0].set_yscale("log")
display(fig)
plt.close(fig)

# %% [markdown]
# The last printed line is the real test of DDP: two processes exchanging gradients through `gloo`,
# against one process that computes both halves itself. At rounding level (or zero), DDP did
# exactly the arithmetic it promises; any drift from the whole-batch run is the ordinary
# sensitivity of training to rounding, as after changing the number of threads or the GPU.

# %% [markdown]
# ## BatchNorm: the one layer that notices
#
# In train mode, BatchNorm normalises with the statistics of *the batch it sees*; under DDP each
# rank sees only its piece, so the runs are close, not identical. Three ways to deal with it:
#
# - **Freeze the statistics** (`--bn frozen`, used above; `freeze_bn_statistics(model)`): the
#   running statistics from pre-training, while BatchNorm's weights still train. Exact; common with
#   small per-device batches.
# - **`SyncBatchNorm`** (`--bn sync`): the ranks exchange their statistics, so BatchNorm sees the
#   global batch. Exact too, one communication per BatchNorm layer, GPUs only.
# - **Local statistics** (`--bn update`, PyTorch's default): each rank's own; noisy when a rank has
#   only a few images.
#
# Models without BatchNorm (transformers use LayerNorm, which works per example) need none of this.
#
# ## Language models: the loss on the answers
#
# Lesson 08's fine-tuning has no BatchNorm but a trap of its own: its loss is the mean over the
# **answer tokens** only, and the two halves of a batch hold different numbers of them. If each rank
# averages over its own tokens and DDP averages the ranks, a token in the half with fewer answer
# tokens counts more: not the one-process mean. The fix is one number exchanged per step: each rank
# divides its summed loss by the answer tokens of **all** ranks (an `all_reduce` of the count),
# times the number of ranks (DDP divides by it again); `helpers.lm.lm_loss` does that under DDP.
# Three runs: one process, two with the global count, two with a per-rank mean.

# %%
lm_flags = dict(task="lm", steps=S.lm_steps, lr=S.lm_lr, batch_size=S.batch_size)
lm_single = finetune(parse_args([f"--{k.replace('_', '-')}={v}" for k, v in lm_flags.items()]))
lm_runs = {}
for how in ("global", "per-rank"):
    lm_runs[how], lm_log = launch(S.ranks, out=data_dir() / "runs" / f"12_lm_{how}.json", timeout_s=S.timeout_s,
                                  lm_loss=how, **lm_flags)
    if lm_runs[how] is None:
        print(lm_log)
        raise RuntimeError("the torchrun launch failed: its log is printed above")
lm_max_abs_diff = max(abs(a - b) for a, b in zip(lm_runs["global"]["loss"], lm_single["loss"]))
lm_max_abs_diff_per_rank = max(abs(a - b) for a, b in zip(lm_runs["per-rank"]["loss"], lm_single["loss"]))
print(f"largest |loss difference| from one process over {S.lm_steps} steps: global count {lm_max_abs_diff:.1e}, "
      f"per-rank mean {lm_max_abs_diff_per_rank:.1e}")
pd.DataFrame({"one process": lm_single["loss"], "DDP, global count": lm_runs["global"]["loss"],
              "DDP, per-rank mean": lm_runs["per-rank"]["loss"]},
             index=pd.RangeIndex(1, S.lm_steps + 1, name="step")).style.format("{:.6f}")

# %% [markdown]
# ## Effective batch size and the learning rate
#
# Above, the global batch was fixed and split, so nothing about the optimisation changed. In
# practice people usually keep the **per-device batch** (what fits in one GPU's memory) and add
# devices, so the **effective batch** grows:
#
# effective batch = per-device batch × number of processes × gradient-accumulation steps
#
# A larger batch gives a less noisy gradient but N times fewer steps per epoch. To keep training
# about as fast per epoch, the learning rate usually goes up:
#
# - **Linear scaling** (Goyal et al., 2017, for SGD): N times the batch, N times the rate, with a
#   warmup (our `train` warms up for the first 5 % of the steps by default).
# - For Adam and AdamW, scaling the rate by **√N** is the common starting point; either way, large
#   jumps in batch size need a short rate sweep like lesson 02's.
# - Or keep the effective batch fixed: fewer images per device as you add devices (what this
#   lesson did), and the original hyperparameters stay valid.

# %%
ft = sizes("finetune")
print(f"lesson 02 in {lesson.mode} mode fine-tunes at a batch of {ft.batch_size} with lr {ft.lr:g}, on one device")

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Say a fine-tuning runs with `lr = 1e-3` at a batch of 32 on one device. You move
# to 4 GPUs and keep 32 images per GPU. What is the effective batch, and what learning rate does
# the linear scaling rule suggest? Store them in `effective_batch` and `scaled_lr`.

# %% tags=["exercise"]
effective_batch = None
scaled_lr = None

# %% tags=["check"]
check("effective batch and scaled rate",
      lambda: effective_batch == 128 and abs(scaled_lr - 4e-3) < 1e-9,
      hint="every GPU adds its own images to one optimiser step; the linear rule scales the rate by the "
           "factor the batch grew by (not by its square root, the AdamW rule)")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# effective_batch = 32 * 4          # per-device batch x processes (no gradient accumulation)
# scaled_lr = 1e-3 * effective_batch / 32
# print(f"effective batch {effective_batch}, linear-scaled rate {scaled_lr:.0e} "
#       f"(the square-root rule for AdamW would say {1e-3 * 2:.0e})")
# ```
#
# </details>

# %% [markdown]
# ## What DDP sends: gradients of the trainable parameters
#
# Every step, DDP all-reduces the gradient of every *trainable* parameter (in buckets, overlapping
# with `backward()`); frozen ones have none. DDP fixes its list of parameters when it wraps the
# model, so freeze and add LoRA **before** `wrap_ddp`. LoRA then shrinks the traffic between GPUs too.

# %% [markdown]
# **Exercise 2.** How many bytes of gradients does DDP all-reduce per step for lesson 02's full
# fine-tuning, and how many with a rank-4 LoRA on `layer3` and `layer4` plus the new head? The
# gradients are float32 (4 bytes each). Build the models with `build_model(seed=0)`; for LoRA use
# `add_lora(model, ["layer3.*.conv*", "layer4.*.conv*"], rank=4)` then
# `train_only_lora(model, also="fc")` from `helpers.lora`. Store `full_bytes` and `lora_bytes`.

# %% tags=["exercise"]
full_bytes = None
lora_bytes = None

# %% tags=["check"]
from helpers.lora import add_lora, train_only_lora


def _trained_numbers(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


check("gradient bytes per step",
      lambda: full_bytes == 4 * _trained_numbers(build_model(seed=0))
      and lora_bytes == 4 * _trained_numbers(train_only_lora(
          add_lora(build_model(seed=0), ["layer3.*.conv*", "layer4.*.conv*"], rank=4), also="fc")),
      hint="DDP all-reduces a gradient only for the parameters that train (requires_grad); 4 bytes for each "
           "number in them; the LoRA model trains its adapters and its new head")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# from helpers.lora import add_lora, train_only_lora
#
#
# def gradient_bytes(model):
#     return 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
#
#
# full_bytes = gradient_bytes(build_model(seed=0))
# lora_model = train_only_lora(add_lora(build_model(seed=0), ["layer3.*.conv*", "layer4.*.conv*"], rank=4),
#                              also="fc")
# lora_bytes = gradient_bytes(lora_model)
# print(f"full fine-tuning: {full_bytes / 1e6:.2f} MB per step; LoRA: {lora_bytes / 1e6:.3f} MB "
#       f"({full_bytes / lora_bytes:.0f} times less)")
# ```
#
# </details>

# %% [markdown]
# ## When to reach for FSDP
#
# DDP keeps a **full copy** of the weights, the gradients and the optimiser state on every device.
# Full fine-tuning with AdamW in float32 needs about 16 bytes per parameter for those (weights 4,
# gradients 4, Adam's two moments 8), before activations:

# %%
n_params = sum(p.numel() for p in build_model(seed=0).parameters())
memory = pd.DataFrame([{"model": "this lesson's CNN", "parameters (millions)": n_params / 1e6},
                       {"model": "a 1-billion-parameter model", "parameters (millions)": 1e3},
                       {"model": "a 7-billion-parameter model", "parameters (millions)": 7e3}]).set_index("model")
memory["DDP: GB per device"] = memory["parameters (millions)"] * 1e6 * 16 / 1e9
memory["FSDP on 8 devices: GB per device"] = memory["DDP: GB per device"] / 8
memory.round(4)

# %% [markdown]
# When that no longer fits, **Fully Sharded Data Parallel** (FSDP, PyTorch's own;
# `torch.distributed.fsdp.fully_shard`) is the next step: still data parallelism, but each rank
# *stores* only 1/N of the weights, gradients and optimiser state, gathers a layer's full weights
# just before using it, and updates only its own shard. Memory per device falls about N-fold;
# communication rises (about 1.5 times DDP's). Rules of thumb:
#
# - Model, gradients and optimiser state fit on one device with room for activations: **DDP**
#   (simplest, fastest).
# - They do not fit, or barely: **FSDP** (or first try the cheaper tricks of earlier lessons:
#   LoRA, frozen layers, bf16 mixed precision, activation checkpointing, a smaller batch with
#   gradient accumulation).
# - A single layer's weights do not fit on one device: tensor or pipeline parallelism, beyond this
#   course.
#
# ## How the course's lessons map onto this
#
# | lessons | what changes under DDP |
# |---|---|
# | 01 pre-training on the image world | each rank renders its own batches (seed `seed + rank`) |
# | 02-05 fine-tuning | `RankShard` over the labelled images, as here; surgery before `wrap_ddp`; BatchNorm statistics frozen (or SyncBatchNorm) |
# | 06 LoRA and BitFit | add adapters, then wrap: only the adapters' gradients travel (exercise 2) |
# | 07-09 language models | per-rank seeds for the text windows; the answer-only loss over all ranks' tokens (`lm_loss`); FSDP once the model grows |
# | 10 distillation | the frozen teacher is a plain copy on each rank; only the student is wrapped |
# | 11 the generator | training as in 01; sampling and the memorisation check on rank 0 |
#
# `train()`, the checkpoint cache and the results file behave the same in every lesson, so the
# only new lines are the five above.

# %% [markdown]
# ## Results
#
# The lesson records the number of processes, the final training loss of each run, the largest
# difference between the two image loss trajectories over all steps, and the same for the
# language model's answer-only loss (global count, and the per-rank mean that is not exact).

# %%
metrics = {"ranks": ddp["ranks"], "loss_single": single["loss"][-1], "loss_ddp": ddp["loss"][-1],
           "max_abs_diff": max_abs_diff, "lm_max_abs_diff": lm_max_abs_diff,
           "lm_max_abs_diff_per_rank": lm_max_abs_diff_per_rank}
lesson.finish(metrics, CLAIMS)
pd.DataFrame([{"run": "one process", "processes": 1, "global batch": single["batch_size"],
               "per-process batch": single["per_rank_batch"], "final loss": single["loss"][-1],
               "test acc": single["test_acc"], "train s": single["train_s"]},
              {"run": "DDP", "processes": ddp["ranks"], "global batch": ddp["batch_size"],
               "per-process batch": ddp["per_rank_batch"], "final loss": ddp["loss"][-1],
               "test acc": ddp["test_acc"], "train s": ddp["train_s"]}]).set_index("run").round(6)
