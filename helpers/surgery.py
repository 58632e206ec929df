"""Model surgery for fine-tuning: stages, freezing, new heads, extra blocks, layer-wise rates.

Everything here works on any timm model (ResNet, ConvNeXt, EfficientNet, MobileNet, ViT, ...)
because it asks the model about itself instead of using per-architecture tables:

- ``stages(model)``: the backbone's stages from the input side (stem first, head excluded), from
  timm's ``group_matcher(coarse=True)``, the same grouping timm uses for layer-wise rate decay.
  Parameters that no stage claims (the classifier, and for some models a pre-logits layer) form
  the head; ``get_classifier()`` always belongs to it.
- ``freeze_stages(model, k)``: freeze the first k stages (by depth); ``freeze`` / ``unfreeze`` by
  module name or glob pattern; ``stage_table`` counts trainable and total parameters per stage.
- ``replace_head``, ``add_block``: new layers on top; ``layerwise_lr_groups``: smaller learning
  rates nearer the input, as optimiser parameter groups for
  ``train(optimiser=Optimiser(param_groups=...))``.

BatchNorm and freezing: ``requires_grad = False`` stops the *weights* of a BatchNorm layer, but
not its running mean and variance, which are buffers that every forward pass in train mode
updates (and train-mode BatchNorm normalises with the batch's own statistics). So a "frozen"
stage still changes unless its BatchNorm layers stay in eval mode. ``bn="update"`` (the default,
``BN_DEFAULT``) freezes the weights only; ``bn="frozen"`` also freezes the statistics: the layers
become ``FrozenStats`` layers that stay in eval mode, even after ``model.train()``, and show so in
``print(model)``.

The functions that change a model do it in place and return it. Freezing or unfreezing again is
harmless (the last call decides), ``replace_head`` again puts a fresh head on, and ``add_block``
refuses a second block (a fresh model changes it).

Example:
    >>> import timm
    >>> model = timm.create_model("resnet18", num_classes=6)
    >>> [name for name, _ in stages(model)]
    ['stem', 'layer1', 'layer2', 'layer3', 'layer4']
    >>> _ = freeze_stages(model, 3)       # stem, layer1, layer2 frozen; layer3, layer4, fc train
    >>> stage_table(model)["frozen"].tolist()       # share frozen per stage, the head last
    [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
"""
from __future__ import annotations

import contextlib
import difflib
import fnmatch
import itertools
import math
import numbers
from collections import OrderedDict, defaultdict

import pandas as pd
import torch
import torch.nn as nn
from timm.models._manipulate import group_with_matcher

from .checks import check_seed, name_patterns, whole_number
from .device import seeded

# ---------------------------------------------------------------------------------------------
# Stages: what "depth" means for any model
# ---------------------------------------------------------------------------------------------

class Stage(nn.Module):
    """A view of one stage of a model: it holds references to the model's own modules (and to
    parameters the model keeps loose, such as a ViT's ``cls_token``), so ``.parameters()``,
    ``.modules()`` and ``.requires_grad_()`` act on the model itself. It has no forward."""

    def __init__(self, name: str, parts: dict, loose: dict):
        super().__init__()
        self.stage_name = name
        self.part_names = list(parts)         # module paths inside the model, e.g. ["conv1", "bn1"]
        for i, module in enumerate(parts.values()):
            self.add_module(f"part{i}", module)
        self.loose_names = list(loose)
        for i, param in enumerate(loose.values()):
            self.register_parameter(f"loose{i}", param)

    def extra_repr(self):
        return f"{self.stage_name}: {', '.join(self.part_names + self.loose_names)}"


def _group_matcher(model):
    """timm's coarse ``group_matcher`` of ``model`` (a dict of regexes, or a function from a name
    to a group number as in CaiT), or None for a model without one."""
    if not hasattr(model, "group_matcher"):
        return None
    try:
        return model.group_matcher(coarse=True)
    except (NotImplementedError, TypeError):
        return None


def _classifiers(model) -> list[nn.Module]:
    """The modules timm's ``get_classifier()`` returns: one, or a tuple of two for a distilled
    model (DeiT, LeViT: ``head`` and ``head_dist``). Empty for a model without the method."""
    if not hasattr(model, "get_classifier"):
        return []
    clf = model.get_classifier()
    return [c for c in (clf if isinstance(clf, (tuple, list)) else (clf,)) if isinstance(c, nn.Module)]


def _tensor_names(model):
    """Names of every parameter and buffer, in registration order (shared ones once)."""
    names, seen = [], set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            names.append(name)
    return names


