"""DistributedDataParallel with the course's train(): two gloo processes on the CPU do exactly what
one process does with the combined batch; frozen layers and LoRA work; only rank 0 reports and
writes files.

Two processes are started once for the whole file (``torch.multiprocessing``, gloo backend); each
runs every scenario and writes what it saw to a JSON file per rank; the tests compare those files
with the same scenarios run here in one process.
"""
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from helpers import distributed
from helpers.cache import save_checkpoint
from helpers.distributed import RankShard, reduce_metrics, wrap_ddp
from helpers.losses import cross_entropy_loss
from helpers.results import record_results
from helpers.surgery import freeze_bn_statistics
from helpers.training import Batches, Monitor, Optimiser, accuracy, train

WORLD = 2
SCENARIOS = ("plain", "frozen", "bn_frozen", "lora")
BN_LOCAL = "bn_local"      # train-mode BatchNorm: each rank normalises with its own piece


def tiny_model(scenario: str) -> nn.Module:
    """A small conv net; "bn_frozen" adds BatchNorm (statistics frozen), "lora" adds adapters."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3, padding=1)]
    if scenario.startswith("bn"):
        layers.append(nn.BatchNorm2d(8))
    layers += [nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4)]
    model = nn.Sequential(*layers)
    if scenario == "frozen":
        model[0].requires_grad_(False)            # the first layer is frozen
    if scenario == "bn_frozen":
        with torch.no_grad():                     # statistics that differ from a fresh layer's
            model[1].running_mean.uniform_(-0.5, 0.5)
            model[1].running_var.uniform_(0.5, 2.0)
        freeze_bn_statistics(model)
    if scenario == "lora":
        from helpers.lora import add_lora, train_only_lora
        add_lora(model, ["0", str(len(layers) - 1)], rank=2, seed=0)
        train_only_lora(model)
        with torch.no_grad():                     # B starts at zero; make the adapters matter
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    return model


def run_scenario(scenario: str) -> dict:
    """Train the tiny model 2 epochs of 4 global batches of 12; return what every check needs."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(48, 3, 8, 8, generator=g)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()   # learnable
    model = tiny_model(scenario)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    net = wrap_ddp(model, "cpu")
    batches = RankShard(Batches(x, y, batch_size=12, seed=0))
    hook_calls = []
    me = distributed.rank()
    history = train(net, cross_entropy_loss, batches, epochs=2, optimiser=Optimiser(lr=1e-2, warmup=0.0), device="cpu",
                    monitor=Monitor(log_every=1, hook=lambda h: hook_calls.append(h.step[-1]),
                                    evaluate=lambda m: {"acc": accuracy(m, x, y), "rank": float(me)}),
                    progress=False)
    end = model.state_dict()
    frozen_moved = [k for k, p in model.named_parameters() if not p.requires_grad
                    and not torch.equal(start[k], end[k])]
    return {"loss": history.loss, "state": {k: v.flatten().tolist() for k, v in end.items()},
            "hook_calls": hook_calls, "evals": history.evals, "frozen_moved": frozen_moved,
            "samples": history.samples[-1]}


LM_LOSSES = ("global", "per-rank")


def run_lm(loss: str) -> dict:
    """A tiny GPT fine-tuned 3 steps on batches of 8 sequences whose answer spans (labelled
    positions) differ in length, so the two ranks' pieces hold different numbers of labels."""
    from helpers.gpt import GPT, GPTConfig
    from helpers.lm import IGNORE, lm_loss, lm_loss_per_rank

    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 20, (24, 10), generator=g)
    y = torch.roll(x, -1, dims=1)
    for i in range(24):                         # label only the last 1..8 positions
        y[i, : 10 - (1 + (i * 5) % 8)] = IGNORE
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=20, context=12, n_layer=1, n_head=2, d_model=16))
    net = wrap_ddp(model, "cpu")
    loss_fn = lm_loss if loss == "global" else lm_loss_per_rank
    history = train(net, loss_fn, RankShard(Batches(x, y, batch_size=8, seed=0)), steps=3,
                    optimiser=Optimiser(lr=1e-2, warmup=0.0), device="cpu", monitor=Monitor(log_every=1),
                    progress=False)
    return {"loss": history.loss, "state": {k: v.flatten().tolist() for k, v in model.state_dict().items()}}


