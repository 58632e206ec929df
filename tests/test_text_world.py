"""The text world, its Q&A splits, the tokenizer and the real-text loader."""
import pytest
import torch

from helpers.lm import IGNORE, TokenWindows, corpus_ids, qa_tensors, world_tokenizer
from helpers.text_world import DISEASE_ATTRIBUTES, TextWorld, TextWorldConfig, load_text_files
from helpers.tokenizer import CharTokenizer, WordTokenizer, tokenizer_from_json

SMALL = TextWorldConfig(diseases=20, people=20, towns=10, animals=8, plants=8, rivers=4, name_parts=6)


@pytest.fixture(scope="module")
def world():
    return TextWorld(SMALL)


def test_world_is_deterministic_for_a_seed():
    a, b = TextWorld(SMALL), TextWorld(SMALL)
    assert a.facts == b.facts
    assert a.encyclopedia(True) == b.encyclopedia(True)
    assert a.encyclopedia(False) == b.encyclopedia(False)
    assert a.medical_qa() == b.medical_qa()
    other = TextWorld(TextWorldConfig(**{**SMALL.__dict__, "seed": 1}))
    assert other.facts != a.facts


def test_every_answer_is_in_the_fact_table(world):
    qa = world.medical_qa()
    for q in qa.train + qa.dev + qa.test + world.fill_in_probes():
        assert q.answer == world.disease(q.disease)[q.attribute]
        assert q.disease in q.prompt


def test_heldout_diseases_never_occur_in_the_finetuning_set(world):
    qa = world.medical_qa()
    assert qa.seen_diseases and qa.heldout_diseases and qa.dev and qa.test
    assert not qa.seen_diseases & qa.heldout_diseases
    assert len(qa.seen_diseases) == len(world.diseases) // 2
    text = " ".join(q.prompt + " " + q.answer for q in qa.train)
    for name in qa.heldout_diseases:
        assert name not in text
    # ... but every held-out disease's facts are in both encyclopedias (pre-training sees them)
    for augmented in (True, False):
        corpus = " ".join(world.encyclopedia(augmented))
        for name in qa.heldout_diseases:
            assert name in corpus and world.disease(name)["treatment"] in corpus


def test_disease_names_need_both_words(world):
    heads = {d["name"].split()[0] for d in world.diseases}
    assert all(len(d["name"].split()) == 2 for d in world.diseases)
    assert len(heads) < len(world.diseases)          # first words are shared between diseases


def test_augmented_and_once_only_state_the_same_facts(world):
    aug, once = world.encyclopedia(True), world.encyclopedia(False)
    assert len(aug) == SMALL.articles_per_entity * len(once)
    d = world.diseases[0]
    once_article = [a for a in once if a.startswith(d["name"] + " ")]
    assert len(once_article) == 1
    assert once_article[0].count(d["name"]) == 1                     # name stated once
    for a in DISEASE_ATTRIBUTES:
        assert d[a] in once_article[0]
    aug_articles = [a for a in aug if d["name"] in a]
    assert len(aug_articles) >= SMALL.articles_per_entity
    assert len(set(aug_articles)) > 1                                 # different phrasings/orders
    assert all(a.count(d["name"]) >= len(DISEASE_ATTRIBUTES) for a in aug_articles[:4])


def test_word_tokenizer_round_trips(world):
    tok = world_tokenizer(world)
    for text in world.encyclopedia(True)[:50] + [q.prompt for q in world.medical_qa().test]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("zzzunknownword")[0] == tok.unk_id
    again = tokenizer_from_json(tok.to_json())
    assert again.vocab == tok.vocab and isinstance(again, WordTokenizer)


def test_char_tokenizer_round_trips():
    tok = CharTokenizer.fit(["hello world ."])
    assert tok.decode(tok.encode("hello world .")) == "hello world ."
    assert isinstance(tokenizer_from_json(tok.to_json()), CharTokenizer)


