"""Dataset loaders: local files in the real datasets' original formats, Hub ids, and the embedded world.

Every loader returns plain ``dict`` records in one schema per task:

- factoid:     ``{id, question, answers}``
- mcq:         ``{id, subject, question, options[4], answer, fewshot}`` (fewshot: dev records of the subject)
- icra:        ``{id, question, answers, context}``
- icsum:       ``{id, bucket, story, reference}``
- instruction: ``{id, category, question, reference}``
- perplexity:  ``{id, text}``
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

TRIVIAQA_CONTEXT_CHARS = 3072  # LLM-KICK: first wiki context + first search context, cut to 3,072 characters

# task -> (Hub dataset id, config, split) used when the source is "hub"
HUB_SOURCES = {
    "factoid": ("freebase_qa", None, "train"),
    "mcq": ("cais/mmlu", "all", "test"),
    "icra": ("mandarjoshi/trivia_qa", "rc", "validation"),
    "icsum": ("abisee/cnn_dailymail", "3.0.0", "test"),
    "perplexity": ("Salesforce/wikitext", "wikitext-2-raw-v1", "test"),
}
# task -> sub-path of a world data dir; "world-heldout" picks the paraphrase split where there is one
WORLD_PATHS = {"factoid": "freebaseqa", "mcq": "mmlu", "icra": "triviaqa", "icsum": "cnn_dailymail_stories",
               "instruction": "vicuna", "perplexity": "perplexity"}
WORLD_SOURCES = ("world", "world-heldout")
# task kind -> sub-folder names looked for when the source is a data root such as ../shared/data
ROOT_SUBDIRS = {"factoid": ("freebaseqa",), "mcq": ("mmlu",), "icra": ("triviaqa",),
                "icsum": ("cnn_dailymail_stories",), "instruction": ("vicuna", "vicuna80"),
                "perplexity": ("perplexity", "wikitext", "cnn_dailymail_stories")}


def interleave(records: list[dict], key: str) -> list[dict]:
    """Round-robin over groups (subjects, buckets) so a ``limit`` keeps every group represented."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r[key], []).append(r)
    out = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out += [g[i] for g in groups.values() if i < len(g)]
    return out


def _missing(path: Path, field: str, what: str) -> ValueError:
    return ValueError(f"{field}: {path} holds no {what}")


