"""Lesson 02's fine-tuning on N processes with torchrun and DistributedDataParallel (lesson 12).

The model is lesson 01's pre-trained network with a new species head, fine-tuned on the few-label
bird-species task, exactly as in lesson 02. Every process (rank) holds the whole model and the
whole (small) training set, walks through the same shuffled global batches, and trains on its
own piece of each one; DDP averages the gradients, so all ranks take the same step.

From a terminal, in the repository (CPU: gloo, one thread per process; GPUs: nccl, one per rank):

    torchrun --standalone --nproc_per_node 2 -m helpers.lessons.scaling --out data/ddp.json
    python -m helpers.lessons.scaling --out data/single.json           # the same run, one process

``--batch-size`` is the GLOBAL batch (all ranks together), so the two commands above do the same
optimisation and their losses agree to float precision. ``--bn``: "frozen" (BatchNorm uses its
running statistics: exact equivalence), "update" (each rank's own batch statistics: PyTorch's
default, slightly different) or "sync" (SyncBatchNorm, CUDA only). From Python, ``launch(...)``
runs torchrun as a subprocess and returns its log and results.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch.nn as nn

from ..augment import flip_and_shift
from ..claims import Claim
from ..device import seed_everything
from ..distributed import RankShard, cleanup, is_main_process, main_process_first, setup, wrap_ddp
from ..experiments import build_model
from ..losses import cross_entropy_loss
from ..modes import sizes
from ..surgery import BN_CHOICES, freeze_bn_statistics, freeze_stages, trainable_params
from ..tasks import species_test_set, species_train_set
from ..training import Batches, Monitor, Optimiser, accuracy, train

# the package's BatchNorm choices, and SyncBatchNorm, which only a multi-process run can use
DDP_BN_CHOICES = BN_CHOICES + ("sync",)


def parse_args(argv=None):
    S = sizes("scaling")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--labels", type=int, default=S.labels_per_class, help="labels per species")
    p.add_argument("--steps", type=int, default=S.steps, help="optimiser steps")
    p.add_argument("--batch-size", type=int, default=S.batch_size, help="GLOBAL batch, all ranks together")
    p.add_argument("--lr", type=float, default=S.lr, help="peak learning rate")
    p.add_argument("--test-images", type=int, default=S.test_images)
    p.add_argument("--bn", choices=DDP_BN_CHOICES, default="frozen", help="BatchNorm statistics (see above)")
    p.add_argument("--frozen-stages", type=int, default=0, help="freeze the first k stages")
    p.add_argument("--lora", type=int, default=0, help="LoRA rank on layer3/layer4 (0: no LoRA)")
    p.add_argument("--no-augment", action="store_true", help="no flips and shifts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", choices=("species", "lm"), default="species",
                   help="species: lesson 02's image fine-tuning; lm: lesson 08's answer-only question fine-tuning")
    p.add_argument("--lm-loss", choices=("global", "per-rank"), default="global",
                   help="lm task: average the loss over the labelled tokens of all ranks (exact) or of each rank")
    p.add_argument("--print-every", type=int, default=0, help="steps between log lines (0: ~10 lines)")
    p.add_argument("--out", type=str, default=None, help="rank 0 writes the results here (JSON)")
    return p.parse_args(argv)


def finetune_lm(args) -> dict:
    """Lesson 08's question-answer fine-tuning (loss on the answer tokens only) of lesson 07's
    pre-trained LM, in this process or as one rank of many. Returns the results.

    The ranks' pieces of a batch hold different numbers of answer tokens, so a loss averaged per
    rank gives the tokens of a short piece more weight than one process would: ``--lm-loss
    per-rank`` shows that; the default (``helpers.lm.lm_loss``) divides by the count of all ranks.
    """
    from ..lm import exact_match, lm_loss, lm_loss_per_rank, medical_qa, pretrained_lm, qa_tensors

    rank, world, device = setup()
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} does not split evenly over {world} ranks; "
                         f"use a multiple of {world} so every rank gets an equal piece")
    with main_process_first():      # rank 0 builds lesson 07's checkpoint if it is missing
        model, tok, _ = pretrained_lm(device=device, verbose=False)
    qa = medical_qa()
    n_trainable = trainable_params(model)
    net = wrap_ddp(model, device)
    x, y = qa_tensors(tok, qa.train)
    batches = RankShard(Batches(x.to(device), y.to(device), batch_size=args.batch_size, seed=args.seed,
                                drop_last=True))
    loss_fn = lm_loss if args.lm_loss == "global" else lm_loss_per_rank
    if is_main_process():
        print(f"[rank 0 of {world}] device {device}, global batch {args.batch_size} = {world} x "
              f"{args.batch_size // world} questions, {len(x)} questions, {n_trainable:,} trainable "
              f"parameters, loss averaged {args.lm_loss}", flush=True)
    seed_everything(args.seed)
    history = train(net, loss_fn, batches, steps=args.steps, optimiser=Optimiser(lr=args.lr, weight_decay=0.0),
                    device=device, monitor=Monitor(log_every=1), progress=False)
    result = {"task": "lm", "ranks": world, "batch_size": args.batch_size, "lm_loss": args.lm_loss,
              "steps": history.steps_done, "loss": history.loss, "train_s": history.train_s,
              "trainable_params": n_trainable, "device": str(device)}
    if is_main_process():
        result["heldout_acc"] = exact_match(model, tok, qa.test)
        print(f"[rank 0 of {world}] done: final loss {history.loss[-1]:.6f}, held-out exact match "
              f"{result['heldout_acc']:.3f}, {result['train_s']:.1f} s", flush=True)
        _write(result, args.out)
    cleanup()
    return result


def _write(result: dict, out: str | None) -> None:
    """Rank 0's results as JSON at ``out`` (if given), for the launching notebook to read."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1))


