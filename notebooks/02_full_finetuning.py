# %% [markdown]
# # 02 · Full fine-tuning
#
# Lesson 01 pre-trained an image model on the general world: fourteen kinds of objects on many
# backgrounds. Now a *specific* task arrives with very few labels: tell six **bird species**
# apart from a handful of labelled photos per species.
#
# **Full fine-tuning** starts from the pre-trained weights, swaps the 14-way classifier for a new
# 6-way head, and trains *all* parameters on the few labels. We compare it with the same
# architecture trained **from scratch** on the same images, across several training-set sizes and
# three seeds each. A fair comparison needs care: every choice (learning rates, budgets) is made
# on a **validation** set, and from scratch gets its own rate and enough steps to converge, shown
# beside the run with fine-tuning's budget. On the way we see what a too-high learning rate does
# to the pre-trained features.

# %%
import pandas as pd
from IPython.display import display
from tqdm.auto import tqdm

from helpers.exercises import check, keeps_pretrained_backbone
from helpers.experiments import run_finetune, scratch_converged, scratch_lr_runs
from helpers.lessons.full_finetuning import CLAIMS, gap, labels_curve_rows
from helpers.models import pretrained_image_model
from helpers.modes import sizes
from helpers.plots import image_grid, line_plot, plot_history, seed_spread
from helpers.results import Lesson
from helpers.runner import QUIET, Budget, Report
from helpers.stats import best_by, difference, t_critical
from helpers.surgery import stage_table, trainable_params
from helpers.tasks import species_task, species_test_set, species_train_set, species_val_set

lesson = Lesson("02")
S = sizes("finetune")
print(S.summary())

# %% [markdown]
# ## The task: six bird species, few labels
#
# The species differ in colours (body, breast, wing, beak) and in small shape details (crest,
# face mask, tail, beak length). Pose, size, background and light vary, so "the red one" is not
# always easy. Each training set holds exactly `labels_per_class` images per species; a fixed
# validation set (its own seed) makes every choice, and a fixed test set (another seed) measures
# the configurations we report.

# %%
task = species_task()
x_show, y_show = species_train_set(2, seed=0)
x_test, y_test = species_test_set()
x_val, _ = species_val_set()
print(f"species: {task.species}; validation set: {len(x_val)} images; test set: {len(x_test)} images "
      f"of {tuple(x_test.shape[1:])}")
image_grid(x_show, titles=[task.species[i] for i in y_show], cols=6, title="two training images per species")

# %% [markdown]
# ## The mechanism: a new head on the pre-trained body
#
# Full fine-tuning is three lines: load lesson 01's weights, give the model a new classifier with
# one output per species, and leave every parameter trainable. (`pretrained_image_model()` returns
# a *fresh copy* of the checkpoint every call, so nothing here changes the weights other cells use.)

# %%
model, info = pretrained_image_model(verbose=False)
model.reset_classifier(task.num_classes)          # timm: a new, randomly initialised 6-way head
print(f"pre-trained on the general world to val_acc={info['val_acc']:.3f}; "
      f"trainable now: {trainable_params(model):,} parameters (all of them)")
stage_table(model)

# %% [markdown]
# `run_finetune` does exactly this (through `helpers.surgery.replace_head`), then trains with
# AdamW for a fixed number of steps on the few labelled images (random flips and small shifts as
# augmentation) and measures validation and test accuracy. With `from_scratch=True` it starts
# from random weights instead. Each call builds its model fresh, so you can re-run any cell in
# any order.
#
# One run, with its training curve:

# %%
one = run_finetune(S.headline_labels, seed=0, budget=Budget(evals=5))
print(f"{S.headline_labels} labels per species: validation accuracy {one.val_acc:.3f} after "
      f"{one.steps} steps ({one.train_s:.1f} s)")
fig = plot_history(one.history, metric="val_acc", title="full fine-tuning")
fig

