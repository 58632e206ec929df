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
# - **Early stopping** on a validation split, and **forgetting** of the general corpus.

# %%
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from helpers.exercises import check
from helpers.lm import (
    IGNORE,
    answer,
    answers_correct,
    corpus_loss,
    create_lm,
    exact_match,
    finetune_qa,
    lm_config,
    lm_data,
    pretrained_lm,
    pretrained_lm_once_only,
    qa_tensors,
)
from helpers.lora import add_lora, train_only_lora, trainable_share
from helpers.modes import sizes
from helpers.plots import LiveCurve, line_plot
from helpers.results import Lesson, RunLog
from helpers.text_world import DISEASE_ATTRIBUTES

lesson = Lesson("08")
S = sizes("lm_finetune")
config = lm_config(augmented=True)
data = lm_data(config)
world, tok = data.world, data.tok
qa = world.medical_qa()
runs = RunLog("08_finetuning")
S

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
general_loss_before = corpus_loss(pretrained, data.val_ids, config.context)
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
def run_finetuning(model, label, lr=S.lr, steps=S.steps):
    """Fine-tune `model` (in place) and log the run; returns the history."""
    history = finetune_qa(model, tok, qa, steps=steps, lr=lr, batch_size=S.batch_size,
                          eval_every=S.eval_every, desc=label, hook=LiveCurve(metric="heldout_acc", title=label))
    runs.add(model=label, lr=lr, steps=steps, best_step=history.best_step,
             seen_acc=exact_match(model, tok, qa.train), heldout_acc=exact_match(model, tok, qa.test))
    return history


finetuned, _, _ = pretrained_lm(verbose=False)        # a fresh copy of the pre-trained model
h_pre = run_finetuning(finetuned, "pre-trained")
heldout_acc_finetuned = exact_match(finetuned, tok, qa.test)
seen_acc_finetuned = exact_match(finetuned, tok, qa.train)
print(f"after fine-tuning (early stopped at step {h_pre.best_step}): seen {seen_acc_finetuned:.1%}, "
      f"held-out {heldout_acc_finetuned:.1%}")


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
# the two is what fine-tuning fails to extract.

# %%
print(f"held-out facts stored (fill-in probes): {probe_acc:.1%}; answered after fine-tuning: "
      f"{heldout_acc_finetuned:.1%}; seen diseases: {seen_acc_finetuned:.1%}")

# %%
for q in qa.test[:12:2]:
    print(f"{q.prompt[len('question : '):-len(' answer :')]:<55} → {answer(finetuned, tok, q.prompt)!r:<16} "
          f"(true: {q.answer!r})")

# %% [markdown]
# ## From scratch
#
# The same architecture, randomly initialised, fine-tuned with the same questions and budget
# (a fresh model learns faster at a higher rate, so it gets ten times the learning rate).
# It can learn the seen answers by heart, but it has no way to know anything about the
# held-out diseases.

# %%
scratch = create_lm(config, tok)
h_scratch = run_finetuning(scratch, "from scratch", lr=10 * S.lr)
heldout_acc_scratch = exact_match(scratch, tok, qa.test)
print(f"from scratch: seen {exact_match(scratch, tok, qa.train):.1%}, held-out {heldout_acc_scratch:.1%}")

# %% [markdown]
# ## LoRA fine-tuning
#
# Lesson 06's LoRA adapters work on this model too: its Linear layers are plain `nn.Linear`
# modules with stable names. We wrap every attention and MLP layer with a rank-8 adapter, train
# only the adapters (a few percent of the parameters) at a higher learning rate, and compare.

# %%
lora_model, _, _ = pretrained_lm(verbose=False)
add_lora(lora_model, ["blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc", "blocks.*.mlp.proj"], rank=8)
train_only_lora(lora_model)
print(f"trainable share with LoRA: {trainable_share(lora_model):.1%}")
h_lora = run_finetuning(lora_model, "LoRA rank 8", lr=10 * S.lr)
heldout_acc_lora = exact_match(lora_model, tok, qa.test)
print(f"LoRA: seen {exact_match(lora_model, tok, qa.train):.1%}, held-out {heldout_acc_lora:.1%} "
      f"(full fine-tuning: {heldout_acc_finetuned:.1%})")

