"""Checks at the boundary: arguments validated before anything changes, with errors that teach.

- ``keywords_checked``: a misspelled keyword argument (``frozen_stage=2``) raises a TypeError that
  names the closest valid ones, instead of Python's bare "unexpected keyword argument".
- ``whole_number``, ``one_of``: an argument's name, what was given and what is valid.
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


def whole_number(name: str, value, minimum: int = 1, allow_none: bool = False):
    """``value`` if it is an int of at least ``minimum`` (None too, with ``allow_none``), else a
    ValueError naming ``name``."""
    if value is None and allow_none:
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = int(value)                    # numpy and torch integers too
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be a whole number of at least {minimum}; got {value!r}")
    return value


def one_of(name: str, value, choices):
    """``value`` if it is among ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value
