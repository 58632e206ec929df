# %% [markdown]
# # 09 · Prompt-based learning vs fine-tuning
#
# Large language models can often do a new task **without any weight change**: you describe the
# task in the prompt (zero-shot) or show a few solved examples before the question (few-shot,
# "in-context learning"). Or you learn only a handful of **soft-prompt** vectors in front of
# the input while the model stays frozen. Does any of this work for *our* model, a tiny GPT
# pre-trained in lesson 07 on an encyclopedia of a made-up world?
#
# We ask the held-out diseases' questions of lesson 08 (diseases the fine-tuning questions never
# mention, so every answer must come from pre-training) in five ways:
#
# | method | what changes | what it costs |
# |---|---|---|
# | zero-shot | nothing | the question |
# | few-shot | nothing; solved examples in the context | a longer context |
# | cloze | nothing; the question rewritten as the corpus's own sentence | knowing the corpus's wording |
# | soft prompt | a few prompt vectors (model frozen) | training them |
# | LoRA / full fine-tuning | adapters / all weights | training |

# %%
import pandas as pd

from helpers.exercises import check
from helpers.lm import answer, exact_match, finetune_qa, lm_config, lm_data, pretrained_lm
from helpers.lora import add_lora, train_only_lora
from helpers.modes import sizes
from helpers.prompting import context_tokens, few_shot, train_soft_prompt
from helpers.results import Lesson

lesson = Lesson("09")
S, P = sizes("lm_finetune"), sizes("prompting")
config = lm_config()
world = lm_data(config).world
qa = world.medical_qa()
model, tok, info = pretrained_lm()              # lesson 07's model (a fresh copy)
heldout_names = sorted({q.disease for q in qa.test})
n_params = sum(p.numel() for p in model.parameters())
rows = []


def score(pairs, m=None):
    """Exact match: greedy decoding reproduces the answer's words (stopping is not required,
    since a prompted model was never taught to stop after an answer)."""
    return exact_match(m or model, tok, pairs, eos=False)


print(f"{len(qa.test)} held-out questions about {len(heldout_names)} diseases; model: {n_params:,} parameters, "
      f"context {config.context} tokens")
P

# %% [markdown]
# ## Zero-shot: just ask
#
# The model has read about every disease, but it has never seen the word pattern
# "question : ... answer :". Its most likely continuation is rarely a one-word fact.

# %%
zero_shot_acc = score(qa.test)
rows.append({"method": "zero-shot", "trainable_params": 0, "context_tokens": context_tokens(tok, qa.test),
             "acc": zero_shot_acc})
for q in qa.test[:3]:
    print(f"{q.prompt!r} → {answer(model, tok, q.prompt)!r} (true: {q.answer!r})")
print(f"zero-shot exact match: {zero_shot_acc:.1%}")

# %% [markdown]
# ## Few-shot: show solved examples first
#
# Before each question we put `P.shots` solved questions about the same kind of fact (from the
# fine-tuning diseases), each closed with `<eos>`. Big models pick up the pattern from such
# examples; the weights do not change.

# %%
shots = few_shot(qa.test, qa.train, k=P.shots, tok=tok, context=config.context)
print(shots[0].prompt, "→", repr(answer(model, tok, shots[0].prompt)), f"(true: {shots[0].answer!r})\n")
few_shot_acc = score(shots)
rows.append({"method": f"few-shot ({P.shots} examples)", "trainable_params": 0,
             "context_tokens": context_tokens(tok, shots), "acc": few_shot_acc})
print(f"few-shot exact match: {few_shot_acc:.1%}, reading {context_tokens(tok, shots):.0f} tokens per question "
      f"instead of {context_tokens(tok, qa.test):.0f}")

# %% [markdown]
# ## Cloze prompts: ask in the corpus's own words
#
# Pattern-exploiting training (Schick and Schütze) rewrites a task as a fill-in-the-blank
# sentence the model knows from pre-training. Here: "kel vora attacks the ..." instead of "which
# organ does kel vora affect?". No weights change, only the wording.

# %%
cloze = world.fill_in_probes(heldout_names)
for q in cloze[:3]:
    print(f"{q.prompt!r} → {answer(model, tok, q.prompt, max_new_tokens=3)!r} (true: {q.answer!r})")
cloze_prompt_acc = score(cloze)
rows.append({"method": "cloze prompt", "trainable_params": 0, "context_tokens": context_tokens(tok, cloze),
             "acc": cloze_prompt_acc})
print(f"cloze exact match: {cloze_prompt_acc:.1%}")

# %% [markdown]
# ## Soft-prompt tuning: learn the prompt, not the model
#
# Instead of searching for words, learn `P.soft_tokens` vectors that sit before the question's
# token embeddings. Only these vectors train (on the fine-tuning diseases' questions, loss on the
# answers); the model is frozen. It is the smallest possible change that can still teach the
# format.

# %%
soft, soft_history = train_soft_prompt(model, tok, qa.train, n_tokens=P.soft_tokens, steps=P.soft_steps,
                                       lr=P.soft_lr, batch_size=S.batch_size)