# %% [markdown]
# ## Choosing the learning rate on validation
#
# Fine-tuning is usually done with a *smaller* learning rate than training from scratch: the
# weights are already good, and big steps push them far from where they were. Which rate suits
# this task is an empirical question, so we try a grid of rates and choose by **validation**
# accuracy: a fixed set of images, rendered with its own seed, that no run trains on and that is
# not the test set. The test set is read only once per configuration we report; choosing on it
# would make the reported number optimistic. `backbone_change` measures how far the backbone's
# weights moved, relative to their size (||w - w0|| / ||w0||).

# %%
log = lesson.run_log("02_curve")
log.clear()            # this lesson's comparison starts empty; later re-runs of cells append
sweep = [run_finetune(S.headline_labels, lr=lr, seed=0, log=log, setup=QUIET, report=Report(note="lr sweep"))
         for lr in tqdm(S.lr_sweep, desc="learning rates")]
sweep_table = pd.DataFrame([{"lr": r.lr, "val_acc": r.val_acc, "backbone_change": r.backbone_change}
                            for r in sweep]).set_index("lr")
best_lr = best_by(sweep, "val_acc").lr
display(sweep_table.round(4))
worst = sweep_table.loc[max(S.lr_sweep)]
print(f"chosen on validation: lr = {best_lr:g}. At the highest rate, {max(S.lr_sweep):g}, the backbone moved "
      f"{worst.backbone_change:.2f} of its own size and validation accuracy is {worst.val_acc:.3f} "
      f"(at the chosen rate: {sweep_table.loc[best_lr, 'val_acc']:.3f}).")
fig = line_plot(list(S.lr_sweep), {"fine-tuned": sweep_table["val_acc"].tolist()},
                xlabel="peak learning rate", ylabel="validation accuracy", logx=True,
                title=f"{S.headline_labels} labels per species, seed 0, {S.steps} steps")
fig

# %% [markdown]
# With a very high rate the first steps, driven by a random new head, push large gradients
# into the backbone: the weights move far from the pre-trained ones and the knowledge in them is
# lost; what is left is a from-scratch run on a few images. A small rate keeps the backbone close
# to the pre-trained weights and adapts it gently.
#
# ## A fair baseline: from scratch with its own rate and its own budget
#
# A from-scratch model with the fine-tuning budget of `S.steps` steps is not a fair opponent:
# random weights need many more steps, and a bigger rate. So the from-scratch baseline gets
#
# - **its own learning rate**, chosen on validation from `S.scratch_lr_grid` (at the headline
#   labels, seed 0), and
# - **a budget at which its validation accuracy has stopped improving**: `S.scratch_steps` steps,
#   evaluated on validation along the way, keeping the weights of the best evaluation (early
#   stopping on validation).
#
# Every class repeats these long runs identically, so they are cached: `make prepare` trains them
# once, and this cell loads them (`scratch_converged`). We also show the same-budget from-scratch
# run (`S.steps` steps, its own rate) beside it, to see how much of the gap is only the budget.

# %%
scratch_grid = scratch_lr_runs()
scratch_lr = best_by(scratch_grid, "val_acc").lr
display(pd.DataFrame([{"scratch lr": r.lr, "val_acc": r.val_acc, "best_step": r.best_step}
                      for r in scratch_grid]).set_index("scratch lr").round(4))
print(f"from scratch's own rate, chosen on validation: {scratch_lr:g} (fine-tuning's: {best_lr:g})")

# %% [markdown]
# ## Fine-tuned vs from scratch, across labels per class
#
# For every training-set size and `S.seeds` seeds (each seed draws other training images and
# another head initialisation), four arms:
# - fine-tuning at its chosen rate with `S.steps` steps, and from scratch with the same `S.steps`
#   steps at its own rate: **the same budget**;
# - each **at its own budget**: from scratch for `S.scratch_steps` steps, fine-tuning for
#   `S.converged_steps`, both keeping the weights of their best validation evaluation (early
#   stopping), so neither side is compared while it is still improving.