def _stage_of_tensor(model):
    """{tensor name: stage index or None for the head}, plus the stage names in order.

    The head is every classifier ``get_classifier()`` names and, where a classifier sits inside
    a top-level container (timm's ``head`` of a MetaFormer, ConvNeXt or Swin: a norm, pooling,
    the fc), that whole container: its norm acts on the pooled features, after every stage."""
    classifiers = _classifiers(model)
    head_prefixes = {n for n, m in model.named_modules() if n and any(m is c for c in classifiers)}
    containers = {n.split(".")[0] for n in head_prefixes if "." in n}     # "head" of "head.fc"

    def in_head(name):
        return any(name == p or name.startswith(p + ".") for p in head_prefixes)

    names = _tensor_names(model)
    matcher = _group_matcher(model)
    if matcher is not None:
        # timm's own grouping (``group_with_matcher``, as its layer-decay optimiser uses it): group
        # numbers in order, a layer marked MATCH_PREV_GROUP (e.g. a final norm) joined to the group
        # before, names no group matches (neck, head) in one last group, found here by a name
        # that nothing matches.
        unmatched = "\x00 matched by no group"
        groups = group_with_matcher([(n, n) for n in names if not in_head(n)] + [(unmatched, unmatched)], matcher)
        group_of, count = {}, 0
        for lid in sorted(groups):
            index = None if unmatched in groups[lid] else count
            count += index is not None
            group_of.update({n: index for n in groups[lid]})
        stage = {n: None if in_head(n) else group_of[n] for n in names}
        for c in containers:        # a head container's norm, joined to the last stage by the matcher
            inside = {n for n in names if n.startswith(c + ".")}
            last = max((i for i in stage.values() if i is not None), default=None)
            if {stage[n] for n in inside} - {None} == {last} and any(
                    stage[n] == last for n in names if n not in inside):
                stage.update({n: None for n in inside})
    else:
        # No group_matcher (PiT, or not a timm model): each top-level child with parameters is a
        # stage, the last one the head unless get_classifier() names it. A tensor the model holds
        # itself (PiT's pos_embed and cls_token) acts at the input: it belongs to the first stage.
        children = [n for n, c in model.named_children() if any(True for _ in c.parameters())]
        head_prefixes |= containers
        if not head_prefixes and children:
            head_prefixes = {children[-1]}
        top = [c for c in children if c not in head_prefixes]
        stage = {}
        for n in names:
            first = n.split(".")[0]
            if "." not in n and top:
                stage[n] = 0
            else:
                stage[n] = None if in_head(n) or first not in top else top.index(first)
    return stage


def _stage_name(index, part_names, loose_names, model):
    """A readable stage name: "stem" first, else its module path ("layer2", "blocks.5+norm")."""
    if index == 0 and hasattr(model, "group_matcher"):
        return "stem"
    names = part_names + loose_names
    return "+".join(names[:3]) + ("+..." if len(names) > 3 else "")


def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's stages from the input side: ``[(name, Stage), ...]``, stem first, head excluded.

    Stages come from the model itself (timm's coarse ``group_matcher``, a dict of regexes or a
    function), so this works for any timm architecture; for a model without one each top-level
    child with parameters is a stage, the last one (or the one holding what ``get_classifier()``
    names) is the head, and parameters the model holds itself (position embeddings, class tokens)
    join the first stage. Every classifier ``get_classifier()`` returns (both heads of a distilled
    model) is in the head, and so is a top-level container holding one (a MetaFormer's ``head``:
    its norm acts after every stage). A ``Stage`` refers to the model's own modules (no copies).

    Example:
        >>> import timm
        >>> [n for n, _ in stages(timm.create_model("convnext_atto"))]
        ['stem', 'stages.0', 'stages.1', 'stages.2', 'stages.3']
    """
    stage = _stage_of_tensor(model)
    count = 1 + max((s for s in stage.values() if s is not None), default=-1)
    # every module path -> the set of stages its tensors belong to (one pass over the names)
    below = defaultdict(set)
    for name, index in stage.items():
        parts = name.split(".")
        for i in range(1, len(parts)):
            below[".".join(parts[:i])].add(index)

    out = []
    for index in range(count):
        parts, loose = OrderedDict(), OrderedDict()

        def collect(prefix, module):
            # Take whole sub-modules that lie entirely in this stage; split the others.
            for child_name, child in module.named_children():
                path = f"{prefix}.{child_name}" if prefix else child_name
                groups = below.get(path, set())
                if groups == {index}:
                    parts[path] = child
                elif index in groups:
                    collect(path, child)
            for pname, p in module.named_parameters(recurse=False):
                path = f"{prefix}.{pname}" if prefix else pname
                if stage.get(path) == index:
                    loose[path] = p
        collect("", model)
        name = _stage_name(index, list(parts), list(loose), model)
        out.append((name, Stage(name, parts, loose)))
    return out


def _head_params(model):
    in_stage = {id(p) for _, s in stages(model) for p in s.parameters()}
    return [p for p in model.parameters() if id(p) not in in_stage]


# ---------------------------------------------------------------------------------------------
# Freezing
# ---------------------------------------------------------------------------------------------

def _is_bn(module):
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


class FrozenStats:
    """Mixin for a BatchNorm layer whose running statistics are frozen: it stays in eval mode
    (normalising with its stored mean and variance, updating neither) even inside a model in
    train mode. Its weights train or not by ``requires_grad``, as any layer's.

    ``freeze_bn_statistics`` turns a layer into one by switching its class to the matching
    ``FrozenStats*`` class below, so it shows in ``print(model)`` (``FrozenStatsBatchNorm2d``),
    survives ``copy.deepcopy`` and ``torch.save(model)``, and keeps its state_dict keys: a
    checkpoint loads into the model with or without frozen statistics. timm's
    ``FrozenBatchNorm2d`` does the same job with buffers instead of parameters; this keeps the
    weights trainable, which ``bn="frozen"`` with partly trained stages needs.
    """

    def train(self, mode: bool = True):
        return super().train(False)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", statistics frozen"


class FrozenStatsBatchNorm1d(FrozenStats, nn.BatchNorm1d):
    pass


class FrozenStatsBatchNorm2d(FrozenStats, nn.BatchNorm2d):
    pass


class FrozenStatsBatchNorm3d(FrozenStats, nn.BatchNorm3d):
    pass


class FrozenStatsSyncBatchNorm(FrozenStats, nn.SyncBatchNorm):
    pass


try:
    from timm.layers import BatchNormAct2d as _BatchNormAct2d

    class FrozenStatsBatchNormAct2d(FrozenStats, _BatchNormAct2d):
        pass
except ImportError:             # an older timm without BatchNormAct2d: nothing to support
    FrozenStatsBatchNormAct2d = None


def _frozen_classes() -> dict:
    """{BatchNorm class: its FrozenStats class}, timm's BatchNorm-with-activation included."""
    classes = {nn.BatchNorm1d: FrozenStatsBatchNorm1d, nn.BatchNorm2d: FrozenStatsBatchNorm2d,
               nn.BatchNorm3d: FrozenStatsBatchNorm3d, nn.SyncBatchNorm: FrozenStatsSyncBatchNorm}
    if FrozenStatsBatchNormAct2d is not None:
        classes[_BatchNormAct2d] = FrozenStatsBatchNormAct2d
    return classes


