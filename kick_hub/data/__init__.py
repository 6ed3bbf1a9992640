"""Dataset readers, each named after the dataset it reads: local files in the real datasets' original formats and
Hub rows (``*_hub_records``, ``hub_dataset``). They know no task: ``tasks.records.load(task, source)`` (the tasks
layer) picks a task's reader and files from its declaration (``tasks.specs``) and builds the embedded world's files;
this package imports nothing from the tasks or world packages.

Every loader returns plain ``dict`` records in the schema of the task it feeds:

- factoid-qa (FreebaseQA):                ``{id, question, answers}``
- mcq-reasoning (MMLU):                   ``{id, subject, question, options[4], answer, fewshot, shots_available}``
                                          (fewshot: up to 5 dev records of the subject; shots_available: how many
                                          there are, fewer only when the dev file is short or missing, which the
                                          loader also warns about with ``DataWarning``)
- icra-qa (TriviaQA rc):                  ``{id, question, answers, context}``
- icsum (CNN/DailyMail stories):          ``{id, bucket, story, reference}``
- instruction-following (Vicuna-80):      ``{id, category, question, reference}``
- perplexity (raw text, WikiText):        ``{id, text}``

Every row is checked as it is read: a row a loader cannot read as the format says (a missing or empty field, a
wrong JSON shape, an answer letter outside A-D, a story without a reference, a duplicate id, a file that is not
UTF-8) raises ``ValueError`` naming the file, the row / line / key and what is allowed, before any model work.
Nothing is dropped silently; blank lines, which the formats use as separators, are skipped.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

from kick_hub.scoring.mcq import LETTERS as MCQ_LETTERS

TRIVIAQA_CONTEXT_CHARS = 3072  # LLM-KICK: first wiki context + first search context, cut to 3,072 characters
WORLD_SOURCES = ("world", "world-heldout")


def interleave(records: list[dict], key: str) -> list[dict]:
    """Round-robin over groups (subjects, buckets) so a ``limit`` keeps every group represented."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r[key], []).append(r)
    out = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        out += [g[i] for g in groups.values() if i < len(g)]
    return out


class DataWarning(UserWarning):
    """Data that loads but not as the task expects it (e.g. an MMLU subject with fewer few-shot examples)."""


def _missing(path: Path, field: str, what: str) -> ValueError:
    return ValueError(f"{field}: {path} holds no {what}")


# path -> SHA-256 of its bytes for every file read while ``tasks.records.identity`` loads a task (None: not
# recording)
_files_read: contextvars.ContextVar[dict[Path, str] | None] = contextvars.ContextVar("kick_files_read", default=None)


def _read_text(path: Path) -> str:
    """A file's text as UTF-8 (a leading byte-order mark dropped); any other encoding is refused naming the file.
    Every loader reads its files here, so ``identity`` sees each file that shapes a prompt."""
    raw = path.read_bytes()
    seen = _files_read.get()
    if seen is not None:
        seen[path] = hashlib.sha256(raw).hexdigest()[:16]
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"data: {path} is not UTF-8 text (byte {e.start}: {e.reason}); re-save it as UTF-8") from None


def _read_json(path: Path):
    """A JSON file's content; invalid JSON is refused naming the file, line and column."""
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"data: {path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a line that is not a JSON object is refused."""
    out = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"data: {path} line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"data: {path} line {n}: must be a JSON object, got {type(obj).__name__}")
        out.append((n, obj))
    if not out:
        raise _missing(path, "data", "JSON lines")
    return out


def _text(obj: dict, key: str, where: str) -> str:
    """``obj[key]`` when it is a non-empty string, else a ValueError naming ``where`` and ``key``."""
    value = obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key}: {where}: must be a non-empty string, got {value!r}")
    return value


