"""Bad input at the boundary: each error names the argument, what was given and what is valid,
and a call that fails leaves the model exactly as it was (structure, requires_grad, weights)."""
import codecs
import pickle
import warnings

import pytest
import timm
import torch
import torch.nn as nn
from PIL import Image

from helpers.cache import save_checkpoint
from helpers.lora import (
    AdapterFileError,
    add_lora,
    bitfit,
    load_adapter,
    lora_layers,
    lora_parameters,
    merge_lora,
    prepare_peft,
    save_adapter,
    train_only_lora,
    unmerge_lora,
)
from helpers.own_data import DataError, load_cifar10, load_image, load_image_folder, load_photo_counts
from helpers.results import Lesson, RunLog, record_results, results_path
from helpers.surgery import add_block, freeze, replace_head


def tiny_resnet(width=8, seed=0):
    torch.manual_seed(seed)
    return timm.create_model("resnet18", pretrained=False, num_classes=5,
                             channels=(width, 2 * width, 4 * width, 8 * width), stem_width=width).eval()


def fingerprint(model):
    """Everything a failed call must leave as it was."""
    return {"repr": str(model),
            "types": [(n, type(m).__name__) for n, m in model.named_modules()],
            "grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "training": [m.training for m in model.modules()],
            "state": {k: v.clone() for k, v in model.state_dict().items()}}


def assert_unchanged(model, before):
    after = fingerprint(model)
    for key in ("repr", "types", "grad", "training"):
        assert after[key] == before[key], f"the failed call changed the model's {key}"
    assert after["state"].keys() == before["state"].keys()
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items()), "weights changed"


def fails_cleanly(model, call, error, *words):
    """``call()`` raises ``error`` whose message holds every one of ``words``; model unchanged."""
    before = fingerprint(model)
    with pytest.raises(error) as err:
        call()
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"
    assert_unchanged(model, before)
    return str(err.value)


# ---------------------------------------------------------------------------------------------
# Sizes and types: replace_head, add_block, freeze
# ---------------------------------------------------------------------------------------------

BAD_WHOLE = [0, -1, -5, 2.5, 3.0, True, False, "3", None]


@pytest.mark.parametrize("value", BAD_WHOLE)
def test_replace_head_rejects_bad_output_counts(value):
    model = tiny_resnet()
    fails_cleanly(model, lambda: replace_head(model, value), (ValueError, TypeError), "num_outputs", repr(value))


@pytest.mark.parametrize("kwargs, word", [
    (dict(hidden=0), "hidden"), (dict(hidden=-8), "hidden"), (dict(hidden=1.5), "hidden"),
    (dict(hidden=True), "hidden"), (dict(dropout=-0.1), "dropout"), (dict(dropout=1.0), "dropout"),
    (dict(dropout=1.5), "dropout"), (dict(dropout="0.1"), "dropout"), (dict(dropout=True), "dropout"),
    (dict(activation="softmaxx"), "activation"), (dict(activation=3), "activation"),
    (dict(seed=1.5), "seed"), (dict(seed="0"), "seed"),
])
def test_replace_head_rejects_bad_settings_before_changing_the_model(kwargs, word):
    model = tiny_resnet()
    fails_cleanly(model, lambda: replace_head(model, 3, **kwargs), (ValueError, TypeError), word)


@pytest.mark.parametrize("kwargs, word", [
    (dict(expansion=0), "expansion"), (dict(expansion=-1.0), "expansion"),
    (dict(expansion=float("nan")), "expansion"), (dict(expansion=float("inf")), "expansion"),
    (dict(expansion=True), "expansion"), (dict(expansion="2"), "expansion"),
    (dict(seed=0.5), "seed"), (dict(seed="x"), "seed"),
])
def test_add_block_rejects_bad_settings(kwargs, word):
    model = tiny_resnet()
    fails_cleanly(model, lambda: add_block(model, **kwargs), (ValueError, TypeError), word)


@pytest.mark.parametrize("patterns", [[], (), "", None])
def test_freeze_with_nothing_named_is_an_error(patterns):
    model = tiny_resnet()
    fails_cleanly(model, lambda: freeze(model, patterns), ValueError, "freeze_stages")


