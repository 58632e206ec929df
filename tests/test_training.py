"""The training loop: learns, overfits a batch, stops cleanly, refuses NaN, honours frozen params."""

from dataclasses import replace

import pytest
import torch
import torch.nn as nn

from helpers.losses import cross_entropy_loss
from helpers.training import (
    Batches,
    History,
    KeepBest,
    Monitor,
    NonFiniteLossError,
    Optimiser,
    accuracy,
    evaluating,
    optimizer_groups,
    predict,
    train,
    warmup_cosine,
)


def blobs(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    return centres[y] + 0.5 * torch.randn(n, 2, generator=g), y


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 3))


def test_loss_falls_and_history_is_filled(device):
    x, y = blobs()
    model = mlp()
    hist = train(model, cross_entropy_loss, Batches(x, y, batch_size=32), epochs=5, optimiser=Optimiser(lr=1e-2),
                 device=device, monitor=Monitor(log_every=4), progress=False)
    assert isinstance(hist, History)
    assert hist.loss[-1] < hist.loss[0] * 0.5
    assert len(hist.step) == len(hist.loss) == len(hist.lr) == len(hist.seconds)
    assert hist.steps_done == 5 * 8 and hist.samples[-1] == 5 * 256
    assert accuracy(model, x.to(device), y.to(device)) > 0.9


def test_overfits_one_batch():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 10, generator=g), torch.randint(0, 3, (16,), generator=g)   # random labels
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 128), nn.ReLU(), nn.Linear(128, 3))
    hist = train(model, cross_entropy_loss, Batches(x, y, batch_size=16), epochs=200,
                 optimiser=Optimiser(lr=1e-2, warmup=0.0, clip_grad=None), monitor=Monitor(log_every=50),
                 progress=False)
    assert hist.loss[-1] < 0.05


def test_interrupt_leaves_model_and_history_usable(capsys):
    x, y = blobs()
    model = mlp()

    def stop_at_step_12(hist):
        if hist.steps_done >= 12:
            raise KeyboardInterrupt

    hist = train(model, cross_entropy_loss, Batches(x, y, batch_size=32), epochs=10, optimiser=Optimiser(lr=1e-2),
                 monitor=Monitor(log_every=4, hook=stop_at_step_12), progress=False)
    assert hist.interrupted and hist.steps_done == 12
    assert "stopped by you" in capsys.readouterr().out
    out = predict(model, x)
    assert torch.isfinite(out).all() and out.shape == (256, 3)


def test_nan_loss_stops_with_a_hint():
    x, y = blobs()

    def bad_loss(model, batch):
        return model(batch[0]).sum() * float("nan")

    with pytest.raises(NonFiniteLossError, match="lower learning rate") as err:
        train(mlp(), bad_loss, Batches(x, y, batch_size=32), epochs=1, monitor=Monitor(log_every=2), progress=False)
    assert err.value.history.steps_done == 2
    assert "inputs themselves" not in str(err.value)


def test_only_trainable_parameters_move():
    x, y = blobs()
    model = mlp()
    model[0].weight.requires_grad_(False)
    before = [p.detach().clone() for p in model.parameters()]
    train(model, cross_entropy_loss, Batches(x, y, batch_size=32), epochs=1, progress=False)
    after = list(model.parameters())
    assert torch.equal(before[0], after[0])
    assert not torch.equal(before[2], after[2])


def test_everything_frozen_is_an_error():
    model = mlp().requires_grad_(False)
    x, y = blobs()
    with pytest.raises(ValueError, match="no trainable parameters"):
        train(model, cross_entropy_loss, Batches(x, y, batch_size=32), progress=False)


def test_parameter_groups_keep_their_own_rates():
    x, y = blobs()
    model = mlp()
    groups = [{"params": model[0].parameters(), "lr": 1e-4}, {"params": model[2].parameters(), "lr": 1e-2}]
    seen = []
    train(model, cross_entropy_loss, Batches(x, y, batch_size=32), epochs=1,
          optimiser=Optimiser(param_groups=groups, warmup=0.0),
          monitor=Monitor(log_every=1, hook=lambda h: seen.append(h.lr[-1])), progress=False)
    assert seen[0] == pytest.approx(1e-4, rel=0.2)     # the first group's rate, after step 1


