"""Model surgery works on any timm architecture: stages, freezing, heads, blocks, rates."""
import copy

import pytest
import timm
import torch
import torch.nn as nn

from helpers.surgery import (
    add_block,
    bn_stats_frozen,
    count_params,
    freeze,
    freeze_stages,
    frozen_params,
    layerwise_lr_groups,
    replace_head,
    stage_table,
    stages,
    trainable_params,
    unfreeze,
)

# (timm name, extra create kwargs, input size): tiny, random weights, fast on a CPU.
ARCHS = {
    "resnet": ("resnet18", dict(channels=(8, 16, 32, 64), stem_width=8), 32),
    "convnext": ("test_convnext", {}, 32),
    "efficientnet": ("test_efficientnet", {}, 32),
    "mobilenetv3": ("mobilenetv3_small_050", {}, 32),
    "vit": ("test_vit", dict(img_size=32, patch_size=8), 32),
}


def make(arch, num_classes=5, seed=0):
    name, kwargs, size = ARCHS[arch]
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs), size


def batch(size, n=4, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def steps(model, size, n=3, lr=1e-2, classes=5):
    """A few AdamW steps on random data (only trainable parameters go to the optimiser)."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for i in range(n):
        x, y = batch(size, seed=i, classes=classes)
        out = model(x)
        loss = nn.functional.cross_entropy(out, y) if out.shape[1] == classes else out.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(params=list(ARCHS))
def arch(request):
    return request.param


def test_stages_start_with_stem_and_exclude_head(arch):
    model, _ = make(arch)
    st = stages(model)
    assert len(st) >= 4 and st[0][0] == "stem"
    head = {id(p) for p in model.get_classifier().parameters()}
    for _, stage in st:
        assert not head & {id(p) for p in stage.parameters()}
    # stages do not overlap
    ids = [id(p) for _, s in st for p in s.parameters()]
    assert len(ids) == len(set(ids))


def test_counts_add_up(arch):
    model, _ = make(arch)
    freeze_stages(model, 2)
    table = stage_table(model)
    total = sum(p.numel() for p in model.parameters())
    assert table["total"].sum() == total
    assert table["trainable"].sum() == trainable_params(model)
    assert trainable_params(model) + frozen_params(model) == total
    assert list(table.index)[-1] == "head" and table.loc["head", "trainable"] == table.loc["head", "total"]
    assert (table["trainable"].iloc[:2] == 0).all() and (table["trainable"].iloc[2:] > 0).all()


def test_frozen_params_do_not_move_others_do(arch):
    model, size = make(arch)
    k = len(stages(model)) - 1
    freeze_stages(model, k)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps(model, size)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen, "something should be frozen"
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, before[n]), f"frozen {n} moved"
    moved = [n for n, p in model.named_parameters() if n not in frozen and not torch.equal(p, before[n])]
    assert len(moved) > 0


def test_bn_stats_frozen_vs_updated():
    for bn, should_move in (("frozen", False), ("update", True)):
        model, size = make("resnet")
        freeze_stages(model, 2, bn=bn)
        model.train()                     # must not undo bn="frozen"
        stem_bn = model.bn1
        assert bn_stats_frozen(stem_bn) == (bn == "frozen")
        assert stem_bn.training == (bn == "update")
        before = stem_bn.running_mean.clone()
        steps(model, size)
        assert (not torch.equal(before, stem_bn.running_mean)) == should_move, bn
        # unfrozen stages always update their statistics
        assert model.layer4[0].bn1.training


def test_bn_frozen_survives_deepcopy_and_unfreeze_releases():
    model, _ = make("resnet")
    freeze_stages(model, 1, bn="frozen")
    twin = copy.deepcopy(model)
    twin.train()
    assert not twin.bn1.training and bn_stats_frozen(twin.bn1)
    assert model.bn1 is not twin.bn1
    unfreeze(twin)
    twin.train()
    assert twin.bn1.training and trainable_params(twin) == sum(p.numel() for p in twin.parameters())


def test_freezing_twice_is_harmless_and_depth_is_set_not_added(arch):
    model, _ = make(arch)
    freeze_stages(model, 2)
    once = stage_table(model)
    freeze_stages(model, 2)
    assert stage_table(model).equals(once)
    freeze_stages(model, 3)
    freeze_stages(model, 2)
    assert stage_table(model).equals(once)
    freeze_stages(model, 0)
    assert frozen_params(model) == 0


def test_freeze_whole_backbone_leaves_head(arch):
    model, _ = make(arch)
    freeze_stages(model, len(stages(model)))
    head = sum(p.numel() for p in model.get_classifier().parameters())
    assert trainable_params(model) >= head > 0
    assert stage_table(model)["trainable"].iloc[:-1].sum() == 0


def test_bad_depth_lists_range_and_stages():
    model, _ = make("resnet")
    n = len(stages(model))
    for bad in (-1, n + 1, 1.5):
        with pytest.raises(ValueError, match=f"0 to {n}") as err:
            freeze_stages(model, bad)
        assert "layer1" in str(err.value)
    with pytest.raises(ValueError, match="frozen"):
        freeze_stages(model, 1, bn="sometimes")


def test_freeze_by_name_and_pattern():
    model, _ = make("resnet")
    freeze(model, "layer1")
    assert not any(p.requires_grad for p in model.layer1.parameters())
    assert all(p.requires_grad for p in model.layer2.parameters())
    freeze(model, ["layer3.*", "fc"])
    assert not any(p.requires_grad for p in model.layer3.parameters())
    assert not model.fc.weight.requires_grad
    unfreeze(model, "fc")
    assert model.fc.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad
    unfreeze(model)
    assert frozen_params(model) == 0


def test_freeze_vit_loose_parameter_by_name():
    model, _ = make("vit")
    freeze(model, "cls_token")
    assert not model.cls_token.requires_grad and model.pos_embed.requires_grad


def test_unknown_name_lists_valid_names():
    model, _ = make("resnet")
    with pytest.raises(ValueError) as err:
        freeze(model, "layer9")
    message = str(err.value)
    assert "layer1" in message and "stem" in message and "layer9" in message


@pytest.mark.parametrize("hidden,activation", [(None, None), (16, "softplus")])
def test_replace_head_output_shape(arch, hidden, activation):
    model, size = make(arch)
    replace_head(model, 3, hidden=hidden, dropout=0.1, activation=activation)
    model.eval()
    out = model(batch(size, n=2)[0])
    assert out.shape == (2, 3)
    if activation == "softplus":
        assert (out >= 0).all()
    # the new head is trainable even when the backbone is frozen, and it is the head in stages()
    freeze_stages(model, len(stages(model)))
    assert trainable_params(model) == stage_table(model).loc["head", "trainable"] > 0


def test_add_block_starts_as_identity_and_trains(arch):
    model, size = make(arch)
    x = batch(size, n=2)[0]
    model.eval()
    with torch.no_grad():
        before = model(x)
    n_before = sum(p.numel() for p in model.parameters())
    path = stages(model)[-1][1].part_names[-1]
    old = model.get_submodule(path)
    add_block(model)
    model.eval()
    with torch.no_grad():
        after = model(x)
    assert torch.allclose(before, after, atol=1e-5)
    # the module is wrapped in place; what model code reads of it is still there
    wrapped = model.get_submodule(path)
    assert wrapped.stage is old and isinstance(wrapped.extra, nn.Module)
    names = [a for a in vars(old) if not a.startswith("_") and a != "training"] + [n for n, _ in old.named_children()]
    assert all(getattr(wrapped, a) is getattr(old, a) for a in names)
    assert sum(p.numel() for p in model.parameters()) > n_before
    # with everything but the last stage frozen, the block is among what trains
    freeze_stages(model, len(stages(model)) - 1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any(".extra." in n for n in names)
    # ... and it does train: on one batch the loss falls and the block's weights move
    x, y = batch(size, n=8)
    block = {n: p.detach().clone() for n, p in model.named_parameters() if ".extra." in n}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(10):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    assert any(not torch.equal(p, block[n]) for n, p in model.named_parameters() if n in block)


def test_layerwise_lr_groups(arch):
    model, _ = make(arch)
    freeze_stages(model, 1)
    groups = layerwise_lr_groups(model, lr=1e-3, decay=0.5)
    lrs = [g["lr"] for g in groups]
    assert groups[-1]["name"] == "head" and lrs[-1] == 1e-3
    assert lrs == sorted(lrs) and lrs[0] < lrs[-1]
    in_groups = sum(p.numel() for g in groups for p in g["params"])
    assert in_groups == trainable_params(model)
    assert all(p.requires_grad for g in groups for p in g["params"])
    torch.optim.AdamW(groups, lr=1e-3)       # accepted by an optimiser as is


def test_works_on_a_plain_torch_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2))
    assert [n for n, _ in stages(model)] == ["0", "2"]
    freeze_stages(model, 2)
    assert trainable_params(model) == 10


def test_frozen_statistics_are_visible_picklable_and_keep_their_keys(tmp_path):
    """Frozen BatchNorm statistics are a real module class: print shows them, a whole-model
    torch.save / torch.load round-trip keeps them (an instance-level ``train`` override did not:
    AttributeError on load), and the state_dict loads into a model without them."""
    model, size = make("resnet")
    plain_keys = list(model.state_dict())
    freeze_stages(model, 2, bn="frozen")
    assert "FrozenStatsBatchNorm2d" in str(model) and "statistics frozen" in str(model)
    assert list(model.state_dict()) == plain_keys
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    loaded.train()
    assert bn_stats_frozen(loaded.bn1) and not loaded.bn1.training and loaded.layer4[0].bn1.training
    fresh, _ = make("resnet")
    fresh.load_state_dict(model.state_dict())               # into a model with plain BatchNorm
    x = torch.randn(2, 3, size, size)
    assert torch.allclose(fresh.eval()(x), loaded.eval()(x), atol=1e-6)
    unfreeze(loaded)
    assert type(loaded.bn1) is nn.BatchNorm2d


def test_frozen_statistics_on_timm_batchnorm_with_activation():
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=3)
    from timm.layers import BatchNormAct2d
    act = [m for m in model.modules() if isinstance(m, BatchNormAct2d)]
    assert act, "efficientnet_b0 uses timm's BatchNormAct2d"
    freeze_stages(model, 2, bn="frozen")
    model.train()
    stem = model.bn1
    assert bn_stats_frozen(stem) and isinstance(stem, BatchNormAct2d) and not stem.training
    before = stem.running_mean.clone()
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, stem.running_mean)


def test_one_bn_choice_with_one_default():
    from helpers import surgery
    from helpers.lessons import scaling
    assert surgery.BN_DEFAULT in surgery.BN_CHOICES == ("update", "frozen")
    assert set(surgery.BN_CHOICES) < set(scaling.DDP_BN_CHOICES)
    with pytest.raises(ValueError, match="bn must be one of"):
        freeze_stages(make("resnet")[0], 1, bn="local")


def test_surgery_twice_or_on_nothing_says_so():
    model, _ = make("resnet")
    add_block(model, seed=0)
    with pytest.raises(ValueError, match="already has an extra block"):
        add_block(model, seed=0)
    for nothing in ([], (), ""):
        with pytest.raises(ValueError, match="got no names"):
            unfreeze(model, nothing)


def test_replace_head_failing_leaves_the_model_as_it_was():
    class Odd(nn.Module):            # a head that is neither Linear, nor 1x1, nor announced by num_features
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(3, 4, 3)
            self.fc = nn.Conv2d(4, 2, 3)

        def forward(self, x):
            return self.fc(self.body(x)).mean((2, 3))

        def get_classifier(self):
            return self.fc

        def reset_classifier(self, n):
            self.fc = nn.Conv2d(4, n, 3)
    model = Odd()
    before = str(model)
    with pytest.raises(ValueError, match="cannot tell the head's input size"):
        replace_head(model, 5)
    assert str(model) == before


def test_head_and_block_seeds_leave_the_global_generator_alone():
    model, _ = make("resnet")
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    replace_head(model, 3, seed=11)
    add_block(model, seed=11)
    assert torch.equal(torch.rand(2), expected)
    twin, _ = make("resnet")
    replace_head(twin, 3, seed=11)
    add_block(twin, seed=11)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))


def test_count_params_counts_a_shared_tensor_once_and_names_bad_kinds():
    shared = nn.Linear(3, 4)                   # 16 parameters, used twice
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(4, 2))
    model[3].requires_grad_(False)             # 10 frozen
    assert count_params(model) == 26
    assert count_params(model, "trainable") == trainable_params(model) == 16
    assert count_params(model, "frozen") == frozen_params(model) == 10
    import helpers.models
    assert not hasattr(helpers.models, "count_params")     # one implementation, one import path
    with pytest.raises(ValueError, match=r"which must be one of \['all', 'trainable', 'frozen'\]; got 'grad'"):
        count_params(model, "grad")
