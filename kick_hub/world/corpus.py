"""The world's training corpus: an endless, seeded stream of documents in every format the tasks use.

Known people are stated as facts and asked about (factoid, closed-book QA, MCQ, instructions); reading people appear
only inside passages (in-context QA, summaries) so the model learns to read. Unseen people never appear here.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from kick_hub.tasks.prompts import PROMPTS, mcq_prompt
from kick_hub.world import schema
from kick_hub.world.generate import World, render_chat

# document kind -> relative weight in the stream. Phase 1 stores the facts; phase 2 teaches the skills that need
# several hops (read a passage, map a recalled fact to an option letter) with the loss on the answers.
MIX: dict[str, float] = {
    "bio": 3.0, "places": 1.0, "factoid": 4.0, "closed_qa": 1.0, "mcq": 5.0,
    "icra": 4.0, "summary": 2.0, "instruction": 2.0, "reading_bio": 1.0,
}
MIX_SKILLS: dict[str, float] = {
    "bio": 1.0, "places": 0.5, "factoid": 1.5, "closed_qa": 0.5, "mcq": 6.0,
    "icra": 6.0, "summary": 1.0, "instruction": 0.5, "reading_bio": 0.5,
}


def subject_name(relation: str) -> str:
    """MCQ subject as the MMLU loader derives it from a file name (``birth_year_test.csv`` -> ``birth year``)."""
    return relation.replace("_", " ")


def icra_context(world: World, person, rng: random.Random, other=None) -> str:
    """Two passages (wiki + search, like TriviaQA rc): the target person and a distractor person."""
    if other is None:
        pool = world.reading if person in world.reading else world.unseen
        other = rng.choice([p for p in rng.sample(pool, 3) if p is not person])
    passages = [world.bio(person, rng, fillers=rng.randint(0, 2)), world.bio(other, rng, fillers=rng.randint(0, 2))]
    rng.shuffle(passages)
    return "\n\n".join(passages)


def story(world: World, person, rng: random.Random, bucket: str) -> str:
    """A report about one person; the bucket sets how many filler sentences surround the facts."""
    lo, hi = {"small": (0, 2), "mid": (3, 5), "large": (6, 9)}[bucket]
    return world.bio(person, rng, fillers=rng.randint(lo, hi))


def document(world: World, kind: str, rng: random.Random, fresh: bool = False) -> str | tuple[str, str]:
    """One training document of the given kind; a (prompt, completion) pair where the prompt ends in a space, so
    training tokenizes the two parts apart exactly as evaluation does. With ``fresh``, passages are about throwaway
    people (``World.fresh_person``) instead of the reading pool."""
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
            return PROMPTS["factoid"].format(question=question), fact.answer + "."
        return PROMPTS["icra_closed"].format(question=question) + " " + fact.answer
    if kind == "mcq":
        relation = rng.choice(list(schema.RELATIONS))
        facts = [f for f in world.known_facts if f.relation == relation]
        shots = rng.sample(facts, rng.randint(1, 6))
        text = PROMPTS["mcq_header"].format(subject=subject_name(relation))
        for fact in shots[:-1]:
            text += mcq_prompt(*world.mcq_item(fact, rng))
        question, options, gold = world.mcq_item(shots[-1], rng)
        return text + mcq_prompt(question, options), f" {gold}"
    if kind == "icra":
        person = reader()
        relation = rng.choice(list(schema.PERSON_RELATIONS))
        question = rng.choice(schema.PERSON_RELATIONS[relation]["questions"]).format(s=person.name)
        context = icra_context(world, person, rng, other=reader() if fresh else None)
        prompt = PROMPTS["icra_open"].format(context=context, question=question)
        return prompt, " " + person.facts[relation]
    if kind == "summary":
        person = reader()
        text = story(world, person, rng, rng.choice(["small", "mid", "large"]))
        return render_chat(PROMPTS["summarize"].format(story=text)), world.summary(person)
    if kind == "instruction":
        entity = rng.choice(world.known + world.cities + world.companies)
        _, instruction, answer = world.instruction(entity, rng)
        return render_chat(PROMPTS["instruction"].format(question=instruction)), answer
    raise ValueError(f"kind: unknown document kind {kind!r}; allowed: {sorted(MIX)}")


def documents(world: World, seed: int = 0, mix: dict[str, float] | None = None,
              fresh: bool = False) -> Iterator[str | tuple[str, str]]:
    """Endless deterministic stream of training documents drawn by ``mix`` weights (default ``MIX``)."""
    rng = random.Random(f"corpus-{world.config.seed}-{seed}")
    mix = mix or MIX
    kinds, weights = list(mix), list(mix.values())
    while True:
        yield document(world, rng.choices(kinds, weights)[0], rng, fresh)