def _id(obj: dict, key: str, where: str, seen: dict) -> str | int:
    """``obj[key]`` as a record id: a non-empty string or an integer, not seen before in the same file."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{key}: {where}: must be a non-empty string or an integer, got {value!r}")
    if value in seen:
        raise ValueError(f"{key}: {where}: duplicate id {value!r} (first at {seen[value]})")
    seen[value] = where
    return value


def _one_file(path: Path, patterns: tuple[str, ...], what: str) -> Path:
    """``path`` itself, or the single file in folder ``path`` matching the first pattern that matches any; several
    matches are refused, since picking one would be a guess."""
    if not path.is_dir():
        return path
    for pattern in patterns:
        files = sorted(path.glob(pattern))
        if len(files) > 1:
            raise ValueError(f"data: {path} holds {len(files)} {what} files ({', '.join(f.name for f in files)}); "
                             f"pass the path of the one to use")
        if files:
            return files[0]
    raise _missing(path, "data", f"{what} file ({' or '.join(patterns)})")


def _row(name: str, split: str, i: int) -> str:
    """Where a Hub row is, for error messages: dataset, split and row index."""
    return f"{name} ({split}) row {i}"


# ----------------------------------------------------------- FreebaseQA (factoid-qa)
def freebaseqa_record(q: dict, where: str, seen: dict | None = None) -> dict:
    """One FreebaseQA question -> factoid-qa record, answers = every parse's answer names (deduplicated). ``q`` is a
    question of the JSON release (``Parses`` a list of parses) or a Hub row (``Parses`` a dict of columns, each
    parse's ``AnswersName`` a list of name lists). A wrong shape, an empty question or no answer name raises
    naming ``where``; ``seen`` (id -> where) catches duplicate ids."""
    if not isinstance(q, dict):
        raise ValueError(f"data: {where}: must be a JSON object, got {type(q).__name__}")
    qid = _id(q, "Question-ID", where, {} if seen is None else seen)
    question = _text(q, "RawQuestion", where)
    parses = q.get("Parses")
    if isinstance(parses, dict):  # Hub row
        answers = parses.get("Answers")
        answers = answers if isinstance(answers, list) else [None]
        name_lists = [n for a in answers
                      for n in (a.get("AnswersName") if isinstance(a, dict) and isinstance(a.get("AnswersName"), list)
                                else [None])]
    elif isinstance(parses, list):  # JSON release
        answers = [a for p in parses for a in (p.get("Answers") if isinstance(p, dict)
                                                and isinstance(p.get("Answers"), list) else [None])]
        name_lists = [a.get("AnswersName") if isinstance(a, dict) else None for a in answers]
    else:
        raise ValueError(f"Parses: {where}: must be a list of parses, got {type(parses).__name__}")
    if not all(isinstance(n, list) and all(isinstance(x, str) for x in n) for n in name_lists):
        raise ValueError(f"AnswersName: {where}: every parse must hold an Answers list whose AnswersName is a list "
                         f"of strings")
    names = list(dict.fromkeys(x.strip() for n in name_lists for x in n if x.strip()))
    if not names:
        raise ValueError(f"AnswersName: {where}: question {qid!r} has no answer name in any parse")
    return {"id": qid, "question": question.strip(), "answers": names}


def load_freebaseqa(path: str | Path) -> list[dict]:
    """FreebaseQA: the ``question | answer`` txt release or the JSON release (aliases from every parse). A folder
    must hold one ``.json`` file (else one ``.txt`` file)."""
    path = _one_file(Path(path), ("*.json", "*.txt"), "FreebaseQA")
    if path.suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("Questions"), list):
            raise ValueError(f"Questions: {path}: must be a JSON object with a 'Questions' list (the FreebaseQA "
                             f"release format)")
        seen: dict = {}
        records = [freebaseqa_record(q, f"{path} Questions[{i}]", seen) for i, q in enumerate(data["Questions"])]
        if not records:
            raise _missing(path, "data", "questions")
        return records
    records = []
    for i, line in enumerate(_read_text(path).splitlines()):
        if not line.strip():
            continue
        if "|" not in line:
            raise ValueError(f"data: {path} line {i + 1}: must be 'question | answer', got {line[:80]!r}")
        question, answer = (x.strip() for x in line.rsplit("|", 1))
        for field, value in (("question", question), ("answer", answer)):
            if not value:
                raise ValueError(f"{field}: {path} line {i + 1}: is empty in {line[:80]!r}")
        records.append({"id": f"{path.stem}-{i}", "question": question, "answers": [answer]})
    if not records:
        raise _missing(path, "data", "'question | answer' lines")
    return records


def freebaseqa_hub_records(rows, name: str, split: str, dev_rows=None) -> list[dict]:
    """FreebaseQA Hub rows -> factoid-qa records (``dev_rows`` unused)."""
    seen: dict = {}
    return [freebaseqa_record(r, _row(name, split, i), seen) for i, r in enumerate(rows)]


# ------------------------------------------------------------------ MMLU (mcq-reasoning)
def mmlu_letter(value: object, where: str) -> str:
    """An MMLU answer as a letter A-D: a letter in any case with surrounding spaces, or a Hub index 0-3."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(MCQ_LETTERS):
        return MCQ_LETTERS[value]
    if isinstance(value, str) and value.strip().upper() in MCQ_LETTERS:
        return value.strip().upper()
    raise ValueError(f"answer: {where}: must be one of {', '.join(MCQ_LETTERS)} (any case) or an index 0-3, "
                     f"got {value!r}")


def mmlu_rows(file: Path, subject: str) -> list[dict]:
    """The records of one headerless MMLU CSV file: each row must be question, A, B, C, D, answer letter, every
    field non-empty; a row that is not is refused naming the file and row (1-based). Blank lines are skipped."""
    records = []
    for i, r in enumerate(csv.reader(io.StringIO(_read_text(file), newline=""))):
        if not r:
            continue
        where = f"{file} row {i + 1}"
        if len(r) != 6:
            raise ValueError(f"data: {where}: must have 6 fields (question, A, B, C, D, answer letter), got "
                             f"{len(r)}: {r!r}"[:300])
        if not r[0].strip():
            raise ValueError(f"question: {where}: is empty")
        for letter, option in zip(MCQ_LETTERS, r[1:5]):
            if not option.strip():
                raise ValueError(f"options: {where}: option {letter} is empty")
        records.append({"id": f"{subject}-{file.parent.name}-{i}", "subject": subject, "question": r[0],
                        "options": r[1:5], "answer": mmlu_letter(r[5], where)})
    if not records:
        raise _missing(file, "data", "MMLU rows")
    return records


def load_mmlu(path: str | Path, ntrain: int = 5) -> list[dict]:
    """MMLU CSV folders (``dev/<subject>_dev.csv`` few-shot, ``test/<subject>_test.csv``); headerless rows of
    question, A, B, C, D, answer letter. Each record carries ``shots_available`` (how many dev examples its subject
    has, at most ``ntrain``); subjects whose dev file is missing or short are named in one ``DataWarning``."""
    path = Path(path)
    test_files = sorted((path / "test").glob("*_test.csv"))
    if not test_files:
        raise _missing(path, "data", "MMLU test/<subject>_test.csv files")
    records, short = [], []
    for file in test_files:
        subject = file.name[: -len("_test.csv")]
        dev = path / "dev" / f"{subject}_dev.csv"
        shots = mmlu_rows(dev, subject)[:ntrain] if dev.exists() else []
        if len(shots) < ntrain:
            short.append(f"{subject}: {len(shots)} ({dev} {'is missing' if not dev.exists() else 'is short'})")
        for r in mmlu_rows(file, subject):
            r["fewshot"], r["shots_available"] = shots, len(shots)
            records.append(r)
    if short:
        warnings.warn(f"mcq-reasoning: {len(short)} of {len(test_files)} subjects have fewer than {ntrain} few-shot "
                      f"examples and run with the number shown: {'; '.join(short)}", DataWarning, stacklevel=2)
    return interleave(records, "subject")


def mmlu_hub_record(r: dict, where: str, rid: str) -> dict:
    """One MMLU Hub row (subject, question, choices[4], answer index) -> mcq-reasoning record without few-shot
    fields."""
    subject, question = _text(r, "subject", where), _text(r, "question", where)
    choices = r.get("choices")
    if not isinstance(choices, list) or len(choices) != 4 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError(f"choices: {where}: must be 4 non-empty strings, got {choices!r}"[:300])
    return {"id": rid, "subject": subject, "question": question, "options": list(choices),
            "answer": mmlu_letter(r.get("answer"), where)}


def mmlu_hub_records(rows, name: str, split: str, dev_rows=None, ntrain: int = 5) -> list[dict]:
    """MMLU Hub rows -> mcq-reasoning records, each with up to ``ntrain`` few-shot examples of its subject from
    ``dev_rows`` (the dev split); subjects with fewer are named in one ``DataWarning``."""
    shots: dict[str, list[dict]] = {}
    for i, r in enumerate(dev_rows or []):
        shot = mmlu_hub_record(r, _row(name, "dev", i), f"dev-{i}")
        shots.setdefault(shot["subject"], []).append(shot)
    records = [mmlu_hub_record(r, _row(name, split, i), f"{r.get('subject')}-{i}") for i, r in enumerate(rows)]
    short: dict[str, int] = {}
    for rec in records:
        rec["fewshot"] = shots.get(rec["subject"], [])[:ntrain]
        rec["shots_available"] = len(rec["fewshot"])
        if rec["shots_available"] < ntrain:
            short[rec["subject"]] = rec["shots_available"]
    if short:
        warnings.warn(f"mcq-reasoning: {len(short)} subjects of {name} have fewer than {ntrain} few-shot examples "
                      f"in its dev split and run with the number shown: "
                      f"{'; '.join(f'{s}: {n}' for s, n in sorted(short.items()))}", DataWarning, stacklevel=2)
    return records


# ----------------------------------------------------------------- TriviaQA rc (icra-qa)
def _first_text(r: dict, key: str, column: str, where: str) -> str:
    """The first text of ``r[key][column]`` (Hub rc layout: a dict of columns), "" when there is none."""
    group = r.get(key)
    if group is None:
        return ""
    texts = group.get(column) if isinstance(group, dict) else None
    if not isinstance(group, dict) or not isinstance(texts, (list, type(None))) or not all(
            isinstance(t, str) for t in texts or []):
        raise ValueError(f"{key}: {where}: must be an object whose {column!r} is a list of strings (the Hub rc "
                         f"layout), got {type(group).__name__}")
    return texts[0] if texts else ""


def triviaqa_record(r: dict, where: str = "TriviaQA record") -> dict:
    """One TriviaQA rc record (Hub or JSONL) -> icra-qa record, context built as LLM-KICK did (first wiki context +
    first search context, cut). A wrong shape, an empty question, no answer or no context raises naming ``where``."""
    if not isinstance(r, dict):
        raise ValueError(f"data: {where}: must be a JSON object, got {type(r).__name__}")
    question = _text(r, "question", where)
    qid = _id(r, "question_id", where, {})
    wiki = _first_text(r, "entity_pages", "wiki_context", where)
    search = _first_text(r, "search_results", "search_context", where)
    context = "\n\n".join(c for c in (wiki, search) if c.strip())[:TRIVIAQA_CONTEXT_CHARS]
    if not context:
        raise ValueError(f"entity_pages: {where}: question {qid!r} has no wiki_context and no search_context text")
    answer = r.get("answer")
    aliases = answer.get("aliases", []) if isinstance(answer, dict) else None
    if not isinstance(answer, dict) or not isinstance(answer.get("value"), str) or not isinstance(aliases, list) or \
            not all(isinstance(a, str) for a in aliases):
        raise ValueError(f"answer: {where}: must be an object with a 'value' string and an 'aliases' list of strings")
    answers = list(dict.fromkeys(a.strip() for a in [answer["value"], *aliases] if a.strip() and a != "<unk>"))
    if not answers:
        raise ValueError(f"answer: {where}: question {qid!r} has no answer (value {answer['value']!r}, no aliases)")
    return {"id": qid, "question": question.strip(), "answers": answers, "context": context}


def load_triviaqa(path: str | Path) -> list[dict]:
    """TriviaQA rc as JSONL in the Hub layout (one question per line); a folder must hold one ``.jsonl`` file. A
    question_id may repeat: the rc split holds a question once per evidence source (Wikipedia, web), each line with
    its own context."""
    path = _one_file(Path(path), ("*.jsonl",), "TriviaQA .jsonl")
    return [triviaqa_record(r, f"{path} line {n}") for n, r in _jsonl(path)]


def triviaqa_hub_records(rows, name: str, split: str, dev_rows=None) -> list[dict]:
    """TriviaQA rc Hub rows -> icra-qa records (``dev_rows`` unused)."""
    return [triviaqa_record(r, _row(name, split, i)) for i, r in enumerate(rows)]


# ------------------------------------------------------------ CNN/DailyMail (icsum)
def _story_parts(text: str) -> tuple[list[str], list[str], int | None]:
    """A ``.story``'s article paragraphs, highlights, and the line number of an ``@highlight`` with no text after
    it (None when every one has its text)."""
    article, highlights, open_at, dangling = [], [], None, None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line == "@highlight":
            dangling = dangling or open_at
            open_at = n
        elif line and open_at is not None:
            highlights.append(line)
            open_at = None
        elif line:
            article.append(line)
    return article, highlights, dangling or open_at


def _reference(highlights: list[str]) -> str:
    """The highlights joined into one reference summary ("" when there are none)."""
    return ". ".join(h.rstrip(".") for h in highlights) + "." if highlights else ""


def parse_story(text: str) -> tuple[str, str]:
    """CNN/DM ``.story``: (article, reference). ``@highlight`` lines form the reference and never reach the
    article (LLM-KICK's prompts accidentally kept them). Either part is "" when the story has none."""
    article, highlights, _ = _story_parts(text)
    return "\n\n".join(article), _reference(highlights)


def load_cnndm_stories(path: str | Path) -> list[dict]:
    """A folder of ``.story`` files, or of ``small/ mid/ large/`` bucket folders of them. A story without article
    text, without ``@highlight`` lines (no reference to score against), or with an ``@highlight`` lacking its text
    is refused naming the file."""
    path = Path(path)
    buckets = [d for d in sorted(path.iterdir()) if d.is_dir()] if path.is_dir() else []
    groups = [(d.name, sorted(d.glob("*.story"))) for d in buckets]
    loose = sorted(path.glob("*.story")) if path.is_dir() else []
    if loose and any(files for _, files in groups):
        raise ValueError(f"data: {path} holds both .story files and bucket folders of them; use one layout")
    groups = [g for g in groups if g[1]] or [("all", loose)]
    records = []
    for bucket, files in groups:
        for f in files:
            article, highlights, open_at = _story_parts(_read_text(f))
            if open_at is not None:
                raise ValueError(f"reference: {f} line {open_at}: @highlight with no highlight text after it")
            if not highlights:
                raise ValueError(f"reference: {f} has no @highlight lines, so no reference summary to score against")
            if not article:
                raise ValueError(f"story: {f} has no article text, only @highlight lines")
            records.append({"id": f"{bucket}/{f.stem}", "bucket": bucket, "story": "\n\n".join(article),
                            "reference": _reference(highlights)})
    if not records:
        raise _missing(path, "data", ".story files")
    return interleave(records, "bucket")


def cnndm_hub_records(rows, name: str, split: str, dev_rows=None) -> list[dict]:
    """CNN/DailyMail Hub rows (id, article, highlights) -> icsum records in one bucket ``all`` (``dev_rows``
    unused)."""
    seen: dict = {}
    return [{"id": _id(r, "id", _row(name, split, i), seen), "bucket": "all",
             "story": _text(r, "article", _row(name, split, i)),
             "reference": _text(r, "highlights", _row(name, split, i))} for i, r in enumerate(rows)]


# ------------------------------------------------------- Vicuna-80 (instruction-following)
def _turn_text(obj: dict, where: str) -> str:
    """The text of a Vicuna-80 line (``text``) or the first turn of an MT-Bench line (``turns`` for questions,
    ``choices[0].turns`` for answers)."""
    if "text" in obj:
        return _text(obj, "text", where)
    holder = obj.get("choices")[0] if isinstance(obj.get("choices"), list) and obj["choices"] else obj
    turns = holder.get("turns") if isinstance(holder, dict) else None
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], str) or not turns[0].strip():
        raise ValueError(f"text: {where}: must hold a non-empty 'text' (Vicuna-80) or 'turns' / 'choices[0].turns' "
                         f"list (MT-Bench)")
    return turns[0]


