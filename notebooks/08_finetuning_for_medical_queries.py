# %% [markdown]
# # 08 · Fine-tuning for medical queries
#
# Lesson 07 pre-trained a small language model on an encyclopedia of a made-up world. It can
# continue sentences, and it has stored facts about the world's diseases. But it has never seen
# a **question**. Here we fine-tune it to answer medical questions, and measure what matters:
#
# - **Held-out diseases.** Half of the diseases never appear in the fine-tuning questions. If the
#   model answers questions about them, the *knowledge* came from pre-training; fine-tuning only
#   taught it the *format* (how to answer a question with what it already knows).
# - **From scratch.** The same model and fine-tuning, without pre-training.
# - **Knowledge augmentation.** Allen-Zhu and Li ("Physics of Language Models, Part 3.1") found
#   that a model pre-trained on text stating each fact once, always in the same way, stores the
#   facts but fine-tuning cannot get them out; stating facts in varied phrasings and orders makes
#   them extractable. We repeat their ablation on our world.
# - **Early stopping** on a validation split, and **forgetting**: how many of the world's other
#   facts (people, towns, animals...) the model still knows after fine-tuning, with full
#   fine-tuning, LoRA and replay side by side.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from helpers.exercises import check
from helpers.lessons.medical import (
    CLAIMS,
    PAPER_HELDOUT_AUGMENTED,
    PAPER_HELDOUT_NO_AUGMENTATION,
    Retention,
    reachable_knowledge,
    run_qa,
    summary,
    with_lora,
)
from helpers.lm import (
    IGNORE,
    Replay,
    answer,
    answers_correct,
    create_lm,
    exact_match,
    finetune_qa,  # noqa: F401 (exercise 1 uses it)
    lm_config,
    lm_data,
    pretrained_lm,
    pretrained_lm_once_only,
    qa_tensors,
)
from helpers.lora import trainable_share
from helpers.modes import sizes
from helpers.plots import LiveCurve, line_plot
from helpers.results import Lesson
from helpers.runner import Budget
from helpers.stats import difference
from helpers.text_world import DISEASE_ATTRIBUTES, QUESTIONS
from helpers.training import Monitor

lesson = Lesson("08")
S = sizes("lm_finetune")
config = lm_config(augmented=True)
data = lm_data(config)
world, tok = data.world, data.tok
qa = world.medical_qa()
runs = lesson.run_log("08_finetuning")
print(S.summary())

# %% [markdown]
# ## The questions
#
# Every disease has five facts (symptom, organ, cause, treatment, the town where it was first
# seen), and each is asked in three phrasings, worded differently from the encyclopedia.
# The splits are by **disease**: `train` (half of the diseases, for fine-tuning), `dev` (a few
# held-out diseases, to decide when to stop) and `test` (the other held-out diseases).

# %%
print(f"fine-tuning questions: {len(qa.train)} about {len(qa.seen_diseases)} diseases")
print(f"held-out: dev {len(qa.dev)} questions, test {len(qa.test)} questions, "
      f"{len(qa.heldout_diseases)} diseases never seen in fine-tuning")
assert not qa.seen_diseases & qa.heldout_diseases
pd.DataFrame([q.__dict__ for q in qa.train[:4] + qa.test[:3]])

# %% [markdown]
# ## The loss on the answer only
#
# A fine-tuning example is the prompt followed by the answer and an end token. We want the
# model to learn to *answer*, not to predict the question, so the labels of the prompt positions
# are set to −100, which `cross_entropy` ignores. This is the whole mechanism:

# %%
x, y = qa_tensors(tok, qa.train[:1])
pd.DataFrame({"input": [tok.vocab[i] for i in x[0]],
              "label (next token)": [tok.vocab[i] if i != IGNORE else "·" for i in y[0]]}).T

# %% [markdown]
# ## Before fine-tuning: the knowledge is there, the format is not
#
# The pre-trained model completes sentences in the encyclopedia's own wording, but asked a
# question it does not know it should answer with a single fact.