def test_evaluation_runs_without_grad_and_restores_mode():
    x, y = blobs()
    model = mlp()
    modes = []

    def evaluate(m):
        modes.append((m.training, torch.is_grad_enabled()))
        return {"acc": accuracy(m, x, y)}

    hist = train(model, cross_entropy_loss, Batches(x, y, batch_size=32), epochs=2,
                 monitor=Monitor(eval_every=4, evaluate=evaluate), progress=False)
    assert modes and all(not training and not grad for training, grad in modes)
    assert model.training and hist.last_eval("acc") is not None
    model.eval()
    with evaluating(model):
        pass
    assert not model.training


def test_schedule_warms_up_then_decays():
    mults = [warmup_cosine(s, 100, 10) for s in range(100)]
    assert mults[0] == pytest.approx(0.1) and mults[9] == pytest.approx(1.0)
    assert mults[-1] < 0.01 and all(a >= b for a, b in zip(mults[10:], mults[11:]))


def test_batches_reshuffle_each_epoch_repeatably():
    x = torch.arange(10)
    b1, b2 = Batches(x, batch_size=4, seed=0), Batches(x, batch_size=4, seed=0)
    e1, e2 = [t[0].tolist() for t in b1], [t[0].tolist() for t in b1]
    assert len(b1) == 3 and e1 != e2
    assert e1 == [t[0].tolist() for t in b2]
    assert sorted(sum(e1, [])) == list(range(10))


def test_channels_last_default_is_for_conv_nets_on_cuda_and_x86_cpus(monkeypatch):
    import platform

    from helpers.device import prefers_channels_last
    from helpers.models import create_image_model, image_model_config
    cnn, mlp = create_image_model(replace(image_model_config("smoke"), width=8, image_size=32)), nn.Linear(4, 2)
    assert prefers_channels_last(cnn, "cuda") and not prefers_channels_last(mlp, "cuda")
    assert not prefers_channels_last(cnn, "mps")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    assert prefers_channels_last(cnn, "cpu") and not prefers_channels_last(mlp, "cpu")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    assert not prefers_channels_last(cnn, "cpu")


def test_history_round_trips_through_a_dict():
    h = History(step=[10, 20], loss=[2.0, 1.5], lr=[1e-3, 5e-4], seconds=[0.5, 1.0], samples=[80, 160],
                evals=[{"step": 20, "acc": 0.5}], interrupted=True, best_step=10)
    assert History.from_dict(h.as_dict()) == h
    assert h.as_dict()["best_step"] == 10 and h.train_s == 1.0 and History().train_s == 0.0


def test_history_says_which_step_the_weights_are_from():
    x, y = blobs(64)
    hist = train(mlp(), cross_entropy_loss, Batches(x, y, batch_size=16), steps=10, device="cpu", progress=False)
    assert hist.best_step == hist.steps_done == 10


def _keeper_run(scores, **keep_kwargs):
    """Train a tiny model with 4 evaluations whose metric is ``scores`` in turn; return the model,
    the weights it had at each evaluation, the keeper and the restored History."""
    x, y = blobs(64)
    model, snapshots = mlp(), []

    def evaluate(m):
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"score": scores[len(snapshots) - 1]}

    keeper = KeepBest(evaluate, "score", **keep_kwargs)
    hist = train(model, cross_entropy_loss, Batches(x, y, batch_size=16), steps=20, optimiser=Optimiser(lr=1e-2),
                 device="cpu", monitor=Monitor(evaluate=keeper, eval_every=5), progress=False)
    final = {k: v.clone() for k, v in model.state_dict().items()}
    return model, snapshots, keeper, keeper.restore(model, hist), final


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("scores, higher, kept", [([0.2, 0.7, 0.7, 0.5], True, 1),     # the first of the best
                                                  ([3.0, 2.0, 1.0, 1.5], False, 2)])   # a loss: the lowest
