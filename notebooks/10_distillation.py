# %% [markdown]
# # 10 · Distillation vs fine-tuning
#
# Fine-tuning made lesson 01's model good at telling bird species apart from a few labels
# (lesson 02). But that model may be bigger and slower than a phone, a camera trap or a busy
# server can afford. **Knowledge distillation** trains a *small* model, the **student**, to copy
# the fine-tuned big model, the **teacher**.
#
# The student does not learn from the labels alone but from the teacher's **soft targets**: its
# full probability distribution over the species, softened by a **temperature** `T`. "Robin,
# somewhat like a cardinal, nothing like a gull" carries more information per image than
# "robin". And since the teacher can label *any* image, the student can also learn from images
# nobody labelled.
#
# Two things can help the student, and we separate them with a small factorial experiment on
# the species task: **what the targets are** (hard labels, or the teacher's soft targets) and
# **which images** (only the few labelled ones, or many unlabelled ones too):
#
# | | labelled images only | + unlabelled images |
# |---|---|---|
# | hard targets | labels only | the teacher's hard pseudo-labels |
# | soft targets | soft targets on the same images | soft targets on the unlabelled images too |
#
# plus the teacher itself, and the other road to a small model, the one lessons 01-02 teach: the
# small architecture **pre-trained** on the general world, then **fine-tuned** on the few labels.
# Size, inference speed and accuracy, mean of several seeds, the same budget of optimiser steps
# for every student.

# %%

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from tqdm.auto import tqdm

from helpers.exercises import check
from helpers.lessons.distillation import (
    CLAIMS,
    STUDENTS,
    UNLABELLED_SEED,
    Student,
    create_student,
    finetune_teacher,
    pretrained_student,
    pseudo_labelled,
    run_student,
    transfer_set,
)
from helpers.modes import sizes
from helpers.plots import image_grid
from helpers.results import Lesson
from helpers.runner import QUIET
from helpers.stats import difference, mean_and_spread
from helpers.surgery import count_params
from helpers.tasks import species_task, species_test_set
from helpers.training import accuracy, inference_seconds, predict

lesson = Lesson("10")
S, D = sizes("finetune"), sizes("distill")
print(D.summary())


# %% [markdown]
# ## The distillation loss, written out
#
# Both models' logits are divided by `T` before the softmax. `T = 1` gives the ordinary
# probabilities; a larger `T` flattens them, so the small probabilities the teacher gives to
# the *wrong* species (its "dark knowledge") become visible to the student. The student
# minimises the KL divergence from the teacher's softened distribution to its own. Multiplying
# by `T²` keeps this term's gradients the same size whatever `T` is. Images that have a label
# can also contribute the usual cross-entropy, with weight `1 - w`.

# %%
# The distillation loss (a test checks that it equals helpers.losses.distillation_loss)
def kd_loss(student_logits, teacher_logits, labels, T=4.0, w=0.9):
    log_p_student = F.log_softmax(student_logits / T, dim=1)             # (B, classes)
    log_p_teacher = F.log_softmax(teacher_logits / T, dim=1)
    soft = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1).mean() * T * T
    has_label = labels >= 0                                               # -1: an unlabelled image
    if w >= 1 or not has_label.any():
        return soft if w >= 1 else w * soft
    hard = F.cross_entropy(student_logits[has_label], labels[has_label])
    return w * soft + (1 - w) * hard


# %% [markdown]
# ## The teacher: lesson 01's model, fine-tuned
#
# The teacher is lesson 02's full fine-tuning: lesson 01's pre-trained model with a new 6-way
# head, all parameters tuned on `S.headline_labels` labelled images per species.

# %%
teacher_run = finetune_teacher(seed=0)
teacher = teacher_run.model.eval()
x_test, y_test = species_test_set()
teacher_acc = accuracy(teacher, x_test, y_test)
student = create_student(seed=0)
teacher_params, student_params = count_params(teacher), count_params(student)
print(f"teacher: {teacher_params:,} parameters, test accuracy {teacher_acc:.3f}")
print(f"student: {student_params:,} parameters ({student_params / teacher_params:.1%} of the teacher), "
      f"the same ResNet at width {D.student_width}, from random weights")

# %% [markdown]
# What the teacher's soft targets look like, at `T = 1` and at the lesson's temperature:

# %%
task = species_task()
with torch.no_grad():
    t_logits = predict(teacher, x_test[:4])
soft_table = pd.DataFrame({f"image {i} T=1": F.softmax(t_logits[i], 0).tolist() for i in range(2)}
                          | {f"image {i} T={D.temperature:g}": F.softmax(t_logits[i] / D.temperature, 0).tolist()
                             for i in range(2)}, index=list(task.species))
fig = image_grid(x_test[:2], titles=[task.species[i] for i in y_test[:2]], cols=2)
display(fig)
plt.close(fig)
soft_table.round(3)

# %% [markdown]
# ## The transfer sets
#
# - **labelled**: the same `S.headline_labels` images per species that the teacher was tuned on.
# - **labelled + unlabelled**: those, plus `D.unlabelled` species images without labels, which
#   only the teacher labels (with soft targets). Rendering images is free in our world; in real
#   life, unlabelled photos are what you have plenty of.
#
# Augmentation and the teacher must agree: if the student trained on flipped and shifted images
# while the teacher had scored the originals, each soft target would describe a slightly
# different image from the one the student sees. So every image is augmented `D.views` times
# **once**, the teacher scores exactly those views, and every student (also the labels-only
# one) trains on those views without further augmentation.

# %%
x_l, soft_l, y_l = transfer_set(teacher, unlabelled=0)
x_u, soft_u, y_u = transfer_set(teacher, unlabelled=D.unlabelled)
print(f"labelled: {len(x_l) // D.views} images x {D.views} views; with unlabelled: {len(x_u) // D.views} images "
      f"x {D.views} views ({int((y_u < 0).sum())} views without a label)")
truth = species_task().render(D.unlabelled, seed=UNLABELLED_SEED)[1].repeat(D.views)
pseudo_acc = (soft_u[y_u < 0].argmax(1).cpu() == truth).float().mean().item()
print(f"(we can peek, since our world knows the truth: the teacher's label is right on {pseudo_acc:.1%} "
      f"of the unlabelled images)")

# %% [markdown]
# ## Four students, several seeds
#
# Every student starts from random weights and trains `D.steps` optimiser steps (the same
# budget). The seeds change the student's initialisation and batch order; the labelled images,
# the views and the teacher stay the same.

# %%
runs = []
for seed, (name, kind, unlabelled, hard) in tqdm([(seed, st) for seed in range(D.seeds) for st in STUDENTS],
                                                 desc="students"):
    x, soft, y = (x_u, soft_u, y_u) if unlabelled else (x_l, soft_l, y_l)
    if hard:
        y = pseudo_labelled(y, soft)
    r = run_student(kind, x, y, soft if kind == "kd" else None, seed=seed, setup=QUIET)
    runs.append({"student": name, "seed": seed, "views": r.images, "val_acc": r.val_acc, "test_acc": r.test_acc,
                 "train_s": r.train_s})
runs_table = pd.DataFrame(runs)
runs_table.round(3)


# %%
def accs(name, metric="test_acc"):
    return runs_table[runs_table.student == name][metric].tolist()


def mean_acc(name):
    return mean_and_spread(accs(name))

x_speed = x_test[:256]
t_teacher, t_student = inference_seconds(teacher, x_speed), inference_seconds(student.eval(), x_speed)
speedup = t_teacher / t_student
summary_rows = [{"model": "teacher (fine-tuned)", "params": teacher_params, "ms per image": 1000 * t_teacher / len(x_speed),
                 "test_acc": teacher_acc, "spread": 0.0}]
for name, *_ in STUDENTS:
    m, s = mean_acc(name)
    summary_rows.append({"model": f"student, {name}", "params": student_params,
                         "ms per image": 1000 * t_student / len(x_speed), "test_acc": m, "spread": s})
summary_table = pd.DataFrame(summary_rows).set_index("model")
summary_table.round(4)

# %%
names = [name for name, *_ in STUDENTS]
label_acc, soft_same_acc, hard_u_acc, soft_u_acc = (mean_acc(n)[0] for n in names)
best_student = max(names, key=lambda n: mean_and_spread(accs(n, "val_acc"))[0])     # chosen on validation
kd_acc = mean_acc(best_student)[0]
print(f"student: {student_params / teacher_params:.1%} of the teacher's parameters, {speedup:.1f}x faster at inference")
print(f"teacher {teacher_acc:.3f}; students (mean of {D.seeds} seeds, {D.steps} steps each):")
# paired t-tests: seed i gives every student the same initialisation and batch order
print("  soft targets on the same images:  " + difference(accs(names[1]), accs(names[0]), paired=True).describe(
    "soft targets", "labels only"))