def load_vicuna80(path: str | Path) -> list[dict]:
    """``question.jsonl`` (question_id, text, category) plus a reference-answer jsonl beside it
    (``reference_answer.jsonl``, else ``gpt35_answer.jsonl``, else the only other ``*.jsonl``). Every question needs
    exactly one reference answer; a missing one is refused naming the question's line and the answer file."""
    path = Path(path)
    qfile = path / "question.jsonl" if path.is_dir() else path
    if not qfile.exists():
        raise _missing(path, "data", "question.jsonl")
    named = [qfile.parent / n for n in ("reference_answer.jsonl", "gpt35_answer.jsonl")]
    afile = next((p for p in named if p.exists()), None)
    if afile is None:
        others = [p for p in sorted(qfile.parent.glob("*.jsonl")) if p != qfile]
        if len(others) != 1:
            raise ValueError(f"reference: {qfile.parent} must hold reference_answer.jsonl (question_id, text) beside "
                             f"{qfile.name}, or exactly one other .jsonl; found {[p.name for p in others]}")
        afile = others[0]
    answers, answer_seen = {}, {}
    for n, a in _jsonl(afile):
        where = f"{afile} line {n}"
        answers[_id(a, "question_id", where, answer_seen)] = _turn_text(a, where)
    records, seen = [], {}
    for n, q in _jsonl(qfile):
        where = f"{qfile} line {n}"
        qid = _id(q, "question_id", where, seen)
        category = q.get("category", "")
        if not isinstance(category, str):
            raise ValueError(f"category: {where}: must be a string, got {category!r}")
        if qid not in answers:
            raise ValueError(f"reference: {afile} has no answer for question_id {qid!r} ({where})")
        records.append({"id": qid, "category": category, "question": _turn_text(q, where),
                        "reference": answers[qid]})
    return records