# ---------------------------------------------------------------------------------------------
# add_lora: every argument checked before a layer is wrapped
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rank", [0, -1, 2.5, 4.0, True, False, "4", None, float("nan")])
def test_add_lora_bad_rank_wraps_nothing(rank):
    model = tiny_resnet()
    fails_cleanly(model, lambda: add_lora(model, "layer4", rank=rank), ValueError, "rank", repr(rank))


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), float("inf"), True, "8"])
def test_add_lora_bad_alpha_wraps_nothing(alpha):
    model = tiny_resnet()
    fails_cleanly(model, lambda: add_lora(model, "layer4", rank=2, alpha=alpha), ValueError, "alpha")


@pytest.mark.parametrize("targets, error", [
    ([], ValueError), ("", TypeError), (3, TypeError), (None, TypeError), (["layer4", None], TypeError),
    ("layer9", ValueError), (["layer4", "layer9.conv1"], ValueError),   # the good first one is not wrapped
])
def test_add_lora_bad_targets_wrap_nothing(targets, error):
    model = tiny_resnet()
    fails_cleanly(model, lambda: add_lora(model, targets, rank=2), error, "target")


@pytest.mark.parametrize("kwargs", [dict(name=""), dict(name=None), dict(name=3), dict(seed=1.5),
                                    dict(seed="0")])
def test_add_lora_bad_name_or_seed_wraps_nothing(kwargs):
    model = tiny_resnet()
    fails_cleanly(model, lambda: add_lora(model, "layer4", rank=2, **kwargs), (ValueError, TypeError),
                  next(iter(kwargs)))


@pytest.mark.parametrize("kwargs", [dict(rank=8), dict(rank=4, alpha=16)])
def test_add_lora_again_with_other_settings_keeps_the_trained_adapter(kwargs):
    model = tiny_resnet()
    add_lora(model, "layer4", rank=4)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].normal_()                      # "trained"
    msg = fails_cleanly(model, lambda: add_lora(model, "layer4", **kwargs), ValueError,
                        "'default'", "already exists", "replace=True", "name=")
    assert "rank 4" in msg
    add_lora(model, "layer4", replace=True, **kwargs)              # deliberately: a fresh adapter
    assert all(torch.count_nonzero(layer.lora_B["default"]) == 0 for layer in lora_layers(model).values())


def test_add_lora_twice_with_the_same_settings_is_harmless_even_merged():
    model = tiny_resnet()
    add_lora(model, "layer4", rank=2)
    merge_lora(model)
    before = fingerprint(model)
    add_lora(model, "layer4", rank=2)
    assert_unchanged(model, before)
    fails_cleanly(model, lambda: add_lora(model, "layer4", rank=2, name="other"), RuntimeError, "unmerge_lora")


# ---------------------------------------------------------------------------------------------
# prepare_peft, train_only_lora, bitfit: requires_grad flags untouched by a failed call
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, word", [
    (dict(method="LoRA"), ValueError, "did you mean 'lora'"),
    (dict(method="lora", head="fcc"), ValueError, "head='fcc'"),
    (dict(method="probe", head="classifier"), ValueError, "head="),
    (dict(method="bitfit", head="nohead"), ValueError, "head="),
    (dict(method="lora", rank=0), ValueError, "rank"),
    (dict(method="lora", rank=2.5), ValueError, "rank"),
    (dict(method="lora", alpha=-1), ValueError, "alpha"),
    (dict(method="lora", targets=["layer4", "layer7"]), ValueError, "layer7"),
    (dict(method="lora", targets=[]), ValueError, "empty"),
    (dict(method="probe", bn="freeze"), ValueError, "bn"),
])
def test_failed_prepare_peft_leaves_every_flag(kwargs, error, word):
    model = tiny_resnet()
    freeze(model, "layer1")                          # some flags already off: they must stay so
    kwargs = {"method": "lora", **kwargs}
    fails_cleanly(model, lambda: prepare_peft(model, kwargs.pop("method"), **kwargs), error, word)


def test_bitfit_without_biases_and_bad_also_change_nothing():
    plain = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False))
    fails_cleanly(plain, lambda: bitfit(plain), ValueError, "no bias")
    fails_cleanly(plain, lambda: prepare_peft(plain, "bitfit", head="1"), ValueError, "no bias")
    model = tiny_resnet()
    fails_cleanly(model, lambda: bitfit(model, also="fcc"), ValueError, "also='fcc'", "'fc'")


def test_train_only_lora_bad_calls_change_nothing():
    model = tiny_resnet()
    fails_cleanly(model, lambda: train_only_lora(model), ValueError, "add_lora")
    add_lora(model, "layer4", rank=2)
    fails_cleanly(model, lambda: train_only_lora(model, name="other"), ValueError, "'other'", "default")
    fails_cleanly(model, lambda: train_only_lora(model, also="fcc"), ValueError, "also='fcc'")


