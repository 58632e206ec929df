"""The text world: a seeded fact table of a made-up world, its encyclopedia, and medical Q&A.

The world holds diseases (each with a made-up two-word name, a symptom, an organ, a cause, a
treatment and the town where it was first seen) among people, towns, animals, plants, rivers and
trades, so that medicine is one topic among many in the general corpus.

The encyclopedia comes in two versions, the switch of lesson 08's ablation (after Allen-Zhu and
Li, "Physics of Language Models, Part 3.1"):

- ``augmented=True``: every entity gets several articles; each article states every fact in a
  randomly chosen phrasing, in a shuffled order, with the entity's full name in every sentence.
- ``augmented=False`` (once-only): one article per entity, facts in a fixed order, each in one
  fixed template, the name stated once and then replaced by a pronoun.

The medical questions and answers are about the diseases only. Half of the diseases are held
out of fine-tuning entirely: a small part of them (``dev``) chooses when to stop fine-tuning,
the rest (``test``) measures knowledge that came from pre-training alone.

Everything is deterministic for ``TextWorldConfig.seed``. Example:
    >>> world = TextWorld()
    >>> world.diseases[0]
    >>> articles = world.encyclopedia(augmented=True)
    >>> qa = world.medical_qa()          # QASplits(train, dev, test)
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

WORLD_VERSION = 2      # bump when the generator changes: it is part of every cached LM's config

SYMPTOMS = ["fever", "cough", "rash", "headache", "dizziness", "cramps", "chills", "blisters",
            "fatigue", "swelling", "itching", "nausea"]
ORGANS = ["liver", "lungs", "heart", "skin", "kidneys", "stomach", "eyes", "bones", "blood", "brain"]
CAUSES = ["a worm", "a mould", "bad water", "spoiled grain", "a fly bite", "cold wind",
          "raw fish", "dust", "a tick", "old meat"]
TREATMENTS = ["willow bark", "honey", "rest", "cold baths", "salt water", "mint tea",
              "clay", "garlic", "fasting", "warm milk"]
TRADES = ["baker", "smith", "weaver", "potter", "fisher", "healer", "miner", "carpenter",
          "brewer", "tanner", "mason", "farmer", "scribe", "hunter", "trader"]
TOOLS = ["hammer", "oven", "loom", "wheel", "net", "knife", "pick", "saw", "kettle", "needle",
         "chisel", "plough", "quill", "bow", "scale"]
COLOURS = ["red", "blue", "green", "yellow", "white", "black", "grey", "purple", "orange", "brown"]
HABITATS = ["forest", "marsh", "desert", "mountains", "meadow", "river", "cave", "coast"]
FOODS = ["seeds", "insects", "fish", "grass", "berries", "roots", "mice", "leaves"]
SEASONS = ["spring", "summer", "autumn", "winter"]
SEAS = ["north sea", "south sea", "east sea", "west sea", "great lake"]

# Pieces of made-up words. Names are built from them, so they are new to any tokenizer and
# to any reader: whatever the model knows about them, it learned from this world.
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr",
           "gr", "kr", "st", "th", "sh", "vr"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ou", "ei"]
_CODAS = ["", "", "n", "l", "r", "s", "th", "k", "m", "sh"]

# Templates: for each kind of entity, the attributes in the once-only article's fixed order, and
# for each attribute several phrasings. The first phrasing of each attribute has the name as
# its subject, so the once-only article can replace it by a pronoun.
TEMPLATES = {
    "disease": {
        "intro": ["{name} is a disease .", "{name} is an illness known in the land .",
                  "{name} is a sickness of people ."],
        "symptom": ["{name} causes {symptom} .", "the main sign of {name} is {symptom} .",
                    "people with {name} suffer from {symptom} .",
                    "a patient who has {name} shows {symptom} ."],
        "organ": ["{name} attacks the {organ} .", "{name} is a disease of the {organ} .",
                  "the organ harmed by {name} is the {organ} .",
                  "when someone has {name} , it damages the {organ} ."],
        "cause": ["{name} comes from {cause} .", "{name} is caused by {cause} .",
                  "healers trace {name} back to {cause} .",
                  "the cause of {name} is {cause} ."],
        "treatment": ["{name} is treated with {treatment} .", "the cure for {name} is {treatment} .",
                      "against {name} , doctors prescribe {treatment} .",
                      "patients with {name} get better with {treatment} ."],
        "town": ["{name} was first seen in {town} .", "the first case of {name} was found in {town} .",
                 "{name} was discovered in the town of {town} .",
                 "{name} appeared first in {town} ."],
    },
    "person": {
        "intro": ["{name} is a person .", "{name} is a well known person .", "{name} lives in the land ."],
        "town": ["{name} was born in {town} .", "the home town of {name} is {town} .",
                 "{name} grew up in {town} ."],
        "trade": ["{name} works as a {trade} .", "by trade {name} is a {trade} .",
                  "the trade of {name} is {trade} ."],
        "animal": ["{name} keeps a {animal} .", "the pet of {name} is a {animal} .",
                   "{name} has a {animal} at home ."],
    },
    "town": {
        "intro": ["{name} is a town .", "{name} is a small town .", "{name} is a market town ."],
        "river": ["{name} lies on the {river} river .", "the {river} river runs through {name} .",
                  "{name} was built on the banks of the {river} river ."],
        "plant": ["{name} grows {plant} .", "farmers around {name} grow {plant} .",
                  "the main crop of {name} is {plant} ."],
    },
    "animal": {
        "intro": ["the {name} is an animal .", "the {name} is a wild animal .", "the {name} is a beast ."],
        "colour": ["the {name} is {colour} .", "the fur of the {name} is {colour} .",
                   "a {name} looks {colour} ."],
        "habitat": ["the {name} lives in the {habitat} .", "the home of the {name} is the {habitat} .",
                    "you can find the {name} in the {habitat} ."],
        "food": ["the {name} eats {food} .", "the food of the {name} is {food} .",
                 "the {name} hunts for {food} ."],
    },
    "plant": {
        "intro": ["{name} is a plant .", "{name} is a common plant .", "{name} is a herb ."],
        "colour": ["{name} has {colour} flowers .", "the flowers of {name} are {colour} .",
                   "{name} blooms {colour} ."],
        "season": ["{name} flowers in {season} .", "in {season} , {name} is in bloom .",
                   "{name} blooms every {season} ."],
    },
    "river": {
        "intro": ["the {name} is a river .", "the {name} is a long river .", "the {name} river flows through the land ."],
        "sea": ["the {name} flows into the {sea} .", "the {name} ends in the {sea} .",
                "the mouth of the {name} is on the {sea} ."],
    },
    "trade": {
        "intro": ["a {name} is a worker .", "{name} is a trade .", "a {name} has a craft ."],
        "tool": ["a {name} works with a {tool} .", "the tool of a {name} is a {tool} .",
                 "every {name} needs a {tool} ."],
    },
}
# Held-out phrasings: other sentences for the same facts, built only from words the training
# templates use, which the training encyclopedia never contains. Lesson 07's validation text is
# written in them, so its validation loss measures how well the model generalises to new
# phrasings of what it read, not how well it recalls the training sentences themselves.
HELDOUT_TEMPLATES = {
    "disease": {
        "intro": ["{name} is a disease known in the land .", "{name} is an illness of people ."],
        "symptom": ["someone who has {name} shows {symptom} .", "the sign of {name} is {symptom} ."],
        "organ": ["{name} damages the {organ} .", "the organ {name} attacks is the {organ} ."],
        "cause": ["people get {name} from {cause} .", "healers trace the cause of {name} to {cause} ."],
        "treatment": ["patients get better from {name} with {treatment} .", "the cure against {name} is {treatment} ."],
        "town": ["{name} was first found in {town} .", "the first case of {name} was seen in {town} ."],
    },
    "person": {
        "intro": ["{name} is a well known person in the land .", "{name} is a person of the land ."],
        "town": ["{name} grew up in the town of {town} .", "the town {name} was born in is {town} ."],
        "trade": ["{name} is a {trade} by trade .", "{name} has the trade of {trade} ."],
        "animal": ["{name} keeps a {animal} at home .", "at home {name} has a {animal} ."],
    },
    "town": {
        "intro": ["{name} is a small market town .", "{name} is a town in the land ."],
        "river": ["{name} lies on the banks of the {river} river .", "the {river} river flows through {name} ."],
        "plant": ["the crop of {name} is {plant} .", "farmers in {name} grow {plant} ."],
    },
    "animal": {
        "intro": ["the {name} is a wild beast .", "the {name} is an animal of the land ."],
        "colour": ["the {name} has {colour} fur .", "the {name} looks {colour} ."],
        "habitat": ["the home of a {name} is the {habitat} .", "you find the {name} in the {habitat} ."],
        "food": ["the {name} hunts {food} .", "the food a {name} eats is {food} ."],
    },
    "plant": {
        "intro": ["{name} is a common herb .", "{name} is a plant of the land ."],
        "colour": ["{name} blooms with {colour} flowers .", "the flowers {name} has are {colour} ."],
        "season": ["{name} is in bloom in {season} .", "{name} has flowers every {season} ."],
    },
    "river": {
        "intro": ["the {name} is a long river of the land .", "the {name} river runs through the land ."],
        "sea": ["the {name} river flows into the {sea} .", "the {name} runs into the {sea} ."],
    },
    "trade": {
        "intro": ["a {name} is a worker with a craft .", "the {name} has a craft ."],
        "tool": ["a {name} needs a {tool} .", "every {name} works with a {tool} ."],
    },
}

PRONOUNS = {"disease": "it", "person": None, "town": "it", "animal": "it", "plant": "it",
            "river": "it", "trade": "it"}

# Questions are worded differently from the encyclopedia: fine-tuning teaches the question format.
QUESTIONS = {
    "symptom": ["what is the main symptom of {name} ?", "which symptom does {name} cause ?",
                "how can you tell that someone has {name} ?"],
    "organ": ["which organ does {name} affect ?", "what part of the body does {name} harm ?",
              "where in the body does {name} strike ?"],
    "cause": ["what causes {name} ?", "where does {name} come from ?",
              "what is the origin of {name} ?"],
    "treatment": ["how is {name} treated ?", "what is the treatment for {name} ?",
                  "what should a patient with {name} take ?"],
    "town": ["where was {name} first seen ?", "in which town was {name} discovered ?",
             "where did {name} first appear ?"],
}
DISEASE_ATTRIBUTES = tuple(QUESTIONS)
# One more question per fact, never used by ``medical_qa``'s splits: lesson 09 asks it of every
# method, so that no method (fine-tuning and soft prompts included) was trained on its wording.
HELDOUT_QUESTIONS = {
    "symptom": "what sign shows that a patient has {name} ?",
    "organ": "which organ is harmed by {name} ?",
    "cause": "what is {name} caused by ?",
    "treatment": "what is the cure for {name} ?",
    "town": "in which town was {name} first seen ?",
}


@dataclass(frozen=True)
class TextWorldConfig:
    """Everything that determines the world (and so the corpus and the questions)."""
    seed: int = 0
    diseases: int = 100
    people: int = 120
    towns: int = 30
    animals: int = 25
    plants: int = 25
    rivers: int = 10
    name_parts: int = 100           # size of the two word pools disease names are drawn from
    articles_per_entity: int = 4    # augmented version: articles per entity
    dev_share: float = 0.2          # share of the held-out diseases used for early stopping
    version: int = WORLD_VERSION


@dataclass(frozen=True)
class QA:
    """One medical question: ``prompt`` ends with "answer :", ``answer`` is the fact's value."""
    prompt: str
    answer: str
    disease: str
    attribute: str