def bn_stats_frozen(module: nn.Module) -> bool:
    """True if ``module`` is a BatchNorm layer whose running statistics are frozen."""
    return isinstance(module, FrozenStats)


def _set_bn(module: nn.Module, frozen_stats: bool):
    """Freeze (a ``FrozenStats`` class) or release (the plain class) every BatchNorm under
    ``module``; checked before anything changes, so an unsupported layer changes nothing."""
    classes = _frozen_classes()
    bns = [m for m in module.modules() if _is_bn(m)]
    if frozen_stats:
        unknown = sorted({type(m).__name__ for m in bns if not bn_stats_frozen(m) and type(m) not in classes})
        if unknown:
            raise TypeError(f"cannot freeze the statistics of {unknown}: supported BatchNorm classes are "
                            f"{sorted(c.__name__ for c in classes)}; use bn='update'")
    for m in bns:
        if frozen_stats and not bn_stats_frozen(m):
            m.__class__ = classes[type(m)]
            nn.Module.train(m, False)
        elif not frozen_stats and bn_stats_frozen(m):
            m.__class__ = type(m).__bases__[-1]            # FrozenStatsBatchNorm2d -> BatchNorm2d
            # back to the mode of its parent: the layer follows model.train()/eval() again
            nn.Module.train(m, module.training)


def freeze_bn_statistics(model: nn.Module) -> nn.Module:
    """Keep every BatchNorm layer in ``model`` normalising with its running statistics (as in
    eval mode), while its weights still train if they require gradients. Returns the model.

    The same mechanism as ``freeze(..., bn="frozen")``; ``unfreeze`` releases them. Lesson 12 uses
    it so that DDP gives exactly the one-process result (train-mode BatchNorm would normalise
    with each rank's piece of the batch).
    """
    _set_bn(model, frozen_stats=True)
    return model


BN_CHOICES = ("update", "frozen")
BN_DEFAULT = "update"
"""The course's one BatchNorm choice for frozen layers, and its default. ``"update"``: frozen
weights, running statistics still adapting to the new data (measured better on the course's
species task: the fine-tuning images differ from the pre-training world). ``"frozen"``: the
statistics are frozen too (``FrozenStats``), so a frozen stage computes exactly what it did."""


def _check_bn(bn):
    if bn not in BN_CHOICES:
        raise ValueError(f"bn must be one of {BN_CHOICES}: 'update' freezes the weights only and lets "
                         f"BatchNorm running statistics adapt, 'frozen' keeps the statistics fixed too; got {bn!r}")


def check_depth(model: nn.Module, k, name: str = "k", all_stages=None) -> int:
    """``k`` if it is a whole number of stages this model can freeze, 0 to ``len(stages(model))``;
    else a ValueError naming the argument (``name``: ``frozen_stages`` in a runner), the valid
    range for this model and its stages. Runners call it on their fresh model, before any training."""
    all_stages = stages(model) if all_stages is None else all_stages
    n = len(all_stages)
    if isinstance(k, numbers.Integral) and not isinstance(k, bool) and 0 <= k <= n:
        return int(k)
    listing = ", ".join(f"{i + 1}: {stage}" for i, (stage, _) in enumerate(all_stages))
    raise ValueError(f"{name} must be a whole number from 0 to {n} for this {type(model).__name__} (0 freezes "
                     f"nothing, {n} the whole backbone, so only the head trains); got {k!r}. Its stages, "
                     f"from the input: {listing}")


