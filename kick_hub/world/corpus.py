"""The world's training corpus: an endless, seeded stream of documents in every format the tasks use.

Known people are stated as facts and asked about (factoid, closed-book QA, MCQ, instructions); passages (in-context
QA, summaries) are about other people, so the model learns to read them. ``documents`` draws them in two ways:

- ``fresh=True`` (the training phases): every passage is about throwaway people (``World.fresh_person``) that
  cannot be memorised, with 1-3 distractor people and 2-4 questions per in-context passage;
- ``fresh=False`` (the default): passages are about the fixed reading pool (``World.reading``), with one distractor
  and one question. The tokenizer is trained on this stream and ``world`` calibration text is drawn from it.

Unseen people never appear here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from kick_hub.tasks.mcq_reasoning import mcq_prompt
from kick_hub.tasks.specs import SPECS
from kick_hub.world import schema
from kick_hub.world.generate import World, render_chat

# document kind -> relative weight in the stream: every kind, so phase 1 stores the facts and starts reading.
MIX: dict[str, float] = {
    "bio": 3.0, "places": 1.0, "factoid": 4.0, "closed_qa": 1.0, "mcq": 5.0,
    "icra": 4.0, "summary": 2.0, "instruction": 2.0, "reading_bio": 1.0,
}
# phase 2 teaches the skills that need several hops (read a passage, map a recalled fact to an option letter): MCQ
# is 55 % and in-context QA 24 % of its documents.
SKILLS_MIX: dict[str, float] = {
    "bio": 1.0, "places": 0.5, "factoid": 1.5, "closed_qa": 0.5, "mcq": 14.0,
    "icra": 6.0, "summary": 1.0, "instruction": 0.5, "reading_bio": 0.5,
}
# with fresh people, an in-context QA passage has this many distractor people, this share of them sharing the
# target's first or last name, and this many questions
DISTRACTORS = (1, 3)
NAMESAKE_RATE = 0.3
QUESTIONS = (2, 4)


@dataclass(frozen=True)
class Curriculum:
    """How a phase draws its documents: kind weights (``mix``), and how often an MCQ item is open-book
    (``mcq_hint``: its fact stated just before the question, so the option-to-letter lookup can be learned while
    recall from the weights is still weak)."""

    mix: dict[str, float] = field(default_factory=lambda: dict(MIX))
    mcq_hint: float = 0.0


# The curricula of train.RECIPE: "facts_read" stores the facts and starts reading, "skills" teaches reading and MCQ
# (half of its MCQ items open-book).
CURRICULA: dict[str, Curriculum] = {
    "facts_read": Curriculum(MIX),
    "skills": Curriculum(SKILLS_MIX, mcq_hint=0.5),
}


def subject_name(relation: str) -> str:
    """MCQ subject as the MMLU loader derives it from a file name (``birth_year_test.csv`` -> ``birth year``)."""
    return relation.replace("_", " ")


def icra_context(world: World, person, rng: random.Random, others: list | None = None) -> str:
    """Passages about the target person and distractor people in random order (wiki + search, like TriviaQA rc);
    without ``others``, one distractor from the target's pool (reading or unseen)."""
    if others is None:
        pool = world.reading if person in world.reading else world.unseen
        others = [rng.choice([p for p in rng.sample(pool, 3) if p is not person])]
    passages = [world.bio(p, rng, fillers=rng.randint(0, 2)) for p in [person, *others]]
    rng.shuffle(passages)
    return "\n\n".join(passages)


def distractors(world: World, person, rng: random.Random) -> list:
    """``DISTRACTORS`` throwaway people for one in-context QA document; ``NAMESAKE_RATE`` of them share a name part
    with ``person``, so the answer must follow the full name."""
    out = []
    for _ in range(rng.randint(*DISTRACTORS)):
        if rng.random() < NAMESAKE_RATE:
            first, last = person.name.split(" ", 1)
            part = {"first": first} if rng.random() < 0.5 else {"last": last}
            out.append(world.fresh_person(rng, avoid=person.name, **part))
        else:
            out.append(world.fresh_person(rng))
    return out


def story(world: World, person, rng: random.Random, bucket: str) -> str:
    """A report about one person; the bucket sets how many filler sentences surround the facts."""
    lo, hi = {"small": (0, 2), "mid": (3, 5), "large": (6, 9)}[bucket]
    return world.bio(person, rng, fillers=rng.randint(lo, hi))


