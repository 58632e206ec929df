"""Parameter-efficient fine-tuning: LoRA adapters and BitFit, for any timm model and the course's GPT.

LoRA (low-rank adaptation) keeps a layer's weight ``W`` frozen and learns a low-rank change
``ΔW = (alpha / rank) · B A``, with ``A`` of shape (rank, in) and ``B`` of shape (out, rank):

    y = base(x) + (alpha / rank) · B (A x)

``B`` starts at zero, so a freshly wrapped model computes exactly what the base model computed.
For a convolution, ``A`` is a convolution with the base layer's kernel, stride and padding into
``rank`` channels and ``B`` a 1x1 convolution back to the output channels. A layer whose own
forward does more than ``F.linear`` / ``F.conv2d`` (timm's ``ScaledStdConv2d`` standardises its
weight, ``Conv2dSame`` pads the input, a padding mode other than zeros) instead runs its own
forward with the adapted weight ``W + ΔW``, so it computes exactly what the merged layer computes.

``LoRA`` wraps the base layer (it does not copy or subclass it) and can hold several named
adapters; one of them (or none) is active. Merging adds the active adapter's ``ΔW`` into the base
weight, so inference costs nothing extra; unmerging subtracts it again. A forward pass never
merges or unmerges by itself.

BitFit trains only the bias terms (and, usually, the new head).

Example:
    On a course ResNet the targets would be e.g. ``["layer3.*.conv*", "layer4.*.conv*"]`` (names or
    glob patterns) and ``also="fc"``; here a tiny model shows the same calls.

    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> x = torch.randn(4, 8)
    >>> before = model(x)
    >>> _ = add_lora(model, ["0"], rank=2)                   # wrap the first layer
    >>> _ = train_only_lora(model, also="2")                 # adapters + the last layer train
    >>> torch.equal(model(x), before)                        # B starts at zero: nothing changed yet
    True
    >>> memory_report(model)["trainable_params"], round(trainable_share(model), 3)
    (99, 0.407)
    >>> _ = merge_lora(model.eval())                         # zero extra latency for inference
    >>> torch.allclose(model(x), before)
    True

    ``save_adapter(model, "species.safetensors")`` writes the adapter alone, a small file.
"""
from __future__ import annotations

import contextlib
import difflib
import fnmatch
import json
import math
import numbers
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .cache import FORMAT as CHECKPOINT_FORMAT
from .cache import atomic_write
from .checks import check_seed, keywords_checked, name_patterns
from .surgery import BN_DEFAULT, _set_submodule, count_params, freeze_stages, stages, unfreeze

DEFAULT = "default"


class AdapterFileError(ValueError):
    """A file given to ``load_adapter`` is not an adapter file, or not one for this model."""


# ---------------------------------------------------------------------------------------------
# Checking arguments (every function that changes a model checks them all first)
# ---------------------------------------------------------------------------------------------

def _check_rank(rank) -> None:
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
        raise ValueError(f"rank must be a whole number >= 1 (the rank r of the update B A; 4 or 8 "
                         f"are typical), got {rank!r}")


def _check_alpha(alpha) -> None:
    if alpha is None:
        return
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha) \
            or alpha <= 0:
        raise ValueError(f"alpha must be None (meaning alpha = rank) or a number > 0 (the update is "
                         f"scaled by alpha / rank), got {alpha!r}")


def _check_name(name, what="name") -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string naming the adapter, e.g. 'default' or "
                         f"'species', got {name!r}")


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module, got {type(model).__name__}")


def _patterns(patterns, what: str) -> list[str]:
    """``patterns`` as a non-empty list of strings, or a TypeError/ValueError naming ``what``."""
    return name_patterns(what, patterns)


GROUPED_WHY = ("LoRA does not wrap depthwise or grouped convolutions (groups > 1): its update B A "
               "(A reads every input channel, B writes every output channel) would connect channels the "
               "grouped layer keeps apart, so it could not be merged into the layer's weight; and a "
               "depthwise kernel is small already (channels x k x k weights): train it directly "
               "(unfreeze) instead")


