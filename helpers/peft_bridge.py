"""The course's LoRA (``helpers.lora``) and Hugging Face ``peft``'s, side by side: one adapter in both.

``helpers.lora`` writes LoRA out so it can be read; ``peft`` is the library practitioners use. On
the layers where the two compute the same thing, this module moves an adapter from one to the
other, in memory and through files:

- ``lora_config(model, head=...)``: the ``peft.LoraConfig`` of a model's course adapter: the same
  target layers (by full path), rank, alpha and dropout (none: the course's LoRA has none), the
  head as peft's ``modules_to_save``.
- ``to_peft(model, head=...)``: a ``peft.PeftModel`` that computes what the course model computes:
  a copy of it with the LoRA wrappers taken off, wrapped by ``get_peft_model``, and the course
  adapter's A and B copied into peft's ``lora_A`` / ``lora_B``. The course model is not changed.
- ``save_as_peft(model, folder, head=...)``: the course adapter in peft's own format (peft writes
  it: ``adapter_model.safetensors`` and ``adapter_config.json``), for ``PeftModel.from_pretrained``.
- ``load_peft_adapter(model, folder)``: the other way, with no peft code: reads peft's two files,
  maps the key names and loads the adapter (and the ``modules_to_save``) into a course model.

How the two wrap a layer (``helpers.lora.LoRA`` vs ``peft.tuners.lora.layer``):

=================  =====================================  ======================================
                   course                                 peft
=================  =====================================  ======================================
Linear             A (r, in), B (out, r)                  ``lora_A`` Linear(in, r), ``lora_B``
                                                          Linear(r, out): the same matrices
Conv2d             A (r, in, kh, kw): a conv with the     ``lora_A`` a conv with the kernel,
                   kernel, stride, padding, dilation;     stride and padding (not the dilation);
                   B (out, r): a 1x1 conv                 ``lora_B`` a 1x1 conv, (out, r, 1, 1)
scaling            alpha / r                              alpha / r (alpha / sqrt(r) with rsLoRA)
A's initial value  uniform, bound 1/sqrt(fan_in)          the same distribution (Kaiming, a=sqrt 5)
head               trains in place                        ``modules_to_save``: a trainable copy
                                                          beside the frozen original
=================  =====================================  ======================================

They differ on three kinds of convolution, which ``to_peft`` and ``load_peft_adapter`` refuse,
naming the layer: a dilated one (peft's ``lora_A`` drops the dilation, so its output has another
size), a subclass with its own forward such as timm's ``ScaledStdConv2d`` or ``Conv2dSame``
(peft builds ``lora_A`` and ``lora_B`` as that subclass, so it standardises or pads the adapter
itself; the course runs the base layer's forward on ``W + ΔW``) and a padding mode other than
zeros. Grouped convolutions the course does not wrap at all. One more difference cannot be seen
from the layers: a model that reads a layer's ``.weight`` instead of calling it (timm's BEiT does
for ``qkv``) sees the adapter in the course (its ``weight`` is ``W + ΔW``) but not in peft.

What peft's adapter files do not hold: BatchNorm running statistics (the course's
``save_adapter(..., norm_stats=True)`` can carry them), unless the BatchNorm layers are in
``modules_to_save``, which also makes their scale and shift trainable.

Nothing here reaches the network: ``get_peft_model`` wraps a local ``nn.Module`` and the files are
read and written in a local folder (set ``HF_HUB_OFFLINE=1`` to make sure).

Example:
    >>> twin = to_peft(model, head="fc")        # model: a course LoRA model with a new head "fc"
    >>> twin.get_nb_trainable_parameters()     # (trainable, all): trainable equals the course's
    >>> twin.save_pretrained("species_peft")   # peft's files
    >>> load_peft_adapter(build_model(seed=0), "species_peft")   # back into a course model
"""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import torch
import torch.nn as nn
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import SafetensorError
from safetensors.torch import load_file

from .checks import keywords_checked
from .lora import (
    DEFAULT,
    LoRA,
    _targetable,
    active_adapter,
    adapter_names,
    add_lora,
    lora_layers,
    set_adapter,
    unmerge_lora,
)
from .surgery import _set_submodule
from .training import evaluating

PEFT_ADAPTER = "default"               # the adapter name peft gets (its files then sit in the folder itself)
PREFIX = "base_model.model."           # what peft puts before every module path in its state dict
WEIGHTS, CONFIG = "adapter_model.safetensors", "adapter_config.json"
# adapter_config.json settings that change what a LoRA layer computes and that the course's LoRA lacks
UNSUPPORTED = ("use_dora", "lora_bias", "use_qalora", "use_bdlora", "fan_in_fan_out", "layer_replication",
               "layers_to_transform", "target_parameters", "trainable_token_indices", "alora_invocation_tokens")