# %%
pretrained, tok, info = pretrained_lm()
heldout_names = sorted({q.disease for q in qa.test})
probe_acc = exact_match(pretrained, tok, world.fill_in_probes(heldout_names), eos=False)
question_acc = exact_match(pretrained, tok, qa.test)
general = world.general_probes()                 # the world's non-medical facts, in the corpus's wording
general_before = answers_correct(pretrained, tok, general, eos=False)
print(f"held-out diseases, fill-in-the-sentence probes: {probe_acc:.1%}")
print(f"held-out diseases, questions (exact match):     {question_acc:.1%}")
q = qa.test[0]
print(f"\n{q.prompt}  →  {answer(pretrained, tok, q.prompt)!r}   (true: {q.answer!r})")


# %% [markdown]
# ## Fine-tuning the pre-trained model
#
# All parameters are tuned on the questions about the seen diseases, with the loss on the
# answers only, at a low learning rate. Every few steps we measure exact-match accuracy on the
# seen questions, on the dev diseases and on the test diseases. **Early stopping**: at the end
# the weights of the step with the best *dev* accuracy are restored. The dev diseases are held
# out like the test ones, so they tell us when more fine-tuning starts to cost held-out answers
# without peeking at the test set.

# %%
def run(model, label, *, lr=S.lr, steps=S.steps, seed=0, eval_every=S.eval_every, stop_when=None, replay=None):
    """Fine-tune `model` (in place), measure it (a row of numbers) and log the run."""
    row = run_qa(model, tok, qa, lr=lr, seed=seed, replay=replay, general=Retention(general, general_before),
                 budget=Budget(steps=steps, batch_size=S.batch_size, eval_every=eval_every, stop_when=stop_when),
                 monitor=Monitor(desc=label, hook=LiveCurve(metric="heldout_acc", title=label)))
    runs.add(**{k: v for k, v in row.items() if k != "history"})
    return row


augmented_rows = []
for seed in range(S.seeds):                      # seeds change the order of the fine-tuning batches
    finetuned, _, _ = pretrained_lm(verbose=False)    # a fresh copy of the pre-trained model
    augmented_rows.append(run(finetuned, f"pre-trained, seed {seed}", seed=seed))
    if seed == 0:
        finetuned0, h_pre = finetuned, augmented_rows[0]["history"]
heldout_acc_finetuned, heldout_spread = summary(augmented_rows, "heldout_acc")
seen_acc_finetuned, seen_spread = summary(augmented_rows, "seen_acc")
print(f"after fine-tuning (early stopping on dev; {S.seeds} seeds): seen {seen_acc_finetuned:.1%} ± {seen_spread:.1%}, "
      f"held-out {heldout_acc_finetuned:.1%} ± {heldout_spread:.1%}; kept steps "
      f"{[r['kept_step'] for r in augmented_rows]}")
finetuned = finetuned0


# %% [markdown]
# Accuracy over fine-tuning steps. The seen questions keep improving; the held-out curve rises
# quickly (the model learns the format and uses what it knows) and can fall again when
# fine-tuning goes on too long: the model starts memorising the seen answers instead. The dotted
# line marks the step early stopping chose.

# %%
def curves(history, title):
    steps = [e["step"] for e in history.evals]
    fig = line_plot(steps, {k: [e[k] for e in history.evals] for k in ("seen_acc", "dev_acc", "heldout_acc")},
                    xlabel="fine-tuning step", ylabel="exact match", title=title)
    fig.axes[0].axvline(history.best_step, color="grey", ls=":")
    return fig


fig = curves(h_pre, "fine-tuning the pre-trained model")
display(fig)
plt.close(fig)

# %% [markdown]
# **Stored versus extracted.** Fine-tuning can only bring out what pre-training stored. The
# fill-in probes measured what the pre-trained model can complete about the held-out diseases
# in the encyclopedia's own wording; the held-out accuracy measures what fine-tuning made
# answerable as questions. If the first number is far from 100%, pre-training has not yet stored
# every fact of this world at this budget (more pre-training steps raise it); the gap between
# the two is what fine-tuning fails to extract. The held-out questions here use the three wordings
# fine-tuning trained on (about other diseases); lesson 09 asks the same facts in a wording no
# method trained on, and prints one fine-tuned model's score on both kinds of item.

