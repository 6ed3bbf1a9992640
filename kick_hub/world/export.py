"""Write the world's evaluation sets to disk in the real datasets' own file formats, so one set of loaders reads both.

Layout of a world data dir (``kick world build --output DIR``)::

    freebaseqa/FreebaseQA-world.json           FreebaseQA JSON (aliases in AnswersName), trained phrasings
    freebaseqa-heldout/FreebaseQA-world.json   the same facts asked in held-out phrasings
    mmlu/{dev,test}/<relation>_{dev,test}.csv   MMLU CSVs, one subject per relation
    mmlu-heldout/{dev,test}/...                 test questions in held-out phrasings (dev unchanged)
    triviaqa/validation.jsonl                   TriviaQA rc records about unseen people
    cnn_dailymail_stories/{small,mid,large}/*.story   reports + @highlight reference summaries
    vicuna/question.jsonl, vicuna/reference_answer.jsonl
    perplexity/test.txt                         bios of unseen people, one paragraph per line
    world.json                                  config, sizes and the sha256 of every file
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import random
from dataclasses import asdict
from pathlib import Path

from kick_hub.world import schema
from kick_hub.world.corpus import icra_context, story
from kick_hub.world.generate import World

MCQ_DEV_SHOTS = 5
STORIES_PER_BUCKET = 30
N_INSTRUCTIONS = 80


def _freebaseqa(world: World, rng: random.Random, heldout: bool) -> str:
    key = "heldout_questions" if heldout else "questions"
    questions = []
    for i, fact in enumerate(world.known_facts):
        q = rng.choice(schema.RELATIONS[fact.relation][key]).format(s=fact.subject)
        questions.append({
            "Question-ID": f"World-{'heldout-' if heldout else ''}{i}", "RawQuestion": q, "ProcessedQuestion": q.lower(),
            "Parses": [{"Parse-Id": f"World-{i}.P0", "Answers": [{"AnswersMid": f"w.{i}", "AnswersName": fact.aliases}]}],
            "Relation": fact.relation,
        })
    return json.dumps({"Dataset": "FreebaseQA-world", "Version": "1.0", "Questions": questions}, indent=1) + "\n"


def _csv(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _mmlu(world: World, rng: random.Random) -> dict[str, str]:
    files: dict[str, str] = {}
    for relation in schema.RELATIONS:
        facts = [f for f in world.known_facts if f.relation == relation]
        dev_idx = set(rng.sample(range(len(facts)), MCQ_DEV_SHOTS))
        split = {"dev": [f for i, f in enumerate(facts) if i in dev_idx],
                 "test": [f for i, f in enumerate(facts) if i not in dev_idx]}
        for name, part in split.items():
            rows = []
            for fact in part:
                question, options, gold = world.mcq_item(fact, rng)
                rows.append([question, *options, gold])
            files[f"mmlu/{name}/{relation}_{name}.csv"] = _csv(rows)
        files[f"mmlu-heldout/dev/{relation}_dev.csv"] = files[f"mmlu/dev/{relation}_dev.csv"]
        rows = []
        for fact in split["test"]:
            question, options, gold = world.mcq_item(fact, rng, heldout=True)
            rows.append([question, *options, gold])
        files[f"mmlu-heldout/test/{relation}_test.csv"] = _csv(rows)
    return files


def _triviaqa(world: World, rng: random.Random) -> str:
    lines = []
    for i, person in enumerate(world.unseen):
        for relation in rng.sample(list(schema.PERSON_RELATIONS), 2):
            answer = person.facts[relation]
            context = icra_context(world, person, rng).split("\n\n")
            aliases = world.aliases(relation, answer)
            lines.append(json.dumps({
                "question": rng.choice(schema.PERSON_RELATIONS[relation]["questions"]).format(s=person.name),
                "question_id": f"world_rc_{len(lines)}", "question_source": "kick-hub world",
                "entity_pages": {"title": [person.name], "wiki_context": [context[0]]},
                "search_results": {"title": ["search"], "search_context": [context[1]]},
                "answer": {"value": answer, "aliases": aliases, "normalized_aliases": [a.lower() for a in aliases],
                           "normalized_value": answer.lower(), "type": "WikipediaEntity"},
                "relation": relation,
            }))
    return "\n".join(lines) + "\n"


def _stories(world: World, rng: random.Random) -> dict[str, str]:
    files = {}
    people = list(world.unseen)
    for bucket in ("small", "mid", "large"):
        for person in rng.sample(people, min(STORIES_PER_BUCKET, len(people))):
            text = story(world, person, rng, bucket)
            digest = hashlib.sha1(f"{bucket}/{person.name}".encode()).hexdigest()
            files[f"cnn_dailymail_stories/{bucket}/{digest}.story"] = f"{text}\n\n@highlight\n\n{world.summary(person)}\n"
    return files


def _vicuna(world: World, rng: random.Random) -> dict[str, str]:
    entities = rng.sample(world.known + world.cities + world.companies, N_INSTRUCTIONS)
    questions, answers = [], []
    for i, entity in enumerate(entities, start=1):
        category, instruction, reference = world.instruction(entity, rng)
        questions.append(json.dumps({"question_id": i, "text": instruction, "category": category}))
        answers.append(json.dumps({"answer_id": f"world-ref-{i}", "question_id": i, "model_id": "world-reference",
                                   "text": reference}))
    return {"vicuna/question.jsonl": "\n".join(questions) + "\n",
            "vicuna/reference_answer.jsonl": "\n".join(answers) + "\n"}


def build_files(world: World) -> dict[str, str]:
    """Every eval file of the world, path -> text; pure and deterministic."""
    rng = random.Random(f"eval-{world.config.seed}")
    files = {"freebaseqa/FreebaseQA-world.json": _freebaseqa(world, rng, heldout=False),
             "freebaseqa-heldout/FreebaseQA-world.json": _freebaseqa(world, rng, heldout=True)}
    files.update(_mmlu(world, rng))
    files["triviaqa/validation.jsonl"] = _triviaqa(world, rng)
    files.update(_stories(world, rng))
    files.update(_vicuna(world, rng))
    files["perplexity/test.txt"] = "\n".join(world.bio(p, rng) for p in world.unseen) + "\n"
    manifest = {"config": asdict(world.config), "sizes": world.sizes(),
                "sha256": {p: hashlib.sha256(t.encode()).hexdigest() for p, t in sorted(files.items())}}
    files["world.json"] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return files


def write(world: World, output: str | Path, files: dict[str, str] | None = None) -> Path:
    """Write the eval files to ``output`` atomically (temp dir beside it, then rename)."""
    from kick_hub.io import atomic_dir

    files = files or build_files(world)
    try:
        with atomic_dir(output) as tmp:
            for rel, text in files.items():
                path = tmp / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    except PermissionError as e:
        raise ValueError(f"output: cannot write to {Path(output).parent} ({e.strerror})") from e
    return Path(output)


@functools.lru_cache(maxsize=None)
def data_dir(seed: int = 0) -> Path:
    """The world's eval files for ``seed``, built once into the user cache (``KICK_HUB_CACHE`` overrides); the
    path is memoised so a sweep does not regenerate the world for every task of every cell."""
    from kick_hub.models import cache_root
    from kick_hub.world.generate import WorldConfig

    root = cache_root()
    world = World(WorldConfig(seed=seed))
    files = build_files(world)
    path = root / f"world-data-{seed}-{hashlib.sha256(files['world.json'].encode()).hexdigest()[:12]}"
    if not (path / "world.json").exists():
        write(world, path, files)
    return path
