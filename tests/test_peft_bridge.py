"""The course's LoRA and Hugging Face peft's: the same trainable parameters, the same outputs from
the same weights, the same training, adapters that load across both ways, and refusals where the
two compute differently. Offline (conftest sets HF_HUB_OFFLINE=1), tiny timm models, CPU."""
import copy
import json

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from timm.layers import ScaledStdConv2d

from helpers.lessons.peft import PEFT_CLAIMS, Adapter, run_peft
from helpers.lora import add_lora, load_adapter, lora_layers, memory_report, save_adapter, train_only_lora
from helpers.peft_bridge import (
    PeftFormatError,
    load_peft_adapter,
    lora_config,
    output_difference,
    peft_mismatch,
    read_peft_adapter,
    save_as_peft,
    to_peft,
)
from helpers.training import Batches, Optimiser, train

# (timm name, create kwargs, input size, LoRA targets, head): tiny, random weights
ARCHS = {
    "resnet": ("resnet18", dict(channels=(8, 16, 32, 64), stem_width=8), 32, ["layer3.*.conv*", "layer4"], "fc"),
    "vit": ("test_vit", dict(img_size=32, patch_size=8), 32, ["blocks.*.attn.qkv", "blocks.*.mlp.fc*"], "head"),
}


def base(arch):
    name, kwargs, size, _, _ = ARCHS[arch]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=5, **kwargs).eval()
    x = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(1))
    return model, x


def course_lora(arch, rank=4, alpha=None):
    """A course LoRA model with non-zero B (so the adapter changes the outputs) and its input."""
    model, x = base(arch)
    add_lora(model, ARCHS[arch][3], rank=rank, alpha=alpha)
    train_only_lora(model, also=ARCHS[arch][4])
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    return model, x


@pytest.mark.parametrize("arch", ARCHS)
def test_config_and_trainable_parameter_count_match(arch):
    model, _ = course_lora(arch, rank=3, alpha=6)
    head = ARCHS[arch][4]
    config = lora_config(model, head=head)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (3, 6, 0.0)
    assert set(config.target_modules) == set(lora_layers(model)) and config.modules_to_save == [head]
    twin = to_peft(model, head=head)
    trainable, total = twin.get_nb_trainable_parameters()
    assert trainable == memory_report(model)["trainable_params"]
    # peft keeps the original head beside its trainable copy: one head more in all
    head_params = sum(p.numel() for p in model.get_submodule(head).parameters())
    assert total == memory_report(model)["total_params"] + head_params


@pytest.mark.parametrize("arch", ARCHS)
def test_same_weights_same_outputs_and_the_course_model_is_untouched(arch):
    model, x = course_lora(arch)
    before = copy.deepcopy(model.state_dict())
    twin = to_peft(model, head=ARCHS[arch][4])
    diff, scale = output_difference(model, twin, x)
    assert diff <= 1e-6 * scale and scale > 0
    with torch.no_grad():
        base_out = base(arch)[0](x)
    assert (base_out - model(x)).abs().max() > 1e-3          # the adapter does change the outputs
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the copy is peft's: its A and B are peft's own tensors, the course's B as a 1x1 kernel
    path, layer = next(iter(lora_layers(model).items()))
    theirs = twin.base_model.model.get_submodule(path)
    assert theirs.lora_A["default"].weight.data_ptr() != layer.lora_A["default"].data_ptr()
    assert torch.equal(theirs.lora_B["default"].weight.flatten(1), layer.lora_B["default"])


def test_trained_alike_they_stay_alike():
    """peft's own test idea on both: the same steps from the same start move the adapters and the
    head only, and the two models end with the same outputs."""
    model, x = course_lora("resnet")
    twin = to_peft(model, head="fc")
    y = torch.arange(len(x)) % 5
    frozen_before = copy.deepcopy(model.layer3[0].conv1.base.weight)
    a_before = model.layer3[0].conv1.lora_A["default"].detach().clone()

    def loss(m, batch):
        return F.cross_entropy(m(batch[0]), batch[1])
    for m in (model, twin):
        m.train()
        train(m, loss, Batches(x, y, batch_size=3, seed=0), steps=4, optimiser=Optimiser(lr=1e-2), device="cpu",
              progress=False)
    diff, scale = output_difference(model, twin, x)
    assert diff <= 1e-5 * scale
    assert torch.equal(model.layer3[0].conv1.base.weight, frozen_before)
    assert torch.equal(twin.base_model.model.layer3[0].conv1.base_layer.weight, frozen_before)
    assert not torch.equal(model.layer3[0].conv1.lora_A["default"], a_before)