# %%
print(f"held-out facts stored (fill-in probes): {probe_acc:.1%}; answered after fine-tuning: "
      f"{heldout_acc_finetuned:.1%}; seen diseases: {seen_acc_finetuned:.1%} (means over {S.seeds} seeds)")

# %%
for q in qa.test[:12:2]:
    print(f"{q.prompt[len('question : '):-len(' answer :')]:<55} → {answer(finetuned, tok, q.prompt)!r:<16} "
          f"(true: {q.answer!r})")

# %% [markdown]
# ## From scratch
#
# The same architecture, randomly initialised, fine-tuned with the same questions and budget, at
# its own learning rate (`S.scratch_lr`: random weights want a larger one, lesson 02). It can
# learn the seen answers by heart, but it has no way to know anything about the held-out
# diseases: its dev accuracy, which early stopping watches, stays at zero at any rate and any
# budget, so more steps or another rate cannot change the held-out verdict.

# %%
scratch = create_lm(config, tok)
scratch_row = run(scratch, "from scratch", lr=S.scratch_lr)
heldout_acc_scratch = scratch_row["heldout_acc"]
print(f"from scratch: seen {scratch_row['seen_acc']:.1%}, held-out {heldout_acc_scratch:.1%}, "
      f"best dev accuracy along the run {max(e['dev_acc'] for e in scratch_row['history'].evals):.1%}")

# %% [markdown]
# ## The knowledge-augmentation ablation
#
# Now a second model, pre-trained exactly like lesson 07's (same world, same facts, same model,
# same number of steps) but on the **once-only** encyclopedia: one article per entity, facts in
# a fixed order, each in one fixed sentence, the name stated once and then "it". This is the
# set-up of Allen-Zhu and Li's "bioS single" against "bioS multi + permute + fullname".
# It is cached by `make prepare`; if it is missing it is trained now (a few minutes).
#
# **Equal fit.** The once-only model learns the question format more slowly: at the same budget
# it answers fewer of even the *seen* questions, and then part of its held-out gap would be plain
# under-fitting. So we give it a larger budget (`S.once_only_steps`) and keep its weights at the
# first evaluation where its accuracy on the seen questions is within `S.fit_tolerance` of the
# augmented model's (if it never gets there, its best dev step, and the lesson says so). Then the
# two models fit the fine-tuning questions equally well, and the held-out gap measures what the
# paper measures: whether fine-tuning can **extract** the knowledge.

# %%
once_only, _, info_once = pretrained_lm_once_only()
once_probe = exact_match(once_only, tok, world.fill_in_probes(heldout_names, once_only=True), eos=False)
target = sum(r["history"].evals[[e["step"] for e in r["history"].evals].index(r["kept_step"])]["seen_acc"]
             for r in augmented_rows) / len(augmented_rows)     # the augmented runs' seen accuracy (probe)
once_rows = []
for seed in range(S.seeds):
    model_once, _, _ = pretrained_lm_once_only(verbose=False)
    once_rows.append(run(model_once, f"once-only, seed {seed}", seed=seed, steps=S.once_only_steps,
                         eval_every=2 * S.eval_every,      # a longer run: half as many evaluations per step
                         stop_when=lambda m: m["seen_acc"] >= target - S.fit_tolerance))
    if seed == 0:
        once_only, h_once = model_once, once_rows[0]["history"]
heldout_acc_no_augmentation, once_spread = summary(once_rows, "heldout_acc")
seen_acc_no_augmentation, _ = summary(once_rows, "seen_acc")
reached = sum(bool(r["reached_fit"]) for r in once_rows)
print(f"once-only model, before fine-tuning, fill-in probes in its own wording: {once_probe:.1%}")
print(f"equal fit reached in {reached} of {S.seeds} runs, at steps {[r['kept_step'] for r in once_rows]} "
      f"(target: seen accuracy within {S.fit_tolerance:.0%} of {target:.1%})")
print(f"once-only after fine-tuning: seen {seen_acc_no_augmentation:.1%}, held-out {heldout_acc_no_augmentation:.1%} "
      f"± {once_spread:.1%}; augmented: seen {seen_acc_finetuned:.1%}, held-out {heldout_acc_finetuned:.1%}")