def test_training_a_merged_adapter_says_unmerge():
    model = tiny_resnet()
    add_lora(model, "layer4", rank=2)
    merge_lora(model)
    fails_cleanly(model, lambda: train_only_lora(model, also="fc"), RuntimeError, "unmerge_lora")
    with pytest.warns(UserWarning, match="unmerge_lora"):
        lora_parameters(model)
    with pytest.raises(ValueError, match="no adapter named 'nope'"):
        lora_parameters(model, "nope")
    model.train()                                    # the adapter still trainable from before merging
    with pytest.warns(UserWarning, match="unmerge_lora"):
        model(torch.randn(2, 3, 32, 32)).sum().backward()
    unmerge_lora(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_only_lora(model, also="fc")
        model(torch.randn(2, 3, 32, 32)).sum().backward()


# ---------------------------------------------------------------------------------------------
# load_adapter given the wrong file: a clear error naming it, and the model as it was
# ---------------------------------------------------------------------------------------------

def saved_adapter(tmp_path, width=8, **kwargs):
    source = tiny_resnet(width)
    add_lora(source, ["layer3", "layer4"], rank=2)
    return save_adapter(source, tmp_path / f"adapter-w{width}.safetensors", **kwargs), source


def bad_adapter_file(kind, tmp_path):
    path = tmp_path / f"{kind}.bin"
    if kind == "missing":
        return path
    if kind == "folder":
        path.mkdir()
    elif kind == "checkpoint":
        save_checkpoint(path, tiny_resnet())
    elif kind == "torch_save":
        torch.save(tiny_resnet().state_dict(), path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"lora_A": [1, 2]}))
    elif kind == "random":
        path.write_bytes(torch.randint(0, 256, (3000,), generator=torch.Generator().manual_seed(0))
                         .to(torch.uint8).numpy().tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("layer4.0.conv1: rank 2\n")
    elif kind == "truncated":
        good, _ = saved_adapter(tmp_path)
        path.write_bytes(good.read_bytes()[:-50])
    elif kind == "no_metadata":
        from safetensors.torch import save_file
        save_file({"layer4.0.conv1.lora_A": torch.zeros(2, 32, 3, 3)}, str(path))
    elif kind == "bad_layers_metadata":
        from safetensors.torch import save_file
        save_file({"x": torch.zeros(1)}, str(path), metadata={"adapter": "a", "layers": "{not json"})
    elif kind == "other_width":                      # same layer names, other shapes
        return saved_adapter(tmp_path, width=4)[0]
    elif kind == "other_model":                      # layers this model lacks
        gpt_like = nn.Sequential(nn.Linear(3, 3))
        add_lora(gpt_like, "0", rank=2)
        return save_adapter(gpt_like, path)
    elif kind in ("extra_key", "missing_key", "bad_head_shape"):
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file
        good, _ = saved_adapter(tmp_path, extra="fc")
        state = load_file(str(good))
        with safe_open(str(good), framework="pt") as f:
            meta = f.metadata()
        if kind == "extra_key":
            state["extra.classifier.weight"] = torch.zeros(5, 64)
        elif kind == "missing_key":
            state.pop("layer4.1.conv2.lora_B")
        else:
            state["extra.fc.weight"] = torch.zeros(7, 64)
        save_file(state, str(path), metadata=meta)
    return path


@pytest.mark.parametrize("kind, error, words", [
    ("missing", FileNotFoundError, ["no such adapter file"]),
    ("folder", AdapterFileError, ["folder"]),
    ("checkpoint", AdapterFileError, ["whole-model checkpoint"]),
    ("torch_save", AdapterFileError, ["torch.save"]),
    ("pickle", AdapterFileError, ["pickle"]),
    ("random", AdapterFileError, ["not a safetensors file"]),
    ("empty", AdapterFileError, ["not an adapter file"]),
    ("text", AdapterFileError, ["not an adapter file"]),
    ("truncated", AdapterFileError, ["not an adapter file"]),
    ("no_metadata", AdapterFileError, ["without an adapter's metadata"]),
    ("bad_layers_metadata", AdapterFileError, ["rank"]),
    ("other_width", AdapterFileError, ["does not fit", "shape"]),
    ("other_model", AdapterFileError, ["lacks"]),
    ("extra_key", AdapterFileError, ["extra.classifier.weight"]),
    ("missing_key", AdapterFileError, ["layer4.1.conv2.lora_B is missing"]),
    ("bad_head_shape", AdapterFileError, ["extra.fc.weight", "(7, 64)", "(5, 64)"]),
])
def test_load_adapter_wrong_file_names_it_and_changes_nothing(kind, error, words, tmp_path):
    path = bad_adapter_file(kind, tmp_path)
    model = tiny_resnet()
    msg = fails_cleanly(model, lambda: load_adapter(model, path), error, str(path), *words)
    if kind not in ("other_width", "other_model", "extra_key", "missing_key", "bad_head_shape"):
        assert "save_adapter" in msg                 # says what an adapter file is


def test_load_adapter_into_a_model_with_its_own_adapter_changes_nothing_when_it_fails(tmp_path):
    path = bad_adapter_file("other_width", tmp_path)
    model = tiny_resnet()
    add_lora(model, "layer4", rank=3)
    merge_lora(model)                                # a failed load does not even unmerge
    fails_cleanly(model, lambda: load_adapter(model, path), AdapterFileError, "does not fit")


def test_save_adapter_bad_extra_and_folder_path(tmp_path):
    model = tiny_resnet()
    add_lora(model, "layer4", rank=2)
    with pytest.raises(ValueError, match="extra='head'.*'fc'"):
        save_adapter(model, tmp_path / "a.safetensors", extra="head")
    with pytest.raises(IsADirectoryError, match="folder"):
        save_adapter(model, tmp_path)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------
# Your own data: sizes, folders, files from real tools
# ---------------------------------------------------------------------------------------------

BAD_SIZES = [0, -1, -64, 2.5, 64.0, True, "64", None]


def write_image(path, colour=(200, 30, 30), size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)


def image_folder(root, classes=("crow", "robin"), per_class=2):
    for c in classes:
        for i in range(per_class):
            write_image(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("size", BAD_SIZES)
def test_image_size_is_checked_at_the_boundary(size, tmp_path):
    root = image_folder(tmp_path / "imgs")
    for call in (lambda: load_image_folder(root, size), lambda: load_image(root / "crow" / "0.png", size),
                 lambda: load_photo_counts(tmp_path, image_size=size),
                 lambda: load_cifar10(tmp_path, image_size=size)):
        with pytest.raises(ValueError, match=r"image_size must be a whole number of pixels >= 1.*got "
                                             + __import__("re").escape(repr(size))):
            call()


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_cifar_limit_is_checked(limit, tmp_path):
    with pytest.raises(ValueError, match="limit must be None"):
        load_cifar10(tmp_path, limit=limit)


@pytest.mark.parametrize("junk", ["Thumbs.db", ".DS_Store", "desktop.ini", "._0.png", "ehthumbs.db",
                                  ".picasa.ini", "Icon\r", ".ipynb_checkpoints/0-checkpoint.png",
                                  "0.png:Zone.Identifier"])
def test_junk_files_of_real_tools_are_ignored(junk, tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "crow" / junk).parent.mkdir(parents=True, exist_ok=True)
    (root / "crow" / junk).write_bytes(b"\x00\x01junk")
    (root / ".DS_Store").write_bytes(b"\x00")
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # silently: these are not the learner's files
        x, y, names = load_image_folder(root, 16)
    assert x.shape == (4, 3, 16, 16) and names == ("crow", "robin")


@pytest.mark.parametrize("junk_folder", ["__MACOSX", ".ipynb_checkpoints", "@eaDir"])
def test_junk_folders_at_the_top_are_not_classes(junk_folder, tmp_path):
    root = image_folder(tmp_path / "imgs")
    write_image(root / junk_folder / "._0.png")
    x, y, names = load_image_folder(root, 16)
    assert names == ("crow", "robin")


def test_other_non_images_are_skipped_with_a_warning_naming_them(tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "robin" / "notes.txt").write_text("seen in March")
    (root / "robin" / "more").mkdir()
    with pytest.warns(UserWarning, match=r"notes\.txt"):
        x, y, _ = load_image_folder(root, 16)
    assert len(x) == 4


@pytest.mark.parametrize("contents", [[], ["Thumbs.db"], ["notes.txt"], [".DS_Store", "desktop.ini"]])
def test_empty_class_folder_is_rejected_by_name(contents, tmp_path):
    root = image_folder(tmp_path / "imgs")
    (root / "wren").mkdir()
    for name in contents:
        (root / "wren" / name).write_bytes(b"x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"\['wren'\] hold no images"):
            load_image_folder(root, 16)


@pytest.mark.parametrize("classes, error, word", [
    ("crow", TypeError, "list of class names"),
    (["crow", "crow", "robin"], ValueError, "twice"),
    (["crow", "robin", "wren"], DataError, "no folder for class(es) ['wren']"),
    (["crow"], DataError, "unknown class folder(s) ['robin']"),
    ([1, 2], TypeError, "list of class names"),
])
def test_bad_class_lists(classes, error, word, tmp_path):
    root = image_folder(tmp_path / "imgs")
    with pytest.raises(error) as err:
        load_image_folder(root, 16, classes=classes)
    assert word in str(err.value)


def test_a_file_instead_of_the_folder(tmp_path):
    write_image(tmp_path / "one.png")
    with pytest.raises(DataError, match="is a file"):
        load_image_folder(tmp_path / "one.png", 16)


def counts_folder(tmp_path, n=3):
    for i in range(n):
        write_image(tmp_path / f"p{i}.png")
    return tmp_path


ROWS = "filename,count\r\np0.png,1\r\np1.png,2\r\np2.png,0\r\n"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom",
                                      "semicolon", "tab", "lf-only", "header-spaces"])
def test_counts_csv_from_spreadsheets_is_accepted(encoding, tmp_path):
    folder = counts_folder(tmp_path)
    text = ROWS
    if encoding == "semicolon":
        text, encoding = text.replace(",", ";"), "utf-8-sig"
    elif encoding == "tab":
        text, encoding = text.replace(",", "\t"), "utf-8"
    elif encoding == "lf-only":
        text, encoding = text.replace("\r\n", "\n"), "utf-8"
    elif encoding == "header-spaces":
        text, encoding = text.replace("filename,count", " Filename , Count "), "utf-8-sig"
    if encoding == "utf-16-le-bom":
        data = codecs.BOM_UTF16_LE + text.encode("utf-16-le")
    elif encoding == "utf-16-be-bom":
        data = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    else:
        data = text.encode(encoding)
    (folder / "counts.csv").write_bytes(data)
    x, counts, names = load_photo_counts(folder, image_size=16)
    assert names == ["p0.png", "p1.png", "p2.png"] and counts.tolist() == [1.0, 2.0, 0.0]


@pytest.mark.parametrize("data, words", [
    (ROWS.encode("utf-16-le"), ["UTF-16", "without a byte-order mark", "CSV UTF-8"]),
    ("filename,count\ncafé.png,1\n".encode("cp1252"), ["not UTF-8", "Windows-1252", "CSV UTF-8"]),
    (codecs.BOM_UTF16_LE + b"f\x00i\x00\x00\xd8", ["not UTF-16"]),
])
def test_counts_csv_in_an_unreadable_encoding_names_file_and_encoding(data, words, tmp_path):
    folder = counts_folder(tmp_path)
    (folder / "counts.csv").write_bytes(data)
    with pytest.raises(DataError) as err:
        load_photo_counts(folder, image_size=16)
    for word in [str(folder / "counts.csv")] + words:
        assert word in str(err.value)


@pytest.mark.parametrize("csv_name", ["", None, 3])
def test_counts_csv_name_is_checked(csv_name, tmp_path):
    with pytest.raises(TypeError, match="csv_name"):
        load_photo_counts(counts_folder(tmp_path), csv_name=csv_name)


def test_counts_folder_missing(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_photo_counts(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# Results and run logs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("number", [5, "5", "005", "ab", None, 5.0])
def test_lesson_number_is_checked_when_the_lesson_starts(number, data_dir):
    with pytest.raises(ValueError, match="two-digit"):
        Lesson(number)


@pytest.mark.parametrize("kwargs, error, word", [
    (dict(metrics=0.93), TypeError, "metrics must be a dict"),
    (dict(metrics=[("acc", 0.9)]), TypeError, "metrics must be a dict"),
    (dict(wall_s=-1.0), ValueError, "wall_s"),
    (dict(wall_s=float("nan")), ValueError, "wall_s"),
    (dict(wall_s="12"), ValueError, "wall_s"),
    (dict(mode="clas"), ValueError, "mode must be one of"),
    (dict(seed=0.5), TypeError, "seed"),
    (dict(metrics={"model": nn.Linear(1, 1)}), TypeError, "cannot record"),
])
def test_record_results_bad_arguments_write_nothing(kwargs, error, word, data_dir):
    kwargs = {"metrics": {"acc": 0.9}, "wall_s": 1.0, "device": "cpu", **kwargs}
    with pytest.raises(error, match=word):
        record_results("05", kwargs.pop("metrics"), **kwargs)
    assert not results_path().exists()


@pytest.mark.parametrize("name", ["", "  ", "03/freeze", "a\\b", None, 3])
def test_run_log_name_is_a_plain_file_name(name, data_dir):
    with pytest.raises(ValueError, match="plain file name"):
        RunLog(name)


@pytest.mark.parametrize("row, word", [(dict(run=3, acc=0.5), "'run' is the run number"),
                                       (dict(interupted=True), "did you mean interrupted="),
                                       (dict(interrupte=True), "did you mean interrupted="),
                                       (dict(history=object()), "cannot record")])
def test_run_log_rejects_reserved_or_misspelled_columns(row, word, data_dir):
    log = RunLog("demo")
    with pytest.raises(TypeError, match=word):
        log.add(**row)
    assert len(RunLog("demo")) == 0


def test_numbers_without_a_display_survive():
    """A row with numpy and torch scalars cleans to plain JSON numbers (nothing to reject)."""
    import numpy as np
    log = RunLog("numbers", persist=False)
    row = log.add(a=np.float32(0.5), b=torch.tensor(3), c=np.int64(2))
    assert row == {"run": 1, "a": 0.5, "b": 3, "c": 2}


# ---------------------------------------------------------------------------------------------
# Misspelled keywords name the closest valid ones
# ---------------------------------------------------------------------------------------------

def _lora_model():
    model = tiny_resnet()
    add_lora(model, "layer4", rank=2)
    return model


MISSPELLED = [
    ("add_lora", lambda m, p: add_lora(m, "layer4", rnak=4), "rank"),
    ("add_lora", lambda m, p: add_lora(m, "layer4", aplha=8), "alpha"),
    ("add_lora", lambda m, p: add_lora(m, "layer4", target="fc"), "targets"),
    ("add_lora", lambda m, p: add_lora(m, "layer4", replce=True), "replace"),
    ("prepare_peft", lambda m, p: prepare_peft(m, "lora", heads="fc"), "head"),
    ("prepare_peft", lambda m, p: prepare_peft(m, "lora", ranks=4), "rank"),
    ("prepare_peft", lambda m, p: prepare_peft(m, "probe", batchnorm="frozen"), None),
    ("train_only_lora", lambda m, p: train_only_lora(m, als="fc"), "also"),
    ("bitfit", lambda m, p: bitfit(m, head="fc"), None),
    ("save_adapter", lambda m, p: save_adapter(m, p / "a.safetensors", extras="fc"), "extra"),
    ("save_adapter", lambda m, p: save_adapter(m, p / "a.safetensors", norm_stat=True), "norm_stats"),
    ("load_adapter", lambda m, p: load_adapter(m, p / "a.safetensors", nmae="x"), "name"),
]


@pytest.mark.parametrize("fn, call, closest", MISSPELLED, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(MISSPELLED)])
def test_misspelled_keywords_name_the_closest_and_change_nothing(fn, call, closest, tmp_path):
    model = _lora_model()
    msg = fails_cleanly(model, lambda: call(model, tmp_path), TypeError, fn, "valid ones")
    if closest:
        suggestions = msg.split("did you mean", 1)[1].split("?")[0]
        assert f"'{closest}'" in suggestions, msg


@pytest.mark.parametrize("call, closest", [
    (lambda p: load_image_folder(p, 16, class_names=["a"]), "classes"),
    (lambda p: load_image_folder(p, imagesize=16), "image_size"),
    (lambda p: load_photo_counts(p, csv="counts.csv"), "csv_name"),
    (lambda p: load_cifar10(p, limt=10), "limit"),
    (lambda p: record_results("05", {}, wall=1.0), "wall_s"),
    (lambda p: record_results("05", {}, wall_s=1.0, interupted=True), "interrupted"),
])
def test_misspelled_keywords_in_data_and_results_calls(call, closest, tmp_path, data_dir):
    with pytest.raises(TypeError, match=f"did you mean '{closest}'"):
        call(tmp_path)


def test_advice_works_from_the_call_made():
    """prepare_peft has no replace=: its message must not advise it."""
    model = tiny_resnet()
    prepare_peft(model, "lora", rank=2, targets="layer4")
    msg = fails_cleanly(model, lambda: prepare_peft(model, "lora", rank=8, targets="layer4"), ValueError,
                        "build the model again", "name='r8'")
    assert "replace=True" not in msg
    prepare_peft(model, "lora", rank=8, targets="layer4", name="r8")        # the advice works
    assert "r8" in str(model)