# %% [markdown]
# ## The knowledge-augmentation ablation
#
# Now a second model, pre-trained exactly like lesson 07's (same world, same facts, same model,
# same number of steps) but on the **once-only** encyclopedia: one article per entity, facts in
# a fixed order, each in one fixed sentence, the name stated once and then "it". This is the
# set-up of Allen-Zhu and Li's "bioS single" against "bioS multi + permute + fullname".
# It is cached by `make prepare`; if it is missing it is trained now (a few minutes).

# %%
once_only, _, info_once = pretrained_lm_once_only()
once_probe = exact_match(once_only, tok, world.fill_in_probes(heldout_names, once_only=True), eos=False)
h_once = run_finetuning(once_only, "once-only pre-training")
heldout_acc_no_augmentation = exact_match(once_only, tok, qa.test)
print(f"once-only model, before fine-tuning, fill-in probes in its own wording: {once_probe:.1%}")
print(f"once-only model after fine-tuning: held-out {heldout_acc_no_augmentation:.1%} "
      f"(augmented: {heldout_acc_finetuned:.1%})")


# %% [markdown]
# Which facts survive without augmentation? In the once-only article the facts always come in the
# same order, and only the first sentence names the disease; later facts are stored as "what
# follows the previous facts", not as facts about the name. Held-out accuracy per fact:

# %%
def by_attribute(model):
    ok = answers_correct(model, tok, qa.test).float().numpy()
    return pd.Series(ok, index=[q.attribute for q in qa.test]).groupby(level=0).mean()[list(DISEASE_ATTRIBUTES)]


table = pd.DataFrame({"augmented": by_attribute(finetuned), "augmented, LoRA": by_attribute(lora_model),
                      "once-only": by_attribute(once_only), "from scratch": by_attribute(scratch)})
table.round(3)

# %%
gap = heldout_acc_finetuned - heldout_acc_no_augmentation
print(f"augmentation gap on held-out diseases: {100 * gap:.1f} points "
      f"({heldout_acc_finetuned:.1%} vs {heldout_acc_no_augmentation:.1%})")
fig = curves(h_once, "fine-tuning the once-only model")
display(fig)
plt.close(fig)

# %% [markdown]
# **Reading the ablation.** The paper's finding is that without augmentation the knowledge is
# stored (the once-only model completes its own sentences, see the probe above) but is hard to
# extract by fine-tuning. How large the gap is at our tiny scale is what the numbers above say;
# the paper's models were far larger and trained far longer, our once-only corpus is small, and
# with two-word names and five facts per disease the model may still learn to tie later facts to
# the name. The results table at the end prints the measured numbers; we did not tune the set-up
# to make the gap bigger.

# %% [markdown]
# ## Forgetting
#
# Fine-tuning on questions changes weights the encyclopedia also uses. We measure the loss on the
# general corpus (the validation encyclopedia of lesson 07) before and after fine-tuning.

# %%
general_loss_after = corpus_loss(finetuned, data.val_ids, config.context)
print(f"general corpus loss: before {general_loss_before:.3f}, after {general_loss_after:.3f}")

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
# (`finetune_qa(..., early_stopping=False)`), and store the history in `h_fast`. Plot it with
# `curves(h_fast, "...")` and compare the held-out curve with the one above.

# %% tags=["exercise"]
h_fast = None

# %% jupyter={"source_hidden": true} tags=["solution"]
fast, _, _ = pretrained_lm(verbose=False)
h_fast = finetune_qa(fast, tok, qa, steps=2 * S.steps, lr=1e-3, batch_size=S.batch_size,
                     eval_every=S.eval_every, early_stopping=False, desc="lr 1e-3, no early stopping")
runs.add(model="pre-trained, lr 1e-3, no early stopping", lr=1e-3, steps=2 * S.steps, best_step=h_fast.steps_done,
         seen_acc=exact_match(fast, tok, qa.train), heldout_acc=exact_match(fast, tok, qa.test))