def test_keep_best_restores_the_weights_of_the_best_evaluation(scores, higher, kept):
    model, snapshots, keeper, hist, final = _keeper_run(scores, higher_is_better=higher)
    assert [e["step"] for e in hist.evals] == [5, 10, 15, 20]
    assert hist.best_step == 5 * (kept + 1) and keeper.best_value == scores[kept]
    assert _same(model.state_dict(), snapshots[kept])            # exactly the weights of that step
    assert not _same(model.state_dict(), final)                  # not the last ones


def test_keep_best_first_where_keeps_the_first_evaluation_that_meets_it():
    model, snapshots, keeper, hist, _ = _keeper_run([0.1, 0.4, 0.9, 0.6], first_where=lambda m: m["score"] > 0.3)
    assert keeper.reached and hist.best_step == 10 and _same(model.state_dict(), snapshots[1])
    model, snapshots, keeper, hist, _ = _keeper_run([0.1, 0.4, 0.9, 0.6], first_where=lambda m: m["score"] > 5)
    assert not keeper.reached and hist.best_step == 15 and _same(model.state_dict(), snapshots[2])


@pytest.mark.cuda
def test_mixed_precision_and_channels_last_on_cuda():
    from helpers.images import ImageWorld
    from helpers.models import create_image_model, image_model_config
    model = create_image_model(replace(image_model_config("smoke"), width=8, image_size=32))
    x, y = ImageWorld(image_size=32).render(64, seed=0, device="cuda")
    hist = train(model, cross_entropy_loss, Batches(x, y, batch_size=16), epochs=3, device="cuda",
                 monitor=Monitor(log_every=4), progress=False)
    assert hist.loss[-1] < hist.loss[0]
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)      # conv nets train NHWC on CUDA
    assert not model.conv1.weight.is_contiguous()


def test_parameter_groups_given_as_generators_train_every_parameter():
    """``model.fc.parameters()`` is a generator: a check that peeks into it must not eat the first
    parameter (the optimiser then skipped it) nor leave clipping with exhausted generators."""
    x, y = blobs()
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    groups = [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[2].parameters(), "lr": 1e-2}]
    train(model, cross_entropy_loss, Batches(x, y, batch_size=32), steps=5,
          optimiser=Optimiser(param_groups=groups, clip_grad=1e-3), progress=False)
    moved = [not torch.equal(b, p) for b, p in zip(before, model.parameters())]
    assert all(moved), f"parameters left untouched: {[i for i, m in enumerate(moved) if not m]}"


def test_clipping_covers_generator_groups():
    """With a tiny clip norm every step is tiny: the first layer's weight moves by about lr per
    step (Adam), the same whether its group came as a list or a generator."""
    x, y = blobs()
    results = []
    for make in (list, iter):
        model = mlp()
        w0 = model[0].weight.detach().clone()
        groups = [{"params": make(list(model[0].parameters()))}, {"params": make(list(model[2].parameters()))}]
        train(model, cross_entropy_loss, Batches(x, y, batch_size=32), steps=3,
              optimiser=Optimiser(lr=1e-2, param_groups=groups, warmup=0.0, clip_grad=1e-6), progress=False)
        results.append((model[0].weight - w0).abs().max().item())
    assert results[0] == pytest.approx(results[1])


def test_a_parameter_in_two_groups_or_in_none_is_named():
    model = mlp()
    with pytest.raises(ValueError, match=r"'0.weight' is in param_groups\[0\] and param_groups\[1\]"):
        optimizer_groups(model, [{"params": [model[0].weight]}, {"params": model.parameters()}])
    with pytest.raises(ValueError, match=r"in no group, e.g. \['2.weight', '2.bias'\]"):
        optimizer_groups(model, [{"params": model[0].parameters()}])
    with pytest.raises(TypeError, match="list of dicts"):
        optimizer_groups(model, {"params": model.parameters()})


