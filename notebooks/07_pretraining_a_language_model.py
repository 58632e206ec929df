# %% [markdown]
# # 07 · Pre-training a language model
#
# The glossary's first example of fine-tuning is a language model pre-trained on a vast general
# corpus and then fine-tuned to answer medical questions. In this lesson we do the first half at
# laptop size: a tiny GPT-style model learns to predict the next word of an **encyclopedia of a
# made-up world**. Because the world is generated from a fact table, we know exactly which facts
# the corpus contains, and in lesson 08 we can test whether the model learned them.
#
# You will see: the corpus and its vocabulary, why we split text into words, the model and where
# its parameters sit, pre-training with a loss curve against a simple baseline, samples of text
# at several points of training, and what the model "knows" after pre-training.

# %%

import pandas as pd
import torch
from IPython.display import display

from helpers.exercises import check
from helpers.gpt import GPT, count_params_by_part, generate
from helpers.lessons.pretraining_lm import CLAIMS, loss_curves, overfitting_summary
from helpers.lm import answers_correct, corpus_ids, gpt_config, lm_config, lm_data, pretrained_lm
from helpers.modes import sizes
from helpers.plots import LiveCurve
from helpers.results import Lesson
from helpers.tokenizer import CharTokenizer

lesson = Lesson("07")
S = sizes("lm_pretrain")
config = lm_config(augmented=True)
data = lm_data(config)          # the world, its tokenizer, the training and validation streams
world, tok = data.world, data.tok
print(S.summary())

# %% [markdown]
# ## The world and its encyclopedia
#
# A seeded fact table describes people, towns, animals, plants, rivers, trades and **diseases**.
# Every name is made up, so whatever the model knows about them it can only have learned here.
# The diseases are the topic of lesson 08; here they are one topic among many.

# %%
pd.DataFrame(world.diseases[:6])

# %%
print({kind: len(entities) for kind, entities in world.facts.items()})
pd.DataFrame(world.facts["person"][:4])

# %% [markdown]
# The encyclopedia states every fact **several times, in different phrasings and orders**,
# spread over several articles per entity, each sentence naming the entity in full. Lesson 08
# compares this *augmented* version with one that states each fact once (the switch is
# `augmented=False`). Here are two articles about the same disease:

# %%
name = world.diseases[0]["name"]
for article in [a for a in world.encyclopedia(augmented=True) if a.startswith(name)][:2]:
    print(article, "\n")
print("once-only version:\n" + [a for a in world.encyclopedia(augmented=False) if a.startswith(name)][0])

# %% [markdown]
# The **validation text** states the same facts in **phrasings the training text never uses**
# (`HELDOUT_TEMPLATES` in `helpers/text_world.py`, built from the training text's own words).
# So the validation loss measures whether the model generalises to new ways of saying what it
# read, not whether it recalls the training sentences:

# %%
print([a for a in world.encyclopedia(augmented=True, seed=config.world.seed + 1000, heldout_phrasings=True)
       if a.startswith(name)][0])

# %% [markdown]
# ## Tokens: words, not characters
#
# A model reads integer ids, so text is cut into tokens. With **characters**, a model must first
# learn to spell every made-up name before it can attach a fact to it; with **words**, each fact is
# one or two predictions. This course uses words and did not train a character model to compare
# (that would be a lesson of its own); what the table below measures is the cost in length: the
# same text in characters, and so how many fewer facts one window of the model's context holds. (Byte-pair
# encoding lies between the two; for a closed, generated world it buys nothing over words.)

# %%
articles = world.encyclopedia(augmented=True)
chars = CharTokenizer.fit(articles)
word_ids, char_ids = corpus_ids(articles, tok), corpus_ids(articles, chars)
pd.DataFrame({"vocabulary": [len(tok), len(chars)],
              "corpus tokens": [len(word_ids), len(char_ids)],
              "tokens per article": [len(word_ids) / len(articles), len(char_ids) / len(articles)]},
             index=["word", "character"]).round(1)