# %% [markdown]
# Which facts survive without augmentation? In the once-only article the facts always come in the
# same order, and only the first sentence names the disease; later facts are stored as "what
# follows the previous facts", not as facts about the name. Held-out accuracy per fact:

# %%
def by_attribute(model):
    ok = answers_correct(model, tok, qa.test).float().numpy()
    return pd.Series(ok, index=[q.attribute for q in qa.test]).groupby(level=0).mean()[list(DISEASE_ATTRIBUTES)]


table = pd.DataFrame({"augmented": by_attribute(finetuned), "once-only (equal fit)": by_attribute(once_only),
                      "from scratch": by_attribute(scratch)})
table.round(3)

# %%
# paired t-test: fine-tuning seed i gives both models the same questions in the same order
gap = difference([r["heldout_acc"] for r in augmented_rows], [r["heldout_acc"] for r in once_rows], paired=True)
print("held-out accuracy at equal fit: " + gap.describe("augmented", "once-only"))
print(f"Allen-Zhu and Li report about {PAPER_HELDOUT_NO_AUGMENTATION:.0%} without augmentation and "
      f"{PAPER_HELDOUT_AUGMENTED:.0%} with it; we measure {heldout_acc_no_augmentation:.1%} and "
      f"{heldout_acc_finetuned:.1%}: "
      + ("the same direction" if gap.real and gap.diff > 0 else "not the paper's clear gap")
      + (", and a similar size" if gap.real and gap.diff > 0.5 else ", a smaller size" if gap.real and gap.diff > 0 else "")
      + ".")
fig = curves(h_once, "fine-tuning the once-only model")
display(fig)
plt.close(fig)

# %% [markdown]
# **Reading the ablation.** The paper's finding is that without augmentation the knowledge is
# stored (the once-only model completes its own sentences, see the probe above) but is hard to
# extract by fine-tuning. The printed lines above compare our two numbers at equal fit with the
# paper's. Where ours differ in size, the reasons are scale and set-up: the paper's models were far
# larger, trained far longer on 100,000 biographies; ours is small, the once-only corpus tiny, and
# with two-word names and five facts per disease the model may still tie later facts to the name.
# The augmented model's own ceiling is lower too: pre-training at the class budget does not store
# every fact (the fill-in probes), and fine-tuning cannot extract a fact that is not stored.
# We did not tune the set-up to make the gap bigger.

# %% [markdown]
# ## Forgetting, and two cures
#
# Fine-tuning on questions changes weights the encyclopedia also uses. We measure forgetting
# **fact by fact**: the world's non-medical facts (where a person was born, what an animal eats,
# where a river ends...), asked as fill-in sentences in the corpus's own wording before and after
# fine-tuning. **Retention** is the share of the facts the pre-trained model knew that the
# fine-tuned model still knows. Three fine-tunings side by side, each early stopped on dev:
#
# - **full**: all weights (the seed-0 run above);
# - **LoRA**: rank-8 adapters on every attention and MLP layer, only they train (at their own
#   rate `S.lora_lr`); the pre-trained weights cannot move;
# - **replay**: full fine-tuning, but every batch also carries `S.replay_batch` windows of the
#   pre-training corpus, trained with the ordinary next-token loss: the model keeps rehearsing
#   what it knew.

# %%
lora_model = with_lora(pretrained_lm(verbose=False)[0])
print(f"trainable share with LoRA: {trainable_share(lora_model):.1%}")
lora_row = run(lora_model, "LoRA rank 8", lr=S.lora_lr)
replay_model, _, _ = pretrained_lm(verbose=False)
replay_row = run(replay_model, "replay", replay=Replay(data.train_ids, batch=S.replay_batch))
forgetting = [{"method": method, "heldout_acc": r["heldout_acc"], "seen_acc": r["seen_acc"],
               "general_acc": r["general_acc"], "general_retention": r["general_retention"],
               "trainable_share": r["trainable_share"], "kept_step": r["kept_step"]}
              for method, r in [("full", augmented_rows[0]), ("lora", lora_row), ("replay", replay_row)]]