def freeze_stages(model: nn.Module, k: int, bn: str = BN_DEFAULT) -> nn.Module:
    """Freeze the first ``k`` stages nearest the input; the later stages and the head train.

    ``k`` sets the depth (it is not added to an earlier call): ``freeze_stages(model, 2)`` after
    ``freeze_stages(model, 4)`` leaves exactly two stages frozen. The head is left as it is.

    Args:
        k: 0 (nothing frozen) to ``len(stages(model))`` (the whole backbone; only the head trains).
        bn: "update" (default, ``BN_DEFAULT``): only weights are frozen and BatchNorm running
            statistics keep adapting to the new data; "frozen": BatchNorm layers in frozen stages
            also keep their statistics (``FrozenStats``: eval mode even after ``model.train()``).
    Returns:
        the same model.
    Raises:
        ValueError: ``k`` out of range (the message lists the stages) or an unknown ``bn``.
    """
    _check_bn(bn)
    all_stages = stages(model)
    check_depth(model, k, all_stages=all_stages)
    for i, (_, stage) in enumerate(all_stages):
        frozen = i < k
        stage.requires_grad_(not frozen)
        _set_bn(stage, frozen_stats=frozen and bn == "frozen")
    return model


def _module_names(model):
    return [n for n, _ in model.named_modules() if n]


def _resolve(model, patterns):
    """Modules and parameters matched by names or glob patterns; unknown ones raise.

    A pattern selects the modules it matches and also the parameters it matches: "blocks.0.*"
    matches the sub-modules of ``blocks.0`` and the tensors ``blocks.0`` holds itself (the
    layer-scale ``ls1`` of ResMLP, ``gamma_1`` of BEiT), so every tensor under ``blocks.0`` is
    selected."""
    patterns = name_patterns("patterns", patterns)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    found_modules, found_params = {}, {}
    for pattern in patterns:
        hits = [n for n in modules if n and fnmatch.fnmatchcase(n, pattern)]
        phits = [n for n in params if fnmatch.fnmatchcase(n, pattern)]
        if not hits and not phits:
            names = _module_names(model)
            top = [n for n, _ in model.named_children()]
            close = difflib.get_close_matches(pattern, names, n=6, cutoff=0.5)
            stage_names = [n for n, _ in stages(model)]
            raise ValueError(
                f"no module or parameter matches {pattern!r}. Top-level modules: {top}; stages: "
                f"{stage_names}" + (f"; close matches: {close}" if close else "") +
                f". Use a module path like {names[min(3, len(names) - 1)]!r} or a glob like 'layer4.*'"
                f" (print(model) or [n for n, _ in model.named_modules()] shows all {len(names)}).")
        found_modules.update({n: modules[n] for n in hits})
        found_params.update({n: params[n] for n in phits})
    return found_modules, found_params


def freeze(model: nn.Module, patterns, bn: str = BN_DEFAULT) -> nn.Module:
    """Freeze modules (or parameters) by name or glob pattern, e.g. ``"layer1"`` or ``"blocks.*"``.

    ``bn`` as in ``freeze_stages``. Unknown names raise ValueError listing valid module names.
    """
    if not patterns:                    # [] or "" would freeze nothing, without a word
        raise ValueError(f"freeze(model, {patterns!r}) names nothing to freeze; give a module path or "
                         f"glob such as 'layer1' or ['conv1', 'layer1.*'], or use freeze_stages(model, k) "
                         f"to freeze the k stages nearest the input")
    _check_bn(bn)
    modules, params = _resolve(model, patterns)
    for m in modules.values():
        m.requires_grad_(False)
        _set_bn(m, frozen_stats=bn == "frozen")
    for p in params.values():
        p.requires_grad_(False)
    return model


def unfreeze(model: nn.Module, patterns=None) -> nn.Module:
    """Make modules trainable again (all of them when ``patterns`` is None), BatchNorm
    statistics included (they follow ``model.train()`` / ``model.eval()`` again)."""
    if patterns is None:
        modules, params = {"": model}, {}
    else:
        if isinstance(patterns, (list, tuple, set)) and not patterns or patterns == "":
            raise ValueError(f"unfreeze got no names ({patterns!r}), so it would change nothing; pass module "
                             f"names or globs such as 'layer4' or ['layer3', 'fc'], or nothing to unfreeze everything")
        modules, params = _resolve(model, patterns)
    for m in modules.values():
        m.requires_grad_(True)
        _set_bn(m, frozen_stats=False)
    for p in params.values():
        p.requires_grad_(True)
    return model


PARAM_KINDS = ("all", "trainable", "frozen")