def _why_not_targets(model, pattern) -> str:
    """Why the modules ``pattern`` names are not layers LoRA wraps ('' if it names none)."""
    named = [(n, m) for n, m in model.named_modules() if n and fnmatch.fnmatchcase(n, pattern)]
    if not named:
        return ""
    inside = [(n, m) for p, _ in named for n, m in model.named_modules()
              if n == p or n.startswith(p + ".")]
    grouped = [n for n, m in inside if isinstance(m, nn.Conv2d) and m.groups != 1]
    shown = ", ".join(f"{n!r} is a {type(m).__name__}" + (f" with groups={m.groups}" if isinstance(m, nn.Conv2d)
                                                           else "") for n, m in named[:3])
    why = (f" ({len(grouped)} depthwise / grouped convolution(s): {GROUPED_WHY})" if grouped else
           " (LoRA wraps nn.Linear and ordinary nn.Conv2d layers; BitFit or unfreeze train norms and the rest)")
    return f"{pattern!r} matches {len(named)} module(s) but no layer LoRA can wrap: {shown}" + why


def _check_modules(model, patterns, what: str) -> None:
    """Every pattern names a module or parameter of ``model`` (what ``unfreeze`` accepts)."""
    names = [n for n, _ in model.named_modules() if n] + [n for n, _ in model.named_parameters()]
    for pattern in _patterns(patterns, what):
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.5)
            top = [n for n, _ in model.named_children()]
            raise ValueError(f"{what}={pattern!r} matches no module or parameter of the model"
                             + (f"; close matches: {close}" if close else "")
                             + f". Its top-level modules are {top}.")


def _merged_layers(model) -> list[str]:
    return [p for p, layer in lora_layers(model).items() if layer.merged is not None]


# ---------------------------------------------------------------------------------------------
# The LoRA layer
# ---------------------------------------------------------------------------------------------

class LoRA(nn.Module):
    """A frozen ``nn.Linear`` or ``nn.Conv2d`` (or a subclass, such as timm's ``ScaledStdConv2d``
    and ``Conv2dSame``) plus named low-rank adapters.

    Attributes:
        base: the original layer (its weights stay where they were; ``add_lora`` freezes them).
        lora_A, lora_B: ``ParameterDict``s keyed by adapter name; Linear: A (r, in), B (out, r);
            Conv2d: A (r, in, kh, kw), B (out, r).
        scaling: {adapter name: alpha / rank}.
        active: the adapter used in forward, or None (the base layer alone).
        merged: the adapter currently added into ``base.weight``, or None.
        weight, bias: what the layer computes with, for models that read a layer's tensors instead
            of calling it (EdgeNeXt reads ``.weight.device``, BEiT passes ``qkv.weight`` to
            ``F.linear``): ``weight`` is the base weight plus the active adapter's ΔW.
    """

    def __init__(self, base: nn.Module):
        super().__init__()
        if not isinstance(base, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"LoRA wraps nn.Linear or nn.Conv2d, not {type(base).__name__}")
        if isinstance(base, nn.Conv2d) and base.groups != 1:
            raise ValueError(f"this Conv2d has groups={base.groups} (a depthwise or grouped convolution): "
                             f"{GROUPED_WHY}")
        self.base = base
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.scaling: dict[str, float] = {}
        self.active: str | None = None
        self.merged: str | None = None

    @property
    def is_conv(self) -> bool:
        return isinstance(self.base, nn.Conv2d)

    def add_adapter(self, name: str, rank: int, alpha: float | None = None, seed: int | None = None):
        """A new adapter: A random (Kaiming-uniform, as nn.Linear initialises), B zero."""
        _check_rank(rank)
        _check_alpha(alpha)
        _check_name(name)
        if name == self.merged:
            raise RuntimeError(f"adapter {name!r} is merged into the base weight; unmerge() first")
        w = self.base.weight
        a_shape = (rank, *w.shape[1:])                     # (r, in) or (r, in, kh, kw)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        A = torch.empty(a_shape)
        bound = 1 / math.sqrt(math.prod(w.shape[1:]))      # fan-in of the base layer
        A.uniform_(-bound, bound, generator=gen)
        self.lora_A[name] = nn.Parameter(A.to(w.device, w.dtype))
        self.lora_B[name] = nn.Parameter(torch.zeros(w.shape[0], rank, device=w.device, dtype=w.dtype))
        self.scaling[name] = (alpha if alpha is not None else rank) / rank
        if self.active is None and self.merged is None:
            self.active = name
        return self

    def rank(self, name: str) -> int:
        return self.lora_A[name].shape[0]

    def delta_weight(self, name: str) -> torch.Tensor:
        """ΔW = scaling · B A, in the base weight's shape."""
        A, B = self.lora_A[name], self.lora_B[name]
        delta = B @ A.flatten(1)                            # (out, r) @ (r, in·kh·kw)
        return self.scaling[name] * delta.view_as(self.base.weight)

    @property
    def weight(self) -> torch.Tensor:
        """The weight the layer computes with: the base weight plus the active adapter's ΔW
        (the base weight alone when no adapter is active or the active one is merged)."""
        name = self.active
        if name is None or name == self.merged:
            return self.base.weight
        return self.base.weight + self.delta_weight(name)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def plain(self) -> bool:
        """True when the base layer's forward is torch's own ``F.linear`` / zero-padded ``F.conv2d``,
        so the adapter can run as two thin layers beside it (cheaper to train than a full ΔW)."""
        if self.is_conv:
            return type(self.base).forward is nn.Conv2d.forward and self.base.padding_mode == "zeros"
        return type(self.base).forward is nn.Linear.forward

    def forward(self, x):
        name = self.active
        if name is None:
            return self.base(x)
        if name == self.merged:                             # already inside base.weight
            if self.training and torch.is_grad_enabled() and self.lora_A[name].requires_grad:
                warnings.warn(f"training a model whose adapter {name!r} is merged (merge_lora): its A "
                              f"and B are not used, so they do not learn. Call unmerge_lora(model) "
                              f"before training, merge_lora(model) after.", stacklevel=2)
            return self.base(x)
        if not self.plain:
            # the base's own forward with W + ΔW: weight standardisation and 'same' padding act on
            # the adapted weight exactly as they will on the merged one
            return torch.func.functional_call(self.base, {"weight": self.weight}, (x,))
        y = self.base(x)
        A, B, s = self.lora_A[name], self.lora_B[name], self.scaling[name]
        if self.is_conv:
            c = self.base
            h = F.conv2d(x, A, None, c.stride, c.padding, c.dilation)     # (N, r, H', W')
            return y + s * F.conv2d(h, B[:, :, None, None])               # (N, out, H', W')
        return y + s * F.linear(F.linear(x, A), B)                        # (..., out)

    @torch.no_grad()
    def merge(self):
        """Add the active adapter into the base weight (then forward skips the adapter)."""
        if self.merged is not None or self.active is None:
            return
        self.base.weight += self.delta_weight(self.active)
        self.merged = self.active

    @torch.no_grad()
    def unmerge(self):
        """Subtract the merged adapter from the base weight again."""
        if self.merged is None:
            return
        self.base.weight -= self.delta_weight(self.merged)
        self.merged = None

    def extra_repr(self):
        ranks = {n: self.rank(n) for n in self.lora_A}
        return f"adapters={ranks}, active={self.active!r}, merged={self.merged!r}"