# %%
finetuned, scratch, converged, finetuned_converged = {}, {}, {}, {}
settings = [(n, seed) for n in S.labels_per_class for seed in range(S.seeds)]
for n, seed in tqdm(settings, desc="runs"):
    finetuned.setdefault(n, []).append(run_finetune(n, lr=best_lr, seed=seed, log=log, setup=QUIET))
    scratch.setdefault(n, []).append(run_finetune(n, from_scratch=True, lr=scratch_lr, seed=seed, log=log,
                                                  setup=QUIET, report=Report(note="same budget")))
    converged.setdefault(n, []).append(scratch_converged(n, seed=seed, lr=scratch_lr, progress=False))
    finetuned_converged.setdefault(n, []).append(run_finetune(
        n, lr=best_lr, seed=seed, log=log, setup=QUIET, report=Report(note="own budget"),
        budget=Budget(steps=S.converged_steps, evals=S.converged_evals, keep_best=True)))
curve = labels_curve_rows(finetuned, scratch, converged, finetuned_converged)
curve_table = pd.DataFrame(curve).set_index("labels_per_class")
columns = ["finetuned_acc", "finetuned_spread", "scratch_acc", "scratch_spread",
           "finetuned_converged_acc", "finetuned_converged_spread", "scratch_converged_acc", "scratch_converged_spread"]
display(curve_table[columns].round(3))
converged_steps = {n: [r.best_step for r in rs] for n, rs in converged.items()}
ft_best_steps = {n: [r.best_step for r in rs] for n, rs in finetuned_converged.items()}
print(f"budgets: fine-tuned and from scratch, same budget, {S.steps} steps; at their own budgets: fine-tuned "
      f"{S.converged_steps} steps, best validation at step (per seed) {ft_best_steps}; from scratch "
      f"{S.scratch_steps} steps, best validation at step {converged_steps}")
for arm, runs, budget in (("fine-tuned", finetuned_converged, S.converged_steps),
                          ("from scratch", converged, S.scratch_steps)):
    at_end = [(n, seed) for n, rs in runs.items() for seed, r in enumerate(rs) if r.best_step >= budget]
    print(f"{arm} at its own budget: validation accuracy stopped improving before the end in every run"
          if not at_end else f"{arm} at its own budget: still at its best at the end for (labels, seed) {at_end}: "
          f"those runs may not have converged, so their numbers are a lower bound")

# %%
arms = {f"fine-tuned, {S.steps} steps": "finetuned", f"from scratch, {S.steps} steps": "scratch",
        "fine-tuned, own budget": "finetuned_converged", "from scratch, own budget": "scratch_converged"}
fig = line_plot(list(S.labels_per_class), {k: curve_table[f"{v}_acc"].tolist() for k, v in arms.items()},
                xlabel="labels per species", ylabel="test accuracy", logx=True,
                errors={k: curve_table[f"{v}_spread"].tolist() for k, v in arms.items()},
                title=f"mean and spread over {S.seeds} seeds")
fig.axes[0].axhline(1 / task.num_classes, color="grey", ls=":", label="chance")
fig.axes[0].legend(fontsize=8)
fig

# %% [markdown]
# ## Real or a tie: how this course decides
#
# Every number above is a **mean over seeds**. A seed decides which few images are labelled, how
# the new head starts and the order of the batches; run the same method with another seed and its
# accuracy moves. The picture below shows each seed's test accuracy as a dot, at the headline
# labels, with the mean as a black bar.
#
# The **standard error** (the error bars) says how far the mean itself would typically move if
# we ran the whole set of seeds again with fresh ones: the spread of single runs divided by the
# square root of how many runs were averaged. Few runs, or runs that disagree, give a wide bar.
#
# The course calls a difference between two methods **real** only when a statistical test says
# it is unlikely to be luck: a two-sided t-test at the 95% level (p below 0.05), with the degrees
# of freedom the runs really have (`helpers/stats.py`, one helper for every lesson). Here both arms
# ran on the same seeds, and a seed gives both the same labelled images, so the test compares the
# **per-seed differences** (a *paired* t-test). With only a few seeds the bar is high: the cell
# prints how many standard errors a difference must exceed. Otherwise the two methods **tie** at
# this budget, and the lessons say so.