fig = curves(h_fast, "lr 1e-3, no early stopping")
display(fig)
plt.close(fig)

# %% tags=["check"]
check("a long fine-tuning run", lambda: h_fast is not None and h_fast.steps_done == 2 * S.steps
      and len(h_fast.evals) > 2, hint="finetune_qa(model, tok, qa, steps=2 * S.steps, lr=1e-3, early_stopping=False, ...)")

# %% [markdown]
# **Exercise 2 — the loss on every token.** `qa_tensors(tok, pairs, answer_only=False)` labels
# the question tokens too. How many more tokens carry a loss? Store the ratio of labelled
# positions (labels not equal to `IGNORE`) with `answer_only=False` to those with
# `answer_only=True`, over `qa.train`, in `label_ratio`. (Optional: fine-tune with it and
# compare held-out accuracy.)

# %% tags=["exercise"]
label_ratio = None

# %% jupyter={"source_hidden": true} tags=["solution"]
_, y_all = qa_tensors(tok, qa.train, answer_only=False)
_, y_ans = qa_tensors(tok, qa.train, answer_only=True)
label_ratio = (y_all != IGNORE).sum().item() / (y_ans != IGNORE).sum().item()

# %% tags=["check"]
check("labelled positions", lambda: label_ratio > 3,
      hint="count (y != IGNORE) for both settings and divide")

# %% [markdown]
# **Exercise 3 — ask in your own words.** Write a new question about a held-out disease, in a
# phrasing the fine-tuning set never used (keep the format `question : ... ? answer :`), and
# store the fine-tuned model's answer in `my_answer` with `answer(finetuned, tok, prompt)`.
# Does it still answer correctly? Try a few phrasings.

# %% tags=["exercise"]
my_answer = None
sick = world.disease(heldout_names[0])
sick

# %% jupyter={"source_hidden": true} tags=["solution"]
prompt = f"question : tell me which organ {sick['name']} attacks ? answer :"
my_answer = answer(finetuned, tok, prompt)
print(prompt, "→", my_answer, f"(true: {sick['organ']})")

# %% tags=["check"]
check("your own question", lambda: isinstance(my_answer, str) and len(my_answer) > 0,
      hint="answer(finetuned, tok, 'question : ... ? answer :')")

# %% [markdown]
# **Exercise 4 — how much pre-training knowledge is reachable?** Compute the share of held-out
# *test* questions answered correctly by the fine-tuned model among those whose fact the
# pre-trained model could complete as a sentence (fill-in probe correct). Use
# `answers_correct(model, tok, pairs)` (one bool per pair); the probes and the test questions are
# ordered by disease and fact, and `qa.test` has three phrasings per fact. Store it in `reachable`.

# %% tags=["exercise"]
reachable = None

# %% jupyter={"source_hidden": true} tags=["solution"]
probe_ok = answers_correct(pretrained, tok, world.fill_in_probes(
    [qa.test[i].disease for i in range(0, len(qa.test), 3 * len(DISEASE_ATTRIBUTES))]), eos=False)
question_ok = answers_correct(finetuned, tok, qa.test).view(-1, 3).float().mean(1)   # per fact
reachable = question_ok[probe_ok].mean().item() if probe_ok.any() else 0.0

# %% tags=["check"]
check("reachable knowledge", lambda: reachable is not None and 0 <= reachable <= 1,
      hint="mask the per-fact accuracy with the probe results, then take the mean")

# %% [markdown]
# ## Results
#
# The table lists the recorded numbers of this run: held-out accuracy after fine-tuning the
# pre-trained model, the same from scratch, and after once-only pre-training; accuracy on the
# fine-tuned (seen) diseases; and the general corpus loss before and after fine-tuning.

# %%
metrics = {"heldout_acc_finetuned": heldout_acc_finetuned, "seen_acc_finetuned": seen_acc_finetuned,
           "heldout_acc_scratch": heldout_acc_scratch, "heldout_acc_no_augmentation": heldout_acc_no_augmentation,
           "general_loss_before": general_loss_before, "general_loss_after": general_loss_after}
lesson.record(metrics)
pd.Series(metrics, name=lesson.mode).to_frame().round(4)