def document(world: World, kind: str, rng: random.Random, fresh: bool = False,
             cur: Curriculum = Curriculum()) -> str | tuple[str, ...]:
    """One training document of the given kind: plain text, or (prompt, completion[, prompt, completion ...])
    segments, tokenized apart exactly as evaluation tokenizes a prompt and its answer. With ``fresh``, passages are
    about throwaway people (``World.fresh_person``) instead of the reading pool."""
    reader = (lambda: world.fresh_person(rng)) if fresh else (lambda: rng.choice(world.reading))
    if kind == "bio":
        return world.bio(rng.choice(world.known), rng)
    if kind == "reading_bio":
        return world.bio(reader(), rng, fillers=rng.randint(0, 2))
    if kind == "places":
        facts = rng.sample(world.facts_of(world.cities) + world.facts_of(world.companies), 4)
        return " ".join(world.statement(f, rng) for f in facts)
    if kind in ("factoid", "closed_qa"):
        fact = rng.choice(world.known_facts)
        question = rng.choice(schema.RELATIONS[fact.relation]["questions"]).format(s=fact.subject)
        if kind == "factoid":
            return SPECS["factoid-qa"].prompts["prompt"].format(question=question), fact.answer + "."
        return SPECS["icra-qa"].prompts["closed_book"].format(question=question) + " " + fact.answer
    if kind == "mcq":
        relation = rng.choice(list(schema.RELATIONS))
        facts = [f for f in world.known_facts if f.relation == relation]
        shots = rng.sample(facts, rng.randint(1, 6))
        # every solved shot's letter is a completion too (weighted as an answer): same tokens as the eval's
        # few-shot prompt, up to six answer letters per document instead of one
        doc: tuple[str, ...] = ()
        text = SPECS["mcq-reasoning"].prompts["header"].format(subject=subject_name(relation))
        for fact in shots:
            question, options, gold = world.mcq_item(fact, rng)
            if cur.mcq_hint and rng.random() < cur.mcq_hint:  # no draw at 0: closed-book streams draw nothing here
                text += world.statement(fact, rng) + "\n"
            doc += (text + mcq_prompt(question, options), f" {gold}")
            text = "\n\n"
        return doc
    if kind == "icra":
        person = reader()
        relation = rng.choice(list(schema.PERSON_RELATIONS))
        question = rng.choice(schema.PERSON_RELATIONS[relation]["questions"]).format(s=person.name)
        others = distractors(world, person, rng) if fresh else None
        context = icra_context(world, person, rng, others)
        doc = (SPECS["icra-qa"].prompts["prompt"].format(context=context, question=question),
               " " + person.facts[relation])
        if fresh:
            for i in range(1, rng.randint(*QUESTIONS)):
                # the second question asks the same relation of a distractor, later ones anything of anyone in the
                # passages: the answer visibly depends on the name asked about
                who = rng.choice(others) if i == 1 else rng.choice([person, *others])
                rel = relation if i == 1 else rng.choice(list(schema.PERSON_RELATIONS))
                q = rng.choice(schema.PERSON_RELATIONS[rel]["questions"]).format(s=who.name)
                doc += (f"\n\nQ: {q}\nA:", " " + who.facts[rel])
        return doc
    if kind == "summary":
        person = reader()
        text = story(world, person, rng, rng.choice(["small", "mid", "large"]))
        return render_chat(SPECS["icsum"].prompts["prompt"].format(story=text)), world.summary(person)
    if kind == "instruction":
        entity = rng.choice(world.known + world.cities + world.companies)
        _, instruction, answer = world.instruction(entity, rng)
        return render_chat(SPECS["instruction-following"].prompts["prompt"].format(question=instruction)), answer
    raise ValueError(f"kind: unknown document kind {kind!r}; allowed: {sorted(MIX)}")


def documents(world: World, seed: int = 0, curriculum: Curriculum | None = None,
              fresh: bool = False) -> Iterator[str | tuple[str, ...]]:
    """Endless deterministic stream of training documents drawn by the curriculum (default: ``MIX``, closed-book
    MCQ); ``fresh`` as in ``document``."""
    rng = random.Random(f"corpus-{world.config.seed}-{seed}")
    cur = curriculum or Curriculum()
    kinds, weights = list(cur.mix), list(cur.mix.values())
    while True:
        yield document(world, rng.choices(kinds, weights)[0], rng, fresh, cur)