# %%
headline_n = S.headline_labels
fig = seed_spread({"fine-tuned\nsame budget": [r.test_acc for r in finetuned[headline_n]],
                   "from scratch\nsame budget": [r.test_acc for r in scratch[headline_n]],
                   "fine-tuned\nown budget": [r.test_acc for r in finetuned_converged[headline_n]],
                   "from scratch\nown budget": [r.test_acc for r in converged[headline_n]]},
                  ylabel="test accuracy", title=f"{headline_n} labels per species, {S.seeds} seeds")
display(fig)
if S.seeds > 1:
    print(f"With {S.seeds} seeds a paired test has {S.seeds - 1} degree(s) of freedom: a difference is real "
          f"when it exceeds {t_critical(S.seeds - 1):.2f} standard errors (with many seeds it would be 1.96).")
headline_row = next(row for row in curve if row["labels_per_class"] == headline_n)
print(f"At {headline_n} labels per species, each at its own budget: "
      + gap(headline_row).describe("fine-tuned", "from scratch"))

# %%
print("Each at its own budget (early-stopped on validation):")
for row in curve:
    print(f"{row['labels_per_class']:>4} labels per species: "
          + gap(row).describe("fine-tuned", "from scratch"))
first, last = gap(curve[0]), gap(curve[-1])
trend = "shrinks" if last.diff < first.diff else "does not shrink"
print(f"The gap {trend} with more labels: {100 * first.diff:+.1f} points at "
      f"{curve[0]['labels_per_class']} labels per species, {100 * last.diff:+.1f} at {curve[-1]['labels_per_class']}.")
crossed = [row["labels_per_class"] for row in curve if gap(row).diff < 0 and gap(row).real]
tied = [row["labels_per_class"] for row in curve if not gap(row).real]
print("Crossover: from scratch beats fine-tuning at " + (", ".join(map(str, crossed)) or "none")
      + " of these label counts; the two tie at " + (", ".join(map(str, tied)) or "none") + ".")
head = curve_table.loc[S.headline_labels]
print(f"At {S.headline_labels} labels per species: from scratch with fine-tuning's {S.steps} steps reaches "
      f"{head.scratch_acc:.3f}, with its own budget {head.scratch_converged_acc:.3f}; fine-tuning "
      f"{head.finetuned_acc:.3f} with {S.steps} steps and {head.finetuned_converged_acc:.3f} with its own budget.")

# %% [markdown]
# The pre-trained model already knows what a bird looks like: edges, colour patches, body parts,
# backgrounds to ignore. With few labels it only has to learn which of those features tell the
# species apart. From scratch, the same few images must teach everything. The same-budget
# baseline mostly measures that `S.steps` steps are too few for random weights; the converged
# one is the fair opponent. The cell above says, from the numbers, how the gap to it changes with
# the number of labels, and whether the curves cross within the label counts we can afford here.
# Compare each side at its own budget: comparing a converged baseline with fine-tuning stopped
# after `S.steps` steps would be unfair the other way round.
# With enough labelled data a model from scratch catches up and pre-training matters less; where
# that happens depends on the task and on how close pre-training was to it.
#
# ## Against steps
#
# The same comparison along training, at the headline labels: test accuracy of fine-tuning over a
# run four times longer than its budget (`4 * S.steps` steps, seed 0), and of the converged
# from-scratch runs over their whole budget (mean over seeds, recorded while they trained).

# %%
long_ft = run_finetune(S.headline_labels, lr=best_lr, seed=0, log=log, setup=QUIET,
                       budget=Budget(steps=4 * S.steps, evals=8, test_curve=True), report=Report(note="against steps"))
ft_evals = long_ft.history.evals
sc_evals = [r.history.evals for r in converged[S.headline_labels]]
sc_steps = [e["step"] for e in sc_evals[0]]
sc_curve = [sum(ev[i]["test_acc"] for ev in sc_evals) / len(sc_evals) for i in range(len(sc_steps))]
fig = line_plot([e["step"] for e in ft_evals], {"fine-tuned (seed 0)": [e["test_acc"] for e in ft_evals]},
                xlabel="optimiser steps", ylabel="test accuracy", logx=True,
                title=f"{S.headline_labels} labels per species")
