# %% [markdown]
# # 09 · Prompt-based learning vs fine-tuning
#
# Large language models can often do a new task **without any weight change**: you describe the
# task in the prompt (zero-shot) or show a few solved examples before the question (few-shot,
# "in-context learning"). Or you learn only a handful of **soft-prompt** vectors in front of
# the input while the model stays frozen. Does any of this work for *our* model, a tiny GPT
# pre-trained in lesson 07 on an encyclopedia of a made-up world?
#
# We ask about the facts of the held-out diseases of lesson 08 (diseases no fine-tuning question
# mentions, so every answer must come from pre-training) in five ways. For a fair race:
#
# - **the same items**: every method answers the same facts (one item per disease and fact), and
#   is scored the same way (greedy decoding reproduces the answer's words);
# - **text no method trained on**: the questions use a wording the fine-tuning questions never
#   use (`HELDOUT_QUESTIONS`), and the cloze sentences a phrasing the corpus never uses
#   (`HELDOUT_TEMPLATES`), so neither fine-tuning, nor the soft prompt, nor the cloze method has
#   seen the exact text it is tested on;
# - **settings chosen on validation**: the same items for the dev diseases choose each method's
#   settings (shots, phrasing, prompt length, rate, steps) within a stated grid; the test items are
#   read once per method.
#
# | method | what changes | what it costs |
# |---|---|---|
# | zero-shot | nothing | the question |
# | few-shot | nothing; solved examples in the context | a longer context |
# | cloze | nothing; the question rewritten as a sentence of the corpus's kind | knowing how the corpus talks |
# | soft prompt | a few prompt vectors (model frozen) | training them |
# | full fine-tuning | all weights | training |

# %%
import pandas as pd
from IPython.display import display

from helpers.exercises import check
from helpers.lessons.prompting_lesson import (
    CLAIMS,
    binomial_se,
    choose_cloze,
    choose_shots,
    score,
    tune_finetuning,
    tune_soft_prompt,
)
from helpers.lm import answer, lm_config, lm_data, pretrained_lm
from helpers.modes import sizes
from helpers.prompting import context_tokens, few_shot
from helpers.results import Lesson
from helpers.text_world import TEMPLATES

lesson = Lesson("09")
S, P = sizes("lm_finetune"), sizes("prompting")
config = lm_config()
world = lm_data(config).world
qa = world.medical_qa()
model, tok, info = pretrained_lm()              # lesson 07's model (a fresh copy)
test_names = sorted({q.disease for q in qa.test})
dev_names = sorted({q.disease for q in qa.dev})
items = world.heldout_questions(test_names)      # the test items: one per fact, an unseen question wording
val_items = world.heldout_questions(dev_names)   # the validation items: the dev diseases, the same way
n_params = sum(p.numel() for p in model.parameters())
rows = []
print(f"{len(items)} test items about {len(test_names)} diseases, {len(val_items)} validation items; model: "
      f"{n_params:,} parameters, context {config.context} tokens")
print(items[0].prompt, "→", items[0].answer)
print(P.summary())

# %% [markdown]
# ## Zero-shot: just ask
#
# The model has read about every disease, but it has never seen the word pattern
# "question : ... answer :". Its most likely continuation is rarely a one-word fact.

# %%
zero_shot_acc = score(model, tok, items)
rows.append({"method": "zero-shot", "settings": "-", "trainable_params": 0,
             "context_tokens": context_tokens(tok, items), "val_acc": score(model, tok, val_items), "acc": zero_shot_acc})
for q in items[:3]:
    print(f"{q.prompt!r} → {answer(model, tok, q.prompt)!r} (true: {q.answer!r})")
print(f"zero-shot exact match: {zero_shot_acc:.1%}")

# %% [markdown]
# ## Few-shot: show solved examples first
#
# Before each question we put a few solved questions about the same kind of fact (from the
# fine-tuning diseases), each closed with `<eos>`. Big models pick up the pattern from such
# examples; the weights do not change. How many examples: chosen on the validation items.

# %%
k_best, shot_rows = choose_shots(model, tok, qa.train, val_items, P.shots_grid, config.context)
shots = few_shot(items, qa.train, k=k_best, tok=tok, context=config.context)
print(pd.DataFrame(shot_rows).set_index("shots").round(3).T, "\n")
print(shots[0].prompt, "→", repr(answer(model, tok, shots[0].prompt)), f"(true: {shots[0].answer!r})\n")
few_shot_acc = score(model, tok, shots)
rows.append({"method": "few-shot", "settings": f"{k_best} examples", "trainable_params": 0,
             "context_tokens": context_tokens(tok, shots), "val_acc": max(r["val_acc"] for r in shot_rows),
             "acc": few_shot_acc})