print(f"general facts known before fine-tuning: {general_before.float().mean():.1%} of {len(general)}")
pd.DataFrame(forgetting).set_index("method").round(3)

# %%
fig = line_plot([r["general_retention"] for r in forgetting], {"held-out accuracy": [r["heldout_acc"] for r in forgetting]},
                xlabel="general facts retained", ylabel="held-out accuracy", title="forgetting against held-out accuracy")
for r in forgetting:
    fig.axes[0].annotate(r["method"], (r["general_retention"], r["heldout_acc"]), fontsize=9)
display(fig)
plt.close(fig)
full_row = forgetting[0]
for r in forgetting[1:]:
    print(f"{r['method']}: retains {r['general_retention']:.1%} of the general facts (full: "
          f"{full_row['general_retention']:.1%}), held-out {r['heldout_acc']:.1%} (full: {full_row['heldout_acc']:.1%})")

# %% [markdown]
# ## All runs of this notebook
#
# Every fine-tuning run above (and every one you add in the exercises) is logged:

# %%
runs.table()

# %% [markdown]
# ## Exercises
#
# **Exercise 1 — too long, too fast.** Fine-tune a fresh copy of the pre-trained model at a
# learning rate of `1e-3` for twice the steps, **without** early stopping
# (`finetune_qa(..., budget=Budget(..., keep_best=False))`), and store the history in `h_fast`. Plot it with
# `curves(h_fast, "...")` and compare the held-out curve with the one above.

# %% tags=["exercise"]
h_fast = None

# %% tags=["check"]
check("a long fine-tuning run", lambda: h_fast is not None and h_fast.steps_done == 2 * S.steps
      and h_fast.best_step == h_fast.steps_done and 5e-4 < max(h_fast.lr) <= 1e-3 * (1 + 1e-6)
      and len(h_fast.evals) > 2,
      hint="the lesson's own fine-tuning call on a fresh pre-trained copy, with the three things the exercise "
           "names changed: the rate, the number of steps, and no early stopping (the weights of the last step stay)")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# fast, _, _ = pretrained_lm(verbose=False)
# h_fast = finetune_qa(fast, tok, qa, lr=1e-3, monitor=Monitor(desc="lr 1e-3, no early stopping"),
#                      budget=Budget(steps=2 * S.steps, batch_size=S.batch_size, eval_every=S.eval_every,
#                                    keep_best=False))
# runs.add(model="pre-trained, lr 1e-3, no early stopping", lr=1e-3, steps=2 * S.steps, best_step=h_fast.steps_done,
#          seen_acc=exact_match(fast, tok, qa.train), heldout_acc=exact_match(fast, tok, qa.test))
# fig = curves(h_fast, "lr 1e-3, no early stopping")
# display(fig)
# plt.close(fig)
# ```
#
# </details>

# %% [markdown]
# **Exercise 2 — the loss on every token.** `qa_tensors(tok, pairs, answer_only=False)` labels
# the question tokens too. How many more tokens carry a loss? Store the ratio of labelled
# positions (labels not equal to `IGNORE`) with `answer_only=False` to those with
# `answer_only=True`, over `qa.train`, in `label_ratio`. (Optional: fine-tune with it and
# compare held-out accuracy.)

# %% tags=["exercise"]
label_ratio = None

# %% tags=["check"]
check("labelled positions", lambda: label_ratio is not None and abs(label_ratio - (
          (qa_tensors(tok, qa.train, answer_only=False)[1] != IGNORE).sum() /
          (qa_tensors(tok, qa.train, answer_only=True)[1] != IGNORE).sum()).item()) < 1e-6,
      hint="the labels are the second tensor qa_tensors returns; a position carries a loss when its label is "
           "not IGNORE; count those both ways over the same training pairs, the larger count on top")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# _, y_all = qa_tensors(tok, qa.train, answer_only=False)
# _, y_ans = qa_tensors(tok, qa.train, answer_only=True)
# label_ratio = (y_all != IGNORE).sum().item() / (y_ans != IGNORE).sum().item()
# ```
#
# </details>