print("  unlabelled images, hard labels:   " + difference(accs(names[2]), accs(names[0]), paired=True).describe(
    "hard pseudo-labels", "labels only"))
print("  unlabelled images, soft vs hard:  " + difference(accs(names[3]), accs(names[2]), paired=True).describe(
    "soft targets", "hard pseudo-labels"))
print(f"  best student on validation: {best_student} ({kd_acc:.3f} test)")
print(f"  the best student is {100 * (teacher_acc - kd_acc):.1f} points "
      + ("below" if kd_acc < teacher_acc else "above") + " the teacher")

# %% [markdown]
# How to read this: the three printed lines take the factorial apart. The first says whether
# soft targets help *on the same few images* (the "dark knowledge" in the teacher's
# probabilities); the second, what the *extra images* bring when the teacher only names its top
# species; the third, whether soft targets add anything once those images are there. Each line
# calls a difference real only when a paired t-test over the seeds says so at 95% (lesson 02's
# rule); otherwise the two students tie at this budget. The last line compares the best student with the teacher: a student that learns
# from the teacher also learns its mistakes, and it has less capacity.
#
# ## Hard labels or soft targets on the unlabelled images?
#
# Hinton, Vinyals and Dean (2015) found soft targets far richer than hard labels: on 3% of their
# speech data, a model trained on soft targets came close to one trained on all of it, while hard
# targets over-fitted. On the unlabelled images our two students differ only in the targets. What
# each learns from:

# %%
unlabelled_logits = soft_u[y_u < 0]
top_t1 = F.softmax(unlabelled_logits, 1).max(1).values.mean().item()
top_T = F.softmax(unlabelled_logits / D.temperature, 1).max(1).values.mean().item()
hard_vs_soft = difference(accs(names[2]), accs(names[3]))
print(f"the hard pseudo-label (the teacher's top species) is right on {pseudo_acc:.1%} of the unlabelled views")
print(f"the soft target gives the top species {top_t1:.2f} of the probability at T=1 and {top_T:.2f} at "
      f"T={D.temperature:g} (the lesson's), out of {task.num_classes} species; weight of the soft term {D.soft_weight:g}")
print("hard pseudo-labels against soft targets: " + hard_vs_soft.describe("hard pseudo-labels", "soft targets")
      + f", after {D.steps} steps")

# %% [markdown]
# Where the hard pseudo-labels come out ahead (the last line says whether they do in this run), the
# other two lines say why that can happen: a hard label is one sharp target, right as often as the
# first line says; at the lesson's temperature the soft target spreads much of its mass over the
# other species, and the student spends almost all of its loss matching that whole distribution,
# the teacher's errors and uncertainty included. Matching it pays off when the student trains long
# enough to use the fine structure; in a short budget of steps, a mostly-right sharp label is
# learned faster. This is a reading of the printed numbers, not a measurement of the cause:
# exercise 3 changes the temperature and tests part of it.
#
# ## The other road: pre-train the small model, then fine-tune it
#
# A small, fast model can also be had without a teacher: pre-train the small architecture itself
# on the general world (lesson 01's recipe: the same world, steps and rate, at the student's width;
# cached, and built by `make prepare`), then fine-tune it on the same labelled views as the
# "labels only" student, with the same number of steps. Its rate is chosen on validation between
# the students' rate and lesson 02's fine-tuning rate.

# %%
small, small_info = pretrained_student()
print(f"the small model: {count_params(small):,} parameters with the general world's head, validation accuracy "
      f"{small_info['val_acc']:.3f} on the general world after pre-training")
ft_runs = []
for lr in tqdm(sorted({S.lr, D.lr}), desc="fine-tuning the small pre-trained model"):
    for seed in range(D.seeds):
        r = run_student("labels", x_l, y_l, seed=seed, lr=lr, student=Student(pretrained=True), setup=QUIET)
        ft_runs.append({"lr": lr, "seed": seed, "val_acc": r.val_acc, "test_acc": r.test_acc})