print(f"few-shot exact match ({k_best} examples, chosen on validation): {few_shot_acc:.1%}, reading "
      f"{context_tokens(tok, shots):.0f} tokens per question instead of {context_tokens(tok, items):.0f}")

# %% [markdown]
# ## Cloze prompts: ask in the corpus's kind of sentence
#
# Pattern-exploiting training (Schick and Schütze) rewrites a task as a fill-in-the-blank
# sentence like those the model read in pre-training. Here, "kel vora damages the ..." instead of
# "which organ is harmed by kel vora?". No weights change, only the wording. To keep the race
# fair, the sentences are in the **held-out phrasings**, which the corpus never uses (lesson 07's
# validation text), so this measures whether the model can use a *new* sentence of a familiar
# kind, not whether it recalls a sentence it read. Which of the two held-out phrasings: chosen on
# validation.

# %%
phrasing, cloze_rows = choose_cloze(model, tok, world, dev_names)
cloze = world.heldout_cloze(test_names, phrasing=phrasing)
for q in cloze[:3]:
    print(f"{q.prompt!r} → {answer(model, tok, q.prompt, max_new_tokens=3)!r} (true: {q.answer!r})")
cloze_prompt_acc = score(model, tok, cloze)
rows.append({"method": "cloze prompt", "settings": f"phrasing {phrasing}", "trainable_params": 0,
             "context_tokens": context_tokens(tok, cloze), "val_acc": max(r["val_acc"] for r in cloze_rows),
             "acc": cloze_prompt_acc})
print(f"cloze exact match: {cloze_prompt_acc:.1%}")

# %% [markdown]
# ## Soft-prompt tuning: learn the prompt, not the model
#
# Instead of searching for words, learn a few vectors that sit before the question's token
# embeddings. Only these vectors train (on the fine-tuning diseases' questions, loss on the
# answers); the model is frozen. It is the smallest possible change that can still teach the
# format. Prompt length and rate come from a grid, each run early stopped on the validation
# items; the best on validation is scored on the test items.

# %%
soft, soft_best, soft_rows = tune_soft_prompt(model, tok, qa.train, val_items, token_grid=P.soft_token_grid,
                                              lr_grid=P.soft_lr_grid, steps=P.soft_steps, eval_every=P.eval_every,
                                              batch_size=S.batch_size)
display(pd.DataFrame(soft_rows).round(3))
soft_prompt_acc = score(soft, tok, items)
rows.append({"method": "soft prompt", "settings": f"{soft_best['soft_tokens']} vectors, lr {soft_best['lr']:g}, "
             f"step {soft_best['best_step']}", "trainable_params": soft.prompt.numel(),
             "context_tokens": context_tokens(tok, items) + soft_best["soft_tokens"], "val_acc": soft_best["val_acc"],
             "acc": soft_prompt_acc})
print(f"soft prompt: {soft.prompt.numel():,} trainable numbers, exact match {soft_prompt_acc:.1%}")

# %% [markdown]
# ## Fine-tuning all weights
#
# Lesson 08's recipe: the same questions, the loss on the answers, early stopping, here on the
# validation items; the rate from a grid, chosen on the validation items too. Each run starts
# from a fresh copy of the pre-trained model.

# %%
finetuned, ft_best, ft_rows = tune_finetuning(lambda: pretrained_lm(verbose=False)[0], tok, qa, val_items, items,
                                              lr_grid=P.finetune_lr_grid, steps=S.steps, eval_every=S.eval_every,
                                              batch_size=S.batch_size)
display(pd.DataFrame(ft_rows).round(3))
finetuned_acc = score(finetuned, tok, items)
rows.append({"method": "full fine-tuning", "settings": f"lr {ft_best['lr']:g}, step {ft_best['best_step']}",
             "trainable_params": n_params, "context_tokens": context_tokens(tok, items), "val_acc": ft_best["val_acc"],
             "acc": finetuned_acc})
table = pd.DataFrame(rows).set_index("method")
table["acc ± SE"] = [f"{a:.3f} ± {binomial_se(a, len(items)):.3f}" for a in table["acc"]]
table.round(3)

# %%
print(f"{len(items)} held-out items: zero-shot {zero_shot_acc:.1%}, few-shot {few_shot_acc:.1%}, "
      f"cloze {cloze_prompt_acc:.1%}, soft prompt {soft_prompt_acc:.1%}, full fine-tuning {finetuned_acc:.1%} "
      f"(standard error about {binomial_se(0.5, len(items)):.1%} at 50%)")
