"""Your own data and real pretrained weights, for learners going further.

- ``load_image_folder(root, image_size)``: a folder with one sub-folder per class
  (``root/robin/*.jpg``, ``root/crow/*.png``, ...), as tensors the lessons 02 to 04 train on.
- ``load_cifar10(root, image_size)``: CIFAR-10 through torchvision, when its files are present
  (nothing is downloaded).
- ``timm_pretrained(arch, num_classes)``: timm's published ImageNet weights, when the machine is
  online; a clear message, not a stack trace, when it is not.

Every problem with your files raises ``DataError`` naming the file (and row, for CSVs) and what
was expected. What operating systems and tools leave in folders (``Thumbs.db``, ``.DS_Store``,
``desktop.ini``, hidden files) is ignored; other files that are not images are ignored with a
warning that names them.

- ``load_photo_counts(folder)``: your own photos and how many birds each shows, from a
  ``counts.csv`` of ``filename,count`` rows (lesson 05's bird counter). Spreadsheet exports
  work: UTF-8 with or without a byte-order mark, UTF-16 with one, commas, semicolons or tabs.
"""
from __future__ import annotations

import codecs
import csv
import io
import math
import numbers
import warnings
from pathlib import Path

import torch

from .checks import keywords_checked

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# Files that operating systems and photo tools drop into folders; never images, never a problem.
JUNK_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db", "ehthumbs_vista.db", "icon\r", ".ds_store",
              "picasa.ini", ".picasa.ini", "zone.identifier", "__macosx", "@eadir"}


class DataError(ValueError):
    """A user's data file or folder is unusable; the message says which one and why."""


class PretrainedUnavailable(RuntimeError):
    """Published pretrained weights could not be loaded (usually: the machine is offline)."""


def _check_image_size(image_size) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, numbers.Integral) or image_size < 1:
        raise ValueError(f"image_size must be a whole number of pixels >= 1, the side of the square "
                         f"images the model sees (e.g. 64), got {image_size!r}")


def _is_junk(path: Path) -> bool:
    """Hidden files (``.DS_Store``, ``._photo.jpg``) and the litter of Windows and photo tools."""
    name = path.name.lower()
    return path.name.startswith(".") or name in JUNK_FILES or name.endswith(":zone.identifier")


@keywords_checked
def load_image(path, image_size: int) -> torch.Tensor:
    """One image file as a (3, S, S) float tensor in [0, 1], resized and centre-cropped."""
    _check_image_size(image_size)
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms import functional as TF

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            t = TF.pil_to_tensor(im)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: not a readable image ({err})") from err
    t = TF.resize(t, image_size, antialias=True)
    t = TF.center_crop(t, [image_size, image_size])
    return t.float() / 255


