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
from test_timm_wide import make  # the tiny timm models, built offline

from helpers.cache import save_checkpoint
from helpers.checks import UnknownNameError
from helpers.experiments import run_finetune
from helpers.lessons import bird_counter as bc
from helpers.lora import (
    AdapterFileError,
    add_lora,
    bitfit,
    find_targets,
    load_adapter,
    lora_layers,
    lora_parameters,
    merge_lora,
    prepare_peft,
    save_adapter,
    train_only_lora,
    unmerge_lora,
)
from helpers.losses import cross_entropy_loss, distillation_loss, mse_loss, poisson_loss
from helpers.modes import sizes
from helpers.own_data import DataError, load_cifar10, load_image, load_image_folder, load_photo_counts
from helpers.own_tasks import finetune_task
from helpers.plots import confusion_matrix
from helpers.results import Lesson, RunLog, record_results, results_path
from helpers.runner import Adaptation, Budget, Report, Setup
from helpers.stats import best_by
from helpers.surgery import (
    add_block,
    freeze,
    freeze_stages,
    layerwise_lr_groups,
    replace_head,
    stage_table,
    stages,
    unfreeze,
)
from helpers.tasks import ClassificationTask
from helpers.training import Batches, History, accuracy, predict, train


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


# =============================================================================================
# Second pass (issue 29): wrong tensors, wrong labels and wrong names get errors that teach.
# Each class below holds the example and other members of the same class.
# =============================================================================================