print(f"fine-tuning minus few-shot: {100 * (finetuned_acc - few_shot_acc):+.1f} points")

# %% [markdown]
# ## Why a model this small prompts poorly
#
# - **It has never seen a question, nor a worked example.** In-context learning is not a
#   built-in skill: large models pick it up because their pre-training text is full of lists,
#   dialogues and Q&A pages, patterns they learn to continue. Our encyclopedia holds none, so
#   "question : ... answer : X <eos> question : ..." is just unfamiliar text to it.
# - **It is tiny.** Few-shot ability appears with scale (GPT-3's paper showed it growing with
#   model size from hundreds of millions to billions of parameters); ours has the number of
#   parameters printed at the top of this lesson, thousands of times fewer.
# - **The knowledge is there, the access path is not.** The cloze prompts are sentences of the
#   corpus's kind (though never its exact ones), and the table says how many of them the same
#   model completes: what it can reach depends on the wording. Fine-tuning (and, to a degree, a
#   learned soft prompt) builds a new access path from questions to those facts; examples in the
#   context cannot, for a model this size. The claims below say which differences are real (a
#   two-proportion z-test on the items, 95%).
#
# ## Exercises
#
# **Exercise 1.** Write your own cloze prompt. The encyclopedia says, for instance, in which
# town a disease first appeared (look at `world.article("disease", world.disease(name),
# augmented=True)` for a held-out disease). Build `my_prompts`: one `QA(prompt, answer, disease,
# attribute)` per test disease (`test_names`) asking for its **town** in the corpus's own wording,
# and score it with `score(model, tok, my_prompts)`. Is it higher than the held-out phrasing's?

# %% tags=["exercise"]
print(world.article("disease", world.disease(test_names[0]), augmented=True))
my_prompts = None   # a list of QA objects, one per held-out disease

# %% tags=["check"]
check("cloze prompts for the town", lambda: my_prompts is not None and len(my_prompts) == len(test_names)
      and sorted(q.disease for q in my_prompts) == test_names
      and all(q.answer == world.disease(q.disease)["town"] and q.prompt in
              [t.split("{town}")[0].format(name=q.disease).strip() for t in TEMPLATES["disease"]["town"]]
              for q in my_prompts),
      hint="the corpus's own wording is in TEMPLATES (not the held-out phrasings): a template cut just before "
           "the town is a cloze prompt; the world can build such fill-in prompts for every attribute of a list of "
           "diseases, and you need only the town's");

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# my_prompts = [q for q in world.fill_in_probes(test_names) if q.attribute == "town"]
# print(my_prompts[0].prompt, "→", my_prompts[0].answer)
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** How does few-shot accuracy change with the number of examples? Compute
# `shot_curve`: a list of accuracies on the **validation** items for `k = 0, 1, 2` examples (use
# `few_shot(val_items, qa.train, k=k, tok=tok, context=config.context)` and `score(model, tok, ...)`).
# Why validation and not the test items?

# %% tags=["exercise"]
shot_curve = None   # [accuracy with 0 examples, with 1, with 2]

# %% tags=["check"]
check("few-shot curve", lambda: shot_curve is not None and len(shot_curve) == 3
      and abs(shot_curve[0] - score(model, tok, val_items)) < 1e-9
      and all(abs(a - score(model, tok, few_shot(val_items, qa.train, k=k, tok=tok, context=config.context))) < 1e-9
              for k, a in enumerate(shot_curve)),
      hint="choices are made on the validation items, not the test items; k counts the worked examples put "
           "before the question, from none (the question alone) to two");

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# shot_curve = [score(model, tok, few_shot(val_items, qa.train, k=k, tok=tok, context=config.context)) for k in range(3)]
# print(shot_curve)      # validation: choosing k on the test items would make the test score optimistic
# ```
#
# </details>

# %% [markdown]
# ## Results

# %%
metrics = {"items": len(items), "val_items": len(val_items), "zero_shot_acc": zero_shot_acc, "few_shot_acc": few_shot_acc,
           "few_shot_k": k_best, "cloze_prompt_acc": cloze_prompt_acc, "soft_prompt_acc": soft_prompt_acc,
           "soft_tokens": soft_best["soft_tokens"], "soft_lr": soft_best["lr"], "finetuned_acc": finetuned_acc,
           "finetune_lr": ft_best["lr"]}
lesson.finish(metrics, CLAIMS)
table.round(3)
