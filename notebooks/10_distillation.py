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
# We compare, on the species task: the teacher; the same small student trained on the labels
# alone; the student distilled on the same labelled images; and the student distilled with
# extra unlabelled images. Size, inference speed and accuracy, mean of several seeds.

# %%

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from IPython.display import display
from tqdm.auto import tqdm

from helpers.exercises import check
from helpers.lessons.distillation import UNLABELLED_SEED, create_student, finetune_teacher, run_student, transfer_set
from helpers.models import count_params
from helpers.modes import sizes
from helpers.plots import image_grid
from helpers.results import Lesson
from helpers.stats import mean_and_spread
from helpers.tasks import species_task, species_test_set
from helpers.training import accuracy, inference_seconds, predict

lesson = Lesson("10")
S, D = sizes("finetune"), sizes("distill")
D


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
# The teacher's logits are computed once per image; during training the images are flipped and
# shifted, which does not change the species, so the targets stay valid.

# %%
x_l, soft_l, y_l = transfer_set(teacher, unlabelled=0)
x_u, soft_u, y_u = transfer_set(teacher, unlabelled=D.unlabelled)
print(f"labelled: {len(x_l)} images; with unlabelled: {len(x_u)} images ({int((y_u < 0).sum())} without a label)")
pseudo_acc = (soft_u[y_u < 0].argmax(1).cpu() ==
              species_task().render(D.unlabelled, seed=UNLABELLED_SEED)[1]).float().mean().item()
print(f"(we can peek, since our world knows the truth: the teacher's label is right on {pseudo_acc:.1%} "
      f"of the unlabelled images)")

# %% [markdown]
# ## Three students, several seeds
#
# Every student starts from random weights and trains `D.steps` optimiser steps (the same
# budget). The seeds change the student's initialisation and batch order; the labelled images
# and the teacher stay the same.

# %%
runs = []
settings = [(seed, kind, data) for seed in range(D.seeds) for kind, data in
            [("labels only", (x_l, y_l, None)), ("distilled", (x_l, y_l, soft_l)),
             ("distilled + unlabelled", (x_u, y_u, soft_u))]]
for seed, name, (x, y, soft) in tqdm(settings, desc="students"):
    r = run_student("labels" if soft is None else "kd", x, y, soft, seed=seed, progress=False)
    runs.append({"student": name, "seed": seed, "images": r.images, "test_acc": r.test_acc,
                 "train_s": r.train_s})
runs_table = pd.DataFrame(runs)
runs_table.round(3)


# %%
def mean_acc(name):
    return mean_and_spread(runs_table[runs_table.student == name].test_acc.tolist())

x_speed = x_test[:256]
t_teacher, t_student = inference_seconds(teacher, x_speed), inference_seconds(student.eval(), x_speed)
speedup = t_teacher / t_student
summary_rows = [{"model": "teacher (fine-tuned)", "params": teacher_params, "ms per image": 1000 * t_teacher / len(x_speed),
                 "test_acc": teacher_acc, "spread": 0.0}]
for name in ["labels only", "distilled", "distilled + unlabelled"]:
    m, s = mean_acc(name)
    summary_rows.append({"model": f"student, {name}", "params": student_params,
                         "ms per image": 1000 * t_student / len(x_speed), "test_acc": m, "spread": s})
summary_table = pd.DataFrame(summary_rows).set_index("model")
summary_table.round(4)

# %%
label_acc, kd_acc, kd_u_acc = mean_acc("labels only")[0], mean_acc("distilled")[0], mean_acc("distilled + unlabelled")[0]
print(f"student: {student_params / teacher_params:.1%} of the teacher's parameters, {speedup:.1f}x faster at inference")
print(f"labels only {label_acc:.3f}; distilled on the same images {kd_acc:.3f} ({100 * (kd_acc - label_acc):+.1f} points); "
      f"distilled with unlabelled images {kd_u_acc:.3f} ({100 * (kd_u_acc - label_acc):+.1f} points); "
      f"teacher {teacher_acc:.3f} (mean of {D.seeds} seeds)")

# %% [markdown]
# How to read this. On the labels alone, a small network from random weights sees a few dozen
# images and mostly memorises them. Distilled on the *same* images, each image teaches more:
# the teacher's soft targets say how similar each image is to every species. With unlabelled
# images added, the student sees many more examples, each labelled by the teacher, and gets
# much closer to it, at a fraction of its size and inference time. It does not pass the
# teacher: it learns the teacher's mistakes too, and it has less capacity.
#
# Distillation vs fine-tuning is not either-or: the teacher is itself a fine-tuned model, and
# distillation is how its knowledge moves into a model small enough to deploy.
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

# %% jupyter={"source_hidden": true} tags=["solution"]
probs_t1 = F.softmax(logits0 / 1, dim=0)
probs_t8 = F.softmax(logits0 / 8, dim=0)


# %% tags=["check"]
def entropy(p):
    return -(p * p.clamp_min(1e-12).log()).sum().item()
check("softened probabilities", lambda: torch.allclose(probs_t8.sum(), torch.tensor(1.0))
      and torch.allclose(probs_t1, F.softmax(logits0, 0)) and entropy(probs_t8) > entropy(probs_t1),
      hint="F.softmax(logits0 / T, dim=0)");

# %% [markdown]
# **Exercise 2.** Hard pseudo-labels. Instead of soft targets, one can give the student the
# teacher's *most likely* species as a label. Compute `pseudo_labels` for the unlabelled images
# in `x_u` (the rows where `y_u == -1`) from `soft_u`, the teacher's logits.

# %% tags=["exercise"]
pseudo_labels = None   # a tensor of species indices, one per unlabelled image

# %% jupyter={"source_hidden": true} tags=["solution"]
pseudo_labels = soft_u[y_u < 0].argmax(dim=1)

# %% tags=["check"]
check("pseudo-labels", lambda: pseudo_labels.shape == (int((y_u < 0).sum()),)
      and torch.equal(pseudo_labels.cpu(), predict(teacher, x_u[y_u < 0]).argmax(1).cpu()),
      hint="soft_u[y_u < 0].argmax(dim=1)");

# %% [markdown]
# **Exercise 3 (open).** Train a student on the hard pseudo-labels (`run_student("labels", ...)`
# with `y` replaced by the teacher's arg-max), or with `temperature=1`, and compare it with the
# distilled student. How much of the gain comes from the soft targets, how much from the images?
#
# ## Results

# %%
lesson.record({
    "teacher_acc": teacher_acc,
    "student_label_acc": label_acc,
    "student_kd_acc": kd_u_acc,
    "teacher_params": teacher_params,
    "student_params": student_params,
    "speedup": speedup,
})
summary_table.round(4)