fig.axes[0].plot(sc_steps, sc_curve, marker="o", label=f"from scratch (mean of {len(sc_evals)} seeds)")
fig.axes[0].axvline(S.steps, color="grey", ls=":", label=f"fine-tuning budget ({S.steps})")
fig.axes[0].legend(fontsize=8)
fig

# %%
at_budget = min(ft_evals, key=lambda e: abs(e["step"] - S.steps))
print(f"fine-tuning, validation accuracy at step {at_budget['step']} {at_budget['val_acc']:.3f}, at step "
      f"{ft_evals[-1]['step']} {ft_evals[-1]['val_acc']:.3f} (seed 0); from scratch reaches its best validation "
      f"accuracy at step {sum(converged_steps[S.headline_labels]) / S.seeds:.0f} on average, of {S.scratch_steps}, "
      f"and then {max(sc_curve):.3f} test accuracy at best along its mean curve.")

# %% [markdown]
# ## Does this carry over to real images?
#
# Everything above happens inside the course's world, where lesson 01's model learnt exactly the
# kind of picture the birds are. `benchmarks/transfer.py` asks the same question on real images
# that ship inside Python packages (handwritten digits, faces, photo tiles), with this lesson's
# rules: each arm's rate and budget chosen on validation, paired t-tests over 5 seeds. Its saved
# results, for lesson 01's network, at the fewest labels it measured:

# %%
from helpers.lessons.your_own import load_transfer_results, transfer_verdicts

saved = load_transfer_results()
if saved is None:
    print("No saved transfer results here (docs/transfer_results.json): run benchmarks/transfer.py")
else:
    fewest = min(saved["labels"])       # lesson 01's network (the object world) against from scratch ("-")
    for line in transfer_verdicts([r for r in saved["rows"] if r["labels"] == fewest
                                   and r["world"] in ("object", "-")]):
        print(line)

# %% [markdown]
# Where fine-tuning lesson 01's model does not beat training from scratch on a real task, the world
# was too far from those images (Yosinski et al. 2014: transfer falls with the distance between
# tasks). Lesson 13 shows the whole table, with the fractal and general worlds beside this one.

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Build the full fine-tuning model by hand: a fresh pre-trained model with a new
# head for the six species. Store it in `my_model`. (Hint: `pretrained_image_model` and timm's
# `reset_classifier`.)

# %% tags=["exercise"]
my_model = None   # your model here

# %% tags=["check"]
check("a new 6-way head, everything trainable",
      lambda: my_model(x_test[:2].to(next(my_model.parameters()).device)).shape == (2, task.num_classes)
      and trainable_params(my_model) == sum(p.numel() for p in my_model.parameters())
      and keeps_pretrained_backbone(my_model),
      hint="start from lesson 01's weights (the helper that loads them returns two things), not from a "
           "randomly initialised network; then give it a head with as many outputs as there are species")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# my_model, _ = pretrained_image_model(verbose=False)
# my_model.reset_classifier(task.num_classes)
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** Does augmentation matter with few labels? Run fine-tuning with
# `S.headline_labels` labels per species at the chosen rate `best_lr`, without augmentation
# (`budget=Budget(augment=False)`), for each of the seeds `range(S.seeds)`, and keep the runs in
# the list `no_aug`. Then store in
# `aug_gain` how many points (0 to 100) augmentation adds to the mean **validation** accuracy
# (with augmentation: `finetuned[S.headline_labels]`). Validation, because this is a choice: the
# test set is for the configuration you report.

# %% tags=["exercise"]
no_aug = None     # [run_finetune(...) for seed in ...]
aug_gain = None

