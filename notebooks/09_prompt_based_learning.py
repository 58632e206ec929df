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
from helpers.lm import answer, exact_match, lm_config, lm_data, pretrained_lm
from helpers.modes import sizes
from helpers.prompting import context_tokens, few_shot
from helpers.results import Lesson, load_results
from helpers.stats import difference_of_proportions
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
# kind, not whether it recalls a sentence it read. Lesson 07 chose its checkpoint on the same kind
# of sentences, but only about the *other* diseases (those lesson 08 fine-tunes or stops on), so
# these test items never chose anything. Which of the two held-out phrasings: chosen on validation.

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

# %% [markdown]
# ## The same fine-tuning, lesson 08's items
#
# Lesson 08 fine-tuned the same model on the same questions and reported a held-out accuracy of
# its own. Its test items differ from this lesson's in three ways: they ask each fact in the
# **three wordings fine-tuning trained on** (about other diseases), where ours use a fourth wording
# no method trained on; the answer must be **followed by `<eos>`** (the fine-tuned model must also
# stop), where ours scores the answer's words only, since a prompted model was never taught to
# stop; and lesson 08 stops early on the dev diseases' questions in the trained wordings (three
# seeds, one rate), where ours stops on the validation items (one seed, a grid of rates). The same
# fine-tuned model, scored both ways:

# %%
acc_08_items = exact_match(finetuned, tok, qa.test)                 # lesson 08's scoring: trained wordings, <eos>
acc_08_items_no_eos = score(finetuned, tok, qa.test)                # the same items, the answer's words only
lesson_08 = load_results(lesson.mode).get("08", {}).get("metrics", {}).get("heldout_acc_finetuned")
print(f"the fine-tuned model of this lesson: {finetuned_acc:.1%} on this lesson's {len(items)} items (an unseen "
      f"question wording); {acc_08_items_no_eos:.1%} on lesson 08's {len(qa.test)} test questions (the trained "
      f"wordings), {acc_08_items:.1%} when the answer must also end with <eos> as lesson 08 scores it")
print("lesson 08's own number (its recipe, mean of its seeds): "
      + (f"{lesson_08:.1%}" if lesson_08 is not None else f"not recorded yet in {lesson.mode} mode"))
print(f"the unseen wording costs {100 * (acc_08_items_no_eos - finetuned_acc):+.1f} points against the trained "
      f"wordings, for the same model and facts")

# %% [markdown]
# ## Reading the table
#
# Every method asks about the same facts, which the pre-trained model either stored or did not;
# what differs is the **form** of the request. The lines below compare the forms, each difference
# with its standard error (`binomial_se`: the items are a sample, so every accuracy is uncertain
# by about that much) and a two-proportion z-test at 95% (hundreds of items: the normal
# approximation holds, so the difference must exceed 1.96 standard errors).

# %%
def verdict(a, b, name_a, name_b):     # the course's helper: a two-proportion z-test on the items, 95%
    return difference_of_proportions(a, b, len(items)).describe(name_a, name_b)


print(verdict(few_shot_acc, zero_shot_acc, "few-shot", "zero-shot"))
print(verdict(cloze_prompt_acc, zero_shot_acc, "the cloze sentence", "the zero-shot question"))
print(verdict(finetuned_acc, few_shot_acc, "fine-tuning", "few-shot"))
print(verdict(cloze_prompt_acc, finetuned_acc, "the cloze sentence (no training)", "fine-tuning"))
print("best on the test items: " + table["acc"].idxmax() + "; best on validation: " + table["val_acc"].idxmax())

# %% [markdown]
# How to read it:
#
# - **Questions without training** (zero- and few-shot) need a model that knows what a question
#   is. Large models learn to continue questions, lists and worked examples because their
#   pre-training text is full of them, and few-shot ability grows with size (GPT-3's paper
#   measured it from hundreds of millions to billions of parameters; ours has the number printed
#   at the top). Our encyclopedia holds no question at all, so "question : ... answer :" is
#   unfamiliar text to this model, with or without examples before it.
# - **A sentence of the corpus's kind** asks for the fact in the form it was stored in: a
#   continuation of a sentence about the disease. The cloze line says how far that reaches with
#   no training at all, in a phrasing the corpus never used. So it is not that a model this small
#   cannot be prompted; it can be prompted in the form of its pre-training text, and not in a
#   form it never read.
# - **Fine-tuning** builds a new path from questions to the stored facts, and a learned soft
#   prompt a smaller one. The section above shows how much of that path is tied to the wordings
#   it was trained on. The claims below check which differences are real (a two-proportion z-test
#   on the items, 95%).
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
