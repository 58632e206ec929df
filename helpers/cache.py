"""The data folder and the checkpoint cache.

Checkpoints are safetensors files (tensors only: loading one never executes code), named
``<name>-<key>.safetensors`` where ``key`` is a hash of the config that made them. A config
change therefore means a new key: the old file is *stale* and the model is rebuilt, with a
message. Files are written to a temporary name and renamed, so an interrupted save never
leaves half a checkpoint; the temporary files of a save that was killed are cleaned up by the next
write in that folder. A corrupt file, or one whose tensors do not fit the model, raises
``CheckpointError`` saying what was expected and what was found; ``cached_model`` then builds the
model again, with a message.

``file_lock(path)`` serialises read-modify-write updates of a shared file (the results file, a
run log) between processes.

``$COURSE_DATA`` moves the data folder (the tests point it at a temporary folder).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .checks import keywords_checked

try:
    import fcntl  # POSIX; on Windows the locks below degrade to no locking
except ImportError:                   # pragma: no cover - exercised on Windows only
    fcntl = None

FORMAT = "fine-tuning-course/1"
STALE_TMP_S = 300                     # a temporary file nobody holds and older than this is litter


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt or does not match the model it is loaded into."""


def data_dir() -> Path:
    """The course's data folder: ``$COURSE_DATA``; else ``data/`` in the repository when the package
    runs from a checkout; else (``pip install`` on a hosted notebook or a JupyterHub) the user's
    cache folder, ``$XDG_CACHE_HOME/fine-tuning-course`` or ``~/.cache/fine-tuning-course``."""
    root = os.environ.get("COURSE_DATA")
    repo = Path(__file__).resolve().parent.parent
    if root:
        path = Path(root)
    elif (repo / "pyproject.toml").is_file() and (repo / "notebooks").is_dir():
        path = repo / "data"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
        path = Path(base or Path.home() / ".cache") / "fine-tuning-course"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_fingerprint(*tensors: torch.Tensor) -> str:
    """A short hash of the bytes of ``tensors`` (shape and dtype included): cache keys name the exact
    data a checkpoint was trained on with it (``config_key`` hashes the settings)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)} {t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def config_key(config) -> str:
    """A short, stable hash of a config (a dataclass, or anything JSON can write)."""
    if dataclasses.is_dataclass(config):
        config = {"type": type(config).__name__, **dataclasses.asdict(config)}
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_path(name: str, config) -> Path:
    return data_dir() / "cache" / f"{name}-{config_key(config)}.safetensors"


@contextmanager
def file_lock(path):
    """Hold an exclusive lock on ``path`` (a hidden ``.<name>.lock`` file beside it) inside the block.

    Two processes updating one file (two notebooks recording results, two runs appending to one
    run log) take turns, so neither overwrites the other's update. Uses ``fcntl.flock``; where
    that is missing (Windows) the block runs unlocked.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # released when the file closes
        yield


def _held_by_someone(f) -> bool:
    """Whether another open file description holds an flock on ``f``'s file."""
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    fcntl.flock(f, fcntl.LOCK_UN)
    return False


def clean_stale_temporaries(folder, min_age_s: float = 5.0) -> list[str]:
    """Delete the hidden ``.<name>.*.tmp`` files that killed saves left in ``folder``.

    A temporary file is stale when no live process holds it (every save holds a lock on its
    temporary file while it writes) and it is older than ``min_age_s``; without ``fcntl``,
    when it is older than ``STALE_TMP_S``. Returns the names deleted.
    """
    removed = []
    now = time.time()
    for tmp in Path(folder).glob(".*.tmp"):
        try:
            age = now - tmp.stat().st_mtime
            if age < min_age_s:
                continue                        # just created: its writer may not hold it yet
            if fcntl is None:
                stale = age > STALE_TMP_S
            else:
                with open(tmp, "rb") as f:
                    stale = not _held_by_someone(f)
            if stale:
                tmp.unlink()
                removed.append(tmp.name)
        except FileNotFoundError:
            continue                            # its writer renamed or removed it meanwhile
    return removed


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file onto ``path`` in one step.

    The temporary file (``.<name>.<random>.tmp`` beside ``path``) is locked while it is written,
    so the next write in that folder can tell a killed save's leftovers from a live one's and
    deletes the leftovers.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name such as {path / 'model.safetensors'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "rb") as held:
        if fcntl is not None:
            fcntl.flock(held, fcntl.LOCK_EX)    # "a live process is writing this"
        try:
            write(tmp)
            os.chmod(tmp, 0o644)              # mkstemp makes 0600; caches may be shared (JupyterHub)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@keywords_checked
def save_checkpoint(path, model_or_state, config=None, extra: dict | None = None) -> Path:
    """Save tensors (a model's state_dict, compiled or not) and JSON metadata atomically.

    Under torchrun only rank 0 writes (every rank holds the same weights)."""
    from .distributed import is_main_process
    from .training import unwrap
    if not is_main_process():
        return Path(path)
    state = unwrap(model_or_state).state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": FORMAT, "extra": json.dumps(extra or {}, default=str)}
    if config is not None:
        meta["config"] = json.dumps(dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config,
                                    sort_keys=True, default=str)
        meta["key"] = config_key(config)
    atomic_write(Path(path), lambda tmp: save_file(state, tmp, metadata=meta))
    return Path(path)