# ---------------------------------------------------------------------------------------------
# Finding target layers
# ---------------------------------------------------------------------------------------------

def _targetable(model: nn.Module) -> dict[str, nn.Module]:
    """Every layer LoRA can wrap, by module path (LoRA wrappers stand for their base layer)."""
    out, inside = {}, []
    for name, m in model.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue                                   # the base layer inside a wrapper
        if isinstance(m, LoRA):
            out[name] = m
            inside.append(name)
        elif isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
            out[name] = m
    return out


@keywords_checked
def find_targets(model: nn.Module, targets) -> dict[str, nn.Module]:
    """The layers that ``targets`` (names or glob patterns) select: {path: layer}.

    A pattern may name a layer (``"fc"``, ``"layer4.1.conv2"``, ``"blocks.*.attn.qkv"``) or a
    container (``"layer4"``): then every Linear and Conv2d inside it is selected.

    Raises:
        ValueError: a pattern selects nothing; the message lists the layers that can be targets.
    """
    targets = _patterns(targets, "targets")
    layers = _targetable(model)
    modules = [n for n, _ in model.named_modules() if n]
    found = {}
    for pattern in targets:
        hits = {n for n in layers if fnmatch.fnmatchcase(n, pattern)}
        containers = [n for n in modules if fnmatch.fnmatchcase(n, pattern) and n not in layers]
        hits |= {n for n in layers for c in containers if n.startswith(c + ".")}
        if not hits:
            names = list(layers)
            close = difflib.get_close_matches(pattern, names, n=5, cutoff=0.5)
            shown = names if len(names) <= 40 else names[:20] + ["..."] + names[-10:]
            why = _why_not_targets(model, pattern)
            raise ValueError(
                (f"targets: {why}" if why else f"targets: no Linear or Conv2d layer matches {pattern!r}")
                + (f"; close matches: {close}" if close else "")
                + f". Layers LoRA can wrap ({len(names)}): {shown}. Use a path, a glob such as "
                  f"'layer4.*.conv*', or a container such as 'layer4'.")
        found.update({n: layers[n] for n in sorted(hits, key=list(layers).index)})
    return found