def count_params(model: nn.Module, which: str = "all") -> int:
    """How many parameters ``model`` holds (a tensor shared by two modules counts once):
    ``"all"``, ``"trainable"`` (``requires_grad``: what an optimiser changes) or ``"frozen"``."""
    if which not in PARAM_KINDS:
        raise ValueError(f"which must be one of {list(PARAM_KINDS)}; got {which!r}")
    return sum(p.numel() for p in model.parameters()
               if which == "all" or p.requires_grad == (which == "trainable"))


def trainable_params(model: nn.Module) -> int:
    """Number of parameters that an optimiser will change (``requires_grad``)."""
    return count_params(model, "trainable")


def frozen_params(model: nn.Module) -> int:
    """Number of parameters that stay fixed."""
    return count_params(model, "frozen")


def stage_table(model: nn.Module) -> pd.DataFrame:
    """One row per stage and one for the head: trainable and total parameters, and whether its
    BatchNorm statistics are frozen. The columns sum to the model's totals.

    Columns: stage, trainable, total, frozen (share of the stage's parameters), bn_stats.
    """
    rows = []

    def row(name, module_params, bns):
        total = sum(p.numel() for p in module_params)
        trainable = sum(p.numel() for p in module_params if p.requires_grad)
        bn_state = ("-" if not bns else "frozen" if all(bn_stats_frozen(b) for b in bns)
                    else "updating" if not any(bn_stats_frozen(b) for b in bns) else "mixed")
        rows.append({"stage": name, "trainable": trainable, "total": total,
                     "frozen": 1 - trainable / total if total else 0.0, "bn_stats": bn_state})

    seen = set()
    for name, stage in stages(model):
        ps = list(stage.parameters())
        seen.update(id(p) for p in ps)
        row(name, ps, [m for m in stage.modules() if _is_bn(m)])
    head = [p for p in model.parameters() if id(p) not in seen]
    head_ids = {id(p) for p in head}
    head_bns = [m for m in model.modules() if _is_bn(m)
                and any(id(p) in head_ids for p in m.parameters(recurse=False))]
    row("head", head, head_bns)
    return pd.DataFrame(rows).set_index("stage")


# ---------------------------------------------------------------------------------------------
# New layers: heads and blocks
# ---------------------------------------------------------------------------------------------

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "softplus": nn.Softplus, "sigmoid": nn.Sigmoid,
               "tanh": nn.Tanh, "identity": nn.Identity}


def _activation(spec):
    if spec is None or isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str) and spec.lower() in ACTIVATIONS:
        return ACTIVATIONS[spec.lower()]()
    if isinstance(spec, type) and issubclass(spec, nn.Module):
        return spec()
    raise ValueError(f"activation must be None, an nn.Module or one of {sorted(ACTIVATIONS)}; got {spec!r}")


def _set_submodule(model, path, module):
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, module)


def _classifier_paths(model) -> list[tuple[str, nn.Module]]:
    """[(path, module)] of the model's classifier layers: what timm's ``get_classifier()`` names
    (both heads of a distilled model), else the model's last ``nn.Linear``."""
    classifiers = _classifiers(model)
    found = [next(((n, m) for n, m in model.named_modules() if m is c and n), None) for c in classifiers]
    if classifiers and all(found):
        return found
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("cannot find the model's head: it has no get_classifier() and no nn.Linear")
    return [linears[-1]]