@keywords_checked
def read_checkpoint(path, config=None) -> tuple[dict, dict]:
    """Tensors and metadata of a checkpoint file; checks it was made by ``config`` if given."""
    path = Path(path)
    try:
        state = load_file(str(path))
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (expected a safetensors file written by the course; "
            f"reading it failed with: {err}). Delete the file: the course builds it again the next time "
            f"it is needed (functions that load cached models also take rebuild=True).") from err
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by this course: expected format {FORMAT!r}, "
                              f"found {meta.get('format')!r}.")
    if config is not None and meta.get("key") != config_key(config):
        raise CheckpointError(f"{path} was made by another config: expected key {config_key(config)}, "
                              f"found {meta.get('key')} (config {meta.get('config')}).")
    meta = dict(meta)
    meta["extra"] = json.loads(meta.get("extra", "{}"))
    return state, meta


def load_into(model: nn.Module, state: dict, source="checkpoint") -> nn.Module:
    """Load ``state`` into ``model`` strictly, with an error that lists what does not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: model {tuple(own[k].shape)}, file {tuple(state[k].shape)}"
              for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the file: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"not in the model: {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        if shapes:
            parts.append("shapes differ: " + "; ".join(shapes[:5]))
        raise CheckpointError(f"{source} does not match the model ({type(model).__name__}): " + "; ".join(parts))
    model.load_state_dict(state)
    return model


# Seconds each cached model took to build in class mode on this workplace's quiet 2-core x86 CPU
# (2026-12-02, one thread per job, two jobs at a time; README, "Results and timings"): the estimate
# a build announces when it starts. A laptop's 2 cores take about as long. Where one entry name
# holds models of several sizes (``image_pretrained`` is lesson 01's model, and also lesson 00's
# and lesson 10's smaller ones), the fields of the measured config follow the seconds, and another
# config gets no estimate rather than a wrong one.
CLASS_BUILD_SECONDS = {"image_pretrained": (100, {"width": 24, "image_size": 48, "steps": 1200}),
                       "lm_pretrained": (277, {}), "lm_pretrained_once_only": (273, {}),
                       "generator_pretrained": (288, {}), "generator_judge": (31, {}),
                       "image_fractal_pretrained": (99, {})}


def build_estimate(name: str, mode: str | None = None, config=None) -> str:
    """How long building cache entry ``name`` (of ``config``, when given) takes in ``mode``
    (default: the current mode), in words.

    >>> build_estimate("lm_pretrained", "class")
    'about 5 minutes on a 2-core CPU in class mode, measured'
    """
    from .modes import current_mode
    mode = mode or current_mode()
    if mode == "smoke":
        return "seconds in smoke mode"
    if name not in CLASS_BUILD_SECONDS:
        return f"no measured estimate for {name}"
    seconds, measured = CLASS_BUILD_SECONDS[name]
    if config is not None and any(getattr(config, k, v) != v for k, v in measured.items()):
        return f"no measured estimate for this {name} config"
    minutes = max(1, round(seconds / 60))
    class_time = f"about {minutes} minute{'s' if minutes > 1 else ''} on a 2-core CPU in class mode"
    return f"{class_time}, measured" if mode == "class" else f"no measured estimate in {mode} mode ({class_time})"


@keywords_checked
def cached_model(name: str, config, make: callable, build: callable, *, rebuild: bool = False,
                 device="cpu", verbose: bool = True):
    """A model from the cache, or built now and cached.

    Args:
        name: cache entry name, e.g. ``"image_pretrained"``.
        config: the frozen dataclass that fully determines the model; its hash keys the file.
        make: ``make() -> nn.Module`` a fresh, untrained model of the right architecture.
        build: ``build(model) -> dict`` trains ``model`` in place and returns extra metadata
            (metrics, history) to store beside the weights.
        rebuild: ignore any cached file and build again.
    Returns:
        (model, extra): the model on ``device`` and the stored metadata.
    """
    path = checkpoint_path(name, config)
    model = make()
    unusable = None
    if path.exists() and not rebuild:
        try:
            state, meta = read_checkpoint(path, config)
            load_into(model, state, source=str(path))
        except CheckpointError as err:
            unusable = err                     # corrupt, or no longer fits the model: rebuild it
        else:
            if verbose:
                print(f"Loaded the cached {name} from {path.relative_to(data_dir())}.")
            return model.to(device), meta["extra"]
    stale = [p.name for p in path.parent.glob(f"{name}-*.safetensors") if p != path] \
        if path.parent.exists() else []
    if unusable is not None:
        print(f"The cached {name} cannot be used, so it is built again: {unusable}")
    if verbose:
        why = (f"found only checkpoints of other configs ({', '.join(stale)})" if stale
               else "none is cached yet")
        if unusable is not None:
            why = "the cached file is unusable"
        print(f"Building {name}: {why if not rebuild else 'rebuild requested'}. This runs once "
              f"({build_estimate(name, config=config)}; `make prepare` builds every checkpoint in advance); "
              f"later calls load {path.name}.")
    extra = build(model)
    if getattr(extra, "get", lambda k: False)("interrupted"):
        # not cached; the returned extra says so, and the lesson passes it on (Lesson.record(interrupted=))
        print(f"Training was interrupted, so {name} is not cached.")
        return model.to(device), extra
    save_checkpoint(path, model, config, extra)
    return model.to(device), extra