@dataclass(frozen=True)
class QASplits:
    """Fine-tuning questions (seen diseases) and the two held-out parts (dev, test)."""
    train: list[QA]
    dev: list[QA]
    test: list[QA]

    @property
    def seen_diseases(self) -> set[str]:
        return {q.disease for q in self.train}

    @property
    def heldout_diseases(self) -> set[str]:
        return {q.disease for q in self.dev + self.test}


def qa_prompt(question: str) -> str:
    return f"question : {question} answer :"


class TextWorld:
    """A seeded made-up world: ``facts[kind]`` is a list of dicts, each with a ``name``."""

    def __init__(self, config: TextWorldConfig | None = None):
        self.config = c = config or TextWorldConfig()
        rng = random.Random(c.seed)
        used: set[str] = set()

        def word(syllables):
            while True:
                w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables))
                w += rng.choice(_CODAS)
                if w not in used and len(w) >= 3:
                    used.add(w)
                    return w

        towns = [word(2) for _ in range(c.towns)]
        rivers = [word(2) for _ in range(c.rivers)]
        plants = [word(2) + "weed" if i % 3 == 0 else word(2) for i in range(c.plants)]
        animals = [word(2) for _ in range(c.animals)]
        self.facts: dict[str, list[dict]] = {}
        self.facts["river"] = [{"name": r, "sea": rng.choice(SEAS)} for r in rivers]
        self.facts["plant"] = [{"name": p, "colour": rng.choice(COLOURS), "season": rng.choice(SEASONS)}
                               for p in plants]
        self.facts["animal"] = [{"name": a, "colour": rng.choice(COLOURS), "habitat": rng.choice(HABITATS),
                                 "food": rng.choice(FOODS)} for a in animals]
        self.facts["town"] = [{"name": t, "river": rng.choice(rivers), "plant": rng.choice(plants)}
                              for t in towns]
        self.facts["trade"] = [{"name": t, "tool": tool} for t, tool in zip(TRADES, TOOLS)]
        firsts, lasts = [word(1) for _ in range(30)], [word(2) for _ in range(30)]
        people = rng.sample([f"{f} {l}" for f in firsts for l in lasts], c.people)
        self.facts["person"] = [{"name": p, "pronoun": rng.choice(["he", "she"]), "town": rng.choice(towns),
                                 "trade": rng.choice(TRADES), "animal": rng.choice(animals)} for p in people]
        # Disease names are two words, one from each of two pools of ``name_parts`` words, so a
        # name spans two tokens. Small pools share words between many diseases, which is harder:
        # with pools of 20, the class budget stored only half of the facts (measured).
        heads, tails = [word(2) for _ in range(c.name_parts)], [word(1) for _ in range(c.name_parts)]
        names = rng.sample([f"{h} {t}" for h in heads for t in tails], c.diseases)
        self.facts["disease"] = [{"name": n, "symptom": rng.choice(SYMPTOMS), "organ": rng.choice(ORGANS),
                                  "cause": rng.choice(CAUSES), "treatment": rng.choice(TREATMENTS),
                                  "town": rng.choice(towns)} for n in names]

    @property
    def diseases(self) -> list[dict]:
        return self.facts["disease"]

    def disease(self, name: str) -> dict:
        for d in self.diseases:
            if d["name"] == name:
                return d
        raise KeyError(f"no disease named {name!r}; e.g. {[d['name'] for d in self.diseases[:3]]}")

    # -- the encyclopedia --------------------------------------------------------------------

    @staticmethod
    def _sentence(template: str, entity: dict, name: str) -> str:
        return template.format(**{**entity, "name": name})

    def article(self, kind: str, entity: dict, *, augmented: bool, rng: random.Random | None = None,
                heldout_phrasings: bool = False) -> str:
        """One article about ``entity``: augmented (random phrasings, shuffled, full name in
        every sentence) or once-only (fixed order, first phrasing, name once then a pronoun).
        ``heldout_phrasings``: the augmented article in ``HELDOUT_TEMPLATES`` (validation text)."""
        if heldout_phrasings and not augmented:
            raise ValueError("held-out phrasings exist for the augmented version only (augmented=True)")
        templates = (HELDOUT_TEMPLATES if heldout_phrasings else TEMPLATES)[kind]
        attrs = [a for a in templates if a != "intro"]
        if not augmented:
            pronoun = entity.get("pronoun") or PRONOUNS[kind]
            sentences = [self._sentence(templates["intro"][0], entity, entity["name"])]
            for a in attrs:
                subject = pronoun
                t = templates[a][0]
                if t.startswith("the {name}") or t.startswith("a {name}"):   # "the river" -> "it"
                    t = t.split("{name}", 1)[1]
                    sentences.append(subject + t.format(**entity))
                else:
                    sentences.append(self._sentence(t, entity, subject))
            return " ".join(sentences)
        rng = rng or random.Random(0)
        sentences = [self._sentence(rng.choice(templates[a]), entity, entity["name"]) for a in attrs]
        rng.shuffle(sentences)
        return " ".join([self._sentence(rng.choice(templates["intro"]), entity, entity["name"])] + sentences)

    def encyclopedia(self, augmented: bool = True, seed: int | None = None,
                     heldout_phrasings: bool = False) -> list[str]:
        """Every article of the world, in a seeded random order.

        ``augmented`` chooses the version (see the module docstring). ``seed`` varies the
        phrasings and order (default: the world's seed); the facts never change.
        ``heldout_phrasings``: every sentence in a phrasing the training text never uses
        (``HELDOUT_TEMPLATES``), lesson 07's validation text.
        """
        rng = random.Random((self.config.seed if seed is None else seed) * 7919 + int(augmented)
                            + 2 * int(heldout_phrasings))
        copies = self.config.articles_per_entity if augmented else 1
        articles = [self.article(kind, e, augmented=augmented, rng=rng, heldout_phrasings=heldout_phrasings)
                    for kind, entities in self.facts.items() for e in entities for _ in range(copies)]
        rng.shuffle(articles)
        return articles

    # -- medical questions -------------------------------------------------------------------

    def medical_qa(self) -> QASplits:
        """Questions about every disease attribute, in every phrasing, split by disease.

        Half of the diseases (a seeded choice) are the fine-tuning set; the other half never
        appear in it: ``dev`` (``dev_share`` of them, for early stopping) and ``test``.
        """
        rng = random.Random(self.config.seed + 1)
        names = [d["name"] for d in self.diseases]
        rng.shuffle(names)
        half = len(names) // 2
        seen, heldout = names[:half], names[half:]
        n_dev = max(1, round(self.config.dev_share * len(heldout)))
        groups = {"train": seen, "dev": heldout[:n_dev], "test": heldout[n_dev:]}
        splits = {}
        for split, group in groups.items():
            splits[split] = [QA(qa_prompt(q.format(name=n)), self.disease(n)[a], n, a)
                             for n in group for a in DISEASE_ATTRIBUTES for q in QUESTIONS[a]]
        return QASplits(**splits)

    def fill_in_probes(self, diseases=None, once_only: bool = False) -> list[QA]:
        """Fill-in-the-sentence prompts in the corpus's own wording, e.g. ("kel vora attacks
        the", "liver"): what the pre-trained model can complete without any fine-tuning.

        ``once_only``: the prompt is the once-only article up to the fact (the only wording a
        model pre-trained on that version has seen), e.g. "kel vora is a disease . it causes".
        """
        out = []
        templates = TEMPLATES["disease"]
        for d in diseases or self.diseases:
            d = self.disease(d) if isinstance(d, str) else d
            before = [self._sentence(templates["intro"][0], d, d["name"])]
            for a in DISEASE_ATTRIBUTES:
                head = templates[a][0].split("{" + a + "}")[0]
                if once_only:
                    prompt = " ".join(before + [head.format(name="it").strip()])
                    before.append(self._sentence(templates[a][0], d, "it"))
                else:
                    prompt = head.format(name=d["name"]).strip()
                out.append(QA(prompt, d[a], d["name"], a))
        return out

    def heldout_questions(self, diseases) -> list[QA]:
        """One question per fact of ``diseases`` in the ``HELDOUT_QUESTIONS`` wording (which no
        split of ``medical_qa`` uses), ordered by disease, then fact."""
        return [QA(qa_prompt(HELDOUT_QUESTIONS[a].format(name=n)), self.disease(n)[a], n, a)
                for n in diseases for a in DISEASE_ATTRIBUTES]

    def heldout_cloze(self, diseases, phrasing: int = 0) -> list[QA]:
        """Fill-in-the-sentence prompts in a held-out phrasing (``HELDOUT_TEMPLATES``, index
        ``phrasing``): the sentence up to the fact, e.g. "kel vora damages the" -> "liver".
        Text the pre-training corpus never contains, one prompt per fact, ordered like
        ``heldout_questions``."""
        out = []
        for n in diseases:
            d = self.disease(n)
            for a in DISEASE_ATTRIBUTES:
                head = HELDOUT_TEMPLATES["disease"][a][phrasing].split("{" + a + "}")[0]
                out.append(QA(head.format(name=n).strip(), d[a], n, a))
        return out

    def general_probes(self) -> list[QA]:
        """Fill-in probes of every fact that is NOT medical (people, towns, animals, plants,
        rivers, trades) in the training corpus's own wording, e.g. "the home town of kai dorn
        is" -> "brelo". Lesson 08 asks them before and after fine-tuning to measure, fact by
        fact, how much general knowledge survives. Each uses the training phrasing with the
        longest lead-in before the fact (the least ambiguous one); ``QA.disease`` holds the
        entity's name, ``QA.attribute`` "kind.attribute"."""
        out = []
        for kind, entities in self.facts.items():
            if kind == "disease":
                continue
            for a, phrasings in TEMPLATES[kind].items():
                heads = [t.split("{" + a + "}")[0] for t in phrasings if "{" + a + "}" in t]
                heads = [h for h in heads if "{name}" in h]
                if a == "intro" or not heads:
                    continue
                head = max(heads, key=len)
                out += [QA(head.format(name=e["name"]).strip(), e[a], e["name"], f"{kind}.{a}") for e in entities]
        return out

    def all_text(self) -> list[str]:
        """Every string the world can produce (both encyclopedia versions and all questions):
        the vocabulary of a word tokenizer fitted on it covers the whole world."""
        qa = self.medical_qa()
        names = [d["name"] for d in self.diseases]
        return (self.encyclopedia(True) + self.encyclopedia(False) + self.encyclopedia(True, heldout_phrasings=True)
                + [f"{q.prompt} {q.answer}" for q in qa.train + qa.dev + qa.test + self.heldout_questions(names)]
                + [f"{q.prompt} {q.answer}" for q in self.fill_in_probes()])


# -- real text ---------------------------------------------------------------------------------

def load_text_files(paths, min_chars: int = 1) -> list[str]:
    """Documents from one or more ``.txt`` files (or folders of them), one document per file,
    split further at blank lines. Use them with the same tokenizer and batching as the world.

    Raises:
        FileNotFoundError: a path does not exist, or a folder holds no ``.txt`` file.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist; give .txt files or folders that hold them")
        found = sorted(p.rglob("*.txt")) if p.is_dir() else [p]
        if not found:
            raise FileNotFoundError(f"{p} holds no .txt file")
        files += found
    docs = []
    for f in files:
        text = f.read_text(encoding="utf-8", errors="replace")
        docs += [d.strip() for d in text.split("\n\n") if len(d.strip()) >= min_chars]
    return docs
