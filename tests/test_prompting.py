"""Prompting helpers: few-shot contexts fit and never leak the answer; soft prompts train alone."""
import pytest
import torch

from helpers.gpt import GPT, GPTConfig
from helpers.lm import answers_correct, lm_loss, qa_tensors
from helpers.prompting import SoftPrompt, context_tokens, few_shot, train_soft_prompt
from helpers.runner import QUIET, Budget
from helpers.text_world import TextWorld, TextWorldConfig
from helpers.tokenizer import WordTokenizer


@pytest.fixture(scope="module")
def world():
    return TextWorld(TextWorldConfig(diseases=12, people=10))


@pytest.fixture(scope="module")
def tok(world):
    return WordTokenizer.fit(world.all_text())


def test_few_shot_examples_are_other_diseases_same_attribute(world, tok):
    qa = world.medical_qa()
    shots = few_shot(qa.test, qa.train, k=2, seed=0)
    assert len(shots) == len(qa.test)
    for q, s in zip(qa.test, shots):
        assert s.prompt.endswith(q.prompt) and s.answer == q.answer
        context = s.prompt[: -len(q.prompt)]
        assert context.count("<eos>") == 2 and q.disease not in context
        assert context_tokens(tok, [s]) > context_tokens(tok, [q])


def test_few_shot_fits_the_context(world, tok):
    qa = world.medical_qa()
    shots = few_shot(qa.test[:20], qa.train, k=5, tok=tok, context=40)
    assert all(len(tok.encode(f"{s.prompt} {s.answer}")) + 1 <= 40 or "<eos>" not in s.prompt for s in shots)
    x, _ = qa_tensors(tok, shots)
    assert x.shape[1] <= 40


def test_soft_prompt_starts_as_a_prefix_and_only_it_trains(world, tok):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=len(tok), context=48, n_layer=1, n_head=2, d_model=16))
    before = {n: p.detach().clone() for n, p in gpt.named_parameters()}
    soft = SoftPrompt(gpt, n_tokens=3)
    ids = torch.tensor([tok.encode("kel vora attacks the")])
    assert soft(ids).shape == (1, ids.shape[1], len(tok))
    # the soft prompt is a prefix: with word vectors, it equals running the model on those words
    words = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        soft.prompt.copy_(gpt.tok_emb.weight[words[0]])
        torch.testing.assert_close(soft(ids), gpt(torch.cat([words, ids], 1))[:, 3:])
    qa = world.medical_qa()
    start = SoftPrompt(gpt, n_tokens=3, seed=0).prompt.detach().clone()     # what training starts from
    trained, history = train_soft_prompt(gpt, tok, qa.train[:64], n_tokens=3, budget=Budget(steps=4, batch_size=16),
                                         setup=QUIET)
    assert history.steps_done == 4
    x, y = qa_tensors(tok, qa.train[:64])                  # the loss on the training answers falls
    with torch.no_grad():
        assert lm_loss(trained, (x, y)) < lm_loss(SoftPrompt(gpt, n_tokens=3, seed=0), (x, y))
    assert all(torch.equal(p, before[n]) for n, p in gpt.named_parameters())       # the model is frozen
    assert not torch.equal(trained.prompt.detach(), start)
    assert answers_correct(trained, tok, qa.test[:5]).shape == (5,)


def test_lesson_09_picks_every_setting_on_validation_items(world, tok):
    """The harness keeps the setting with the best validation accuracy, and scores every method
    on the same items (one per fact) in a wording no split of medical_qa uses."""
    from helpers.lessons.prompting_lesson import CLAIMS, choose_cloze, choose_shots, tune_soft_prompt

    qa = world.medical_qa()
    dev_names = sorted({q.disease for q in qa.dev})
    val_items = world.heldout_questions(dev_names)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(tok), context=96, n_layer=1, n_head=2, d_model=16))
    k, rows = choose_shots(model, tok, qa.train, val_items, (1, 2), context=96)
    assert k in (1, 2) and max(r["val_acc"] for r in rows) == next(r for r in rows if r["shots"] == k)["val_acc"]
    phrasing, rows = choose_cloze(model, tok, world, dev_names)
    assert phrasing in (0, 1) and len(rows) == 2
    soft, best, rows = tune_soft_prompt(model, tok, qa.train[:16], val_items, token_grid=(2,), lr_grid=(1e-2, 1e-1),
                                        steps=2, eval_every=1, batch_size=4, progress=False)
    assert best["val_acc"] == max(r["val_acc"] for r in rows) and soft.prompt.shape[0] == 2
    metrics = {"items": 200, "zero_shot_acc": 0.0, "few_shot_acc": 0.05, "cloze_prompt_acc": 0.3,
               "soft_prompt_acc": 0.1, "finetuned_acc": 0.6}
    assert all(c.verdict(metrics) for c in CLAIMS)
    assert not CLAIMS[0].verdict({**metrics, "finetuned_acc": 0.08})     # within 2 SE: a tie, not a win
