"""What the learner sees, checked in-process: widgets clicked, figures shown once, checks quiet.

The depth picker is clicked with ipywidgets' ``Button.click()`` and a real smoke-mode run; a small
notebook executed in a real kernel shows each figure once and no ``Out:`` under a check.
"""
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import nbformat
import pytest
import torch
from IPython.core.formatters import DisplayFormatter
from notebook_outputs import assert_clean_outputs, output_problems

from helpers.exercises import CheckFailed, Verdict, check
from helpers.plots import LiveCurve, confusion_matrix, conv_filters, image_grid, line_plot, plot_history
from helpers.results import RunLog, table_html
from helpers.runner import QUIET, Budget, Report
from helpers.training import History
from helpers.widgets import depth_picker, describe_run

try:                                   # the lesson harness moved once; find it where it is
    from helpers.experiments import run_finetune
except ImportError:                    # pragma: no cover
    from helpers.finetune import run_finetune

STAGES = ["stem", "layer1", "layer2", "layer3", "layer4"]
PNG = b"\x89PNG"


def test_depth_picker_runs_the_chosen_depth_and_shows_the_run_log():
    log = RunLog("test_depth_picker", persist=False)
    def run(*, frozen_stages, hook):
        return run_finetune(frozen_stages=frozen_stages, log=log, budget=Budget(evals=2), report=Report(hook=hook),
                            setup=QUIET)

    picker = depth_picker(run, STAGES, value=1, log=log)
    assert picker.slider.value == 1 and not picker.results

    picker.slider.value = 3                 # what dragging the slider does
    picker.button.click()

    assert len(picker.results) == 1, f"no run happened: {picker.summary.value}"
    assert len(log) == 1 and log.rows[-1]["frozen_stages"] == 3
    assert "frozen stages 3: validation accuracy" in picker.summary.value
    assert "run log (1 runs;" in picker.summary.value and "<td>3</td>" in picker.summary.value
    assert "test" not in picker.summary.value, "the picker is for choosing: it must not show test numbers"
    assert picker.curve.value[:4] == PNG, "the live curve drew nothing"
    assert not picker.button.disabled and not picker.slider.disabled

    picker.slider.value = 0
    picker.button.click()
    assert [row["frozen_stages"] for row in log.rows] == [3, 0]
    assert "run log (2 runs;" in picker.summary.value and "test" not in picker.summary.value


@dataclass
class Result:                           # the shape a dataclass result of run_finetune would have
    val_acc: float
    trainable_params: int
    history: History = field(default_factory=History)


def test_depth_picker_calls_by_keyword_and_accepts_result_objects():
    calls = []

    def run(*, frozen_stages, hook):        # keyword-only, like run_finetune's frozen_stages
        history = History()
        for step in (5, 10):
            history.step.append(step), history.loss.append(1.0 / step)
            hook(history)
        history.evals.append({"step": 10, "val_acc": 0.5})      # the final evaluation, after the last hook
        calls.append(frozen_stages)
        return Result(val_acc=0.5, trainable_params=12_345, history=history)

    picker = depth_picker(run, STAGES, value=2)
    assert picker.curve.layout.display == "none", "an empty curve would show a broken-image icon"
    picker.button.click()
    assert calls == [2]
    assert "frozen stages 2: validation accuracy 0.500, 12,345 trainable parameters" in picker.summary.value
    assert picker.curve.value[:4] == PNG and picker.curve.layout.display is None


def test_depth_picker_reports_a_failed_run_and_stays_usable():
    def run(*, frozen_stages, hook):
        raise ValueError("no such depth")

    picker = depth_picker(run, STAGES)
    picker.button.click()                   # ipywidgets logs the exception; the widget says so
    assert "The run failed" in picker.summary.value and "no such depth" in picker.summary.value
    assert not picker.button.disabled


def test_describe_run_reads_dicts_and_objects_and_never_shows_test_accuracy():
    assert describe_run({"val_acc": 0.25}, 1) == "frozen stages 1: validation accuracy 0.250"
    assert describe_run(Result(0.25, 10), 1) == "frozen stages 1: validation accuracy 0.250, 10 trainable parameters"
    assert describe_run({"val_acc": 0.25, "test_acc": 0.75}, 1) == "frozen stages 1: validation accuracy 0.250"


def test_live_curve_draws_new_evaluations_and_the_final_state():
    class Target:
        value = b""

    curve = LiveCurve(metric="acc", target=Target(), every=3600)   # the clock alone never redraws
    h = History()
    for step in range(1, 6):
        h.step.append(step), h.loss.append(1.0)
        if step == 3:
            h.evals.append({"step": 3, "acc": 0.4})
        curve(h)
    assert curve.frames == 2                # the first refresh, then the one with the new evaluation
    h.evals.append({"step": 5, "acc": 0.6})  # train's final evaluation comes after its last hook call
    curve.finish(h)
    assert curve.frames == 3 and curve.drawn == (5, 2) and curve.target.value[:4] == PNG
    curve.finish(h)
    assert curve.frames == 3                # nothing new: no redraw