# %%
print(f"the corpus is {len(char_ids) / len(word_ids):.1f} times longer in characters than in words: a "
      f"{config.context}-token window holds about {config.context / (len(word_ids) / len(articles)):.2f} articles "
      f"as words, {config.context / (len(char_ids) / len(articles)):.2f} as characters")

# %%
sentence = articles[0].split(" . ")[0] + " ."
print(sentence)
print(tok.encode(sentence))
print([tok.vocab[i] for i in tok.encode(sentence)])

# %% [markdown]
# ## The model
#
# A GPT-style decoder (`helpers/gpt.py`, about a hundred lines): token and position embeddings,
# a few blocks of causal self-attention and an MLP, and an output layer that reuses the token
# embedding (tied weights). "Causal" means position *t* only sees positions up to *t*, so the
# model can be trained to predict every next token of a window at once.

# %%
model = GPT(gpt_config(config, len(tok)))
parts = count_params_by_part(model)
params = sum(parts.values())
print(model.config, f"\n{params:,} parameters")
pd.Series(parts, name="parameters").to_frame()

# %% [markdown]
# ## Pre-training
#
# Each step reads a batch of random windows of the corpus and is trained to predict every next
# token (cross-entropy). The shared `train` loop does the work. Every few steps we measure three
# losses: on the **training text**; on the **validation text** (every word of the held-out
# phrasings); and on the **validation facts**: each fact of the diseases lesson 08 fine-tunes on or
# stops on, in both held-out phrasings, the sentence cut just before the fact ("⟨disease⟩ damages
# the" → "liver"), the loss on the fact's words only. Lesson 08's *test* diseases are left out of
# these facts: lessons 08 and 09 test on them, so they must not choose the checkpoint.
#
# The grey line is the **unigram baseline**: the loss of a model that ignores context and always
# predicts how frequent each word is. Getting below it means the model uses context.
#
# **Keeping the best checkpoint.** Pre-training runs its whole budget, but the checkpoint kept
# (and used by lessons 08 and 09) is the one with the **lowest validation fact loss**: early
# stopping, decided on validation. We stop on the facts, not on every word, because the facts
# are what pre-training is for here; the held-out phrasings' own words are a different question,
# answered by the middle curve. The first run trains and caches the model (`make prepare` does it
# ahead of a class); later runs load it.

# %%
model, tok, info = pretrained_lm(hook=LiveCurve(metric="val_loss", title="pre-training"),
                                 progress_samples=False)
display(loss_curves(info))
o = overfitting_summary(info)
print(f"kept step {o['best_step']} of {o['steps']} (lowest validation fact loss, {info['val_fact_loss']:.3f}; "
      f"{info['val_fact_loss_final']:.3f} at the last step)")
print(f"validation loss, every word: {info['val_loss']:.3f} at the kept step, lowest {o['val_loss_min']:.3f} at "
      f"step {o['val_loss_min_step']}, {info['val_loss_final']:.3f} at the last step; unigram baseline "
      f"{info['unigram_loss']:.3f}")
print(f"{info['tokens']:,} training tokens = {o['passes']:.0f} passes over the {info['corpus_tokens']:,}-token "
      f"corpus ({o['passes_at_best']:.0f} passes by the kept step), {info['tokens_per_s']:,.0f} tokens/s")
print(f"validation minus training loss: {o['gap_at_val_min']:.3f} where the validation loss was lowest, "
      f"{o['gap_final']:.3f} at the end")
if o["best_step"] == o["steps"]:
    print("The fact loss was still falling at the last step, so the kept checkpoint is the last one: more steps "
          "could store the facts better, while the held-out phrasings' own words were over-fitted long before.")
else:
    print(f"The fact loss was lowest at step {o['best_step']}: later steps over-fitted the facts too.")