def heads(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``[(path, module)]`` of every head the model has: what timm's ``get_classifier()`` names
    (a distilled DeiT or LeViT has two, ``head`` and ``head_dist``), else its last ``nn.Linear``.
    A helper that touches the head touches each of them."""
    return _classifier_paths(model)


def _is_pointwise(module) -> bool:
    """A 1x1 convolution: a classifier that a model applies to its pooled (B, C, 1, 1) map before
    flattening (DLA's ``fc``), where an ``nn.Linear`` would act on the last axis of size 1."""
    return isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1


def _head_input(model, path, old) -> tuple[int, bool]:
    """(input width, pointwise) of a new head in place of ``old``; pointwise: it must be built of
    1x1 convolutions because the model feeds it a (B, C, 1, 1) map."""
    if isinstance(old, nn.Linear):
        return old.in_features, False
    if _is_pointwise(old):
        return old.in_channels, True
    if hasattr(model, "num_features"):
        return model.num_features, False
    raise ValueError(f"cannot tell the head's input size from {type(old).__name__} at {path!r}: it is "
                     f"neither nn.Linear nor a 1x1 nn.Conv2d, and the model has no num_features")


def replace_head(model: nn.Module, num_outputs: int, hidden: int | None = None, dropout: float = 0.0,
                 activation=None, seed: int | None = None) -> nn.Module:
    """Give the model a new, trainable head with ``num_outputs`` outputs.

    Without ``hidden`` the head is one linear layer (a linear probe's head, via timm's
    ``reset_classifier``); with ``hidden`` it is an MLP: Linear -> GELU -> Dropout -> Linear.
    ``activation`` ("softplus", "sigmoid", an ``nn.Module``...) is applied to the outputs, e.g.
    softplus keeps a count non-negative. ``dropout`` applies before each linear layer.

    Every classifier ``get_classifier()`` names is replaced so: both heads of a distilled model
    (DeiT, LeViT, PiT average them at inference) get the same kind of head. A classifier that is a
    1x1 convolution on the pooled map (DLA) gets 1x1 convolutions in place of the linear layers.

    Shapes: the model then maps (B, 3, H, W) images to (B, num_outputs).
    Returns the same model. Bad arguments raise before the model changes.
    """
    whole_number("num_outputs", num_outputs, meaning="the head's outputs: classes, or 1 for a count")
    if hidden is not None:
        whole_number("hidden", hidden, meaning="the MLP head's hidden width, or None for a linear head")
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), e.g. 0.1, got {dropout!r}")
    _activation(activation)             # raises now for an unknown activation, not half-way
    check_seed(seed, allow_none=True)
    for path, old in _classifier_paths(model):      # every head's input size is known before anything changes
        _head_input(model, path, old)
    with seeded(seed) if seed is not None else contextlib.nullcontext():
        return _build_heads(model, num_outputs, hidden, dropout, activation)


def _build_heads(model, num_outputs, hidden, dropout, activation):
    """Reset the model's classifier(s) to ``num_outputs`` and put a new head in each place, of
    the kind and input width of the classifier ``reset_classifier`` built there (DLA's is a 1x1
    convolution even when an earlier ``replace_head`` left an MLP)."""
    if hasattr(model, "reset_classifier"):
        model.reset_classifier(num_outputs)
    device = next(model.parameters()).device
    for path, clf in _classifier_paths(model):    # reset_classifier may have rebuilt the heads
        in_features, pointwise = _head_input(model, path, clf)
        head = _new_head(in_features, num_outputs, hidden, dropout, activation, pointwise)
        _set_submodule(model, path, head.to(device))
    if hasattr(model, "num_classes"):
        model.num_classes = num_outputs
    return model


def _new_head(in_features, num_outputs, hidden, dropout, activation, pointwise=False):
    """One linear layer, or Linear -> GELU -> Dropout -> Linear with ``hidden`` units, then
    ``activation``; with ``pointwise`` the linear layers are 1x1 convolutions."""
    def linear(n_in, n_out):
        return nn.Conv2d(n_in, n_out, 1) if pointwise else nn.Linear(n_in, n_out)

    layers = OrderedDict()
    if dropout:
        layers["drop1"] = nn.Dropout(dropout)
    if hidden is None:
        layers["fc"] = linear(in_features, num_outputs)
    else:
        layers["fc1"] = linear(in_features, hidden)
        layers["act"] = nn.GELU()
        if dropout:
            layers["drop2"] = nn.Dropout(dropout)
        layers["fc2"] = linear(hidden, num_outputs)
    out_act = _activation(activation)
    if out_act is not None:
        layers["out_act"] = out_act
    return layers["fc"] if list(layers) == ["fc"] else nn.Sequential(layers)


BLOCK_SHARE = 0.1
"""``add_block``'s default block has at most as many parameters as the stage it follows, or this
share of the model's parameters where the stage is smaller (an EfficientNet's last stage is small
beside its 1280-channel output)."""


class ConvBlock(nn.Module):
    """A residual block for (B, C, H, W) feature maps: conv-BN-ReLU-conv-BN plus the input, with
    ``hidden`` channels in between (default ``channels * expansion``).

    The last BatchNorm starts at zero scale, so the block starts as the identity and adding it
    does not change what the pretrained model computes until it trains.
    """

    EXPANSION = 1.0

    def __init__(self, channels: int, expansion: float = EXPANSION, hidden: int | None = None):
        super().__init__()
        hidden = hidden if hidden is not None else max(1, int(channels * expansion))
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.bn2.weight)

    @staticmethod
    def num_params(channels: int, hidden: int) -> int:
        """Its parameter count: two 3x3 convolutions without bias, two BatchNorms."""
        return 18 * channels * hidden + 2 * hidden + 2 * channels

    def forward(self, x):                                   # (B, C, H, W) -> (B, C, H, W)
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class TokenBlock(nn.Module):
    """A residual MLP block on the last axis of its input: (B, T, D) tokens of a vision
    transformer, or channels-last (B, H, W, C) maps (Swin, MambaOut). Zero-initialised output, so
    it starts as the identity."""

    EXPANSION = 2.0

    def __init__(self, dim: int, expansion: float = EXPANSION, hidden: int | None = None):
        super().__init__()
        hidden = hidden if hidden is not None else max(1, int(dim * expansion))
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        nn.init.zeros_(self.fc2.weight), nn.init.zeros_(self.fc2.bias)

    @staticmethod
    def num_params(dim: int, hidden: int) -> int:
        """Its parameter count: a LayerNorm, two Linear layers with biases."""
        return 2 * dim + (dim + 1) * hidden + (hidden + 1) * dim

    def forward(self, x):                                   # (..., D) -> (..., D)
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