class PeftFormatError(ValueError):
    """A folder given to ``load_peft_adapter`` is not a peft LoRA adapter this model can take."""


def peft_mismatch(layer: nn.Module) -> str | None:
    """Why peft's LoRA would compute something else than the course's on this layer (None: they
    agree). ``layer`` is a base layer or a ``helpers.lora.LoRA`` wrapper."""
    base = layer.base if isinstance(layer, LoRA) else layer
    if type(base) not in (nn.Linear, nn.Conv2d):
        return (f"it is a {type(base).__name__}, a subclass with its own forward: peft builds its "
                f"lora_A and lora_B as that class too, the course adapts the base layer's weight")
    if isinstance(base, nn.Conv2d):
        if base.groups != 1:
            return f"it is a grouped convolution (groups={base.groups}), which the course does not adapt"
        if tuple(base.dilation) != (1, 1):
            return f"it is dilated {tuple(base.dilation)}: peft's lora_A conv drops the dilation"
        if base.padding_mode != "zeros":
            return f"its padding mode is {base.padding_mode!r}: peft's lora_A pads with zeros"
    return None


def _check_agree(model: nn.Module, paths) -> None:
    layers = _targetable(model)
    bad = {p: why for p in paths if (why := peft_mismatch(layers[p]))}
    if bad:
        p, why = next(iter(bad.items()))
        raise ValueError(f"{len(bad)} adapted layer(s) compute differently in peft, e.g. {p}: {why}. "
                         f"Adapt only layers where the two agree (plain nn.Linear and undilated, "
                         f"zero-padded nn.Conv2d).")


def _check_head(model: nn.Module, head) -> list[str]:
    heads = [] if head is None else [head] if isinstance(head, str) else list(head)
    names = dict(model.named_modules())
    missing = [h for h in heads if not isinstance(h, str) or h not in names or not h]
    if missing:
        top = [n for n, _ in model.named_children()]
        raise ValueError(f"head={missing[0]!r} is not a module path of the model (the module that "
                         f"trains beside the adapter, e.g. 'fc'); its top-level modules are {top}")
    return heads


