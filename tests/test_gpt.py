"""The GPT model, its training through the shared loop, evaluation and generation."""
import pytest
import torch

from helpers.cache import checkpoint_path, read_checkpoint
from helpers.gpt import GPT, GPTConfig, count_params_by_part, generate
from helpers.lm import (
    Replay,
    TokenWindows,
    answers_correct,
    corpus_ids,
    exact_match,
    finetune_qa,
    lm_config,
    lm_loss,
    pretrained_lm,
    qa_tensors,
)
from helpers.runner import QUIET, Budget
from helpers.text_world import QA, TextWorld
from helpers.tokenizer import WordTokenizer
from helpers.training import Monitor, Optimiser, train

TINY = GPTConfig(vocab_size=50, context=16, n_layer=2, n_head=2, d_model=32)


def test_shapes_and_names():
    model = GPT(TINY)
    assert model(torch.zeros(3, 10, dtype=torch.long)).shape == (3, 10, 50)
    names = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    assert {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc", "blocks.0.mlp.proj"} <= names
    assert sum(count_params_by_part(model).values()) == sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_causal_mask_later_tokens_never_change_earlier_outputs():
    torch.manual_seed(0)
    model = GPT(TINY).eval()
    x = torch.randint(0, 50, (2, 12))
    y = x.clone()
    y[:, 7:] = torch.randint(0, 50, (2, 5))
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_loss_falls_on_a_tiny_corpus():
    texts = ["the red fox eats mice .", "the grey owl eats mice .", "the red fox lives in the forest ."] * 20
    tok = WordTokenizer.fit(texts)
    ids = corpus_ids(texts, tok)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(tok), context=16, n_layer=2, n_head=2, d_model=32))
    history = train(model, lm_loss, TokenWindows(ids, 16, 16, 80, seed=0), optimiser=Optimiser(lr=3e-3), device="cpu",
                    monitor=Monitor(log_every=10), progress=False)
    assert history.loss[-1] < 0.5 * history.loss[0]


def test_generation_is_deterministic_for_a_seed():
    torch.manual_seed(0)
    model = GPT(TINY)
    prompt = torch.tensor([1, 2, 3])
    a = generate(model, prompt, 8, temperature=1.0, top_k=10, seed=5)
    b = generate(model, prompt, 8, temperature=1.0, top_k=10, seed=5)
    c = generate(model, prompt, 8, temperature=1.0, top_k=10, seed=6)
    assert torch.equal(a, b) and a.shape == (11,) and not torch.equal(a, c)
    g1 = generate(model, prompt, 8, temperature=0.0)
    assert torch.equal(g1, generate(model, prompt, 8, temperature=0.0, seed=99))
    assert model.training   # generation restores the mode


def test_teacher_forced_exact_match_equals_greedy_generation():
    torch.manual_seed(0)
    texts = ["question : a ? answer : x y", "question : b ? answer : z"]
    tok = WordTokenizer.fit(texts)
    model = GPT(GPTConfig(vocab_size=len(tok), context=16, n_layer=1, n_head=2, d_model=16))
    pairs = [QA("question : a ? answer :", "x y", "a", "t"), QA("question : b ? answer :", "z", "b", "t")]
    x, y = qa_tensors(tok, pairs)
    train(model, lm_loss, [(x, y)] * 60, optimiser=Optimiser(lr=1e-2), device="cpu", progress=False)
    ok = answers_correct(model, tok, pairs)
    for q, good in zip(pairs, ok):
        ids = torch.tensor(tok.encode(q.prompt))
        out = generate(model, ids, 3, temperature=0.0)[len(ids):].tolist()
        greedy_right = out[:len(tok.encode(q.answer)) + 1] == tok.encode(q.answer) + [tok.eos_id]
        assert bool(good) == greedy_right
    assert exact_match(model, tok, pairs) == 1.0


def test_pretrained_lm_is_cached_and_fresh_each_call(data_dir):
    model, tok, info = pretrained_lm(device="cpu", verbose=False)
    assert {"val_loss", "unigram_loss", "tokens", "tokens_per_s"} <= set(info)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    again, tok2, _ = pretrained_lm(device="cpu", verbose=False)
    assert tok2.vocab == tok.vocab
    assert not torch.equal(next(model.parameters()), next(again.parameters()))
    config = lm_config(True)
    _, meta = read_checkpoint(checkpoint_path("lm_pretrained", config), config)
    assert meta["extra"]["tokenizer"] == tok.to_json()
    assert "samples" in meta["extra"] and meta["extra"]["samples"][-1]["step"] == config.steps
    assert config != lm_config(False)     # the corpus switch is part of the cache key