@keywords_checked
def load_image_folder(root, image_size: int, classes: tuple[str, ...] | None = None):
    """Images from ``root/<class>/<file>``; returns (x (N, 3, S, S), y (N,), class names).

    Args:
        root: the folder; each sub-folder is one class (sorted by name unless ``classes`` given).
        image_size: side of the square tensors (the lesson's resolution).
        classes: the expected class names; a sub-folder not among them is an error, and so is
            a class without a folder (its head output would never see an image).
    Raises:
        DataError: missing folder, a class folder without images, unknown or missing class
            folder, unreadable image (each named). Files that are not images are skipped: the
            usual litter (``Thumbs.db``, ``.DS_Store``, ``desktop.ini``) silently, anything else
            with a warning naming it.
    """
    _check_image_size(image_size)
    if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
        raise TypeError(f"classes must be a list of class names such as ['crow', 'robin'], got {classes!r}")
    if classes is not None and len(set(classes)) != len(classes):
        raise ValueError(f"classes lists a name twice: {list(classes)}")
    root = Path(root)
    if root.is_file():
        raise DataError(f"{root} is a file; give the folder that holds one sub-folder per class")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected one sub-folder per class)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not _is_junk(p))
    if not folders:
        raise DataError(f"{root}: no class sub-folders found (expected e.g. {root}/robin/001.jpg)")
    names = tuple(classes) if classes is not None else tuple(p.name for p in folders)
    unknown = [p.name for p in folders if p.name not in names]
    if unknown:
        raise DataError(f"{root}: unknown class folder(s) {unknown}; valid classes are {list(names)}")
    absent = [c for c in names if c not in {p.name for p in folders}]
    if absent:
        raise DataError(f"{root}: no folder for class(es) {absent}; each class needs a sub-folder of "
                        f"images (found {[p.name for p in folders]})")
    images, skipped = {}, []
    for folder in folders:
        entries = sorted(p for p in folder.iterdir() if not _is_junk(p))
        images[folder] = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [p for p in entries if p not in images[folder]]
    empty = [f.name for f in folders if not images[f]]
    if empty:
        raise DataError(f"{root}: the class folder(s) {empty} hold no images (expected files ending "
                        f"in {', '.join(IMAGE_SUFFIXES)}); add images or remove the folder")
    if skipped:
        shown = ", ".join(str(p.relative_to(root)) for p in skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(f"{root}: skipped {len(skipped)} entries that are not images ({shown}); "
                      f"images end in {', '.join(IMAGE_SUFFIXES)}", stacklevel=2)
    xs, ys = [], []
    for folder in folders:
        for f in images[folder]:
            xs.append(load_image(f, image_size))
            ys.append(names.index(folder.name))
    return torch.stack(xs), torch.tensor(ys), names


def _read_csv_text(table: Path) -> str:
    """The text of a CSV file as spreadsheets save it: UTF-8 (with or without a byte-order mark)
    or UTF-16 with one. Anything else raises DataError naming the file and the encoding."""
    raw = table.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"                     # the BOM says which byte order
    elif b"\x00" in raw[:200]:
        raise DataError(f"{table}: looks like UTF-16 text without a byte-order mark, which cannot be "
                        f"read reliably; save it again as 'CSV UTF-8' (comma delimited)")
    else:
        encoding = "utf-8-sig"                  # also reads plain UTF-8
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise DataError(f"{table}: not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text (byte "
                        f"{raw[err.start:err.start + 1]!r} at position {err.start}); it was probably saved "
                        f"in an older encoding such as Windows-1252. Save it again as 'CSV UTF-8'.") from None


def _delimiter(header_line: str) -> str:
    """Comma, or the semicolon or tab that European spreadsheets and TSV exports use instead."""
    for sep in (",", ";", "\t"):
        cells = [c.strip().lower() for c in header_line.split(sep)]
        if cells[:2] == ["filename", "count"]:
            return sep
    return ","


@keywords_checked
def load_photo_counts(folder, csv_name: str = "counts.csv", image_size: int = 64):
    """Load your own photos and their bird counts.

    ``folder`` holds the images and a CSV file with a header ``filename,count`` and one row per
    image: the file name relative to the folder and a whole, non-negative number of birds.

    Returns:
        (images (N, 3, S, S) in [0, 1], counts (N,) float32, file names) with S = ``image_size``.
    Raises:
        DataError naming the CSV file and row (its line number, the header is line 1) for:
        a missing CSV or header, a missing image file, an image that cannot be read, a count that
        is negative or not a whole number, or a file listed twice.
    """
    _check_image_size(image_size)
    if not isinstance(csv_name, str) or not csv_name:
        raise TypeError(f"csv_name must be the CSV file's name, such as 'counts.csv', got {csv_name!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (expected a folder holding your photos and {csv_name})")
    table = folder / csv_name
    if not table.is_file():
        raise DataError(f"{table}: no counts file; make one with a header 'filename,count' "
                              f"and one row per image, e.g. 'garden.jpg,3'")
    images, counts, names, first_row = [], [], [], {}
    text = _read_csv_text(table)
    first_line = text.split("\n", 1)[0]
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first_line)))
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["filename", "count"]:
        raise DataError(f"{table}, row 1: the header must be 'filename,count'; found {rows[0] if rows else 'an empty file'}")
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue                                   # blank lines are harmless
        where = f"{table}, row {line}"
        if len(row) < 2:
            raise DataError(f"{where}: expected 'filename,count', found {','.join(row)!r}")
        name, raw = row[0].strip(), row[1].strip()
        if name in first_row:
            raise DataError(f"{where}: {name!r} is listed twice (first in row {first_row[name]})")
        first_row[name] = line
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"{where}: the count of {name!r} is {raw!r}, not a number") from None
        if not math.isfinite(value) or value != int(value):
            raise DataError(f"{where}: the count of {name!r} is {raw!r}; counts are whole numbers")
        if value < 0:
            raise DataError(f"{where}: the count of {name!r} is {raw!r}; counts cannot be negative")
        path = folder / name
        if not path.is_file():
            raise DataError(f"{where}: image file {path} does not exist")
        try:
            images.append(load_image(path, image_size))
        except DataError as err:
            raise DataError(f"{where}: cannot read image {path} ({err.__cause__})") from None
        counts.append(value)
        names.append(name)
    if not names:
        raise DataError(f"{table}: no rows after the header; add one 'filename,count' row per image")
    return torch.stack(images), torch.tensor(counts, dtype=torch.float32), names