# %% tags=["check"]
def _aug_ok():
    runs_ok = (len(no_aug) == S.seeds and {r.seed for r in no_aug} == set(range(S.seeds))
               and all(r.augment is False and r.lr == best_lr and r.labels_per_class == S.headline_labels
                       for r in no_aug))
    want = 100 * difference([r.val_acc for r in finetuned[S.headline_labels]], [r.val_acc for r in no_aug]).diff
    return runs_ok and abs(aug_gain - want) < 1e-6

check("augmentation's gain on validation, over the seeds", _aug_ok,
      hint="the same fine-tuning call as the lesson's, with augmentation off and at the rate chosen on "
           "validation, once per seed; the gain is the difference of the two mean validation accuracies, in points")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# no_aug = [run_finetune(S.headline_labels, lr=best_lr, seed=seed, budget=Budget(augment=False), log=log,
#                        setup=QUIET)
#           for seed in range(S.seeds)]
# aug = difference([r.val_acc for r in finetuned[S.headline_labels]], [r.val_acc for r in no_aug], paired=True)
# aug_gain = 100 * aug.diff
# print(aug.describe("with augmentation", "without"))
# ```
#
# </details>

# %% [markdown]
# **Exercise 3.** From `curve_table`, compute how many points (0 to 100) fine-tuning gains over
# from scratch at the *smallest* number of labels per species, in the fair comparison: **each at
# its own budget** (`finetuned_converged_acc` and `scratch_converged_acc`). Store it in
# `gain_smallest`.

# %% tags=["exercise"]
gain_smallest = None

# %% tags=["check"]
check("gain over converged from scratch at the smallest label count",
      lambda: abs(gain_smallest - 100 * (curve_table.finetuned_converged_acc.iloc[0]
                                         - curve_table.scratch_converged_acc.iloc[0])) < 1e-6,
      hint="the table's rows go from the fewest labels per species to the most; the fair pair of columns "
           "is the one where each method ran at its own budget; a point is 1/100 of accuracy")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# smallest = curve_table.iloc[0]
# gain_smallest = 100 * (smallest.finetuned_converged_acc - smallest.scratch_converged_acc)
# print(f"{gain_smallest:+.1f} points at {curve_table.index[0]} labels per species")
# ```
#
# </details>

# %% [markdown]
# ## Results
#
# The lesson records the headline comparison (means over seeds at the headline label count, with
# each seed's test accuracy, and the validation accuracies) and the whole curve, then checks the
# claims this lesson makes against them.

# %%
def _accs(runs, metric="test_acc"):
    return [float(getattr(r, metric)) for r in runs]


h = S.headline_labels
metrics = {
    "finetuned_acc": float(head.finetuned_acc), "scratch_acc": float(head.scratch_acc),
    "scratch_converged_acc": float(head.scratch_converged_acc),
    "finetuned_val_acc": sum(_accs(finetuned[h], "val_acc")) / S.seeds,
    "scratch_val_acc": sum(_accs(scratch[h], "val_acc")) / S.seeds,
    "scratch_converged_val_acc": sum(_accs(converged[h], "val_acc")) / S.seeds,
    "finetuned_accs": _accs(finetuned[h]), "scratch_accs": _accs(scratch[h]),
    "scratch_converged_accs": _accs(converged[h]),
    "finetune_steps": S.steps, "finetune_lr": best_lr, "scratch_lr": scratch_lr,
    "scratch_converged_steps": sum(converged_steps[h]) / S.seeds,
    "scratch_converged_budget": S.scratch_steps, "seeds": S.seeds,
    "finetuned_converged_acc": float(head.finetuned_converged_acc),
    "finetuned_converged_accs": _accs(finetuned_converged[h]), "finetuned_converged_budget": S.converged_steps,
    "finetuned_converged_steps": sum(ft_best_steps[h]) / S.seeds,
    "labels_curve": [{k: row[k] for k in ("labels_per_class", "finetuned_acc", "scratch_acc", "scratch_converged_acc",
                                          "finetuned_converged_acc", "finetuned_accs", "scratch_converged_accs",
                                          "finetuned_converged_accs")} for row in curve],
}
lesson.finish(metrics, CLAIMS)
curve_table[columns].round(3)