class StageWithBlock(nn.Sequential):
    """``stage`` and then ``extra``, in the place of the module ``add_block`` puts a block after.
    Unlike a plain ``nn.Sequential`` it hands every argument the model calls the module with on
    to ``stage`` (BEiT's blocks get a shared relative position bias by keyword), and what it lacks
    itself it finds on ``stage``, so model code that reads the module's parts still works (BEiT's
    ``set_input_size`` reads ``blocks[i].attn``)."""

    def forward(self, *args, **kwargs):
        return self.extra(self.stage(*args, **kwargs))

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "stage" or "stage" not in self.__dict__.get("_modules", {}):
                raise                               # half-built (copying, unpickling): nothing to ask
            return getattr(self._modules["stage"], name)


def _probe_sizes(model) -> list[tuple[int, int]]:
    """Image sizes to run the model at, the likeliest first: the size its patch embedding or stem
    was built for (ViT, Swin, MLP-Mixer take no other), 64x64 (cheap, and any convolutional net
    takes it), then its pretrained_cfg's input size (a model with parts of a fixed size and no
    img_size attribute, such as LeViT's attention biases)."""
    owners = (getattr(model, "patch_embed", None), getattr(model, "stem", None), model)
    candidates = [getattr(owner, "img_size", None) for owner in owners] + [64]
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    input_size = cfg.get("input_size") if isinstance(cfg, dict) else getattr(cfg, "input_size", None)
    if input_size:
        candidates.append(tuple(input_size[-2:]))
    sizes = []
    for size in candidates:
        size = (size, size) if isinstance(size, numbers.Integral) else size
        if isinstance(size, (tuple, list)) and len(size) == 2 and tuple(size) not in sizes:
            sizes.append(tuple(int(v) for v in size))
    return sizes


def _stage_outputs(model, paths) -> dict:
    """{path: what the module returned} for the modules at ``paths`` that ran when the model ran
    on a blank image (eval mode, no gradients), in the order they finished, at the first of
    ``_probe_sizes`` the model accepts."""
    seen, errors = {}, []

    def remember(path):
        def hook(_module, _inputs, output):
            seen.pop(path, None)                # a module that runs twice counts where it ran last
            seen[path] = output
        return hook

    handles = [model.get_submodule(path).register_forward_hook(remember(path)) for path in paths]
    p = next(model.parameters())
    was = model.training
    model.eval()
    try:
        for size in _probe_sizes(model):
            seen.clear()
            try:
                with torch.no_grad():
                    model(torch.zeros(1, 3, *size, device=p.device, dtype=p.dtype))
                break
            except Exception as err:                # a size this model does not take: the next one
                errors.append(f"{size[0]}x{size[1]}: {type(err).__name__}: {err}")
        else:
            raise ValueError(f"add_block runs {type(model).__name__} once on a blank image to see what its "
                             f"last stage returns, but no image size worked: {'; '.join(errors)}")
    finally:
        for handle in handles:
            handle.remove()
        model.train(was)
    return seen


def _block_place(model, outputs: dict) -> str:
    """The module to put the block after: of the last stage's modules, the last to run whose
    output holds the model's ``num_features`` features, else the last to run. (GhostNet groups
    its conv_head with the last stage, but runs it after pooling, as part of the head.)"""
    if not outputs:
        raise ValueError(f"{type(model).__name__}: no module of its last stage ran in the model's forward "
                         f"pass, so add_block cannot put a block after one")
    width = getattr(model, "num_features", None)
    fits = [path for path, out in outputs.items()
            if torch.is_tensor(out) and out.dim() >= 2 and width in (out.shape[1], out.shape[-1])]
    return (fits or list(outputs))[-1]


def _layout(model, path, output) -> tuple[str, int]:
    """How the stage's ``output`` holds its features, and their number: ("maps", C) for
    (B, C, H, W); ("last", C) for channels-last (B, H, W, C) maps (timm's output_fmt "NHWC", as
    Swin and MambaOut, or only the last axis has the model's num_features); ("tokens", D) for
    (B, T, D) tokens or (B, D) features. Anything but one tensor is refused, naming the model."""
    if not torch.is_tensor(output):
        what = (f"a {type(output).__name__} of {len(output)} tensors" if isinstance(output, (list, tuple))
                else f"a {type(output).__name__}")
        raise ValueError(
            f"add_block does not support {type(model).__name__}: its last stage's module {path!r} returns "
            f"{what}, not one tensor (a multi-resolution net such as HRNet returns one feature map per "
            f"resolution), and add_block puts its block after a stage that returns one tensor of feature "
            f"maps or tokens. replace_head(model, n, hidden=...) adds trainable layers on the model's "
            f"fused features instead.")
    if output.dim() != 4:
        return "tokens", output.shape[-1]
    width = getattr(model, "num_features", None)
    channels_last = getattr(model, "output_fmt", None) == "NHWC" or (
        output.shape[-1] == width and output.shape[1] != width)
    return ("last", output.shape[-1]) if channels_last else ("maps", output.shape[1])