@keywords_checked
def load_cifar10(root, image_size: int = 32, train: bool = True, limit: int | None = None):
    """CIFAR-10 from torchvision's files under ``root`` (never downloaded here).

    Returns (x (N, 3, S, S) in [0, 1], y (N,), class names).
    """
    import torch.nn.functional as F
    from torchvision.datasets import CIFAR10

    _check_image_size(image_size)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise ValueError(f"limit must be None (every image) or a whole number >= 1 of images to keep, "
                         f"got {limit!r}")
    try:
        ds = CIFAR10(str(root), train=train, download=False)
    except RuntimeError as err:
        raise DataError(f"{root}: CIFAR-10 files not found ({err}). Put the extracted "
                        f"'cifar-10-batches-py' folder there; the course never downloads it.") from err
    data = torch.from_numpy(ds.data[:limit]).permute(0, 3, 1, 2).float() / 255
    if image_size != data.shape[-1]:
        data = F.interpolate(data, size=(image_size, image_size), mode="bilinear", antialias=True)
    return data, torch.tensor(ds.targets[:limit]), tuple(ds.classes)


@keywords_checked
def timm_pretrained(arch: str = "resnet18", num_classes: int = 14):
    """timm's published ImageNet weights for ``arch``, with a new ``num_classes`` head.

    Needs the network the first time (timm caches the weights). Offline, it raises
    ``PretrainedUnavailable`` with what to do instead.
    """
    import timm

    if not isinstance(arch, str) or not arch:
        raise TypeError(f"arch must be a timm model name such as 'resnet18', got {arch!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a whole number >= 1 (the outputs of the new head), "
                         f"got {num_classes!r}")
    if arch not in timm.list_pretrained(f"{arch}*") and not any(
            n.split(".")[0] == arch for n in timm.list_pretrained(f"{arch}*")):
        raise PretrainedUnavailable(f"timm publishes no pretrained weights for {arch!r}; "
                                    f"see timm.list_pretrained() for the ones it does")
    try:
        return timm.create_model(arch, pretrained=True, num_classes=num_classes)
    except Exception as err:  # network errors come in many types (OSError, hub errors, timeouts)
        raise PretrainedUnavailable(
            f"could not load timm's pretrained {arch!r} weights ({type(err).__name__}). This needs "
            f"an internet connection the first time. Offline, use the course's own pre-trained model "
            f"(COURSE_PRETRAINED=course, the default).") from None