# %% [markdown]
# **Exercise 3 — ask in your own words.** Write a new question about a held-out disease, in a
# phrasing the fine-tuning set never used (keep the format `question : ... ? answer :`), store it
# in `my_prompt`, and store the fine-tuned model's answer in `my_answer` with
# `answer(finetuned, tok, my_prompt)`. Does it still answer correctly? Try a few phrasings.

# %% tags=["exercise"]
my_prompt = my_answer = None
sick = world.disease(heldout_names[0])
sick

# %% tags=["check"]
def new_question_about_a_heldout_disease(prompt):
    asked = [d for d in qa.heldout_diseases if f" {d} " in f" {prompt} "]
    known = {f"question : {q.format(name=d)} answer :" for qs in QUESTIONS.values() for q in qs for d in asked}
    return prompt.startswith("question : ") and prompt.endswith("? answer :") and asked and prompt not in known


check("your own question", lambda: isinstance(my_prompt, str) and new_question_about_a_heldout_disease(my_prompt)
      and my_answer == answer(finetuned, tok, my_prompt),
      hint="name a held-out disease exactly as heldout_names spells it, ask in words none of QUESTIONS uses, "
           "keep the 'question : ... ? answer :' frame, and let the fine-tuned model answer it")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# my_prompt = f"question : tell me which organ {sick['name']} attacks ? answer :"
# my_answer = answer(finetuned, tok, my_prompt)
# print(my_prompt, "→", my_answer, f"(true: {sick['organ']})")
# ```
#
# </details>

# %% [markdown]
# **Exercise 4 — how much pre-training knowledge is reachable?** Compute the share of held-out
# *test* questions answered correctly by the fine-tuned model among those whose fact the
# pre-trained model could complete as a sentence (fill-in probe correct). Use
# `answers_correct(model, tok, pairs)` (one bool per pair); the probes and the test questions are
# ordered by disease and fact, and `qa.test` has three phrasings per fact. Store it in `reachable`.

# %% tags=["exercise"]
reachable = None

# %% tags=["check"]
check("reachable knowledge", lambda: reachable is not None
      and abs(reachable - reachable_knowledge(pretrained, finetuned, tok, world, qa)) < 1e-6,
      hint="per fact: the mean over its three phrasings of the fine-tuned model's verdicts; keep the facts whose "
           "probe the pre-trained model completes; take the mean")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# probe_ok = answers_correct(pretrained, tok, world.fill_in_probes(
#     [qa.test[i].disease for i in range(0, len(qa.test), 3 * len(DISEASE_ATTRIBUTES))]), eos=False)
# question_ok = answers_correct(finetuned, tok, qa.test).view(-1, 3).float().mean(1)   # per fact
# reachable = question_ok[probe_ok].mean().item() if probe_ok.any() else 0.0
# ```
#
# </details>

# %% [markdown]
# ## Results
#
# The recorded numbers of this run: held-out and seen accuracy after fine-tuning the pre-trained
# model (means over the seeds), the same after once-only pre-training at equal fit, from scratch,
# and the forgetting table (held-out accuracy against general retention for full fine-tuning,
# LoRA and replay). The claims below are checked against them.

# %%
metrics = {"heldout_acc_finetuned": heldout_acc_finetuned, "seen_acc_finetuned": seen_acc_finetuned,
           "heldout_acc_finetuned_spread": heldout_spread, "seeds": S.seeds,
           "heldout_acc_no_augmentation": heldout_acc_no_augmentation, "seen_acc_no_augmentation": seen_acc_no_augmentation,
           "heldout_acc_no_augmentation_spread": once_spread, "fit_tolerance": S.fit_tolerance,
           "equal_fit_reached": reached, "augmentation_gap": gap.diff, "augmentation_gap_se": gap.se,
           "augmentation_gap_real": bool(gap.real), "heldout_acc_scratch": heldout_acc_scratch,
           "general_known_before": general_before.float().mean().item(), "forgetting": forgetting}
lesson.finish(metrics, CLAIMS)
pd.Series({k: v for k, v in metrics.items() if k != "forgetting"}, name=lesson.mode).to_frame()