def _block_width(block_class, channels, expansion, model, stage) -> int:
    """The block's hidden width: ``expansion`` times its channels when given; by default the
    class's own expansion, narrowed so the block has at most max(the stage's parameters,
    ``BLOCK_SHARE`` of the model's)."""
    if expansion is not None:
        return max(1, int(channels * expansion))
    widest = max(1, int(channels * block_class.EXPANSION))
    budget = max(sum(p.numel() for p in stage.parameters()),
                 BLOCK_SHARE * sum(p.numel() for p in model.parameters()))
    fixed = block_class.num_params(channels, 0)
    per_unit = block_class.num_params(channels, 1) - fixed
    return max(1, min(widest, int((budget - fixed) // per_unit)))


def add_block(model: nn.Module, expansion: float | None = None, seed: int | None = None) -> nn.Module:
    """Add a trainable residual block after the backbone's last stage (before the head).

    The last module ``S`` of the last stage to run with the backbone's features as its output
    (``layer4`` in a ResNet, ``bn2`` after an EfficientNet's ``conv_head``, the last block of a
    BEiT; not GhostNet's ``conv_head``, which runs after pooling) becomes
    ``StageWithBlock(stage=S, extra=block)`` in place, so the block belongs to the last stage in
    ``stages()`` and runs wherever the model ran ``S``, given what ``S`` was given. The block fits
    the stage's output: ``ConvBlock`` for (B, C, H, W) feature maps, ``TokenBlock`` for transformer
    tokens (B, T, D) and for channels-last (B, H, W, C) maps (Swin, MambaOut). It starts as the
    identity, so the model's outputs are unchanged until it trains.

    Its size: ``expansion`` sets its hidden width as a multiple of its channels. By default (None)
    that is 1 for ``ConvBlock`` and 2 for ``TokenBlock``, narrowed where needed so that the block
    has no more parameters than the last stage, or than ``BLOCK_SHARE`` of the model where the
    stage is smaller: a wide output after a small stage (EfficientNet, MobileNet) gets a thin block.

    To see what the stage returns, the model runs once on a blank image: at the size its patch
    embedding or stem was built for, else 64x64, else its pretrained_cfg's input size.

    Returns the same model. The new block's parameters are trainable. Bad arguments, and a model
    whose last stage returns several tensors (HRNet: one map per resolution), raise before the
    model changes.
    """
    if expansion is not None and (isinstance(expansion, bool) or not isinstance(expansion, numbers.Real)
                                  or not math.isfinite(expansion) or expansion <= 0):
        raise ValueError(f"expansion must be None (the default width) or a number > 0, the block's "
                         f"hidden width as a multiple of its channels (e.g. 1.0 or 2.0), got {expansion!r}")
    check_seed(seed, allow_none=True)
    name, last = stages(model)[-1]
    if not last.part_names:
        raise ValueError(f"the last stage {name!r} holds no module to add a block after")
    added = [n for n, m in model.named_modules() if isinstance(m, StageWithBlock)]
    if added:
        raise ValueError(f"the model already has an extra block after {added[0]}.stage; a second call would stack "
                         f"another one. Build a fresh model to change the block (e.g. build_model(head='block')).")
    outputs = _stage_outputs(model, last.part_names)
    path = _block_place(model, outputs)
    old = model.get_submodule(path)
    layout, channels = _layout(model, path, outputs[path])
    block_class = ConvBlock if layout == "maps" else TokenBlock
    hidden = _block_width(block_class, channels, expansion, model, last)
    with seeded(seed) if seed is not None else contextlib.nullcontext():
        block = block_class(channels, hidden=hidden)
    device = next(itertools.chain(old.parameters(), model.parameters())).device
    _set_submodule(model, path, StageWithBlock(OrderedDict(stage=old, extra=block.to(device))))
    return model


# ---------------------------------------------------------------------------------------------
# Layer-wise learning rates
# ---------------------------------------------------------------------------------------------

def layerwise_lr_groups(model: nn.Module, lr: float, decay: float = 0.5) -> list[dict]:
    """Optimiser parameter groups with smaller learning rates nearer the input.

    The head gets ``lr``, the last stage ``lr * decay``, the one before ``lr * decay**2``, and so
    on down to the stem. Frozen parameters are left out. Pass the result to
    ``train(model, ..., optimiser=Optimiser(lr, param_groups=groups))``.

    Returns:
        a list of dicts ``{"params", "lr", "name"}``, stem first.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1]; got {decay}")
    all_stages = stages(model)
    n = len(all_stages)
    groups = []
    for i, (name, stage) in enumerate(all_stages):
        params = [p for p in stage.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": lr * decay ** (n - i), "name": name})
    head = [p for p in _head_params(model) if p.requires_grad]
    if head:
        groups.append({"params": head, "lr": lr, "name": "head"})
    return groups