# ------------------------------------------------------------ raw text (perplexity)
def load_text(path: str | Path) -> list[dict]:
    """Raw text, one record per non-empty line (wikitext-style): a .txt file or folder of them, or else a folder of
    CNN/DM ``.story`` files, whose article paragraphs are real news text (each story once, highlights dropped)."""
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    lines: list[str] = []
    if path.is_dir() and not files:
        stories = {f.name: f for f in sorted(path.rglob("*.story"))}
        for f in stories.values():
            article = _story_parts(_read_text(f))[0]
            if not article:
                raise ValueError(f"story: {f} has no article text")
            lines += article
    else:
        for f in files:
            file_lines = [line for line in _read_text(f).splitlines() if line.strip()]
            if not file_lines:
                raise _missing(f, "data", "text (only blank lines)")
            lines += file_lines
    if not lines:
        raise _missing(path, "data", "text")
    return [{"id": f"line-{i}", "text": line} for i, line in enumerate(lines)]


def wikitext_hub_records(rows, name: str, split: str, dev_rows=None) -> list[dict]:
    """WikiText Hub rows -> perplexity records, one per non-blank line (``dev_rows`` unused)."""
    records = []
    for i, r in enumerate(rows):
        if not isinstance(r.get("text"), str):
            raise ValueError(f"text: {_row(name, split, i)}: must be a string, got {r.get('text')!r}")
        if r["text"].strip():  # wikitext separates articles and sections with blank lines
            records.append({"id": f"line-{i}", "text": r["text"]})
    if not records:
        raise ValueError(f"data: {name} ({split}) holds no text")
    return records