# ---------------------------------------------------------------------------------------------
# Adding, switching, merging
# ---------------------------------------------------------------------------------------------

@keywords_checked
def add_lora(model: nn.Module, targets, rank: int = 4, alpha: float | None = None, *,
             name: str = DEFAULT, seed: int = 0, replace: bool = False) -> nn.Module:
    """Wrap the layers ``targets`` selects with LoRA and give them adapter ``name``; in place.

    Applying it again does not stack: a layer is wrapped once, and an adapter ``name`` that
    already exists with the same rank and alpha is kept as it is. A new name adds a second
    adapter beside the first. The base layers' weights are frozen; the new adapter is trainable
    and becomes the active one.

    Every argument is checked before the model changes, so a call that raises leaves it as it was.

    Args:
        targets: module paths or glob patterns (see ``find_targets``).
        rank: r, the rank of ΔW = B A, a whole number >= 1. alpha: scale, ΔW is multiplied by
            alpha / r (default r), a number > 0.
        seed: initialises the A matrices (B starts at zero).
        replace: an adapter ``name`` that exists with another rank or alpha is an error (it may
            be trained); ``replace=True`` throws it away and starts a fresh one.
    Returns:
        the same model.
    Raises:
        ValueError: a bad rank, alpha or name, a pattern that selects nothing, or an adapter
            ``name`` that exists with another rank or alpha (without ``replace=True``).
        RuntimeError: an adapter is merged into the weights (``unmerge_lora(model)`` first).
    """
    found, alpha, todo = _plan_lora(model, targets, rank, alpha, name, seed, replace)
    if not todo and active_adapter(model) == name:
        return model                        # already there: applying twice changes nothing
    gen_seed = seed
    for path in todo:
        layer = found[path]
        if not isinstance(layer, LoRA):
            layer.requires_grad_(False)
            layer = LoRA(layer)
            _set_submodule(model, path, layer)
        layer.add_adapter(name, rank, alpha, seed=gen_seed)
        gen_seed += 1
    set_adapter(model, name)
    return model


def _plan_lora(model, targets, rank, alpha, name, seed, replace, caller="add_lora"):
    """Check ``add_lora``'s arguments against the model; returns (selected layers, alpha, the
    paths that need an adapter added). Raises, changing nothing, when something is wrong."""
    _check_model(model)
    _check_rank(rank)
    _check_alpha(alpha)
    _check_name(name)
    check_seed(seed)
    alpha = float(alpha if alpha is not None else rank)
    found = find_targets(model, targets)
    same = {p for p, layer in found.items() if isinstance(layer, LoRA) and name in layer.lora_A
            and layer.rank(name) == rank and math.isclose(layer.scaling[name], alpha / rank)}
    clashes = [p for p, layer in found.items() if isinstance(layer, LoRA) and name in layer.lora_A
               and p not in same]
    if clashes and not replace:
        layer = found[clashes[0]]
        r = layer.rank(name)
        afresh = ("pass replace=True" if caller == "add_lora" else
                  "build the model again in this cell (prepare_peft sets up a fresh model)")
        raise ValueError(
            f"adapter {name!r} already exists on {len(clashes)} of these layers (e.g. {clashes[0]}) "
            f"with rank {r}, alpha {layer.scaling[name] * r:g}; adding it with rank {rank}, alpha "
            f"{alpha:g} would throw its weights (trained, perhaps) away. To keep it and add a second "
            f"adapter, pass another name, e.g. name='r{rank}' (set_adapter switches between them); "
            f"to start it afresh, {afresh}.")
    todo = [p for p in found if p not in same]
    if _merged_layers(model) and (todo or active_adapter(model) != name):
        raise RuntimeError("an adapter is merged into the base weights; call unmerge_lora(model) "
                           "before adding or changing adapters")
    return found, alpha, todo