def test_finetuning_runs_and_restores_the_best_dev_step(data_dir, monkeypatch):
    """The kept weights are those of the evaluation with the best dev accuracy: here the middle
    one (the dev accuracy is scripted to peak at step 3), neither the start nor the end."""
    import helpers.lm
    model, tok, _ = pretrained_lm(device="cpu", verbose=False)
    qa = TextWorld(lm_config().world).medical_qa()
    scripted_dev_acc = iter([0.2, 0.6, 0.4])
    real_exact_match = helpers.lm.exact_match
    monkeypatch.setattr(helpers.lm, "exact_match",
                        lambda m, t, pairs: next(scripted_dev_acc) if pairs is qa.dev else real_exact_match(m, t, pairs))
    snapshots = []

    def snapshot(m):                      # the weights at every evaluation, step 0 included
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {}

    history = finetune_qa(model, tok, qa, lr=1e-2, budget=Budget(steps=6, batch_size=8, eval_every=3), setup=QUIET,
                          monitor=Monitor(evaluate=snapshot))
    assert [e["step"] for e in history.evals] == [0, 3, 6]
    assert [e["dev_acc"] for e in history.evals] == [0.2, 0.6, 0.4]
    assert history.best_step == 3
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[1][k]) for k in state)       # step 3's weights, restored
    for other in (snapshots[0], snapshots[2]):                              # and not the start's or the end's
        assert not all(torch.equal(state[k], other[k]) for k in state)


def test_pretraining_keeps_the_step_with_the_lowest_validation_fact_loss(data_dir):
    from dataclasses import replace

    config = replace(lm_config(True, mode="smoke"), steps=12)
    _, _, info = pretrained_lm(config=config, device="cpu", verbose=False)
    evals = info["history"]["evals"]
    best = min(evals, key=lambda e: e["val_fact_loss"])
    assert info["best_step"] == best["step"] and info["val_fact_loss"] == best["val_fact_loss"]
    assert info["val_loss"] == best["val_loss"]                       # the kept checkpoint's
    assert info["val_loss_final"] == evals[-1]["val_loss"] and info["steps"] == 12
    assert all("train_loss" in e for e in evals)


def test_replay_mixes_general_text_into_finetuning(data_dir):
    from helpers.lm import WithReplay, lm_data

    model, tok, _ = pretrained_lm(device="cpu", verbose=False)
    data = lm_data(lm_config())
    qa = data.world.medical_qa()
    history = finetune_qa(model, tok, qa, lr=1e-3, budget=Budget(steps=4, batch_size=8, eval_every=2), setup=QUIET,
                          replay=Replay(data.train_ids, batch=2, context=16))
    assert history.steps_done == 4
    batch = next(iter(WithReplay([(torch.zeros(2, 3), torch.zeros(2, 3))],
                                 TokenWindows(data.train_ids, 16, 2, 1))))
    assert len(batch) == 4 and batch[2].shape == (2, 16)


def test_keep_restores_the_first_step_that_meets_the_fit_target(data_dir):
    model, tok, _ = pretrained_lm(device="cpu", verbose=False)
    qa = TextWorld(lm_config().world).medical_qa()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = finetune_qa(model, tok, qa, lr=1e-2, setup=QUIET,
                          budget=Budget(steps=6, batch_size=8, eval_every=3, stop_when=lambda m: True, keep_best=False))
    assert history.best_step == 0 and history.steps_done == 6
    state = model.state_dict()
    assert all(torch.equal(state[k], before[k]) for k in state)     # the step-0 weights came back


def test_lesson_08_retention_counts_only_facts_known_before():
    from helpers.lessons.medical import CLAIMS, general_retention

    before = torch.tensor([True, True, False, True])
    after = torch.tensor([True, False, True, True])
    assert general_retention(before, after) == 2 / 3          # a fact learned later does not count
    metrics = {"heldout_acc_finetuned": 0.6, "heldout_acc_scratch": 0.0, "seen_acc_finetuned": 0.95,
               "seen_acc_no_augmentation": 0.92, "fit_tolerance": 0.05, "augmentation_gap_real": True,
               "heldout_acc_no_augmentation": 0.2,
               "forgetting": [{"method": "full", "general_retention": 0.5}, {"method": "replay", "general_retention": 0.9}]}
    assert all(c.verdict(metrics) for c in CLAIMS)
    assert not CLAIMS[1].verdict({**metrics, "seen_acc_no_augmentation": 0.5})   # under-fitted: not equal fit


def test_the_facts_that_choose_the_lm_checkpoint_are_never_the_test_diseases():
    """Lesson 07 keeps the checkpoint with the lowest loss on ``val_facts``; lessons 08 and 09 test
    on the test diseases (09's cloze items are their facts in the same held-out phrasings), so no
    test disease may be among the facts that choose the checkpoint."""
    from helpers.lm import lm_data

    data = lm_data(lm_config(mode="smoke"))
    test = sorted({q.disease for q in data.world.medical_qa().test})
    assert test and data.val_facts
    assert not {q.disease for q in data.val_facts} & set(test)
    cloze = {(q.prompt, q.answer) for p in (0, 1) for q in data.world.heldout_cloze(test, phrasing=p)}
    assert not cloze & {(q.prompt, q.answer) for q in data.val_facts}
    assert lm_config(True).keep != "last" and lm_config(False).keep == "last"   # part of the cache key
