"""Checks at the boundary: arguments validated before anything changes, with errors that teach.

- ``keywords_checked``: a misspelled keyword argument (``frozen_stage=2``) raises a TypeError that
  names the closest valid ones, instead of Python's bare "unexpected keyword argument".
- ``whole_number``, ``check_seed``, ``one_of``: an argument's name, what was given and what is valid.
- ``known_name``: a look-up by name (a mode, a metric, a lesson part); an unknown name raises
  ``UnknownNameError`` (a KeyError and a ValueError) listing the valid names and the closest.
- ``name_patterns``: module paths or glob patterns, as one string or a list of them.
- Tensors at the boundary: ``float_images`` (float (N, C, H, W), not 0-255 pixels),
  ``class_labels`` (int64 class indices the head can produce), ``count_targets`` (non-negative
  float counts), ``paired`` (inputs and targets that pair up one to one, never broadcast).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import numbers

import torch


def keywords_checked(fn):
    """Decorate ``fn`` so that an unknown keyword argument names the closest valid ones."""
    signature = inspect.signature(fn)
    names = [p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "cls")]
    # settings grouped in a typed object (a dataclass default such as budget=Budget()): name the group
    grouped = {f.name: (p.name, type(p.default).__name__) for p in signature.parameters.values()
               if dataclasses.is_dataclass(p.default) and not isinstance(p.default, type)
               for f in dataclasses.fields(p.default)}

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            hints = []
            for k in unknown:
                if k in grouped:
                    arg, cls = grouped[k]
                    hints.append(f"{k!r} (it is a field of {arg}: {arg}={cls}({k}=...))")
                    continue
                close = difflib.get_close_matches(k, names, n=3, cutoff=0.5)
                hints.append(f"{k!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
            raise TypeError(f"{fn.__qualname__}() got unknown keyword argument(s) {', '.join(hints)}; "
                            f"valid ones: {', '.join(names)}")
        return fn(*args, **kwargs)
    return wrapper


def whole_number(name: str, value, minimum: int = 1, allow_none: bool = False, meaning: str | None = None):
    """``value`` if it is an int of at least ``minimum`` (None too, with ``allow_none``), else a
    ValueError naming ``name`` (and what it means, if given).

    Example:
        >>> whole_number("steps", 300)
        300
        >>> whole_number("hidden", 0, meaning="the MLP head's hidden width")
        Traceback (most recent call last):
        ...
        ValueError: hidden must be a whole number of at least 1 (the MLP head's hidden width); got 0
    """
    if value is None and allow_none:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)                    # numpy and torch integers too
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}"
                         f"{f' ({meaning})' if meaning else ''}; got {value!r}")
    return value


def check_seed(seed, allow_none: bool = False):
    """``seed`` if it is a whole number (None too, with ``allow_none``: "draw one"), else a
    TypeError: a seed of 0.5 or "0" is a mistake, not a seed."""
    if seed is None and allow_none:
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be {'None or ' if allow_none else ''}a whole number such as 0; got {seed!r}")
    return seed


def one_of(name: str, value, choices):
    """``value`` if it is among ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


class UnknownNameError(KeyError, ValueError):
    """A look-up by a name that does not exist. A KeyError (what a dict look-up raised before) and
    a ValueError (what the course's other argument checks raise), whose message prints plainly."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def known_name(what: str, value, choices):
    """``value`` if it is one of ``choices`` (names), else an ``UnknownNameError`` naming ``what``,
    listing the valid names and suggesting the closest."""
    choices = list(choices)
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    raise UnknownNameError(f"{what} {value!r} is unknown; valid: {', '.join(map(repr, choices))}"
                           + (f" (did you mean {close[0]!r}?)" if close else ""))


def name_patterns(what: str, patterns) -> list[str]:
    """``patterns`` (a module path or glob pattern, or a list of them) as a non-empty list of
    non-empty strings, or a TypeError / ValueError naming ``what``."""
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) and p for p in patterns):
        raise TypeError(f"{what} must be a module path or glob pattern (e.g. 'layer4.*.conv*') or a "
                        f"list of them, got {patterns!r}")
    if not patterns:
        raise ValueError(f"{what} is an empty list, so it selects nothing; name at least one module "
                         f"path or glob pattern, e.g. 'layer4.*.conv*'")
    return list(patterns)


def _tensor(name: str, value, what: str) -> torch.Tensor:
    if not torch.is_tensor(value):
        raise TypeError(f"{name} must be a torch tensor of {what}; got {type(value).__name__} "
                        f"(torch.as_tensor(...) makes one)")
    return value


PIXEL_SCALE_LIMIT = 10.0
"""Float images whose largest value is above this hold 0-255 pixel values, not [0, 1] (images
normalised with ImageNet's mean and spread stay below about 2.7)."""


def _uint8_refused(name: str, x: torch.Tensor) -> None:
    if x.dtype == torch.uint8:
        raise TypeError(f"{name} must be float images in [0, 1]; got uint8 (0-255 pixels): convert them "
                        f"with .float() / 255")


def _pixel_range(name: str, x: torch.Tensor) -> None:
    """Float images (N, C, H, W) holding 0-255 pixel values are refused (one pass over ``x``)."""
    if x.ndim == 4 and x.is_floating_point() and x.numel():
        top = float(x.detach().amax())
        if top > PIXEL_SCALE_LIMIT:
            raise ValueError(f"{name} must be float images in [0, 1]; its largest value is {top:g}, so it "
                             f"holds 0-255 pixels: divide it by 255")


def model_inputs(name: str, x, *, check_range: bool = False) -> torch.Tensor:
    """``x`` if a model may take it: a tensor that is not uint8 pixels. (Other dtypes pass: token
    ids are integers, features need not be images.) With ``check_range``, float images (N, C, H, W)
    holding 0-255 pixel values are refused too (one pass over ``x``)."""
    x = _tensor(name, x, "model inputs")
    _uint8_refused(name, x)
    if check_range:
        _pixel_range(name, x)
    return x


def float_images(name: str, x, *, check_range: bool = False) -> torch.Tensor:
    """``x`` if it is a float tensor of images (N, C, H, W), else an error naming ``name``, what it
    is and how to convert it. With ``check_range`` (one pass over ``x``) float images holding 0-255
    pixel values are refused too; the course's images are float in [0, 1]."""
    x = _tensor(name, x, "images (N, 3, H, W)")
    _uint8_refused(name, x)
    if not x.is_floating_point():
        raise TypeError(f"{name} must be float images in [0, 1]; got {x.dtype}: convert them with "
                        f".float(), scaled to [0, 1]")
    if x.ndim != 4:
        raise ValueError(f"{name} must be images of shape (N, 3, H, W); got shape {tuple(x.shape)}"
                         + (" (one image: add the batch axis with [None])" if x.ndim == 3 else ""))
    if check_range:
        _pixel_range(name, x)
    return x


def class_labels(name: str, y, num_classes: int, *, head: str = "the model's head", unit: str = "outputs",
                 advice: str = "Give the head as many outputs as there are classes (replace_head(model, n)), "
                               "or number the classes from 0") -> torch.Tensor:
    """``y`` if it is an int64 vector of class indices from 0 to ``num_classes - 1`` (what ``head``
    can produce), else an error that says which labels the head supports and which were found."""
    y = _tensor(name, y, "class labels (N,)")
    if y.dtype != torch.int64:
        whole = not y.is_floating_point() or bool((y == y.round()).all())
        raise TypeError(f"{name} must be int64 class indices (N,); got {y.dtype}: "
                        + (f"use {name}.long()" if whole else "give class indices, not scores or probabilities"))
    if y.ndim != 1:
        raise ValueError(f"{name} must be a vector of class indices (N,); got shape {tuple(y.shape)}"
                         + (f" (one-hot rows? {name}.argmax(1) gives the indices)" if y.ndim == 2 else ""))
    bad = y[(y < 0) | (y >= num_classes)]
    if len(bad):
        found = sorted(int(v) for v in bad.unique()[:10])
        raise ValueError(f"{name} holds labels {found} that {head} cannot produce: it has {num_classes} "
                         f"{unit}, so it supports labels 0 to {num_classes - 1} ({len(bad)} of {len(y)} "
                         f"labels are outside). {advice}")
    return y


def count_targets(name: str, y) -> torch.Tensor:
    """``y`` if it is a float vector (N,) of counts >= 0 (what a non-negative count head can
    produce), else an error naming ``name`` and what was found."""
    y = _tensor(name, y, "counts (N,)")
    if not y.is_floating_point():
        raise TypeError(f"{name} must be float counts (N,); got {y.dtype}: use y.float()")
    if y.ndim != 1:
        raise ValueError(f"{name} must be a vector of counts (N,); got shape {tuple(y.shape)}")
    negative = y[y < 0]
    if len(negative):
        raise ValueError(f"{name} holds negative counts ({sorted({float(v) for v in negative.unique()[:5]})}, "
                         f"{len(negative)} of {len(y)}); a count is 0 or more")
    return y


def _rows(value) -> int:
    """How many rows: len(), with a single number (a 0-d tensor) as one."""
    if torch.is_tensor(value) and value.ndim == 0:
        return 1
    return len(value)


def paired(names: tuple[str, str], a, b) -> None:
    """Inputs and targets that pair up: the same number of rows, at least one (no broadcasting
    one label over eight images). ``names`` name the two arguments."""
    n_a, n_b = _rows(a), _rows(b)
    if n_a != n_b or n_a == 0:
        raise ValueError(f"{names[0]} and {names[1]} must pair up one to one; got {n_a} and {n_b} rows"
                         + (" (nothing to measure)" if n_a == n_b == 0 else ""))