def lora_layers(model: nn.Module) -> dict[str, LoRA]:
    """{module path: LoRA wrapper} in the model."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRA)}


def adapter_names(model: nn.Module) -> list[str]:
    names = []
    for layer in lora_layers(model).values():
        names += [n for n in layer.lora_A if n not in names]
    return names


@keywords_checked
def lora_parameters(model: nn.Module, name: str | None = None) -> list[nn.Parameter]:
    """The A and B matrices of adapter ``name`` (default: every adapter).

    Warns when one of them is merged into the weights: training them would change nothing."""
    if name is not None and name not in adapter_names(model):
        raise ValueError(f"no adapter named {name!r}; the model has {adapter_names(model)}")
    merged = {layer.merged for layer in lora_layers(model).values()} - {None}
    if merged and (name is None or name in merged):
        warnings.warn(f"adapter {sorted(merged)[0]!r} is merged into the base weights (merge_lora), so "
                      f"its A and B are not used and training them changes nothing. Call "
                      f"unmerge_lora(model) first.", stacklevel=2)
    params = []
    for layer in lora_layers(model).values():
        for n in layer.lora_A:
            if name is None or n == name:
                params += [layer.lora_A[n], layer.lora_B[n]]
    return params


@keywords_checked
def set_adapter(model: nn.Module, name: str | None) -> nn.Module:
    """Make adapter ``name`` the active one in every layer that has it (None: use no adapter).

    Raises if an adapter is merged (unmerge it first: switching must not change weights silently)
    or if no layer has ``name``.
    """
    layers = lora_layers(model)
    if any(layer.merged is not None for layer in layers.values()):
        raise RuntimeError("an adapter is merged into the base weights; call unmerge_lora(model) "
                           "before switching adapters")
    if name is not None and not any(name in layer.lora_A for layer in layers.values()):
        raise ValueError(f"no adapter named {name!r}; the model has {adapter_names(model)}")
    for layer in layers.values():
        layer.active = name if name in layer.lora_A else None
    return model


def active_adapter(model: nn.Module) -> str | None:
    """The name of the active adapter (None if there is none; ``set_adapter`` keeps one for all)."""
    for layer in lora_layers(model).values():
        if layer.active is not None:
            return layer.active
    return None


@contextlib.contextmanager
def lora_disabled(model: nn.Module):
    """Inside, the model computes with its base weights only; the active adapter is restored after."""
    layers = lora_layers(model)
    if any(layer.merged is not None for layer in layers.values()):
        raise RuntimeError("an adapter is merged; unmerge_lora(model) first to compare with the base")
    before = {p: layer.active for p, layer in layers.items()}
    for layer in layers.values():
        layer.active = None
    try:
        yield model
    finally:
        for p, layer in layers.items():
            layer.active = before[p]


def merge_lora(model: nn.Module) -> nn.Module:
    """Add the active adapter into the base weights (inference then costs what the base costs)."""
    for layer in lora_layers(model).values():
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Undo ``merge_lora``: the base weights are back (up to float rounding), the adapter separate."""
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


# ---------------------------------------------------------------------------------------------
# What trains: LoRA only, or BitFit
# ---------------------------------------------------------------------------------------------

@keywords_checked
def train_only_lora(model: nn.Module, name: str | None = None, also=None) -> nn.Module:
    """Freeze everything except adapter ``name`` (default: the active one) and the modules
    ``also`` names (e.g. ``"fc"``, a new head). Returns the model.

    Raises (changing nothing) when there is no such adapter, ``also`` names no module, or an
    adapter is merged into the weights (its A and B would then not learn: unmerge first)."""
    _check_model(model)
    names = adapter_names(model)
    if not names:
        raise ValueError("the model has no LoRA adapter; call add_lora(model, targets) first")
    name = name or active_adapter(model)
    if name is None:
        raise ValueError(f"no adapter is active; pass name= one of {names}, or set_adapter(model, name)")
    if name not in names:
        raise ValueError(f"no adapter named {name!r}; the model has {names}")
    if _merged_layers(model):
        raise RuntimeError("the adapter is merged into the base weights (merge_lora), so its A and B "
                           "are no longer used and training them would change nothing. Call "
                           "unmerge_lora(model) first; merge again after training.")
    if also:
        _check_modules(model, also, "also")
    model.requires_grad_(False)
    for p in lora_parameters(model, name):
        p.requires_grad_(True)
    if also:
        unfreeze(model, also)
    return model