soft_prompt_acc = score(qa.test, soft)
rows.append({"method": f"soft prompt ({P.soft_tokens} vectors)", "trainable_params": soft.prompt.numel(),
             "context_tokens": context_tokens(tok, qa.test) + P.soft_tokens, "acc": soft_prompt_acc})
print(f"soft prompt: {soft.prompt.numel():,} trainable numbers, exact match {soft_prompt_acc:.1%}")

# %% [markdown]
# ## Fine-tuning: LoRA and all weights
#
# Lesson 08's recipe, for comparison: the same questions, the loss on the answers, early
# stopping on the dev diseases. Each starts from a fresh copy of the pre-trained model.

# %%
lora_model, _, _ = pretrained_lm(verbose=False)
add_lora(lora_model, ["blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc", "blocks.*.mlp.proj"], rank=8)
train_only_lora(lora_model)
finetune_qa(lora_model, tok, qa, steps=S.steps, lr=10 * S.lr, batch_size=S.batch_size, eval_every=S.eval_every,
            desc="LoRA rank 8")
lora_acc = score(qa.test, lora_model)
rows.append({"method": "LoRA rank 8", "trainable_params": sum(p.numel() for p in lora_model.parameters() if p.requires_grad),
             "context_tokens": context_tokens(tok, qa.test), "acc": lora_acc})

finetuned, _, _ = pretrained_lm(verbose=False)
finetune_qa(finetuned, tok, qa, steps=S.steps, lr=S.lr, batch_size=S.batch_size, eval_every=S.eval_every,
            desc="full fine-tuning")
finetuned_acc = score(qa.test, finetuned)
rows.append({"method": "full fine-tuning", "trainable_params": n_params,
             "context_tokens": context_tokens(tok, qa.test), "acc": finetuned_acc})
table = pd.DataFrame(rows).set_index("method")
table.round(3)

# %%
print(f"held-out diseases: zero-shot {zero_shot_acc:.1%}, few-shot {few_shot_acc:.1%}, cloze {cloze_prompt_acc:.1%}, "
      f"soft prompt {soft_prompt_acc:.1%}, LoRA {lora_acc:.1%}, full fine-tuning {finetuned_acc:.1%}")
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
# - **The knowledge is there, the access path is not.** The cloze prompts use the exact sentence
#   shapes of the corpus, and the same model completes many of them correctly: the facts are
#   stored, but only reachable through the wording they were stored with. Fine-tuning (and, to
#   a degree, a learned soft prompt) builds a new access path from questions to those facts;
#   examples in the context cannot, for a model this size.
#
# ## Exercises
#
# **Exercise 1.** Write your own cloze prompt. The encyclopedia says, for instance, in which
# town a disease first appeared (look at `world.article("disease", world.disease(name),
# augmented=True)` for a held-out disease). Build `my_prompts`: one `QA(prompt, answer, disease,
# attribute)` per held-out disease asking for its **town** in the corpus's wording, and score it.

# %% tags=["exercise"]
print(world.article("disease", world.disease(heldout_names[0]), augmented=True))
my_prompts = None   # a list of QA objects, one per held-out disease

# %% jupyter={"source_hidden": true} tags=["solution"]
my_prompts = [q for q in world.fill_in_probes(heldout_names) if q.attribute == "town"]
print(my_prompts[0].prompt, "→", my_prompts[0].answer)

# %% tags=["check"]
check("cloze prompts for the town", lambda: len(my_prompts) == len(heldout_names)
      and all(q.answer == world.disease(q.disease)["town"] for q in my_prompts) and score(my_prompts) >= 0,
      hint="world.fill_in_probes(heldout_names) holds one prompt per attribute; keep attribute == 'town'");

# %% [markdown]
# **Exercise 2.** How does few-shot accuracy change with the number of examples? Compute
# `shot_curve`: a list of accuracies for `k = 0, 1, 2` examples (use `few_shot(qa.test, qa.train,
# k=k, tok=tok, context=config.context)` and `score`).

# %% tags=["exercise"]
shot_curve = None   # [accuracy with 0 examples, with 1, with 2]

# %% jupyter={"source_hidden": true} tags=["solution"]
shot_curve = [score(few_shot(qa.test, qa.train, k=k, tok=tok, context=config.context)) for k in range(3)]
print(shot_curve)

# %% tags=["check"]
check("few-shot curve", lambda: len(shot_curve) == 3 and abs(shot_curve[0] - zero_shot_acc) < 1e-9,
      hint="with k=0 the prompt is the question alone, so the first value equals zero_shot_acc");

# %% [markdown]
# ## Results

# %%
lesson.record({
    "zero_shot_acc": zero_shot_acc,
    "few_shot_acc": few_shot_acc,
    "cloze_prompt_acc": cloze_prompt_acc,
    "soft_prompt_acc": soft_prompt_acc,
    "finetuned_acc": finetuned_acc,
})
table.round(3)