# %% [markdown]
# ## Over-fitting: why the validation loss turns
#
# The corpus is small: the budget reads it dozens of times over (the passes are printed above).
# After enough passes the model has learned what the training text can teach about the world, and
# further steps mostly teach it **the training text itself**: which of the few training phrasings
# comes next, in which order. That drives the training loss down and makes the model more sure of
# the training phrasings, so it is more surprised by the held-out ones: the validation loss
# stops falling and rises while the gap between the curves widens. The facts can go on improving
# for longer, since every extra pass states them again. The numbers above say what happened in
# this run (the claims at the end check it). Early stopping keeps the weights from before the
# turn that matters to us, if it comes within the budget; more data (more articles, more
# phrasings) would delay both turns.

# %% [markdown]
# ## Samples during training
#
# At each evaluation the model continued the name of a disease (sampling with temperature 0.8
# among the 20 most likely words). Early samples are word salad; later ones are sentences of the
# encyclopedia, with facts.

# %%
for sample in info["samples"]:
    print(f"step {sample['step']:>5}: {sample['text']}")

# %% [markdown]
# Generation settings change the text: **greedy** (temperature 0) always takes the most likely word,
# higher temperatures sample more freely, and top-k only samples among the k most likely words.

# %%
prompt = torch.tensor(tok.encode(world.facts["person"][0]["name"]))
for temperature, top_k in [(0.0, None), (0.8, 20), (1.5, None)]:
    text = tok.decode(generate(model, prompt, 20, temperature=temperature, top_k=top_k, seed=1))
    print(f"T={temperature}, top-k={top_k}: {text}")

# %% [markdown]
# ## What does the model know?
#
# We probe the kept checkpoint with the beginnings of sentences in the corpus's own wording, e.g.
# *"⟨disease⟩ attacks the"*, and check whether its most likely continuation is the fact from the
# table. This is exactly how lesson 08 scores answers: greedy decoding, exact match.

# %%
probes = world.fill_in_probes()
correct = answers_correct(model, tok, probes, eos=False)
by_attribute = pd.Series(correct.float().numpy(), index=[p.attribute for p in probes]).groupby(level=0).mean()
probe_acc = correct.float().mean().item()
print(f"fill-in probes answered: {probe_acc:.1%} of {len(probes)}"
      + (": pre-training at this budget did not store every fact" if probe_acc < 1 else ""))
by_attribute.rename("share correct").to_frame()

# %%
for p, ok in list(zip(probes, correct))[:5]:
    print(f"{'✓' if ok else '✗'} {p.prompt} … {p.answer}")

# %% [markdown]
# ## Exercises
#
# **Exercise 1.** Compute the unigram baseline yourself: count how often each token id occurs in
# `data.train_ids` (add one to every count so no word has probability zero), turn the counts into
# probabilities, and take the mean of −log p over the tokens of `data.val_ids`.

# %% tags=["exercise"]
my_unigram = None   # your number here

# %% tags=["check"]
def _unigram_loss():
    counts = torch.bincount(data.train_ids.cpu(), minlength=len(tok)).double() + 1
    return -(counts / counts.sum()).log()[data.val_ids.cpu()].mean().item()


check("unigram baseline", lambda: abs(my_unigram - _unigram_loss()) < 1e-5,
      hint="a count for every id of the vocabulary, seen or not, plus one; a token's probability is its count "
           "over the sum of all counts; the loss is the natural log's, averaged over the validation tokens")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# counts = torch.bincount(data.train_ids, minlength=len(tok)).float() + 1
# my_unigram = -(counts / counts.sum()).log()[data.val_ids].mean().item()
# ```
#
# </details>

# %% [markdown]
# **Exercise 2.** Greedy generation is deterministic; sampling is deterministic *for a seed*.
# Generate 15 tokens after `prompt` twice with `temperature=1.0` and the same seed (store it in
# `my_seed`), and store both results in `a` and `b`.