@pytest.mark.parametrize("arch", ARCHS)
def test_peft_folder_loads_into_the_course(arch, tmp_path):
    model, x = course_lora(arch)
    head = ARCHS[arch][4]
    twin = to_peft(model, head=head)
    twin.save_pretrained(str(tmp_path / "ad"))
    assert {p.name for p in (tmp_path / "ad").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    by_course = load_peft_adapter(base(arch)[0], tmp_path / "ad", name="from_peft")
    by_peft = PeftModel.from_pretrained(base(arch)[0], str(tmp_path / "ad"))
    diff, scale = output_difference(by_peft, by_course, x)
    assert diff <= 1e-6 * scale
    assert output_difference(model, by_course, x)[0] <= 1e-6 * scale    # no BatchNorm here to differ
    assert set(lora_layers(by_course)) == set(lora_layers(model))


@pytest.mark.parametrize("arch", ARCHS)
def test_course_adapter_loads_into_peft(arch, tmp_path):
    model, x = course_lora(arch)
    head = ARCHS[arch][4]
    save_as_peft(model, tmp_path / "ours", head=head)
    by_peft = PeftModel.from_pretrained(base(arch)[0], str(tmp_path / "ours"))
    by_course = load_adapter(base(arch)[0], save_adapter(model, tmp_path / "ours.safetensors", extra=head))
    diff, scale = output_difference(by_course, by_peft, x)
    assert diff <= 1e-6 * scale
    layers, extras, config = read_peft_adapter(tmp_path / "ours")
    assert set(layers) == set(lora_layers(model)) and config["r"] == 4
    assert set(extras) == {f"{head}.weight", f"{head}.bias"}


def test_rslora_and_rank_pattern_scale_as_peft_does(tmp_path):
    """rsLoRA scales by alpha / sqrt(r); a rank_pattern gives one layer another rank: the course
    loads both as ranks and alphas of its own (alpha / rank) and computes what peft computes."""
    model, x = base("resnet")
    config = LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["layer4.0.conv1", "layer4.1.conv2"],
                        rank_pattern={"layer4.1.conv2": 2}, modules_to_save=["fc"])
    twin = get_peft_model(copy.deepcopy(model), config)
    with torch.no_grad():
        for n, p in twin.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    twin.save_pretrained(str(tmp_path / "rs"))
    loaded = load_peft_adapter(copy.deepcopy(model), tmp_path / "rs")
    assert loaded.layer4[1].conv2.rank("default") == 2
    assert abs(loaded.layer4[0].conv1.scaling["default"] - 8 / 4 ** 0.5) < 1e-9
    diff, scale = output_difference(twin, loaded, x)
    assert diff <= 1e-6 * scale


def dilated_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))


@pytest.mark.parametrize("layer, word", [
    (nn.Conv2d(3, 4, 3, padding=2, dilation=2), "dilated"),
    (ScaledStdConv2d(3, 4, 3), "ScaledStdConv2d"),
    (nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), "reflect"),
])
def test_layers_where_peft_computes_differently_are_refused(layer, word):
    assert word in peft_mismatch(layer)
    assert peft_mismatch(nn.Conv2d(3, 4, 3, padding=1)) is None and peft_mismatch(nn.Linear(3, 4)) is None
    model = add_lora(nn.Sequential(layer, nn.Flatten()), "0", rank=2)
    with pytest.raises(ValueError, match=word):
        to_peft(model)


def test_a_peft_adapter_for_a_dilated_layer_is_refused_and_nothing_changes(tmp_path):
    """peft's own adapter on a dilated conv cannot even run (its A drops the dilation); the course
    refuses the file rather than load it into a layer that would compute something else."""
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=2), nn.Flatten())
    get_peft_model(plain, LoraConfig(r=2, target_modules=["0"])).save_pretrained(str(tmp_path / "ad"))
    model = dilated_model()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(PeftFormatError, match="dilated"):
        load_peft_adapter(model, tmp_path / "ad")
    assert not lora_layers(model) and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_folder_that_does_not_fit_is_refused_before_anything_changes(tmp_path):
    model, _ = course_lora("resnet")
    save_as_peft(model, tmp_path / "ad", head="fc")
    other = timm.create_model("resnet18", pretrained=False, num_classes=5, channels=(16, 32, 64, 128), stem_width=8)
    before = copy.deepcopy(other.state_dict())
    with pytest.raises(PeftFormatError, match="do not fit|shape"):
        load_peft_adapter(other, tmp_path / "ad")
    assert not lora_layers(other) and all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_peft_adapter(other, tmp_path / "nothing here")
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(PeftFormatError, match="use_dora"):
        load_peft_adapter(base("resnet")[0], tmp_path / "ad")


def test_lora_config_refuses_what_one_config_cannot_say():
    model, _ = base("resnet")
    add_lora(model, "layer3", rank=2)
    add_lora(model, "layer4", rank=4, name="default", replace=True)
    with pytest.raises(ValueError, match="several ranks"):
        lora_config(model)
    with pytest.raises(ValueError, match="head='classifier'"):
        lora_config(course_lora("resnet")[0], head="classifier")
    with pytest.raises(ValueError, match="no LoRA adapter"):
        to_peft(base("resnet")[0])


def test_run_peft_library_is_checked_before_any_work():
    with pytest.raises(ValueError, match="library"):
        run_peft("lora", adapter=Adapter(library="hf"))
    with pytest.raises(ValueError, match="method must be 'lora'"):
        run_peft("bitfit", adapter=Adapter(library="peft"))


def test_peft_claims_hold_and_fail():
    ok = {"peft_trainable_params": 1000, "course_lora_trainable_params": 1000, "peft_same_weights_max_diff": 0.0,
          "peft_output_scale": 8.0, "peft_acc": 0.93, "peft_course_acc": 0.93, "lora_acc_spread": 0.01,
          "peft_files_in_course_max_diff": 0.0, "course_files_in_peft_max_diff": 1e-6}
    assert all(c.verdict(ok) for c in PEFT_CLAIMS)
    wrong = [dict(ok, peft_trainable_params=1010),            # a head counted twice, say
             dict(ok, peft_same_weights_max_diff=0.5),        # B transposed or a wrong scale
             dict(ok, peft_acc=0.90),                         # 0.03 apart, beyond the seed spread
             dict(ok, course_files_in_peft_max_diff=0.2)]     # a key mapped to the wrong layer
    for claim, metrics in zip(PEFT_CLAIMS, wrong):
        assert claim.verdict(metrics) is False, claim.text
    assert PEFT_CLAIMS[2].verdict(dict(ok, peft_acc=0.935)) is True     # inside the spread: a tie
    assert PEFT_CLAIMS[0].verdict({}) is None
