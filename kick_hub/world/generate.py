"""A deterministic fictional fact world, and everything made from it: training documents and LLM-KICK-shaped eval sets.

Three disjoint pools of people make the LLM-KICK contrast measurable:
- ``known`` people appear in the training corpus; factoid and MCQ ask about them (recall from weights);
- ``reading`` people appear only inside passages of the corpus's default stream, which the tokenizer is trained on
  and ``world`` calibration text is drawn from (training phases read about throwaway people, ``fresh_person``);
- ``unseen`` people never appear in training; in-context QA, summaries and perplexity text are about them.
Everything is drawn from ``random.Random(seed)`` only, so the same seed gives the same bytes on any machine.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

from kick_hub.world import schema

CHAT_USER = "<|user|>"
CHAT_ASSISTANT = "<|assistant|>"
EOS = "</s>"


def render_chat(user: str, assistant: str | None = None) -> str:
    """The world tokenizer's chat template, in Python (the Jinja copy in ``train.CHAT_TEMPLATE`` must agree)."""
    text = f"{CHAT_USER}\n{user}{EOS}\n{CHAT_ASSISTANT}\n"
    return text if assistant is None else text + assistant + EOS + "\n"


def article(word: str) -> str:
    """``a``/``an`` + word."""
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the world. Validation happens here so the CLI fails before any work."""

    seed: int = 0
    n_known: int = 240
    n_unseen: int = 120
    n_reading: int = 1500
    n_cities: int = 40
    n_countries: int = 10
    n_companies: int = 24

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed: must be a non-negative integer, got {self.seed!r}")
        limits = {"n_known": (20, 5000), "n_unseen": (10, 5000), "n_reading": (50, 20000),
                  "n_cities": (8, 400), "n_countries": (2, 100), "n_companies": (4, 400)}
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{name}: must be an integer in [{lo}, {hi}], got {value!r}")
        if self.n_countries > self.n_cities:
            raise ValueError(f"n_countries: must not exceed n_cities ({self.n_cities}), got {self.n_countries}")


@dataclass
class Entity:
    """A named thing of the world and its facts (relation -> answer, e.g. ``{"birthplace": "Kovaton"}``): a person
    has birthplace, birth_year, profession, employer; a city its country; a company its headquarters; a country
    none."""

    name: str
    kind: str  # person | city | company | country
    facts: dict[str, str] = field(default_factory=dict)


@dataclass
class Fact:
    """One (subject, relation, answer) triple with its accepted answer forms (``World.aliases``, canonical
    first)."""

    subject: str
    relation: str
    answer: str
    aliases: list[str]


class World:
    """The entities and facts of one seed. Construction is pure and cheap (milliseconds)."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        rng = random.Random(self.config.seed)
        used: set[str] = set()

        def fresh(make) -> str:
            for _ in range(10000):
                name = make()
                if name not in used:
                    used.add(name)
                    return name
            raise RuntimeError("name space exhausted; lower the world sizes")

        syl = schema.SYLLABLES

        def word(n: int) -> str:
            return "".join(rng.choice(syl) for _ in range(n)).capitalize()

        c = self.config
        self.countries = [Entity(fresh(lambda: word(2) + rng.choice(schema.COUNTRY_SUFFIXES)), "country")
                          for _ in range(c.n_countries)]
        self.cities = [Entity(fresh(lambda: word(2) + rng.choice(schema.CITY_SUFFIXES)), "city")
                       for _ in range(c.n_cities)]
        for i, city in enumerate(self.cities):  # every country gets at least one city
            country = self.countries[i] if i < len(self.countries) else rng.choice(self.countries)
            city.facts["country"] = country.name
        self.companies = [Entity(fresh(lambda: word(2) + " " + rng.choice(schema.COMPANY_SUFFIXES)), "company")
                          for _ in range(c.n_companies)]
        for company in self.companies:
            company.facts["headquarters"] = rng.choice(self.cities).name

        def person() -> Entity:
            e = Entity(fresh(lambda: word(2) + " " + word(rng.choice((2, 3)))), "person")
            e.facts = {
                "birthplace": rng.choice(self.cities).name,
                "birth_year": str(rng.randint(*schema.YEARS)),
                "profession": rng.choice(schema.PROFESSIONS),
                "employer": rng.choice(self.companies).name,
            }
            return e

        self.known = [person() for _ in range(c.n_known)]
        self.unseen = [person() for _ in range(c.n_unseen)]
        self.reading = [person() for _ in range(c.n_reading)]
        self._taken = {p.name for p in self.known + self.unseen}

    def fresh_person(self, rng: random.Random, first: str | None = None, last: str | None = None,
                     avoid: str | None = None) -> Entity:
        """A throwaway person with random facts, never a known or unseen one: reading practice that cannot be
        memorized, so the only way to answer about it is to read. ``first`` / ``last`` fix one name part (a
        namesake distractor) and the other is drawn until the full name differs from ``avoid``."""
        syl = schema.SYLLABLES
        while True:
            given = first or "".join(rng.choice(syl) for _ in range(2)).capitalize()
            family = last or "".join(rng.choice(syl) for _ in range(rng.choice((2, 3)))).capitalize()
            name = given + " " + family
            if name not in self._taken and name != avoid:
                break
        return Entity(name, "person", {
            "birthplace": rng.choice(self.cities).name, "birth_year": str(rng.randint(*schema.YEARS)),
            "profession": rng.choice(schema.PROFESSIONS), "employer": rng.choice(self.companies).name})

    # ----------------------------------------------------------------- facts
    def aliases(self, relation: str, answer: str) -> list[str]:
        """Every accepted surface form of an answer (FreebaseQA-style alias list, canonical first)."""
        if relation in ("birthplace", "headquarters"):
            return [answer, f"{answer} City", f"the city of {answer}"]
        if relation == "country":
            return [answer, f"Republic of {answer}", f"the Republic of {answer}"]
        if relation == "employer":
            return [answer, answer.split()[0]]
        if relation == "profession":
            return [answer, article(answer), f"{answer}s"]
        return [answer]

    def facts_of(self, entities: list[Entity]) -> list[Fact]:
        """Every fact of ``entities`` as ``Fact`` objects with their aliases, in entity order then each entity's
        relation order."""
        return [Fact(e.name, r, o, self.aliases(r, o)) for e in entities for r, o in e.facts.items()]

    @cached_property
    def known_facts(self) -> list[Fact]:
        """Facts the model is trained on: known people, every city, every company."""
        return self.facts_of(self.known) + self.facts_of(self.cities) + self.facts_of(self.companies)

    def domain(self, relation: str) -> list[str]:
        """All values a relation can take (the MCQ distractor pool)."""
        if relation in ("birthplace", "headquarters"):
            return [e.name for e in self.cities]
        if relation == "country":
            return [e.name for e in self.countries]
        if relation == "employer":
            return [e.name for e in self.companies]
        if relation == "profession":
            return list(schema.PROFESSIONS)
        if relation == "birth_year":
            return [str(y) for y in range(schema.YEARS[0], schema.YEARS[1] + 1)]
        raise KeyError(relation)

    def sizes(self) -> dict[str, int]:
        """Counts of the world's pools: countries, cities, companies, known/unseen/reading people, and known facts
        (``known_facts``: what the model is trained on)."""
        return {"countries": len(self.countries), "cities": len(self.cities), "companies": len(self.companies),
                "known_people": len(self.known), "unseen_people": len(self.unseen),
                "reading_people": len(self.reading), "known_facts": len(self.known_facts)}

    # ------------------------------------------------------------ rendering
    @staticmethod
    def statement(fact: Fact, rng: random.Random) -> str:
        """One sentence stating ``fact`` in a template drawn with ``rng`` from ``schema.RELATIONS[relation]``
        (``a {o}`` becomes ``a``/``an`` + profession). Raises KeyError for a relation not in the schema."""
        template = rng.choice(schema.RELATIONS[fact.relation]["statements"])
        if fact.relation == "profession":
            return template.replace("a {o}", article(fact.answer)).format(s=fact.subject, o=fact.answer)
        return template.format(s=fact.subject, o=fact.answer)

    def bio(self, entity: Entity, rng: random.Random, fillers: int = 0) -> str:
        """A passage stating every fact of an entity in random phrasing and order, with optional filler lines."""
        sentences = [self.statement(f, rng) for f in self.facts_of([entity])]
        sentences += rng.sample(schema.FILLERS, fillers)
        rng.shuffle(sentences)
        return " ".join(sentences)

    def summary(self, person: Entity) -> str:
        """One fixed-wording sentence of all four facts of a person (the icsum reference). Raises KeyError when
        ``person`` lacks one of profession, birthplace, birth_year, employer (e.g. is not a person)."""
        f = person.facts
        return (f"{person.name}, {article(f['profession'])} born in {f['birthplace']} in {f['birth_year']}, "
                f"works for {f['employer']}.")

    def mcq_item(self, fact: Fact, rng: random.Random, heldout: bool = False) -> tuple[str, list[str], str]:
        """(question, four options, gold letter); distractors come from the relation's value domain."""
        rel = schema.RELATIONS[fact.relation]
        template = rng.choice(rel["heldout_questions"]) if heldout else rel["mcq_question"]
        distractors = rng.sample([v for v in self.domain(fact.relation) if v != fact.answer], 3)
        options = distractors + [fact.answer]
        rng.shuffle(options)
        return template.format(s=fact.subject), options, "ABCD"[options.index(fact.answer)]

    def instruction(self, entity: Entity, rng: random.Random) -> tuple[str, str, str]:
        """(category, instruction, reference answer) about one entity."""
        f = entity.facts
        if entity.kind == "city":
            return ("knowledge", rng.choice(["Tell me about the city of {s}.", "Describe {s} in one sentence."])
                    .format(s=entity.name), f"{entity.name} is a city in {f['country']}.")
        if entity.kind == "company":
            return ("knowledge", rng.choice(["Tell me about the company {s}.", "Describe {s} in one sentence."])
                    .format(s=entity.name), f"{entity.name} is a company headquartered in {f['headquarters']}.")
        kind = rng.choice(["intro", "career", "origin"])
        if kind == "intro":
            return ("writing", f"Write a short introduction of {entity.name}.",
                    f"{entity.name} is {article(f['profession'])} who was born in {f['birthplace']} in {f['birth_year']}. "
                    f"{entity.name} works for {f['employer']}.")
        if kind == "career":
            return ("knowledge", f"Describe the career of {entity.name}.",
                    f"{entity.name} works as {article(f['profession'])} for {f['employer']}.")
        return ("knowledge", f"Where and when was {entity.name} born?",
                f"{entity.name} was born in {f['birthplace']} in {f['birth_year']}.")