def _worker(rank: int, port: int, out_dir: str):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TORCH_DEVICE="cpu",
                      COURSE_DATA=os.path.join(out_dir, "data"))
    torch.set_num_threads(1)
    distributed.setup(timeout_s=60)
    seen = {s: run_scenario(s) for s in SCENARIOS + (BN_LOCAL,)}
    seen.update({f"lm_{loss}": run_lm(loss) for loss in LM_LOSSES})
    seen["reduced"] = reduce_metrics({"rank": float(rank), "one": 1.0})
    # Every rank asks to write; the guards let rank 0 alone do it.
    save_checkpoint(os.path.join(out_dir, f"checkpoint-rank{rank}.safetensors"), nn.Linear(2, 2))
    record_results("99", {"rank": rank}, wall_s=1.0)
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:    # the test's own report
        json.dump(seen, f)
    distributed.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """Run every scenario on 2 gloo processes; returns (per-rank reports, their folder)."""
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=True)
    reports = [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return reports, out_dir


def max_diff(a: dict, b: dict) -> float:
    return max(max((abs(u - v) for u, v in zip(a[k], b[k])), default=0.0) for k in a)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_processes_match_one_process_with_the_combined_batch(ranks, scenario):
    reports, _ = ranks
    single = run_scenario(scenario)           # here: no process group, the whole batch
    for report in reports:
        ddp = report[scenario]
        assert len(ddp["loss"]) == len(single["loss"]) == 8
        assert ddp["loss"] == pytest.approx(single["loss"], abs=1e-5), "loss trajectories differ"
        assert max_diff(ddp["state"], single["state"]) < 1e-5, "final weights differ"
        assert ddp["samples"] == single["samples"] == 96     # samples of all ranks together
    # both ranks end with identical weights: DDP keeps the copies in step
    assert max_diff(reports[0][scenario]["state"], reports[1][scenario]["state"]) == 0.0
    assert sum(single["loss"][4:]) < sum(single["loss"][:4]), "the second epoch should fit better"


def test_batch_statistics_per_rank_make_ddp_differ(ranks):
    """Why the exact runs freeze BatchNorm statistics: each rank's piece has its own mean and
    variance, so train-mode BatchNorm under DDP is close to, but not, the one-process run."""
    reports, _ = ranks
    single = run_scenario(BN_LOCAL)
    diff = max(abs(a - b) for a, b in zip(reports[0][BN_LOCAL]["loss"], single["loss"]))
    assert 1e-4 < diff < 0.5


def test_answer_only_lm_loss_is_exact_under_ddp_only_when_normalised_globally(ranks):
    """Lesson 12: each rank's piece holds a different number of answer tokens. Dividing by the
    count of all ranks (``lm_loss``) makes DDP the one-process run; a per-rank mean does not."""
    reports, _ = ranks
    single = run_lm("global")                  # one process: both losses are the plain mean
    assert run_lm("per-rank")["loss"] == single["loss"]
    exact = reports[0]["lm_global"]
    exact_diff = max(abs(a - b) for a, b in zip(exact["loss"], single["loss"]))
    assert exact_diff < 1e-5 and max_diff(exact["state"], single["state"]) < 1e-4    # rounding (AdamW amplifies it)
    per_rank = reports[0]["lm_per-rank"]
    per_rank_diff = max(abs(a - b) for a, b in zip(per_rank["loss"], single["loss"]))
    assert per_rank_diff > 1e-3 and per_rank_diff > 100 * exact_diff


@pytest.mark.parametrize("scenario", ["frozen", "bn_frozen", "lora"])
def test_frozen_parameters_stay_put_under_ddp(ranks, scenario):
    reports, _ = ranks
    for report in reports:
        assert report[scenario]["frozen_moved"] == []


def test_only_rank_zero_reports_and_writes(ranks):
    reports, out_dir = ranks
    assert reports[0]["plain"]["hook_calls"] == list(range(1, 9))
    assert reports[1]["plain"]["hook_calls"] == []
    assert (out_dir / "checkpoint-rank0.safetensors").exists()
    assert not (out_dir / "checkpoint-rank1.safetensors").exists()
    assert not list(out_dir.glob(".*.tmp"))


def test_results_written_once_by_rank_zero(ranks):
    _, out_dir = ranks          # the workers' own data folder, smoke mode: rank 0's entry alone
    results = json.loads((out_dir / "data" / "results" / "smoke.json").read_text())
    assert results["99"]["metrics"] == {"rank": 0}


def test_metrics_are_averaged_over_ranks(ranks):
    reports, _ = ranks
    for report in reports:
        assert report["reduced"] == {"one": 1.0, "rank": 0.5}
        assert report["plain"]["evals"][-1]["rank"] == 0.5      # train() reduced its evaluation
        assert report["plain"]["evals"][-1]["acc"] == reports[0]["plain"]["evals"][-1]["acc"]


def test_rank_shard_cuts_each_batch_into_equal_pieces_in_order():
    x = torch.arange(12)
    batches = Batches(x, batch_size=6, shuffle=False)
    pieces = [[b[0].tolist() for b in RankShard(batches, r, 3)] for r in range(3)]
    assert pieces[0] == [[0, 1], [6, 7]] and pieces[2] == [[4, 5], [10, 11]]
    assert len(RankShard(batches, 0, 3)) == len(batches)


def test_single_process_helpers_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert distributed.setup()[:2] == (0, 1)
    assert distributed.is_main_process() and distributed.world_size() == 1
    model = nn.Linear(2, 2)
    assert wrap_ddp(model, "cpu") is model            # nothing to wrap in one process
    assert reduce_metrics({"a": 2}) == {"a": 2.0}