@keywords_checked
def bitfit(model: nn.Module, also=None) -> nn.Module:
    """BitFit: train only the bias terms (every parameter whose name ends in ``bias``) and the
    modules ``also`` names (e.g. the new head ``"fc"``). In a ResNet the convolutions have no
    bias, so the biases are the BatchNorm shifts. Returns the model."""
    _check_model(model)
    biases = [p for n, p in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
    if not biases:
        raise ValueError("the model has no bias parameters, so BitFit has nothing to train")
    if also:
        _check_modules(model, also, "also")
    model.requires_grad_(False)
    for p in biases:
        p.requires_grad_(True)
    if also:
        unfreeze(model, also)
    return model


# ---------------------------------------------------------------------------------------------
# Accounting: trainable share and optimiser memory
# ---------------------------------------------------------------------------------------------

def trainable_share(model: nn.Module) -> float:
    """Trainable parameters / all parameters (each shared tensor counted once)."""
    return count_params(model, "trainable") / count_params(model)


@keywords_checked
def memory_report(model: nn.Module, *, optimizer: str = "adamw") -> dict:
    """What training this model costs in memory besides activations, in bytes.

    ``grad_bytes``: one gradient per trainable parameter. ``optimizer_bytes``: AdamW keeps two
    running averages per trainable parameter (SGD with momentum one, plain SGD none), in the
    parameter's dtype. ``weight_bytes``: all parameters, frozen ones included.
    """
    per_param = {"adamw": 2, "adam": 2, "sgd_momentum": 1, "sgd": 0}
    if optimizer not in per_param:
        raise ValueError(f"optimizer must be one of {sorted(per_param)}; got {optimizer!r}")
    params = list(model.parameters())           # each shared tensor once
    trainable = [p for p in params if p.requires_grad]
    n_train, n_total = count_params(model, "trainable"), count_params(model)
    train_bytes = sum(p.numel() * p.element_size() for p in trainable)
    return {"total_params": n_total, "trainable_params": n_train, "trainable_frac": n_train / n_total,
            "weight_bytes": sum(p.numel() * p.element_size() for p in params),
            "grad_bytes": train_bytes, "optimizer_bytes": per_param[optimizer] * train_bytes}


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes the optimiser's state really holds (measure it after at least one step)."""
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if torch.is_tensor(t) and t.dim() > 0)


# ---------------------------------------------------------------------------------------------
# Saving and loading an adapter alone
# ---------------------------------------------------------------------------------------------