def test_plot_helpers_leave_no_figure_open_in_pyplot():
    plt.close("all")
    h = History(step=[1, 2], loss=[1.0, 0.5], evals=[{"step": 2, "acc": 0.5}])
    figures = [image_grid(torch.rand(4, 3, 8, 8)), plot_history(h, metric="acc"),
               confusion_matrix([0, 1, 1], [0, 1, 0], ["a", "b"]), conv_filters(torch.randn(4, 3, 3, 3)),
               line_plot([1, 2], {"a": [0.1, 0.2]}, xlabel="x", ylabel="y")]
    assert plt.get_fignums() == [], "a plot helper left its figure open: a notebook would show it twice"
    for fig in figures:
        fig.axes[0].axhline(0.5)            # a closed figure can still be changed and drawn
        fig.canvas.draw()


def test_check_returns_a_quiet_verdict(capsys):
    ok = check("easy", lambda: 1 + 1 == 2)
    not_yet = check("unfinished", lambda: None + 1, hint="add one")
    out = capsys.readouterr().out
    assert "✅ easy: correct." in out and "❌ unfinished: not yet (TypeError" in out and "Hint: add one" in out
    assert ok and not not_yet and ok == True and not_yet == False  # noqa: E712 (bool-like on purpose)
    assert isinstance(ok, Verdict)
    assert DisplayFormatter().format(ok) == ({}, {}), "a check's value would echo Out: under the verdict"
    with pytest.raises(CheckFailed):
        check("strict", lambda: False, strict=True)


def test_run_log_table_is_compact():
    log = RunLog("test_table", persist=False)
    log.add(frozen_stages=2, lr_decay=None, trainable_params=11_176_512, sec_per_epoch=0.0123456, test_acc=0.2345)
    table = log.table()
    assert float(table.loc[1, "test_acc"]) == 0.2345          # the data are unchanged
    shown = table._repr_html_()
    assert shown == table_html(table)
    assert "lr_decay" not in shown                          # empty in every row: left out
    assert "<td>0.0123</td>" in shown and "<td>11,176,512</td>" in shown and "sec_<wbr>per_<wbr>epoch" in shown


NOTEBOOK = [
    "import matplotlib.pyplot as plt\nfrom IPython.display import display\n"
    "from helpers.exercises import check\nfrom helpers.plots import LiveCurve, line_plot\n"
    "from helpers.training import History",
    "line_plot([1, 2], {'a': [1, 2]}, xlabel='x', ylabel='y')",                 # the cell's value
    "fig = line_plot([1, 2], {'a': [2, 1]}, xlabel='x', ylabel='y')\nfig.axes[0].axhline(1.5)\nfig",
    "fig = line_plot([1, 2], {'a': [3, 1]}, xlabel='x', ylabel='y')\ndisplay(fig)",
    "curve = LiveCurve(metric='acc', every=3600)\nh = History()\n"
    "for s in range(1, 4):\n    h.step.append(s); h.loss.append(1 / s); curve(h)\n"
    "h.evals.append({'step': 3, 'acc': 0.5})   # after the last hook call, as in train",
    "check('one', lambda: True)",
]


def test_a_notebook_shows_each_figure_once_and_no_check_echo(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.delenv("MPLBACKEND", raising=False)   # the kernel's own default: the inline backend

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK]
    nb.cells[-1].metadata["tags"] = ["check"]
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert_clean_outputs(nb, "the test notebook")
    images = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in nb.cells]
    assert images == [0, 1, 1, 1, 1, 0], images
    live = nb.cells[4].outputs[0]
    assert live.output_type == "display_data" and "transient" not in live
    assert [o.output_type for o in nb.cells[-1].outputs] == ["stream"]


def test_output_problems_finds_errors_twice_shown_figures_and_echoes():
    png = {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 550x360 with 1 Axes>"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("fig", outputs=[
            nbformat.v4.new_output("execute_result", data=png, execution_count=1),
            nbformat.v4.new_output("display_data", data=png)]),
        nbformat.v4.new_code_cell("1 / 0", outputs=[
            nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="division by zero", traceback=[])]),
        nbformat.v4.new_code_cell("check('x', f)", metadata={"tags": ["check"]}, outputs=[
            nbformat.v4.new_output("execute_result", data={"text/plain": "True"}, execution_count=2)]),
    ]
    problems = output_problems(nb)
    assert len(problems) == 3 and "appears 2 times" in problems[0] and "ZeroDivisionError" in problems[1]
    assert "echoes" in problems[2]
    with pytest.raises(AssertionError):
        assert_clean_outputs(nb)