def _adapter_layers(model: nn.Module, name: str | None) -> tuple[str, dict[str, LoRA]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    names = adapter_names(model)
    if not names:
        raise ValueError("the model has no LoRA adapter (helpers.lora.add_lora or prepare_peft adds one)")
    name = name or active_adapter(model) or names[0]
    if name not in names:
        raise ValueError(f"no adapter named {name!r}; the model has {names}")
    return name, {p: layer for p, layer in lora_layers(model).items() if name in layer.lora_A}


@keywords_checked
def lora_config(model: nn.Module, *, name: str | None = None, head=None) -> LoraConfig:
    """The ``peft.LoraConfig`` that gives ``model``'s course adapter ``name`` (default: the active
    one): its layers by full path, its rank and alpha, no dropout, ``head`` (a module path or a
    list) as ``modules_to_save``.

    Raises:
        ValueError: no such adapter, a head that is not a module, layers with different ranks or
            alphas (one LoraConfig here holds one of each), or a layer where peft computes
            something else (``peft_mismatch``).
    """
    name, layers = _adapter_layers(model, name)
    heads = _check_head(model, head)
    _check_agree(model, layers)
    ranks = {layer.rank(name) for layer in layers.values()}
    alphas = {layer.scaling[name] * layer.rank(name) for layer in layers.values()}
    if len(ranks) > 1 or len(alphas) > 1:
        raise ValueError(f"adapter {name!r} has several ranks {sorted(ranks)} or alphas {sorted(alphas)}; "
                         f"lora_config writes one of each")
    rank, alpha = ranks.pop(), alphas.pop()
    return LoraConfig(r=rank, lora_alpha=int(alpha) if float(alpha).is_integer() else alpha, lora_dropout=0.0,
                      target_modules=sorted(layers), modules_to_save=heads or None, bias="none")


def _without_lora(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every LoRA wrapper replaced by (a copy of) its base layer."""
    plain = copy.deepcopy(model)
    unmerge_lora(plain)
    for path, layer in lora_layers(plain).items():
        _set_submodule(plain, path, layer.base)
    return plain


@keywords_checked
def to_peft(model: nn.Module, *, name: str | None = None, head=None) -> PeftModel:
    """A peft model that computes what ``model`` (a course LoRA model) computes.

    A copy of ``model`` (its base weights, BatchNorm statistics and head included) loses its LoRA
    wrappers, ``get_peft_model`` wraps it with ``lora_config(model, name=name, head=head)``, and
    the course adapter's A and B are copied into peft's ``lora_A`` and ``lora_B`` (B reshaped to
    a 1x1 kernel for a convolution). peft's ``modules_to_save`` copy the head as it is, so a
    trained head comes along. ``model`` itself is not changed. What trains in the result: peft's
    adapter and its copy of the head, as ``get_peft_model`` sets it.

    Raises:
        ValueError: as ``lora_config``.
    """
    name, layers = _adapter_layers(model, name)
    config = lora_config(model, name=name, head=head)
    twin = get_peft_model(_without_lora(model), config, adapter_name=PEFT_ADAPTER)
    wrapped = {n[len(PREFIX):] for n, m in twin.named_modules() if hasattr(m, "lora_A") and n.startswith(PREFIX)
               and PEFT_ADAPTER in m.lora_A}
    if wrapped != set(layers):                   # peft matched a name we did not mean, or missed one
        raise RuntimeError(f"peft wrapped {sorted(wrapped ^ set(layers))[:5]} differently from the course")
    with torch.no_grad():
        for path, layer in layers.items():
            theirs = twin.get_submodule(PREFIX + path)
            A, B = theirs.lora_A[PEFT_ADAPTER].weight, theirs.lora_B[PEFT_ADAPTER].weight
            A.copy_(layer.lora_A[name].view_as(A))
            B.copy_(layer.lora_B[name].view_as(B))     # (out, r) -> (out, r, 1, 1) for a conv
    return twin


@keywords_checked
def save_as_peft(model: nn.Module, folder, *, name: str | None = None, head=None) -> Path:
    """Write ``model``'s course adapter ``name`` (and ``head``) in peft's format, with peft's own
    ``save_pretrained``: ``folder/adapter_model.safetensors`` and ``folder/adapter_config.json``
    (and the model card peft writes). ``PeftModel.from_pretrained(base_model, folder)`` loads it.
    BatchNorm statistics are not in the format (see the module's docstring). Returns the folder."""
    folder = Path(folder)
    to_peft(model, name=name, head=head).save_pretrained(str(folder))
    return folder


def output_difference(a: nn.Module, b: nn.Module, x: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """(largest |a(x) - b(x)|, largest |a(x)|): how far two models' outputs are apart, in eval mode
    and float32 without autocast (bf16 rounding would hide a small difference), in batches of
    ``batch_size`` rows of ``x``, on ``a``'s device. Both models' modes are restored after."""
    device = next(a.parameters()).device
    diff = scale = 0.0
    with evaluating(a), evaluating(b):
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(device)
            ya, yb = a(xb).float(), b(xb).float()
            diff, scale = max(diff, (ya - yb).abs().max().item()), max(scale, ya.abs().max().item())
    return diff, scale


def _pattern_value(patterns: dict, path: str, default):
    """peft's rank_pattern / alpha_pattern lookup: the first key that matches the end of ``path``."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def read_peft_adapter(folder) -> tuple[dict[str, dict], dict[str, torch.Tensor], dict]:
    """The LoRA adapter in a peft folder, in the course's terms, read without peft:
    ({layer path: {"A", "B" (out, r), "rank", "alpha"}}, {module tensor path: tensor} of the
    ``modules_to_save``, the config).

    Raises:
        FileNotFoundError: the folder or one of its two files is missing.
        PeftFormatError: not a LoRA adapter, a setting the course's LoRA lacks (DoRA, a LoRA bias,
            ...), or tensors that are not where peft puts them.
    """
    folder = Path(folder)
    for f in (folder / CONFIG, folder / WEIGHTS):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file. A peft adapter folder holds {CONFIG} and {WEIGHTS}, "
                                    f"written by PeftModel.save_pretrained (or save_as_peft)")
    try:
        config = json.loads((folder / CONFIG).read_text())
        state = load_file(str(folder / WEIGHTS))
    except (json.JSONDecodeError, SafetensorError, OSError) as err:
        raise PeftFormatError(f"{folder}: cannot read the adapter ({err})") from None
    if config.get("peft_type") != "LORA":
        raise PeftFormatError(f"{folder} holds a {config.get('peft_type')!r} adapter; the course reads LoRA ones")
    unsupported = [k for k in UNSUPPORTED if config.get(k)]
    if unsupported:
        raise PeftFormatError(f"{folder}: its config sets {unsupported}, which the course's LoRA does not have")
    layers, extras = {}, {}
    for key, t in state.items():
        if not key.startswith(PREFIX):
            raise PeftFormatError(f"{folder}: tensor {key!r} does not start with {PREFIX!r} as peft's keys do")
        path = key[len(PREFIX):]
        m = re.fullmatch(r"(.+)\.lora_([AB])\.weight", path)
        if m:
            layers.setdefault(m.group(1), {})[m.group(2)] = t
        elif ".lora_" in path:
            raise PeftFormatError(f"{folder}: tensor {key!r} is a LoRA tensor the course has no place for")
        else:
            extras[path] = t                   # a modules_to_save tensor: "<module>.<parameter or buffer>"
    for path, ab in layers.items():
        if set(ab) != {"A", "B"}:
            raise PeftFormatError(f"{folder}: layer {path} has lora_{''.join(ab)} but not both A and B")
        rank = ab["A"].shape[0]
        r = _pattern_value(config.get("rank_pattern"), path, config.get("r"))
        alpha = _pattern_value(config.get("alpha_pattern"), path, config.get("lora_alpha"))
        if r != rank or ab["B"].shape[1] != rank or ab["B"].dim() not in (2, 4):
            raise PeftFormatError(f"{folder}: layer {path} has A {tuple(ab['A'].shape)} and B "
                                  f"{tuple(ab['B'].shape)} for rank {r}")
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        ab.update(B=ab["B"].flatten(1), rank=rank, alpha=scaling * rank)   # the course scales by alpha / rank
    if not layers:
        raise PeftFormatError(f"{folder}: its {WEIGHTS} holds no lora_A / lora_B tensors")
    return layers, extras, config


@keywords_checked
def load_peft_adapter(model: nn.Module, folder, *, name: str = DEFAULT) -> nn.Module:
    """Load a peft LoRA adapter folder (``PeftModel.save_pretrained``'s) into a course model as
    adapter ``name`` and make it active; its ``modules_to_save`` tensors (a head, say) are copied
    into the model's modules of the same path. No peft code runs: the key names are mapped
    (``base_model.model.<layer>.lora_A.weight`` -> ``<layer>``'s A, ``lora_B.weight`` (out, r, 1, 1)
    -> B (out, r); ``base_model.model.<module>.<tensor>`` -> ``<module>.<tensor>``).

    Everything is checked before the model changes. Returns the model.

    Raises:
        FileNotFoundError, PeftFormatError: as ``read_peft_adapter``; also layers or tensors the
            model lacks, shapes that do not fit, or a layer where peft computes differently.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")
    layers, extras, _ = read_peft_adapter(folder)
    targetable = _targetable(model)
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    problems = []
    for path, ab in layers.items():
        if path not in targetable:
            problems.append(f"the model has no Linear or Conv2d layer {path!r}")
            continue
        if (why := peft_mismatch(targetable[path])):
            problems.append(f"{path}: {why}")
            continue
        layer = targetable[path]
        w = (layer.base if isinstance(layer, LoRA) else layer).weight
        if tuple(ab["A"].shape) != (ab["rank"], *w.shape[1:]) or tuple(ab["B"].shape) != (w.shape[0], ab["rank"]):
            problems.append(f"{path}: A {tuple(ab['A'].shape)} and B {tuple(ab['B'].shape)} do not fit its weight "
                            f"{tuple(w.shape)}")
    for path, t in extras.items():
        target = tensors.get(path) if path in tensors else tensors.get(re.sub(r"^(.*)\.(\w+)$", r"\1.base.\2", path))
        if target is None:
            problems.append(f"the model has no tensor {path!r} (a modules_to_save tensor in the file)")
        elif tuple(target.shape) != tuple(t.shape):
            problems.append(f"{path}: the file holds shape {tuple(t.shape)}, the model has {tuple(target.shape)}")
    if problems:
        raise PeftFormatError(f"{folder} does not fit this model ({type(model).__name__}): "
                              + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else ""))
    # Everything fits: now change the model.
    unmerge_lora(model)
    for path, ab in layers.items():
        add_lora(model, path, rank=ab["rank"], alpha=ab["alpha"], name=name, replace=True)
    wrapped = lora_layers(model)
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        for path, ab in layers.items():
            wrapped[path].lora_A[name].copy_(ab["A"])
            wrapped[path].lora_B[name].copy_(ab["B"])
        for path, t in extras.items():
            target = tensors.get(path) if path in tensors else tensors[re.sub(r"^(.*)\.(\w+)$", r"\1.base.\2", path)]
            target.copy_(t)
    return set_adapter(model, name)