@keywords_checked
def adapter_state(model: nn.Module, name: str | None = None, extra=None,
                  norm_stats: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of adapter ``name`` (default: active) keyed ``<layer path>.lora_A`` /
    ``.lora_B``, plus the parameters of the modules ``extra`` names (e.g. a task's head), keyed
    ``extra.<module path>.<parameter>``, plus with ``norm_stats`` every BatchNorm running
    statistic, keyed ``norm.<buffer path>`` (a task's statistics, if they were updated)."""
    name = name or active_adapter(model)
    state = {}
    for path, layer in lora_layers(model).items():
        if name in layer.lora_A:
            state[f"{path}.lora_A"] = layer.lora_A[name].detach()
            state[f"{path}.lora_B"] = layer.lora_B[name].detach()
    if not state:
        raise ValueError(f"no adapter named {name!r}; the model has {adapter_names(model)}")
    for pattern in (_patterns(extra, "extra") if extra else []):
        # the tensors the pattern names itself too: "blocks.0.*" saves blocks.0's own layer scales
        own = {n: p for n, p in model.named_parameters() if fnmatch.fnmatchcase(n, pattern) and "lora_" not in n}
        state.update({f"extra.{n}": p.detach() for n, p in own.items()})
        if not own and not any(mpath and fnmatch.fnmatchcase(mpath, pattern) for mpath, _ in model.named_modules()):
            modules = [n for n, _ in model.named_children()]
            close = difflib.get_close_matches(pattern, [n for n, _ in model.named_modules() if n], n=5)
            raise ValueError(f"extra={pattern!r} matches no module of the model"
                             + (f"; close matches: {close}" if close else "")
                             + f". Its top-level modules are {modules} (e.g. extra='fc' for the head).")
        for mpath, module in model.named_modules():
            if mpath and fnmatch.fnmatchcase(mpath, pattern):
                for pname, p in module.named_parameters():
                    if "lora_" not in pname:            # the adapter's own tensors are saved above
                        state[f"extra.{mpath}.{pname}"] = p.detach()
    if norm_stats:
        for mpath, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                for bname, b in module.named_buffers():
                    state[f"norm.{mpath}.{bname}"] = b.detach()
    return state


@keywords_checked
def save_adapter(model: nn.Module, path, name: str | None = None, extra=None, norm_stats: bool = False) -> Path:
    """Save adapter ``name`` alone (and the modules ``extra`` names, and with ``norm_stats`` the
    BatchNorm statistics) as a safetensors file.

    The file holds only A, B (and the extras): kilobytes, while the base model stays where it is.
    Its metadata records each layer's rank and alpha so ``load_adapter`` can rebuild the adapter.
    The file is written under a temporary name and renamed, so an interrupted save keeps the
    adapter that was there before.
    """
    name = name or active_adapter(model)
    state = {k: v.contiguous().cpu() for k, v in adapter_state(model, name, extra, norm_stats).items()}
    layers = lora_layers(model)
    meta = {p: {"rank": layers[p].rank(name), "alpha": layers[p].scaling[name] * layers[p].rank(name)}
            for p in layers if name in layers[p].lora_A}
    path = Path(path)
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata={"adapter": name, "layers": json.dumps(meta)}))
    return path


_ADAPTER_FILE = ("An adapter file is what save_adapter(model, path) writes: a small safetensors file "
                 "holding each wrapped layer's LoRA matrices A and B (and, if asked, a head and "
                 "BatchNorm statistics), with their ranks in its metadata.")


def _read_adapter_file(path: Path) -> tuple[dict, dict, str]:
    """(tensors, {layer path: {"rank", "alpha"}}, saved adapter name), or AdapterFileError."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such adapter file. {_ADAPTER_FILE}")
    if path.is_dir():
        raise AdapterFileError(f"{path} is a folder, not an adapter file. {_ADAPTER_FILE}")
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            what = ("it looks like a file from torch.save (a pickle), which the course never opens: "
                    "unpickling can run code")
        else:
            what = f"it is not a safetensors file (reading it failed with: {err})"
        raise AdapterFileError(f"{path} is not an adapter file: {what}. {_ADAPTER_FILE}") from None
    if "adapter" not in meta or "layers" not in meta:
        if meta.get("format") == CHECKPOINT_FORMAT:
            what = ("it is a whole-model checkpoint written by the course's cache; load it with "
                    "helpers.cache.read_checkpoint and load_into, or save the adapter alone with "
                    "save_adapter")
        else:
            what = f"it is a safetensors file without an adapter's metadata (it has {sorted(meta)})"
        raise AdapterFileError(f"{path} is not an adapter file: {what}. {_ADAPTER_FILE}")
    try:
        layers = json.loads(meta["layers"])
        ok = isinstance(layers, dict) and layers and all(
            isinstance(m, dict) and isinstance(m.get("rank"), int) and m["rank"] >= 1
            and isinstance(m.get("alpha"), (int, float)) and m["alpha"] > 0 for m in layers.values())
    except json.JSONDecodeError:
        ok = False
    if not ok:
        raise AdapterFileError(f"{path}: its metadata does not list the adapter's layers with a rank "
                               f"and alpha each (found {meta['layers'][:200]!r}). {_ADAPTER_FILE}")
    return state, layers, meta["adapter"]


@keywords_checked
def load_adapter(model: nn.Module, path, name: str | None = None) -> nn.Module:
    """Load an adapter saved by ``save_adapter`` into ``model`` as adapter ``name`` (default: the
    saved name) and make it active. Layers not yet wrapped are wrapped; extras are copied into the
    model's modules (their shapes must match). An adapter of the same name already in the model
    is replaced by the file's; an adapter merged into the model is unmerged first.

    The file is checked against the model before anything changes: a file that is not an
    adapter, or one made for another model, raises and leaves the model as it was.

    Returns the model.
    Raises:
        FileNotFoundError: no such file.
        AdapterFileError: not an adapter file (a checkpoint, a pickle, anything else), or its
            layers, tensor names or shapes do not fit this model; the message names the file.
    """
    _check_model(model)
    path = Path(path)
    state, layers_meta, saved_name = _read_adapter_file(path)
    name = name or saved_name
    _check_name(name)
    targetable = _targetable(model)
    missing = [p for p in layers_meta if p not in targetable]
    if missing:
        raise AdapterFileError(f"{path}: the adapter targets layers this model lacks: {missing[:5]}; "
                               f"it has {list(targetable)[:10]}{' ...' if len(targetable) > 10 else ''}")
    problems = _adapter_misfits(model, state, layers_meta, targetable)
    if problems:
        raise AdapterFileError(f"{path} does not fit this model ({type(model).__name__}): "
                               + "; ".join(problems[:5]) + (" ..." if len(problems) > 5 else "")
                               + ". Was it saved from another architecture or size?")
    # Everything fits: now change the model.
    unmerge_lora(model)
    for p, m in layers_meta.items():
        add_lora(model, p, rank=m["rank"], alpha=m["alpha"], name=name, replace=True)
    layers = lora_layers(model)
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for key, t in state.items():
            if key.startswith("extra."):
                target = params[key[len("extra."):]]
            elif key.startswith("norm."):
                target = buffers[key[len("norm."):]]
            else:
                lpath, _, which = key.rpartition(".")
                target = getattr(layers[lpath], which)[name]
            target.copy_(t)
    set_adapter(model, name)
    return model


def _adapter_misfits(model, state, layers_meta, targetable) -> list[str]:
    """What in an adapter file does not fit ``model`` (empty when it all fits)."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    unwrapped = [p for p in layers_meta if not isinstance(targetable[p], LoRA)]

    def param_after_wrapping(key):
        # a head saved from a wrapped layer is "<layer>.base.weight"; before wrapping, "<layer>.weight"
        if key in params:
            return params[key]
        for p in unwrapped:
            if key.startswith(p + ".base."):
                return params.get(p + "." + key[len(p + ".base."):])
        return None

    expected = {}
    for p, m in layers_meta.items():
        layer = targetable[p]
        w = (layer.base if isinstance(layer, LoRA) else layer).weight
        expected[f"{p}.lora_A"] = (m["rank"], *w.shape[1:])
        expected[f"{p}.lora_B"] = (w.shape[0], m["rank"])
    problems = [f"{key} is missing" for key in expected if key not in state]
    for key, t in state.items():
        if key in expected:
            shape = expected[key]
        elif key.startswith("extra."):
            target = param_after_wrapping(key[len("extra."):])
            if target is None:
                problems.append(f"{key}: the model has no parameter {key[len('extra.'):]!r}")
                continue
            shape = tuple(target.shape)
        elif key.startswith("norm."):
            target = buffers.get(key[len("norm."):])
            if target is None:
                problems.append(f"{key}: the model has no buffer {key[len('norm.'):]!r}")
                continue
            shape = tuple(target.shape)
        else:
            problems.append(f"{key}: not a tensor an adapter file holds")
            continue
        if tuple(t.shape) != tuple(shape):
            problems.append(f"{key}: the file holds shape {tuple(t.shape)}, the model needs {tuple(shape)}")
    return problems


# ---------------------------------------------------------------------------------------------
# One experiment on the species task (lessons 02-04's task, lesson 06's methods)
# ---------------------------------------------------------------------------------------------

METHODS = ("full", "probe", "bitfit", "lora")
RESNET_TARGETS = ("layer*.*.conv*",)          # every 3x3 convolution in the residual blocks


@keywords_checked
def prepare_peft(model: nn.Module, method: str, *, rank: int = 4, alpha: float | None = None,
                 targets=RESNET_TARGETS, head: str = "fc", name: str = DEFAULT, seed: int = 0,
                 bn: str = BN_DEFAULT) -> nn.Module:
    """Set up ``model`` for one tuning method (in place); the new head ``head`` always trains.

    ``"full"``: everything trains; ``"probe"``: the head alone; ``"bitfit"``: biases and head;
    ``"lora"``: LoRA adapters of ``rank`` on ``targets``, plus the head.

    BatchNorm running statistics are buffers, not parameters: ``bn="update"`` (default) lets them
    adapt to the new data, as in full fine-tuning (the frozen weights then see inputs normalised
    for the new task); save them with the adapter (``save_adapter(..., norm_stats=True)``) to
    swap tasks on one base model. ``bn="frozen"`` keeps the base model's statistics, so the base
    model stays exactly as it was.
    """
    _check_model(model)
    if method not in METHODS:
        close = difflib.get_close_matches(str(method).lower(), METHODS, n=1)
        raise ValueError(f"method must be one of {METHODS}; got {method!r}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    if bn not in ("update", "frozen"):
        raise ValueError(f"bn must be 'update' (BatchNorm statistics adapt to the new data) or "
                         f"'frozen' (they stay the base model's); got {bn!r}")
    if method == "full":
        return model.requires_grad_(True)
    _check_modules(model, head, "head")
    if method == "bitfit" and not any(n.rsplit(".", 1)[-1] == "bias" for n, _ in model.named_parameters()):
        raise ValueError("the model has no bias parameters, so BitFit has nothing to train")
    if method == "lora":
        _plan_lora(model, targets, rank, alpha, name, seed, replace=False, caller="prepare_peft")
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        freeze_stages(model, len(stages(model)), bn=bn)          # BN statistics as ``bn`` says
        if method == "probe":
            model.requires_grad_(False)
            return unfreeze(model, head)
        if method == "bitfit":
            return bitfit(model, also=head)
        add_lora(model, targets, rank=rank, alpha=alpha, name=name, seed=seed)
        return train_only_lora(model, name, also=head)
    except Exception:
        for n, p in model.named_parameters():                    # put the flags back as they were
            if n in flags:
                p.requires_grad_(flags[n])
        raise
