"""Plots. Every function returns a matplotlib Figure; none saves files or calls ``plt.show()``.

In a notebook a returned figure displays itself when it is the cell's last value, or with
``display(fig)``, and only once: each figure is closed in pyplot before it is returned
(``_detached``), so the inline backend does not show it a second time at the end of the cell.
A closed figure can still be changed (``fig.axes[0].axhline(...)``), displayed and saved.
"""
from __future__ import annotations

import io
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from .checks import class_labels, paired


def _detached(fig):
    """``fig`` closed in pyplot (so it displays once), returned for the caller to show."""
    plt.close(fig)
    return fig


def _to_image(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (H, W) tensor in [0, 1] -> array for imshow."""
    t = t.detach().float().cpu()
    return t.permute(1, 2, 0).clamp(0, 1).numpy() if t.dim() == 3 else t.numpy()


def image_grid(images: torch.Tensor, titles=None, cols: int = 8, size: float = 1.4, title: str | None = None,
               title_colors=None):
    """A grid of images (N, 3, H, W) in [0, 1], each with an optional title."""
    n = len(images)
    cols = min(cols, n) or 1
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.25)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_image(images[i]), interpolation="nearest")
            if titles is not None:
                color = {} if title_colors is None else {"color": title_colors[i]}
                ax.set_title(str(titles[i]), fontsize=8, **color)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _detached(fig)


def plot_history(*histories, labels=None, metric: str | None = None, baseline: float | None = None,
                 baseline_label: str = "baseline", title: str | None = None, logy: bool = False):
    """Training loss (left) and, if given, an evaluation metric (right) against steps.

    Pass several histories to compare runs; ``baseline`` draws a horizontal reference line
    on the loss plot (for example the loss of always predicting the class frequencies).
    """
    labels = labels or [None] * len(histories)
    ncols = 2 if metric else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 3.4), squeeze=False)
    ax = axes[0, 0]
    for h, lab in zip(histories, labels):
        ax.plot(h.step, h.loss, label=lab)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", label=baseline_label)
    ax.set_xlabel("step"), ax.set_ylabel("training loss")
    if logy:
        ax.set_yscale("log")
    if metric:
        ax2 = axes[0, 1]
        for h, lab in zip(histories, labels):
            pts = [(e["step"], e[metric]) for e in h.evals if metric in e]
            if pts:
                ax2.plot(*zip(*pts), marker="o", label=lab)
        ax2.set_xlabel("step"), ax2.set_ylabel(metric)
    for a in axes.flat:
        a.grid(alpha=0.3)
        if any(labels) or baseline is not None:
            a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _detached(fig)


def confusion_matrix(y_true, y_pred, class_names, normalize: bool = True, title: str | None = None):
    """A confusion matrix figure: rows are true classes, columns predicted ones."""
    k = len(class_names)
    y_true = torch.as_tensor(y_true).cpu().long()
    y_pred = torch.as_tensor(y_pred).cpu().long()
    paired(("y_true", "y_pred"), y_true, y_pred)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        class_labels(name, y, k, head="class_names", unit="names", advice="Pass a name for every class.")
    cm = torch.zeros(k, k)
    cm.index_put_((y_true, y_pred), torch.ones(len(y_true)), accumulate=True)
    if normalize:
        cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(0.45 * k + 2, 0.45 * k + 1.5))
    im = ax.imshow(cm.numpy(), cmap="Blues", vmin=0)
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            v = cm[i, j].item()
            if v > 0.005:
                ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                        fontsize=6, color="white" if v > cm.max().item() / 2 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _detached(fig)


def conv_filters(weight: torch.Tensor, cols: int = 8, title: str = "first-layer filters"):
    """The first convolution's kernels (out, 3, k, k) as small colour images."""
    w = weight.detach().float().cpu()
    w = (w - w.amin(dim=(1, 2, 3), keepdim=True)) / (w.amax(dim=(1, 2, 3), keepdim=True)
                                                   - w.amin(dim=(1, 2, 3), keepdim=True) + 1e-8)
    return image_grid(w, cols=cols, size=0.9, title=title)


def line_plot(x, ys: dict, xlabel: str, ylabel: str, title: str | None = None, logx: bool = False,
              errors: dict | None = None):
    """Lines of ``ys`` ({label: values}) against ``x``, with optional error bars ({label: spreads})."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, values in ys.items():
        err = None if errors is None else errors.get(label)
        ax.errorbar(x, values, yerr=err, marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3), ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _detached(fig)



def seed_spread(groups: dict, ylabel: str, title: str | None = None):
    """Each seed's value as a dot, the mean as a bar, and error bars of one standard error, per
    group ({label: [value per seed, ...]}): what "mean over seeds" hides, and how sure the mean is.

    Seed i's dot sits at the same horizontal offset in every group, so runs that share a seed can
    be read across groups."""
    from .stats import standard_error

    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(groups), 3.4))
    for i, (label, values) in enumerate(groups.items()):
        values = [float(v) for v in values]
        n = len(values)
        mean = sum(values) / n
        offsets = [0.0] if n == 1 else [-0.15 + 0.3 * k / (n - 1) for k in range(n)]
        ax.scatter([i + o for o in offsets], values, s=22, color=f"C{i}", alpha=0.8, zorder=3,
                   label="one seed each" if i == 0 else None)
        ax.errorbar([i], [mean], yerr=[standard_error(values)], fmt="_", markersize=28, color="black",
                    capsize=6, zorder=4, label="mean ± 1 standard error" if i == 0 else None)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y"), ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _detached(fig)

class LiveCurve:
    """A training curve that redraws in place while ``train`` runs (pass it as ``hook=``).

    ``train`` calls it after each progress refresh. It redraws at most every ``every`` seconds,
    except that a new evaluation is always drawn, and it draws the final state once training is
    over: ``finish(history)`` does that, and in a notebook cell it also happens by itself when the
    cell finishes (the last evaluation comes after the last refresh, so a plain hook never sees it).

    By default it updates one display in the running cell; given ``target`` (an
    ``ipywidgets.Image``) it draws into that widget instead (the widget's own ``Output`` area
    would drop in-place display updates). Outside Jupyter and without a target it does nothing,
    so the same code runs headless.

    Example:
        >>> history = train(model, loss_fn, batches, monitor=Monitor(hook=LiveCurve(metric="val_acc")))
    """

    def __init__(self, metric: str | None = None, title: str = "training", every: float = 2.0,
                 target=None, dpi: int = 72):
        self.metric, self.title, self.every = metric, title, every
        self.target, self.dpi = target, dpi
        self.handle, self.last = None, -math.inf
        self.history = None          # the History being trained (train fills it in place)
        self.drawn = None            # (refreshes, evaluations) in the last frame drawn
        self.frames = 0              # frames drawn so far
        self._shell = None           # the IPython shell whose post_execute hook we hold

    @staticmethod
    def _state(history) -> tuple[int, int]:
        return len(history.step), len(history.evals)

    def __call__(self, history):
        self.history = history
        self._draw_at_cell_end()
        state = self._state(history)
        if state == self.drawn:
            return
        new_eval = self.drawn is None or state[1] > self.drawn[1]
        if new_eval or time.perf_counter() - self.last >= self.every:
            self.draw(history)

    def finish(self, history=None):
        """Draw the final state (the last refresh and the final evaluation) if not drawn yet."""
        history = self.history if history is None else history
        if history is not None and self._state(history) != self.drawn:
            self.draw(history)

    def draw(self, history):
        """Draw ``history`` now (into the target, or the cell's display)."""
        if self.target is None and _shell() is None:
            return
        fig = plot_history(history, metric=self.metric, title=self.title)
        if self.target is not None:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=self.dpi, bbox_inches="tight")
            self.target.value = buf.getvalue()
        else:
            from IPython.display import display
            if self.handle is None:
                self.handle = display(fig, display_id=True)
            else:
                self.handle.update(fig)
        self.last, self.drawn = time.perf_counter(), self._state(history)
        self.frames += 1

    def _draw_at_cell_end(self):
        """In a notebook cell, call ``finish`` once when the cell has run (IPython's post_execute)."""
        shell = _shell()
        if self.target is not None or shell is None or self._shell is not None:
            return
        self._shell = shell

        def at_cell_end():
            shell.events.unregister("post_execute", at_cell_end)
            self.finish()

        shell.events.register("post_execute", at_cell_end)


def _shell():
    """The running IPython shell, or None outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