# %% tags=["exercise"]
my_seed = None
a = b = None

# %% tags=["check"]
check("sampling repeats for a seed",
      lambda: a is not None and a is not b and torch.equal(a, b) and len(a) == len(prompt) + 15
      and torch.equal(a, generate(model, prompt, 15, temperature=1.0, seed=my_seed)),
      hint="two separate calls of the sampler, each given the same seed and a temperature of 1 "
           "(0 would be greedy, which repeats without any seed)")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# my_seed = 3
# a = generate(model, prompt, 15, temperature=1.0, seed=my_seed)
# b = generate(model, prompt, 15, temperature=1.0, seed=my_seed)
# ```
#
# </details>

# %% [markdown]
# **Exercise 3.** How many characters long is the average article, compared with its length in
# words? Store `chars_per_word` = character tokens / word tokens over the whole corpus (the two
# counts are above). By this factor a character model needs longer windows and more steps.

# %% tags=["exercise"]
chars_per_word = None

# %% tags=["check"]
check("characters per word", lambda: chars_per_word is not None
      and abs(chars_per_word - len(char_ids) / len(word_ids)) < 1e-9,
      hint="the same corpus tokenized two ways: both token lists are above; characters per word is how many "
           "times longer one is than the other")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# chars_per_word = len(char_ids) / len(word_ids)
# ```
#
# </details>

# %% [markdown]
# **Exercise 4 — where to stop.** From the evaluations stored with the checkpoint
# (`info["history"]["evals"]`, a list of dicts with `step`, `train_loss`, `val_loss` and
# `val_fact_loss`), find the step whose weights the course keeps, and store it in `my_best_step`.
# Why is a training loss never the one to decide?

# %% tags=["exercise"]
my_best_step = None

# %% tags=["check"]
check("the step to keep", lambda: my_best_step == min(info["history"]["evals"], key=lambda e: e["val_fact_loss"])["step"],
      hint="the course keeps the step where its validation measure of the facts is lowest; the training loss "
           "keeps falling while the model over-fits")

# %% [markdown] tags=["solution"]
# <details><summary>Solution (click to open)</summary>
#
# ```python
# evals = info["history"]["evals"]
# my_best_step = min(evals, key=lambda e: e["val_fact_loss"])["step"]   # validation decides; the training
# print(my_best_step)                                                   # loss only falls: it picks the end
# ```
#
# </details>

# %% [markdown]
# ## Results
#
# The claims below check the curves' story against this run's numbers; the probes above say how
# many facts about the diseases the kept checkpoint has stored: lesson 08's fine-tuning can only
# bring out what is stored here. To store more, pre-train longer or on a bigger world
# (`dataclasses.replace(lm_config(), steps=...)` passed as `pretrained_lm(config=...)`).

# %%
metrics = {"val_loss": info["val_loss"], "val_loss_final": info["val_loss_final"], "best_step": info["best_step"],
           "val_fact_loss": info["val_fact_loss"], "val_fact_loss_final": info["val_fact_loss_final"],
           "val_loss_min": o["val_loss_min"], "val_loss_min_step": o["val_loss_min_step"],
           "gap_at_val_min": o["gap_at_val_min"],
           "steps": info["steps"], "unigram_loss": info["unigram_loss"], "train_loss": info["train_loss"],
           "train_loss_final": info["train_loss_final"], "gap_at_best": o["gap_at_best"], "gap_final": o["gap_final"],
           "passes": o["passes"], "probe_acc": probe_acc, "tokens": info["tokens"], "params": params,
           "tokens_per_s": info["tokens_per_s"]}
lesson.finish(metrics, CLAIMS, interrupted=info["interrupted"])   # pre-training stopped early: flagged, not cached
pd.Series({**metrics, "pre-training seconds": info["seconds"]}, name=lesson.mode).map("{:,.4g}".format).to_frame()