def test_weight_decay_spares_biases_norms_and_embeddings():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    groups = optimizer_groups(model, weight_decay=0.1)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[i] for i in decayed) == ["1.weight", "3.weight"]
    # in training: with a loss whose gradient is zero, only decayed weights shrink
    x = torch.randint(0, 10, (8,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    def zero_grad_loss(m, batch):
        return (m(batch[0]) * 0).sum()
    train(model, zero_grad_loss, Batches(x, batch_size=8), steps=3,
          optimiser=Optimiser(lr=0.1, weight_decay=0.5, warmup=0.0), progress=False)
    for n, p in model.named_parameters():
        changed = not torch.equal(before[n], p)
        assert changed == (n in ("1.weight", "3.weight")), n


def test_steps_is_the_budget_whatever_the_data_length():
    x, y = blobs(64)
    batches = Batches(x, y, batch_size=32)                   # 2 batches per pass
    hist = train(mlp(), cross_entropy_loss, batches, steps=7, progress=False)
    assert hist.steps_done == 7 and hist.step[-1] == 7
    assert len(hist.step) <= 7                               # refreshes chosen by train itself
    with pytest.raises(TypeError, match="steps or epochs, not both"):
        train(mlp(), cross_entropy_loss, batches, steps=7, epochs=2, progress=False)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"steps must be a whole number of at least 1; got {bad!r}"):
            train(mlp(), cross_entropy_loss, batches, steps=bad, progress=False)


def test_a_loss_that_is_not_a_scalar_tensor_is_refused_before_any_step():
    x, y = blobs(64)
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]

    def per_example(m, batch):
        return nn.functional.cross_entropy(m(batch[0]), batch[1], reduction="none")

    def as_float(m, batch):
        return cross_entropy_loss(m, batch).item()
    with pytest.raises(ValueError, match=r"shape \(32,\).*loss.mean\(\)"):
        train(model, per_example, Batches(x, y, batch_size=32), steps=2, progress=False)
    with pytest.raises(TypeError, match="returned float"):
        train(model, as_float, Batches(x, y, batch_size=32), steps=2, progress=False)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_nan_in_the_inputs_is_named_as_the_cause():
    x, y = blobs(64)
    x[5, 1] = float("nan")
    with pytest.raises(NonFiniteLossError, match="inputs themselves hold NaN or infinity") as err:
        train(mlp(), cross_entropy_loss, Batches(x, y, batch_size=32), steps=4, monitor=Monitor(log_every=1),
              progress=False)
    assert "tensor 0 (64, 2): 1 NaN" in str(err.value)


def test_builders_leave_the_global_random_generator_alone():
    """Making a model with a seed gives the same weights every time and does not reseed the
    caller's random numbers (a builder that called torch.manual_seed did)."""
    from helpers.generator import create_generator, generator_config
    from helpers.models import create_image_model, image_model_config
    builders = [lambda: create_image_model(image_model_config("smoke"), seed=3),
                lambda: create_generator(generator_config("smoke"), seed=3)]
    for build in builders:
        torch.manual_seed(123)
        expected = torch.rand(3)
        torch.manual_seed(123)
        a = build()
        assert torch.equal(torch.rand(3), expected), "the builder reseeded the global generator"
        b = build()
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_net_with_fewer_than_8_channels_trains_contiguous_on_the_cpu():
    """torch 2.14's CPU kernels corrupt the heap when lesson 01's ResNet at width 4 or 6 trains
    channels_last on one thread (the process dies). Such nets stay contiguous on the CPU; width 8
    and up keep channels_last where it pays (x86)."""
    import platform
    import subprocess
    import sys
    from dataclasses import replace

    from helpers.device import prefers_channels_last
    from helpers.models import create_image_model, image_model_config
    narrow = create_image_model(replace(image_model_config("smoke"), width=4))
    wide = create_image_model(replace(image_model_config("smoke"), width=8))
    assert not prefers_channels_last(narrow, "cpu")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert prefers_channels_last(wide, "cpu") == x86
    code = ("import torch; torch.set_num_threads(1)\n"
            "from dataclasses import replace\n"
            "from helpers.models import create_image_model, image_model_config\n"
            "from helpers.training import Batches, train\n"
            "from helpers.losses import cross_entropy_loss\n"
            "model = create_image_model(replace(image_model_config('smoke'), width=4))\n"
            "x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 4, (32,))\n"
            "train(model, cross_entropy_loss, Batches(x, y, batch_size=16), steps=6, device='cpu', progress=False)\n"
            "print('trained')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "trained" in out.stdout, out.stderr[-2000:]