ft_table = pd.DataFrame(ft_runs)
small_ft_lr = ft_table.groupby("lr").val_acc.mean().idxmax()           # chosen on validation
small_ft_accs = ft_table[ft_table.lr == small_ft_lr].test_acc.tolist()
small_ft_acc = mean_and_spread(small_ft_accs)[0]
display(ft_table.groupby("lr")[["val_acc", "test_acc"]].mean().round(3))
print(f"rate {small_ft_lr:g} (chosen on validation); test accuracy {small_ft_acc:.3f}")
print("  pre-trained vs random start, the same labels: " + difference(small_ft_accs, accs(names[0])).describe(
    "pre-trained and fine-tuned", "labels only"))
print("  the best student on validation vs it:        " + difference(accs(best_student), small_ft_accs).describe(
    best_student, "pre-trained and fine-tuned"))

# %% [markdown]
# The two lines answer the lesson's title for this task and budget: the first, what pre-training
# the small model is worth on its own; the second, whether learning from the big fine-tuned teacher
# (the best of the four students, chosen on validation) beats fine-tuning a small pre-trained
# model. They are
# not either-or: the teacher is itself a fine-tuned model, and a pre-trained student could be
# distilled too.
#
# ## Exercises
#
# **Exercise 1.** The temperature. Compute the teacher's softened probabilities for the first
# test image at `T = 1` and at `T = 8` (`probs_t1`, `probs_t8`, each a tensor of 6 numbers
# summing to 1). Which one has the higher entropy?

# %% tags=["exercise"]
logits0 = t_logits[0]
probs_t1 = None   # your code here
probs_t8 = None

# %% tags=["check"]
def entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum().item()
check("softened probabilities", lambda: torch.allclose(probs_t8.sum(), torch.tensor(1.0))
      and torch.allclose(probs_t1, F.softmax(logits0, 0)) and torch.allclose(probs_t8, F.softmax(logits0 / 8, 0))
      and entropy(probs_t8) > entropy(probs_t1),
      hint="the temperature scales the logits before the softmax turns them into probabilities; a higher "
           "temperature flattens them");

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# probs_t1 = F.softmax(logits0 / 1, dim=0)
# probs_t8 = F.softmax(logits0 / 8, dim=0)
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** Hard pseudo-labels, by hand. The "hard pseudo-labels" student got the
# teacher's *most likely* species as a label. Compute `pseudo_labels` for the unlabelled views
# in `x_u` (the rows where `y_u == -1`) from `soft_u`, the teacher's logits on those views.

# %% tags=["exercise"]
pseudo_labels = None   # a tensor of species indices, one per unlabelled image

# %% tags=["check"]
check("pseudo-labels", lambda: pseudo_labels.shape == (int((y_u < 0).sum()),)
      and torch.equal(pseudo_labels.cpu(), predict(teacher, x_u[y_u < 0]).argmax(1).cpu()),
      hint="only the views without a label (y_u marks them), and for each the species the teacher finds most "
           "likely: the index of its largest probability");

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# pseudo_labels = soft_u[y_u < 0].argmax(dim=1)
# ```
#
# </details>

# %% [markdown]
# **Exercise 3 (open).** Distil with `temperature=1` on the unlabelled views and compare it with
# the lesson's temperature. Does softening matter once the unlabelled images are there?
#
# ## Results

# %%
metrics = {
    "teacher_acc": teacher_acc,
    "student_label_acc": label_acc, "student_soft_same_acc": soft_same_acc,
    "student_hard_unlabelled_acc": hard_u_acc, "student_soft_unlabelled_acc": soft_u_acc,
    "student_kd_acc": kd_acc, "student_kd_best": best_student,
    **{f"student_{key}_accs": accs(name) for key, name in zip(("label", "soft_same", "hard_unlabelled",
                                                               "soft_unlabelled"), names)},
    "teacher_params": teacher_params,
    "student_params": student_params,
    "speedup": speedup, "seeds": D.seeds, "steps": D.steps, "views": D.views,
    "small_ft_acc": small_ft_acc, "small_ft_accs": small_ft_accs, "small_ft_lr": float(small_ft_lr),
}
lesson.finish(metrics, CLAIMS)
summary_table.round(4)
