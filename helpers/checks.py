"""Checks at the boundary: arguments validated before anything changes, with errors that teach.

- ``keywords_checked``: a misspelled keyword argument (``frozen_stage=2``) raises a TypeError that
  names the closest valid ones, instead of Python's bare "unexpected keyword argument".
- ``whole_number``, ``check_seed``, ``one_of``: an argument's name, what was given and what is valid.
"""
from __future__ import annotations

import difflib
import functools
import inspect
import numbers


def keywords_checked(fn):
    """Decorate ``fn`` so that an unknown keyword argument names the closest valid ones."""
    signature = inspect.signature(fn)
    names = [p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "cls")]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            hints = []
            for k in unknown:
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