def test_token_windows_are_shifted_and_repeatable(world):
    tok = world_tokenizer(world)
    ids = corpus_ids(world.encyclopedia(True), tok)
    batches = list(TokenWindows(ids, context=16, batch_size=4, steps=3, seed=0))
    assert len(batches) == 3 and batches[0][0].shape == (4, 16)
    x, y = batches[0]
    assert torch.equal(x[:, 1:], y[:, :-1])
    again = list(TokenWindows(ids, context=16, batch_size=4, steps=3, seed=0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


def test_qa_labels_cover_the_answer_only(world):
    tok = world_tokenizer(world)
    q = world.medical_qa().train[0]
    x, y = qa_tensors(tok, [q])
    labelled = y[0][y[0] != IGNORE].tolist()
    assert labelled == tok.encode(q.answer) + [tok.eos_id]


def test_real_text_loader(tmp_path):
    (tmp_path / "a.txt").write_text("The river runs to the sea.\n\nA second paragraph, here.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Another file with words the river knows.")
    docs = load_text_files(tmp_path)
    assert docs == ["The river runs to the sea.", "A second paragraph, here.",
                    "Another file with words the river knows."]
    assert load_text_files(tmp_path / "a.txt")[0] == docs[0]
    tok = WordTokenizer.fit(docs)
    ids = corpus_ids(docs, tok)
    assert tok.unk_id not in ids.tolist()
    x, y = next(iter(TokenWindows(ids, context=8, batch_size=2, steps=1)))
    assert x.shape == (2, 8)
    with pytest.raises(FileNotFoundError):
        load_text_files(tmp_path / "missing.txt")


def test_validation_phrasings_are_new_sentences_of_known_words():
    """Lesson 07's validation text never repeats a training phrasing, but uses only words the
    training phrasings use, so its loss measures generalisation to new phrasings."""
    import re

    from helpers.text_world import HELDOUT_TEMPLATES, TEMPLATES

    def phrasings(table):
        return {t for kind in table.values() for a in kind.values() for t in a}

    def words(table):
        return {w for t in phrasings(table) for w in re.sub(r"\{\w+\}", "", t).split()}

    assert not phrasings(HELDOUT_TEMPLATES) & phrasings(TEMPLATES)
    assert words(HELDOUT_TEMPLATES) <= words(TEMPLATES)
    assert {k: set(v) for k, v in HELDOUT_TEMPLATES.items()} == {k: set(v) for k, v in TEMPLATES.items()}


def test_validation_text_shares_no_sentence_with_training_text(world):
    def sentences(articles):
        return {s for a in articles for s in a.split(" . ")}

    train = sentences(world.encyclopedia(True))
    val = sentences(world.encyclopedia(True, seed=1000, heldout_phrasings=True))
    assert val and not train & val
    with pytest.raises(ValueError):
        world.article("disease", world.diseases[0], augmented=False, heldout_phrasings=True)


def test_general_probes_ask_every_non_medical_fact_in_training_wording(world):
    probes = world.general_probes()
    kinds = {q.attribute.split(".")[0] for q in probes}
    assert "disease" not in kinds and {"person", "town", "animal", "plant", "river", "trade"} <= kinds
    from helpers.text_world import TEMPLATES

    for q in probes:                                       # each is a training phrasing of its fact
        kind, attribute = q.attribute.split(".")
        entity = next(e for e in world.facts[kind] if e["name"] == q.disease)
        assert q.answer == entity[attribute]
        assert any(t.format(**entity).startswith(f"{q.prompt} {q.answer} ") for t in TEMPLATES[kind][attribute])


def test_heldout_questions_and_cloze_are_one_per_fact_in_unseen_wording(world):
    qa = world.medical_qa()
    names = sorted(qa.heldout_diseases)
    questions, cloze = world.heldout_questions(names), world.heldout_cloze(names)
    assert [(q.disease, q.attribute, q.answer) for q in questions] == [(q.disease, q.attribute, q.answer) for q in cloze]
    assert len(questions) == len(names) * len(DISEASE_ATTRIBUTES)
    seen_prompts = {q.prompt for q in qa.train + qa.dev + qa.test}
    assert not seen_prompts & {q.prompt for q in questions}
    corpus = " ".join(world.encyclopedia(True))
    assert all(f"{q.prompt} {q.answer}" not in corpus for q in cloze)