def images(n=8, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def labels(n=8, classes=5, seed=0):
    return torch.randint(0, classes, (n,), generator=torch.Generator().manual_seed(seed))


def pixels(x):
    """The same images as 0-255 uint8 pixels, as an image library gives them."""
    return (x * 255).round().to(torch.uint8)


def count_head_model():
    model = tiny_resnet()
    replace_head(model, 1, activation="softplus", seed=0)
    return model


def train_once(model, loss, *tensors):
    return train(model, loss, Batches(*tensors, batch_size=4), steps=1, progress=False, device="cpu")


# ---------------------------------------------------------------------------------------------
# Tensors of the wrong kind: uint8 pixels, 0-255 floats, integer counts, not a tensor at all
# ---------------------------------------------------------------------------------------------

WRONG_KIND = {
    "accuracy-uint8": (lambda m: accuracy(m, pixels(images()), labels()), TypeError, ["uint8", "float", "/ 255"]),
    "predict-uint8": (lambda m: predict(m, pixels(images())), TypeError, ["uint8", "/ 255"]),
    "accuracy-numpy": (lambda m: accuracy(m, images().numpy(), labels()), TypeError, ["torch tensor", "ndarray"]),
    "train-uint8": (lambda m: train_once(m, cross_entropy_loss, pixels(images()), labels()), TypeError,
                    ["images", "uint8", "/ 255"]),
    "train-0-255-floats": (lambda m: train_once(m, cross_entropy_loss, pixels(images()).float(), labels()),
                           ValueError, ["images", "0-255", "divide it by 255"]),
    "fit_counter-uint8": (lambda m: bc.fit_counter(m, pixels(images()), torch.ones(8), budget=Budget(steps=1, batch_size=4),
                                                   lr=1e-3, progress=False), TypeError, ["x", "uint8"]),
    "fit_counter-int-counts": (lambda m: bc.fit_counter(m, images(), torch.ones(8, dtype=torch.int64),
                                                        budget=Budget(steps=1, batch_size=4), lr=1e-3, progress=False),
                               TypeError, ["y", "float counts", "int64", "y.float()"]),
    "train-count-loss-int-counts": (lambda m: train_once(m, poisson_loss, images(), torch.ones(8, dtype=torch.int64)),
                                    TypeError, ["counts", "float"]),
    "saliency-uint8": (lambda m: bc.saliency(m, pixels(images(2))), TypeError, ["x", "uint8"]),
}


@pytest.mark.parametrize("case", WRONG_KIND)
def test_wrong_tensor_kinds_say_what_they_need(case):
    call, error, words = WRONG_KIND[case]
    model = count_head_model() if "count" in case or "saliency" in case else tiny_resnet()
    fails_cleanly(model, lambda: call(model), error, *words)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_task_of_uint8_images_is_refused_by_split(split):
    x, y = images(), labels()
    parts = {f"x_{s}": x for s in ("train", "val", "test")} | {f"y_{s}": y for s in ("train", "val", "test")}
    parts[f"x_{split}"] = pixels(x)
    with pytest.raises(TypeError, match=f"x_{split} must be float images in \\[0, 1\\]; got uint8"):
        ClassificationTask(tuple("abcde"), **parts)


# ---------------------------------------------------------------------------------------------
# Labels (and counts) the head cannot produce, found before training starts
# ---------------------------------------------------------------------------------------------

LABELS = {
    "train-label-9-of-5": (lambda m: train_once(m, cross_entropy_loss, images(), torch.tensor([0, 1, 9, 2, 3, 4, 0, 1])),
                           ValueError, ["[9]", "5 outputs", "labels 0 to 4", "1 of 8"]),
    "train-label-minus-1": (lambda m: train_once(m, cross_entropy_loss, images(), torch.full((8,), -1)),
                            ValueError, ["[-1]", "labels 0 to 4"]),
    "train-float-labels": (lambda m: train_once(m, cross_entropy_loss, images(), labels().float()),
                           TypeError, ["int64 class indices", "float32", ".long()"]),
    "train-one-hot-labels": (lambda m: train_once(m, cross_entropy_loss, images(),
                                                  torch.eye(5, dtype=torch.int64)[labels()]),
                             ValueError, ["(8, 5)", "argmax(1)"]),
    "accuracy-label-7": (lambda m: accuracy(m, images(), torch.tensor([7] * 8)), ValueError, ["y", "[7]", "0 to 4"]),
    "count-loss-on-a-5-class-head": (lambda m: train_once(m, mse_loss, images(), torch.ones(8)), ValueError,
                                     ["one output per image", "gives 5", "replace_head(model, 1"]),
    "predict_counts-on-a-5-class-head": (lambda m: bc.predict_counts(m, images()), ValueError,
                                         ["count head", "gives 5"]),
    "start_at_mean-on-a-5-class-head": (lambda m: bc.start_at_mean(m, 2.0), ValueError, ["5 outputs", "'fc'"]),
}

COUNTS = {
    "fit_counter-negative-count": (lambda m: bc.fit_counter(m, images(), torch.tensor([1.0] * 7 + [-1.0]),
                                                            budget=Budget(steps=1, batch_size=4), lr=1e-3,
                                                            progress=False),
                                   ValueError, ["negative counts", "[-1.0]", "1 of 8"]),
    "train-negative-count": (lambda m: train_once(m, poisson_loss, images(), -torch.ones(8)), ValueError,
                             ["negative counts"]),
    "start_at_mean-negative": (lambda m: bc.start_at_mean(m, -0.5), ValueError, ["train_mean", "-0.5", ">= 0"]),
    "start_at_mean-nan": (lambda m: bc.start_at_mean(m, float("nan")), ValueError, ["train_mean", "nan"]),
}


@pytest.mark.parametrize("case", list(LABELS) + list(COUNTS))
def test_labels_the_head_cannot_produce_are_named_before_training(case):
    call, error, words = {**LABELS, **COUNTS}[case]
    model = count_head_model() if case in COUNTS else tiny_resnet()
    model.train()                          # BatchNorm statistics would move in a train-mode forward
    fails_cleanly(model, lambda: call(model), error, *words)


def test_confusion_matrix_labels_outside_the_class_names():
    with pytest.raises(ValueError, match=r"y_pred holds labels \[3\] that class_names cannot produce: it has 3 names"):
        confusion_matrix([0, 1, 2], [0, 1, 3], ["a", "b", "c"])


# ---------------------------------------------------------------------------------------------
# Inputs and targets that do not pair up never broadcast
# ---------------------------------------------------------------------------------------------

PAIRS = {
    "accuracy-8-images-1-label": (lambda m: accuracy(m, images(8), labels(1)), ["x and y", "8 and 1"]),
    "accuracy-8-images-9-labels": (lambda m: accuracy(m, images(8), labels(9)), ["8 and 9"]),
    "accuracy-0-d-label": (lambda m: accuracy(m, images(8), torch.tensor(3)), ["8 and 1"]),
    "truth_plot": (lambda m: bc.truth_plot(torch.rand(8), torch.rand(1)), ["pred and true", "8 and 1"]),
    "residual_histogram": (lambda m: bc.residual_histogram(torch.rand(8), torch.rand(1)), ["8 and 1"]),
    "confusion_matrix": (lambda m: confusion_matrix([0, 1, 2, 0], [0], ["a", "b", "c"]), ["y_true and y_pred"]),
    "distillation-logits": (lambda m: distillation_loss(torch.randn(8, 5), torch.randn(1, 5)),
                            ["student_logits and teacher_logits", "(8, 5)", "(1, 5)"]),
    "distillation-labels": (lambda m: distillation_loss(torch.randn(8, 5), torch.randn(8, 5), labels(1)),
                            ["labels", "8 rows"]),
    "fit_counter-empty": (lambda m: bc.fit_counter(m, images(0), torch.ones(0), budget=Budget(steps=1, batch_size=4), lr=1e-3),
                          ["x and y", "nothing to measure"]),
}


@pytest.mark.parametrize("case", PAIRS)
def test_metric_inputs_and_targets_pair_up(case):
    call, words = PAIRS[case]
    model = count_head_model() if "fit_counter" in case else tiny_resnet()
    fails_cleanly(model, lambda: call(model), ValueError, *words)


# ---------------------------------------------------------------------------------------------
# Unknown names in look-ups list the valid names
# ---------------------------------------------------------------------------------------------

def _history_with_evals():
    return History(step=[1], loss=[1.0], evals=[{"step": 1, "val_acc": 0.5}])


LOOKUPS = {
    "sizes-mode": (lambda: sizes("finetune", mode="fast"), ["mode 'fast'", "'smoke', 'class', 'full'"]),
    "sizes-mode-case": (lambda: sizes("finetune", mode="Class"), ["'Class'", "did you mean 'class'"]),
    "sizes-name": (lambda: sizes("fintune"), ["'fintune'", "did you mean 'finetune'"]),
    "image_model_config-mode": (lambda: __import__("helpers.models").models.image_model_config("fast"),
                                ["mode 'fast'", "'smoke'"]),
    "best_by-dict-rows": (lambda: best_by([{"lr": 1e-3, "val_acc": 0.5}], "val_ac"),
                          ["metric 'val_ac'", "'val_acc'", "did you mean"]),
    "last_eval": (lambda: _history_with_evals().last_eval("val_ac"), ["metric 'val_ac'", "'val_acc'"]),
}


@pytest.mark.parametrize("case", LOOKUPS)
def test_unknown_names_list_the_valid_ones(case):
    call, words = LOOKUPS[case]
    with pytest.raises(UnknownNameError) as err:
        call()
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)   # old and new callers
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"