# ------------------------------------------------------------------ factoid
def load_freebaseqa(path: str | Path) -> list[dict]:
    """FreebaseQA: the ``question | answer`` txt release or the JSON release (aliases from every parse)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json")) or sorted(path.glob("*.txt"))
        if not files:
            raise _missing(path, "data", "FreebaseQA .json or .txt file")
        path = files[0]
    if path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        records = []
        for q in data["Questions"]:
            names = [n for parse in q["Parses"] for a in parse["Answers"] for n in a["AnswersName"]]
            records.append({"id": q["Question-ID"], "question": q["RawQuestion"], "answers": list(dict.fromkeys(names))})
        return records
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if "|" not in line:
            continue
        question, answer = line.rsplit("|", 1)
        records.append({"id": f"{path.stem}-{i}", "question": question.strip(), "answers": [answer.strip()]})
    return records


# ---------------------------------------------------------------------- mcq
def load_mmlu(path: str | Path, ntrain: int = 5) -> list[dict]:
    """MMLU CSV folders (``dev/<subject>_dev.csv`` few-shot, ``test/<subject>_test.csv``); headerless rows of
    question, A, B, C, D, answer letter."""
    path = Path(path)
    test_files = sorted((path / "test").glob("*_test.csv"))
    if not test_files:
        raise _missing(path, "data", "MMLU test/<subject>_test.csv files")

    def rows(file: Path, subject: str) -> list[dict]:
        with open(file, newline="", encoding="utf-8") as fh:
            return [{"id": f"{subject}-{file.parent.name}-{i}", "subject": subject, "question": r[0],
                     "options": r[1:5], "answer": r[5].strip()} for i, r in enumerate(csv.reader(fh)) if len(r) >= 6]

    records = []
    for file in test_files:
        subject = file.name[: -len("_test.csv")]
        dev = path / "dev" / f"{subject}_dev.csv"
        shots = rows(dev, subject)[:ntrain] if dev.exists() else []
        for r in rows(file, subject):
            r["fewshot"] = shots
            records.append(r)
    return interleave(records, "subject")


# --------------------------------------------------------------------- icra
def triviaqa_record(r: dict) -> dict:
    """One TriviaQA rc record (Hub or JSONL) -> icra record, context built as LLM-KICK did."""
    wiki = r.get("entity_pages", {}).get("wiki_context") or [""]
    search = r.get("search_results", {}).get("search_context") or [""]
    context = "\n\n".join(c for c in (wiki[0], search[0]) if c)[:TRIVIAQA_CONTEXT_CHARS]
    answer = r["answer"]
    aliases = list(dict.fromkeys([answer["value"], *answer.get("aliases", [])]))
    return {"id": r["question_id"], "question": r["question"], "answers": aliases, "context": context}


def load_triviaqa(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise _missing(path, "data", "TriviaQA .jsonl file")
        path = files[0]
    with open(path, encoding="utf-8") as fh:
        return [triviaqa_record(json.loads(line)) for line in fh if line.strip()]


# -------------------------------------------------------------------- icsum
def parse_story(text: str) -> tuple[str, str]:
    """CNN/DM ``.story``: (article, reference). ``@highlight`` lines form the reference and never reach the
    article (LLM-KICK's prompts accidentally kept them)."""
    article, highlights, take_next = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if line == "@highlight":
            take_next = True
        elif line and take_next:
            highlights.append(line)
            take_next = False
        elif line:
            article.append(line)
    return "\n\n".join(article), ". ".join(h.rstrip(".") for h in highlights) + "."


def load_stories(path: str | Path) -> list[dict]:
    """A folder of ``.story`` files, or of ``small/ mid/ large/`` bucket folders of them."""
    path = Path(path)
    buckets = [d for d in sorted(path.iterdir()) if d.is_dir()] if path.is_dir() else []
    groups = [(d.name, sorted(d.glob("*.story"))) for d in buckets] or [("all", sorted(path.glob("*.story")))]
    records = []
    for bucket, files in groups:
        for f in files:
            article, reference = parse_story(f.read_text(encoding="utf-8"))
            records.append({"id": f"{bucket}/{f.stem}", "bucket": bucket, "story": article, "reference": reference})
    if not records:
        raise _missing(path, "data", ".story files")
    return interleave(records, "bucket")


# -------------------------------------------------------------- instruction
def load_vicuna(path: str | Path) -> list[dict]:
    """``question.jsonl`` (question_id, text, category) plus a reference-answer jsonl beside it
    (``reference_answer.jsonl``, else ``gpt35_answer.jsonl``, else the first other ``*.jsonl``)."""
    path = Path(path)
    qfile = path / "question.jsonl" if path.is_dir() else path
    if not qfile.exists():
        raise _missing(path, "data", "question.jsonl")
    candidates = [qfile.parent / n for n in ("reference_answer.jsonl", "gpt35_answer.jsonl")]
    candidates += [p for p in sorted(qfile.parent.glob("*.jsonl")) if p != qfile]
    afile = next((p for p in candidates if p.exists()), None)
    answers = {}
    if afile:
        for line in afile.read_text(encoding="utf-8").splitlines():
            if line.strip():
                a = json.loads(line)
                answers[a["question_id"]] = a.get("text") or a["choices"][0]["turns"][0]
    records = []
    for line in qfile.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            text = q.get("text") or q["turns"][0]  # Vicuna-80 or MT-Bench question format
            records.append({"id": q["question_id"], "category": q.get("category", ""), "question": text,
                            "reference": answers.get(q["question_id"], "")})
    return records


# --------------------------------------------------------------- perplexity
def load_text(path: str | Path) -> list[dict]:
    """Raw text, one record per non-empty line (wikitext-style): a .txt file or folder of them, or else a folder of
    CNN/DM ``.story`` files, whose article paragraphs are real news text (each story once, highlights dropped)."""
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        stories = {f.name: f for f in sorted(path.rglob("*.story"))}
        lines = [l for f in stories.values() for l in parse_story(f.read_text(encoding="utf-8"))[0].splitlines()
                 if l.strip()]
        if not lines:
            raise _missing(path, "data", "text")
        return [{"id": f"line-{i}", "text": l} for i, l in enumerate(lines)]
    lines = [l for f in files for l in f.read_text(encoding="utf-8").splitlines() if l.strip()]
    if not lines:
        raise _missing(path, "data", "text")
    return [{"id": f"line-{i}", "text": l} for i, l in enumerate(lines)]


LOCAL_LOADERS = {"factoid": load_freebaseqa, "mcq": load_mmlu, "icra": load_triviaqa, "icsum": load_stories,
                 "instruction": load_vicuna, "perplexity": load_text}


def load_hub(kind: str, dataset_id: str | None = None) -> list[dict]:
    """The real dataset from the Hub (needs network; honours HF_DATASETS_OFFLINE)."""
    import datasets

    if kind not in HUB_SOURCES:
        raise ValueError(f"data: no Hub source for {kind!r}; allowed: {sorted(HUB_SOURCES)} (use a local path)")
    default_id, config, split = HUB_SOURCES[kind]
    ds = datasets.load_dataset(dataset_id or default_id, config, split=split)
    if kind == "factoid":
        return [{"id": r["Question-ID"], "question": r["RawQuestion"],
                 "answers": [n for a in r["Parses"]["Answers"] for n in a["AnswersName"]]} for r in ds]
    if kind == "mcq":
        dev = datasets.load_dataset(dataset_id or default_id, config, split="dev")
        shots: dict[str, list[dict]] = {}
        for i, r in enumerate(dev):
            shots.setdefault(r["subject"], []).append(
                {"id": f"dev-{i}", "subject": r["subject"], "question": r["question"], "options": r["choices"],
                 "answer": "ABCD"[r["answer"]]})
        return [{"id": f"{r['subject']}-{i}", "subject": r["subject"], "question": r["question"],
                 "options": r["choices"], "answer": "ABCD"[r["answer"]], "fewshot": shots.get(r["subject"], [])[:5]}
                for i, r in enumerate(ds)]
    if kind == "icra":
        return [triviaqa_record(r) for r in ds]
    if kind == "icsum":
        return [{"id": r["id"], "bucket": "all", "story": r["article"], "reference": r["highlights"]} for r in ds]
    return [{"id": f"line-{i}", "text": r["text"]} for i, r in enumerate(ds) if r["text"].strip()]


def load(kind: str, source: str = "world", limit: int | None = None) -> list[dict]:
    """Records of task kind ``kind`` from ``source``: ``world`` / ``world-heldout``, a local path, ``hub`` (the
    default Hub dataset) or ``hub:<dataset id>``."""
    if kind not in LOCAL_LOADERS:
        raise ValueError(f"kind: must be one of {sorted(LOCAL_LOADERS)}, got {kind!r}")
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"limit: must be a positive integer, got {limit!r}")
    if source in WORLD_SOURCES:
        from kick_hub.world.export import data_dir

        sub = WORLD_PATHS[kind]
        if source == "world-heldout" and kind in ("factoid", "mcq"):
            sub += "-heldout"
        records = LOCAL_LOADERS[kind](data_dir() / sub)
    elif source == "hub" or source.startswith("hub:"):
        records = load_hub(kind, source[4:] or None)
    elif os.path.exists(source):
        sub = next((Path(source) / d for d in ROOT_SUBDIRS[kind] if (Path(source) / d).is_dir()), None)
        records = LOCAL_LOADERS[kind](sub or source)
    else:
        raise ValueError(f"data: {source!r} is neither {list(WORLD_SOURCES)}, 'hub', 'hub:<dataset id>' nor an "
                         f"existing path")
    return records[:limit] if limit else records