# ------------------------------------------------- Hub datasets, source names, digests
def hub_dataset(name: str, config: str | None = None, field: str = "data", **kwargs):
    """``datasets.load_dataset(name, config, **kwargs)``, with what the environment decides turned into a
    ValueError naming ``field`` (``kick`` prints one line and exits 2): the offline flag set (``HF_DATASETS_OFFLINE``
    / ``HF_HUB_OFFLINE``) with no cached copy, an unreachable Hub (both ``ConnectionError`` in datasets), a dataset
    that does not exist or is not readable with the token (``DatasetNotFoundError``)."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub import constants

    try:
        return datasets.load_dataset(name, config, **kwargs)
    except ConnectionError as e:
        if datasets.config.HF_DATASETS_OFFLINE or constants.HF_HUB_OFFLINE:
            raise ValueError(f"{field}: the Hub dataset {name!r} is not in the local cache and the datasets offline "
                             f"flag is set (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE); run once online to cache it, or "
                             f"use a local path") from None
        raise ValueError(f"{field}: the Hub dataset {name!r} could not be reached at {constants.ENDPOINT} "
                         f"({str(e).splitlines()[0][:200]}); check the network or use a local path") from None
    except DatasetNotFoundError as e:
        raise ValueError(f"{field}: the Hub dataset {name!r} was not found or is not readable with this token "
                         f"({str(e).splitlines()[0][:200]})") from None


def check_source(source: str) -> str:
    """``source`` when it names a data source ``tasks.records.load`` can read (``world`` / ``world-heldout``,
    ``hub`` / ``hub:<dataset id>``, an existing path); a ValueError naming ``data`` otherwise, so a typo fails before
    any model is loaded."""
    if source in WORLD_SOURCES or source == "hub" or source.startswith("hub:") or os.path.exists(source):
        return source
    raise ValueError(f"data: {source!r} is neither {list(WORLD_SOURCES)}, 'hub', 'hub:<dataset id>' nor an "
                     f"existing path")


def records_digest(records: list[dict]) -> str:
    """SHA-256 (hex) of task records as canonical JSON (sorted keys): the same records give the same digest in any
    process on any machine, whatever file or order of keys they were read from."""
    text = json.dumps(records, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
