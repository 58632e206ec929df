"""No hidden shared state: cached tensors are handed out as copies, and every figure a helpers
function returns is detached from pyplot (shown once, by the cell that ends with it)."""
import ast
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from helpers.tasks import species_data, species_test_set, species_val_set
from helpers.training import History

HELPERS = Path(__file__).resolve().parent.parent / "helpers"


def test_an_in_place_edit_of_the_evaluation_sets_does_not_reach_the_next_caller():
    x_val, y_val = species_val_set(device="cpu")
    x_test, _ = species_test_set(device="cpu")
    kept = x_val.clone(), y_val.clone(), x_test.clone()
    x_val.zero_(), y_val.fill_(0), x_test.mul_(2)          # an exercise normalising "its" images in place
    again_val, again_y = species_val_set(device="cpu")
    assert torch.equal(again_val, kept[0]) and torch.equal(again_y, kept[1])
    assert torch.equal(species_test_set(device="cpu")[0], kept[2])
    task = species_data(2, device="cpu")
    task.x_val.add_(1.0)
    assert torch.equal(species_data(2, device="cpu").x_val, kept[0])


def _draws_a_figure(fn: ast.FunctionDef) -> bool:
    return any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "plt"
               and n.attr in ("subplots", "figure") for n in ast.walk(fn))


def _detaches(fn: ast.FunctionDef) -> bool:
    for n in ast.walk(fn):
        if isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Attribute) and f.attr == "close") or (isinstance(f, ast.Name) and f.id == "_detached"):
                return True
    return False


def test_every_helpers_function_that_draws_a_figure_detaches_it():
    """Read from the source, so a new figure function is covered the day it is written."""
    drawing, left_open = [], []
    for path in sorted(HELPERS.rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, ast.FunctionDef) and _draws_a_figure(fn):
                drawing.append(f"{path.stem}.{fn.name}")
                if not _detaches(fn):
                    left_open.append(f"{path.relative_to(HELPERS.parent)}: {fn.name}")
    assert len(drawing) >= 8, drawing                      # the scan sees the figure functions
    assert not left_open, f"figures left open in pyplot (close them, or plots._detached): {left_open}"


def test_figure_functions_leave_nothing_in_pyplot():
    from helpers.lessons.bird_counter import residual_histogram, saliency_grid, truth_plot
    from helpers.lessons.pretraining_lm import loss_curves
    from helpers.plots import confusion_matrix, conv_filters, image_grid, line_plot, plot_history

    plt.close("all")
    pred, true = torch.tensor([0.2, 1.1, 2.7, 3.0]), torch.tensor([0, 1, 3, 3])
    history = History(step=[1, 2], loss=[1.0, 0.5], lr=[1e-3, 1e-3], seconds=[0.1, 0.2], samples=[4, 8],
                      evals=[{"step": 2, "val_acc": 0.5}])
    info = {"history": {"evals": [{"step": 1, "train_loss": 2.0, "val_loss": 2.1},
                                  {"step": 2, "train_loss": 1.5, "val_loss": 1.9}]},
            "unigram_loss": 3.0, "best_step": 2}
    figures = [truth_plot(pred, true), residual_histogram(pred, true),
               saliency_grid(torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8)), loss_curves(info),
               image_grid(torch.rand(4, 3, 8, 8)), plot_history(history, metric="val_acc"),
               confusion_matrix([0, 1, 1], [0, 1, 0], ["a", "b"]), conv_filters(torch.rand(4, 3, 3, 3)),
               line_plot([1, 2], {"a": [0.1, 0.2]}, "x", "y")]
    assert all(f is not None and f.axes for f in figures)
    assert plt.get_fignums() == [], "a figure function left its figure open in pyplot"