def test_a_history_without_evaluations_still_answers_none():
    assert History().last_eval("val_acc") is None
    assert _history_with_evals().last_eval("val_acc") == 0.5


# ---------------------------------------------------------------------------------------------
# Errors that describe what is wrong (not something else)
# ---------------------------------------------------------------------------------------------

def depthwise_model():
    model, _ = make("mobilenetv3")
    return model


def _first_depthwise(model):
    return next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1)


def test_lora_on_a_depthwise_conv_says_why_not():
    model = depthwise_model()
    path = _first_depthwise(model)
    msg = fails_cleanly(model, lambda: add_lora(model, path, rank=2), ValueError,
                        repr(path), "is a Conv2d with groups=", "depthwise / grouped", "merged", "unfreeze")
    assert "no Linear or Conv2d layer matches" not in msg


def test_lora_on_a_norm_layer_names_its_kind():
    model = tiny_resnet()
    msg = fails_cleanly(model, lambda: find_targets(model, "bn1"), ValueError, "'bn1' is a BatchNorm2d", "BitFit")
    assert "no Linear or Conv2d layer matches" not in msg


@pytest.mark.parametrize("depth", [-1, 6, 2.5, "2", True])
def test_a_bad_depth_in_a_runner_names_the_argument_the_range_and_the_stages(depth, data_dir):
    task = ClassificationTask(tuple("abcde"), images(), labels(), images(4), labels(4), images(4), labels(4))
    with pytest.raises(ValueError) as err:
        finetune_task(task, source=tiny_resnet(), frozen_stages=depth, budget=Budget(steps=1),
                      setup=Setup(device="cpu", progress=False))
    for word in ("frozen_stages", "from 0 to 5", "ResNet", "stem", "layer4", repr(depth)):
        assert word in str(err.value), f"{word!r} not in: {err.value}"


@pytest.mark.parametrize("depth", [-1, 99])
def test_run_finetune_bad_depth_names_the_range_and_stages(depth, data_dir):
    with pytest.raises(ValueError, match=r"frozen_stages must be a whole number from 0 to \d+ .*stem.*layer"):
        run_finetune(2, frozen_stages=depth, from_scratch=True, budget=Budget(steps=1),
                     setup=Setup(device="cpu", progress=False))


def test_count_model_bad_depth_names_freeze(data_dir):
    with pytest.raises(ValueError, match=r"^freeze must be a whole number from 0 to \d+ .*got -1.*stem"):
        bc.count_model(pretrained=False, freeze=-1, device="cpu")


@pytest.mark.parametrize("lr_decay", [2.0, 0, -0.5, "0.5"])
def test_run_finetune_lr_decay_is_named(lr_decay, data_dir):
    with pytest.raises(ValueError, match=r"Adaptation.lr_decay must be None .* \(0, 1\]"):
        run_finetune(2, adaptation=Adaptation(lr_decay=lr_decay), from_scratch=True, budget=Budget(steps=1),
                     setup=Setup(device="cpu", progress=False))