def finetune(args, loss_fn=cross_entropy_loss) -> dict:
    """One fine-tuning run in this process (one rank of many under torchrun). Returns the results.

    ``args`` from ``parse_args``; ``loss_fn(model, batch)`` as for ``train`` (default: cross-entropy).
    ``--task lm`` runs ``finetune_lm`` instead.
    """
    if args.task == "lm":
        return finetune_lm(args)
    rank, world, device = setup()
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} does not split evenly over {world} ranks; "
                         f"use a multiple of {world} so every rank gets an equal piece")
    with main_process_first():      # rank 0 builds lesson 01's checkpoint if it is missing
        model = build_model(head="linear", seed=args.seed, device=device)
    # Surgery BEFORE wrapping in DDP: DDP registers the parameters that need gradients once.
    freeze_stages(model, args.frozen_stages)
    if args.lora:
        from ..lora import add_lora, train_only_lora
        add_lora(model, ["layer3.*.conv*", "layer4.*.conv*"], rank=args.lora, seed=args.seed)
        train_only_lora(model, also="fc")
    if args.bn == "frozen":
        freeze_bn_statistics(model)
    elif args.bn == "sync":
        if device.type != "cuda":
            raise ValueError("--bn sync needs CUDA GPUs (PyTorch's SyncBatchNorm); on the CPU use "
                             "--bn frozen (exact) or --bn update")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    n_trainable = trainable_params(model)
    model = wrap_ddp(model, device)

    x, y = species_train_set(args.labels, seed=args.seed, device=device)
    batches = RankShard(Batches(x, y, batch_size=args.batch_size, seed=args.seed, drop_last=True,
                                augment=None if args.no_augment else flip_and_shift))
    # evaluation: each rank scores its own equal share of the test set; train() averages them
    x_test, y_test = species_test_set(args.test_images - args.test_images % world, device=device)
    x_test, y_test = x_test.tensor_split(world)[rank], y_test.tensor_split(world)[rank]

    print_every = args.print_every or max(1, args.steps // 10)

    def print_line(history):      # train() calls the hook on rank 0 only
        step = history.step[-1]
        if step % print_every == 0 or step == args.steps:
            print(f"[rank 0 of {world}] step {step:4d}/{args.steps}  loss {history.loss[-1]:.6f}  "
                  f"{history.train_s:6.1f} s", flush=True)

    if is_main_process():
        print(f"[rank 0 of {world}] device {device}, global batch {args.batch_size} = {world} x "
              f"{args.batch_size // world}, {len(x)} training images, {n_trainable:,} trainable "
              f"parameters, BatchNorm {args.bn}", flush=True)
    seed_everything(args.seed)          # the same random augmentations on every rank
    history = train(model, loss_fn, batches, steps=args.steps, optimiser=Optimiser(lr=args.lr), device=device,
                    monitor=Monitor(evaluate=lambda m: {"test_acc": accuracy(m, x_test, y_test)}, log_every=1,
                                    hook=print_line),
                    progress=False)
    result = {"ranks": world, "batch_size": args.batch_size, "per_rank_batch": args.batch_size // world,
              "bn": args.bn, "lora": args.lora, "frozen_stages": args.frozen_stages,
              "steps": history.steps_done, "loss": history.loss, "test_acc": history.last_eval("test_acc"),
              "train_s": history.train_s, "samples_per_s": history.samples_per_s,
              "trainable_params": n_trainable, "device": str(device)}
    if is_main_process():
        print(f"[rank 0 of {world}] done: final loss {history.loss[-1]:.6f}, test accuracy "
              f"{result['test_acc']:.3f}, {result['train_s']:.1f} s", flush=True)
        _write(result, args.out)
    cleanup()
    return result


def launch(nproc: int = 2, *, out, timeout_s: int = 300, extra_args=(), **options) -> tuple[dict | None, str]:
    """Run this script under torchrun as a subprocess, the way you would from a terminal
    (``nproc=1``: as one plain process, without torchrun).

    ``options`` become command-line flags (``steps=10`` -> ``--steps 10``). Returns
    (results dict written by rank 0, or None if the run failed, the combined log text).
    The command is printed first so you can copy it into a terminal.
    """
    flags = [f for k, v in options.items() for f in (f"--{k.replace('_', '-')}", str(v))]
    script = ["-m", "helpers.lessons.scaling", "--out", str(out), *flags, *extra_args]
    if nproc == 1:      # one ordinary process: no torchrun, no process group, no DDP
        cmd = [sys.executable, *script]
        print("$ python " + " ".join(script), flush=True)
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               *script]
        print("$ torchrun " + " ".join(cmd[3:]), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    Path(out).unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
        log, ok = proc.stdout + proc.stderr, proc.returncode == 0
    except subprocess.TimeoutExpired as err:
        log = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        log, ok = log + f"\n(stopped after {timeout_s} s: raise timeout_s or lower the steps)", False
    log += f"\n(launch took {time.perf_counter() - start:.1f} s in all, start-up included)"
    result = json.loads(Path(out).read_text()) if ok and Path(out).exists() else None
    return result, log


def main(argv=None):
    finetune(parse_args(argv))


if __name__ == "__main__":
    main()


CLAIMS = [
    Claim("12", "with the answer-only loss divided by the count of answer tokens over all ranks, DDP's language-model "
                "fine-tuning matches one process to rounding (within 1e-4)",
          lambda m: m["lm_max_abs_diff"] < 1e-4),
    Claim("12", "a per-rank average of the answer-only loss does not: it is at least ten times further off",
          lambda m: m["lm_max_abs_diff_per_rank"] > 10 * max(m["lm_max_abs_diff"], 1e-7)),
]
