"""LoRA and BitFit: wrapped models start identical, only adapters move, merge, save/load, errors."""
import copy

import pytest
import timm
import torch
import torch.nn as nn

from helpers.gpt import GPT, GPTConfig
from helpers.lora import (
    LoRA,
    adapter_names,
    add_lora,
    bitfit,
    find_targets,
    load_adapter,
    lora_disabled,
    lora_layers,
    memory_report,
    merge_lora,
    optimizer_state_bytes,
    save_adapter,
    set_adapter,
    train_only_lora,
    trainable_share,
    unmerge_lora,
)

# (timm name, create kwargs, input size, targets): tiny, random weights, fast on a CPU.
ARCHS = {
    "resnet": ("resnet18", dict(channels=(8, 16, 32, 64), stem_width=8), 32, ["layer3.*.conv*", "layer4", "fc"]),
    "vit": ("test_vit", dict(img_size=32, patch_size=8), 32, ["blocks.*.attn.qkv", "blocks.*.mlp.fc*"]),
}


def make(arch, seed=0):
    name, kwargs, size, targets = ARCHS[arch]
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
    return model, torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1)), targets


def make_gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, context=16, n_layer=2, n_head=2, d_model=16)).eval()
    return model, torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(1))


def out(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def kick_b(model):
    """B starts at zero; give it random values so an adapter actually changes the outputs."""
    with torch.no_grad():
        for layer in lora_layers(model).values():
            for B in layer.lora_B.values():
                B.normal_(0, 0.1)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def steps(model, x, n=3, lr=1e-2):
    """A few AdamW steps on a made-up loss (only trainable parameters go to the optimiser)."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(n):
        loss = model(x).float().square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return opt


@pytest.fixture(params=list(ARCHS) + ["gpt"])
def case(request):
    if request.param == "gpt":
        model, x = make_gpt()
        return model, x, ["blocks.*.attn.qkv", "blocks.*.mlp.*"]
    return make(request.param)


def test_lora_at_init_changes_no_output(case):
    model, x, targets = case
    before = out(model, x)
    add_lora(model, targets, rank=4)
    assert lora_layers(model)
    torch.testing.assert_close(out(model, x), before)


def test_only_adapter_moves_after_steps(case):
    """peft's test: copy the model, take optimiser steps, frozen weights stay, adapters move."""
    model, x, targets = case
    model = copy.deepcopy(model)
    add_lora(model, targets, rank=4)
    train_only_lora(model)
    before = snapshot(model)
    steps(model, x)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved, "nothing trained"
    assert all(".lora_A." in n or ".lora_B." in n for n in moved), moved
    assert any(".lora_B." in n for n in moved)


def test_bitfit_moves_biases_only(case):
    model, x, _ = case
    bitfit(model)
    before = snapshot(model)
    steps(model, x)
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(n.endswith("bias") for n in moved), moved


def test_merge_and_unmerge_agree(case):
    model, x, targets = case
    base = out(model, x)
    add_lora(model, targets, rank=4)
    kick_b(model)
    adapted = out(model, x)
    assert not torch.allclose(adapted, base)
    merge_lora(model)
    assert all(layer.merged for layer in lora_layers(model).values())
    torch.testing.assert_close(out(model, x), adapted, rtol=1e-4, atol=1e-4)
    unmerge_lora(model)
    torch.testing.assert_close(out(model, x), adapted, rtol=1e-4, atol=1e-4)
    with lora_disabled(model):
        torch.testing.assert_close(out(model, x), base, rtol=1e-4, atol=1e-4)


def head_of(model) -> str:
    """The module a task's adapter brings along: the classifier, or the GPT's final norm (its
    output layer is the tied embedding)."""
    return next(n for n, _ in model.named_modules() if n in ("fc", "head", "ln_f"))


def test_saved_adapter_reproduces_outputs(case, tmp_path):
    model, x, targets = case
    fresh, unchanged = copy.deepcopy(model), copy.deepcopy(model)
    add_lora(model, targets, rank=3, alpha=6)
    kick_b(model)
    head = head_of(model)
    with torch.no_grad():                     # an adapter that also brings its own head
        for name, p in model.get_submodule(head).named_parameters():
            if "lora_" not in name:
                p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
    adapted = out(model, x)
    trained_head = {n: p.clone() for n, p in model.get_submodule(head).state_dict().items() if "lora_" not in n}
    # without extra= the head stays behind: the fresh base computes something else
    load_adapter(unchanged, save_adapter(model, tmp_path / "no_head.safetensors"))
    assert not torch.allclose(out(unchanged, x), adapted, atol=1e-4)
    path = save_adapter(model, tmp_path / "a.safetensors", extra=head)
    assert path.stat().st_size < sum(p.numel() * 4 for p in model.parameters())
    before = {n: p.clone() for n, p in fresh.get_submodule(head).state_dict().items()}
    load_adapter(fresh, path)
    restored = {n: p for n, p in fresh.get_submodule(head).state_dict().items() if "lora_" not in n}
    assert set(restored) == set(trained_head)
    assert all(torch.equal(restored[n], trained_head[n]) for n in restored)      # the changed head, restored
    assert not all(torch.equal(before[n.replace("base.", "")], restored[n]) for n in restored)
    torch.testing.assert_close(out(fresh, x), adapted)


def test_applying_twice_does_not_stack(case):
    model, x, targets = case
    add_lora(model, targets, rank=4)
    n_layers = len(lora_layers(model))
    n_params = sum(p.numel() for p in model.parameters())
    add_lora(model, targets, rank=4)
    assert len(lora_layers(model)) == n_layers
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert not any(isinstance(m.base, LoRA) for m in lora_layers(model).values())


def test_named_adapters_switch_and_disable():
    model, x, targets = make("resnet")
    base = out(model, x)
    add_lora(model, targets, rank=2, name="a")
    kick_b(model)
    out_a = out(model, x)
    add_lora(model, targets, rank=2, name="b", seed=5)
    assert adapter_names(model) == ["a", "b"]
    torch.testing.assert_close(out(model, x), base)          # b is active and starts at zero
    set_adapter(model, "a")
    torch.testing.assert_close(out(model, x), out_a)
    set_adapter(model, None)
    torch.testing.assert_close(out(model, x), base)
    set_adapter(model, "a")
    merge_lora(model)
    with pytest.raises(RuntimeError, match="unmerge"):
        set_adapter(model, "b")
    unmerge_lora(model)
    with pytest.raises(ValueError, match="no adapter named"):
        set_adapter(model, "c")


def test_bad_target_lists_valid_ones():
    model, _, _ = make("resnet")
    with pytest.raises(ValueError) as err:
        add_lora(model, "layer9.conv1")
    assert "layer4.1.conv2" in str(err.value) and "fc" in str(err.value)
    model, _ = make_gpt()
    with pytest.raises(ValueError, match="blocks.0.attn.qkv"):
        find_targets(model, "blocks.*.attention")


def test_container_pattern_selects_its_layers():
    model, _, _ = make("resnet")
    names = list(find_targets(model, "layer4"))
    assert names and all(n.startswith("layer4.") for n in names)
    assert "layer4.0.downsample.0" in names


def test_accounting():
    model, x, targets = make("resnet")
    add_lora(model, targets, rank=2)
    train_only_lora(model)
    report = memory_report(model)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report["trainable_params"] == n
    assert report["trainable_frac"] == pytest.approx(trainable_share(model)) and report["trainable_frac"] < 0.2
    opt = steps(model, x, n=1)
    assert optimizer_state_bytes(opt) == report["optimizer_bytes"] == 2 * 4 * n


def notebook_lora_layer():
    """The LoRALayer class written out in lesson 06, executed from the notebook's own cell."""
    import math
    from pathlib import Path

    import nbformat
    import torch.nn.functional as F
    path = Path(__file__).parent.parent / "notebooks" / "06_parameter_efficient_tuning.ipynb"
    cells = [c.source for c in nbformat.read(path, as_version=4).cells
             if c.cell_type == "code" and "class LoRALayer" in c.source]
    assert len(cells) == 1, "lesson 06 must write out the LoRA layer in exactly one cell"
    namespace = {"torch": torch, "nn": nn, "F": F, "math": math}
    exec(cells[0], namespace)
    return namespace["LoRALayer"]


@pytest.mark.parametrize("base", [nn.Linear(12, 7), nn.Conv2d(5, 6, 3, stride=2, padding=1)],
                         ids=["linear", "conv"])
def test_notebook_lora_layer_matches_helpers(base):
    LoRALayer = notebook_lora_layer()
    torch.manual_seed(0)
    x = torch.randn(3, 12) if isinstance(base, nn.Linear) else torch.randn(3, 5, 9, 9)
    mine = LoRALayer(copy.deepcopy(base), rank=3, alpha=6.0)
    torch.testing.assert_close(mine(x), base(x))                       # B = 0: unchanged at start
    theirs = add_lora(nn.Sequential(copy.deepcopy(base)), "0", rank=3, alpha=6.0)[0]
    with torch.no_grad():
        mine.B.normal_()
        theirs.lora_A["default"].copy_(mine.A)
        theirs.lora_B["default"].copy_(mine.B)
    torch.testing.assert_close(mine(x), theirs(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine.delta_weight(), theirs.delta_weight("default"))


def _timm_conv(kind):
    from timm.layers import Conv2dSame, ScaledStdConv2d
    return Conv2dSame(5, 6, 3, stride=2) if kind == "same" else ScaledStdConv2d(5, 6, 3, padding=1)


BASES = {
    "linear": lambda: nn.Linear(12, 7),
    "conv": lambda: nn.Conv2d(5, 6, 3, padding=1),
    "conv2d_same": lambda: _timm_conv("same"),          # pads its input in forward (TF ports)
    "scaled_std_conv": lambda: _timm_conv("std"),       # standardises its weight in forward (NFNet)
    "reflect_padding": lambda: nn.Conv2d(5, 6, 3, padding=1, padding_mode="reflect"),
}


@pytest.mark.parametrize("kind", list(BASES))
def test_wrapper_computes_with_its_adapted_weight(kind):
    """The wrapper's .weight is W + ΔW: running the base layer with it is what the wrapper computes
    (so a model that reads .weight, as BEiT's qkv and EdgeNeXt do, gets the adapter), and merging
    gives the same outputs, also where the base pads in forward or standardises its weight."""
    torch.manual_seed(0)
    base = BASES[kind]()
    x = torch.randn(3, 12) if isinstance(base, nn.Linear) else torch.randn(3, 5, 9, 9)
    layer = LoRA(copy.deepcopy(base).requires_grad_(False)).add_adapter("a", rank=2, seed=0)
    torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)           # B = 0: exactly the base
    assert layer.weight.shape == base.weight.shape and layer.bias is layer.base.bias
    with torch.no_grad():
        layer.lora_B["a"].normal_()
        adapted = layer(x)
        assert not torch.allclose(adapted, base(x))
        reference = torch.func.functional_call(base, {"weight": layer.weight}, (x,))
        torch.testing.assert_close(adapted, reference, rtol=1e-5, atol=1e-5)
        layer.merge()
        assert layer.weight is layer.base.weight
        torch.testing.assert_close(layer(x), adapted, rtol=1e-5, atol=1e-5)
    assert layer.plain == (kind in ("linear", "conv"))     # the others run the base's own forward


@pytest.mark.parametrize("method", ["probe", "bitfit", "lora"])
def test_peft_methods_leave_the_base_model_unchanged(method):
    """Only the method's parameters move, and BatchNorm statistics stay: adapters can be swapped."""
    from helpers.lora import prepare_peft
    model, x, _ = make("resnet")
    prepare_peft(model, method, rank=2, targets="layer4", head="fc", bn="frozen")
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    before = snapshot(model)
    steps(model, x, n=2)
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    allowed = {"probe": lambda n: n.startswith("fc."), "bitfit": lambda n: n.startswith("fc.") or n.endswith("bias"),
               "lora": lambda n: n.startswith("fc.") or ".lora_" in n}[method]
    assert moved and all(allowed(n) for n in moved), moved


def test_adapter_with_norm_stats_restores_a_task_on_a_fresh_base(tmp_path):
    """With BatchNorm statistics updating, the adapter file carries them: a fresh base + file
    computes what the trained model computes."""
    from helpers.lora import prepare_peft
    model, x, _ = make("resnet")
    fresh = copy.deepcopy(model)
    prepare_peft(model, "lora", rank=2, targets="layer4", head="fc", bn="update")
    steps(model, x, n=2)
    expected = out(model, x)
    load_adapter(fresh, save_adapter(model, tmp_path / "t.safetensors", extra="fc", norm_stats=True))
    torch.testing.assert_close(out(fresh, x), expected)


@pytest.mark.parametrize("method", ["lora", "bitfit"])
def test_run_peft_trains_only_what_its_method_names_from_a_fresh_model(method):
    from helpers.experiments import build_model
    from helpers.lessons.peft import run_peft
    from helpers.runner import QUIET, Budget, Report

    r = run_peft(method, labels_per_class=2, budget=Budget(steps=4), report=Report(keep_model=True), setup=QUIET)
    fresh = build_model(seed=0, num_classes=r.model.get_classifier().out_features)
    head = {n for n, m in r.model.named_modules() if m is r.model.get_classifier()}
    trainable = [n for n, p in r.model.named_parameters() if p.requires_grad]
    in_head = [n for n in trainable if any(n.startswith(h + ".") for h in head)]
    rest = [n for n in trainable if n not in in_head]
    if method == "lora":
        assert rest and all(".lora_A." in n or ".lora_B." in n for n in rest)
        moved = [n for n, p in r.model.named_parameters() if ".lora_B." in n and p.abs().sum() > 0]
        assert moved                                         # B starts at zero; training moved it
    else:
        assert rest and all(n.endswith(".bias") for n in rest)
    assert r.steps == 4 and r.trainable_params == sum(p.numel() for p in r.model.parameters() if p.requires_grad)
    assert r.trainable_params < 0.2 * r.total_params
    # the frozen weights are those of the pre-trained model the run started from
    start = dict(fresh.named_parameters())
    frozen = [(n, p) for n, p in r.model.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(p.cpu(), start[n.replace(".base.", ".")].cpu()) for n, p in frozen)