@pytest.mark.parametrize("patterns", [3, ["layer1", 3], ("layer1", None)])
def test_freeze_with_a_pattern_that_is_not_a_name(patterns):
    model = tiny_resnet()
    fails_cleanly(model, lambda: freeze(model, patterns), TypeError, "patterns", "module path or glob")


@pytest.mark.parametrize("batch_size", [0, -4, 2.5, None])
def test_batches_bad_batch_size_is_named(batch_size):
    with pytest.raises(ValueError, match="batch_size must be a whole number of at least 1"):
        Batches(images(), labels(), batch_size=batch_size)


# ---------------------------------------------------------------------------------------------
# A pattern freezes every tensor under the modules it names, the modules' own ones included
# ---------------------------------------------------------------------------------------------

OWN_TENSORS = {"resmlp": ("ls1", "ls2"), "beit": ("gamma_1", "gamma_2")}


def _under(model, prefix):
    return {n: p for n, p in model.named_parameters() if n.startswith(prefix + ".")}


@pytest.mark.parametrize("name", OWN_TENSORS)
def test_freeze_by_pattern_freezes_the_blocks_own_layer_scales(name):
    model, _ = make(name)
    freeze(model, "blocks.0.*")
    still = [n for n, p in _under(model, "blocks.0").items() if p.requires_grad]
    assert not still, f"{name}: still trainable under blocks.0: {still}"
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("blocks.0."))


@pytest.mark.parametrize("name", OWN_TENSORS)
def test_unfreeze_by_pattern_releases_them_too(name):
    model, _ = make(name)
    model.requires_grad_(False)
    unfreeze(model, "blocks.1.*")
    assert all(p.requires_grad for p in _under(model, "blocks.1").values())
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("blocks.1."))


@pytest.mark.parametrize("name", OWN_TENSORS)
def test_also_and_extra_patterns_take_the_blocks_own_tensors(name, tmp_path):
    model, _ = make(name)
    add_lora(model, "blocks.0.*", rank=2)
    train_only_lora(model, also="blocks.1.*")
    own = [f"blocks.1.{t}" for t in OWN_TENSORS[name]]
    params = dict(model.named_parameters())
    assert all(params[n].requires_grad for n in own), "train_only_lora(also=) left them frozen"
    path = save_adapter(model, tmp_path / "a.safetensors", extra="blocks.1.*")
    from safetensors.torch import load_file
    saved = load_file(str(path))
    assert all(f"extra.{n}" in saved for n in own), f"save_adapter(extra=) left out {own}"


# ---------------------------------------------------------------------------------------------
# Every helper that touches the head handles every head get_classifier() names
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["deit_distilled", "levit_distilled"])
def test_start_at_mean_sets_both_heads_of_a_distilled_model(name):
    model, size = make(name)
    replace_head(model, 1, activation="softplus", seed=0)
    bc.start_at_mean(model, 2.5)
    with torch.no_grad():
        out = model.eval()(images(3, size))
    torch.testing.assert_close(out, torch.full((3, 1), 2.5))
    for head in model.get_classifier():
        assert torch.count_nonzero(head[0].weight) == 0


@pytest.mark.parametrize("name", ["deit_distilled", "levit_distilled"])
def test_lora_search_trains_both_heads_of_a_distilled_model(name, data_dir):
    source, size = make(name)
    task = ClassificationTask(tuple("abc"), images(8, size), labels(8, 3), images(3, size), labels(3, 3),
                              images(3, size), labels(3, 3))
    r = finetune_task(task, source=source, adaptation=Adaptation(lora_rank=2), budget=Budget(steps=1, evals=0),
                      report=Report(keep_model=True), setup=Setup(device="cpu", progress=False))
    for path in ("head", "head_dist"):
        head = r.model.get_submodule(path)
        assert not lora_layers(head), f"{name}: LoRA wrapped the new head {path}"
        assert all(p.requires_grad for p in head.parameters()), f"{name}: {path} does not train"


# ---------------------------------------------------------------------------------------------
# A head's parts are not a stage
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["poolformer", "poolformerv2"])
def test_the_head_norm_is_in_the_head_not_the_last_stage(name):
    model, _ = make(name)
    in_stage = {n for _, st in stages(model) for n in st.part_names + st.loose_names}
    assert not any(n == "head" or n.startswith("head.") for n in in_stage), in_stage
    freeze_stages(model, len(stages(model)))         # "freeze every stage": the whole head still trains
    assert all(p.requires_grad for p in model.head.parameters())
    assert not any(p.requires_grad for n, p in model.named_parameters() if not n.startswith("head."))
    head_row = stage_table(model).loc["head"]
    assert head_row["total"] == sum(p.numel() for p in model.head.parameters())
    groups = {g["name"]: g for g in layerwise_lr_groups(unfreeze(model), 1e-3)}
    assert {id(p) for p in model.head.norm.parameters()} <= {id(p) for p in groups["head"]["params"]}
