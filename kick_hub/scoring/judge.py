"""LLM-as-judge: one interface, two backends, versioned prompts, honest parsing.

- ``ChatCompletionsBackend``: any OpenAI-compatible ``/v1/chat/completions`` endpoint, through the official ``openai``
  client (extra ``judge``; huggingface_hub's InferenceClient refuses every URL, even a local one, under
  HF_HUB_OFFLINE). The key is read from an environment variable and never logged or stored.
- ``TransformersBackend``: a local chat model run by the project's engine.

Judge prompts are JSON files in ``judge_prompts/`` (``<name>-v<k>.json``): a system message, a template, and a
``parse`` block naming the reply format and the criteria (see ``PARSE_FORMATS``). A score is a number on the 1-10
scale, written ``8``, ``7.5``, ``8/10``, ``8 out of 10`` or ``[[8]]``; a quoted scale (``Coherence (1-10): 8``) is
skipped, never read as the score. A reply with a missing, ambiguous (two different scores for one criterion) or
out-of-range score (``0``, ``11``, ``-1``, ``9/5``, or a quoted scale other than 1-10) is counted in
``unparsable`` and left out of every mean: it is never clamped or otherwise turned into a number.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PROMPT_DIR = Path(__file__).parent / "judge_prompts"
BACKENDS = ("openai", "transformers")
SCORE_MIN, SCORE_MAX = 1.0, 10.0
# parse formats: "labelled"   each criterion's label followed by its score (``Coherence: 8``), anywhere in the reply;
#                "first-line" the first non-empty line holds one score per criterion in order (``8 6``; FastChat), or
#                             the first non-empty lines hold one each; else the labels (``Assistant 1: 8``) are used;
#                "bracketed"  one criterion, scored as ``[[8]]`` anywhere in the reply (MT-Bench).
PARSE_FORMATS = ("labelled", "first-line", "bracketed")

_RANGE = r"\d+(?:\.\d+)?\s*(?:-|–|to)\s*\d+(?:\.\d+)?"
_SCALE_BODY = rf"(?:(?:on\s+a\s+)?scale\s+(?:of\s+|from\s+)?)?(?:from\s+)?{_RANGE}|out\s+of\s+\d+"
# a quoted scale: "(1-10)", "[1 to 10]", "(out of 10)", "on a scale of 1 to 10"
_SCALE = rf"\(\s*(?:{_SCALE_BODY})\s*\)|\[\s*(?:{_SCALE_BODY})\s*\]|(?:on\s+a\s+)?scale\s+(?:of\s+|from\s+)?{_RANGE}"
# a number and an optional total: 8, 7.5, -1, 8/10, 8 out of 10 (never part of a longer number)
_NUMBER = (r"(?P<num>[-+]?\d+(?:\.\d+)?)(?!\.?\d)"
           r"(?:\s*(?:/|out\s+of)\s*(?P<den>\d+(?:\.\d+)?)(?!\.?\d))?")
# a score: a number, bare or in [[ ]] / [ ]; never the start of a range (1-10) or a percentage
_VALUE = rf"(?P<open>\[{{1,2}}\s*)?{_NUMBER}(?(open)\s*\]{{1,2}})(?!\s*(?:-|–|to)\s*\d)(?!\s*%)"
# between a label and its score: spaces, markdown, ':', '=', '|', a spaced dash, a quoted scale
_SEP = rf"(?:[\s*_:=|>#]|[-–—](?=\s)|{_SCALE})*"
# after a labelled score: end of line or punctuation, not a word ("Assistant 1: 3 paragraphs" is no score)
_AFTER = r"(?=[ \t]*(?:[\r\n,.;:!)\]*_|(\-–—]|$))"
_VALUE_RE = re.compile(_VALUE, re.IGNORECASE)
_BRACKETED_RE = re.compile(rf"\[\[\s*{_NUMBER}\s*\]\]", re.IGNORECASE)
_LINE_PREFIX_RE = re.compile(rf"[A-Za-z][A-Za-z ]*?\s*(?P<scale>{_SCALE})?\s*:\s*", re.IGNORECASE)
_LINE_SEP_RE = re.compile(r"\s*,\s*|\s+")
_LINE_END_RE = re.compile(r"[\s.]*")
_BAD = object()  # a score that is there but invalid: the whole reply is unparsable


def _scale_ok(text: str) -> bool:
    """Every scale quoted in ``text`` is 1-10 (``1-10``, ``1 to 10``, ``out of 10``)."""
    ranges = re.findall(r"(\d+(?:\.\d+)?)\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)", text, re.IGNORECASE)
    outs = re.findall(r"out\s+of\s+(\d+(?:\.\d+)?)", text, re.IGNORECASE)
    return (all((float(a), float(b)) == (SCORE_MIN, SCORE_MAX) for a, b in ranges)
            and all(float(o) == SCORE_MAX for o in outs))


def _score(match: re.Match) -> float | object:
    """The score of a ``_VALUE`` match, or ``_BAD`` when it is outside 1-10 or out of a total other than 10."""
    num = float(match.group("num"))
    den = match.group("den")
    if den is not None and float(den) != SCORE_MAX:
        return _BAD
    return num if SCORE_MIN <= num <= SCORE_MAX else _BAD


def _one(values: list) -> float | None | object:
    """One criterion's score from every place it was found: None if nowhere, ``_BAD`` if any is invalid or they
    disagree."""
    if not values:
        return None
    if any(v is _BAD for v in values) or len(set(values)) > 1:
        return _BAD
    return values[0]


def _labelled(reply: str, labels: list[str]) -> float | None | object:
    """The score written after any of ``labels``; a score on the line below its label must stand alone there."""
    alts = "|".join(r"\s+".join(map(re.escape, label.split())) for label in labels)
    pattern = re.compile(rf"(?<![\w-])(?:{alts})(?:'s)?(?:\s+(?:score|rating))?(?P<sep>{_SEP}){_VALUE}{_AFTER}",
                         re.IGNORECASE)
    values = []
    for m in pattern.finditer(reply):
        sep = m.group("sep")
        if "\n" in sep:
            line_rest = reply[m.end():].split("\n", 1)[0]
            if not re.fullmatch(r"[\s*_.,;]*", line_rest):
                continue  # "Coherence:\n1. The summary ..." is a numbered list, not a score
        values.append(_score(m) if _scale_ok(sep) else _BAD)
    return _one(values)


def _line_scores(line: str, k: int) -> list | None:
    """``k`` scores making up the whole of ``line`` (after an optional ``Scores (1-10):`` prefix), else None."""
    line = re.sub(r"[*_`#>]", "", line).strip()
    pos, prefix = 0, _LINE_PREFIX_RE.match(line)
    if prefix:
        if prefix.group("scale") and not _scale_ok(prefix.group("scale")):
            return [_BAD] * k
        pos = prefix.end()
    scores = []
    for i in range(k):
        if i:
            sep = _LINE_SEP_RE.match(line, pos)
            if not sep:
                return None
            pos = sep.end()
        m = _VALUE_RE.match(line, pos)
        if not m:
            return None
        scores.append(_score(m))
        pos = m.end()
    return scores if _LINE_END_RE.fullmatch(line, pos) else None


def parse_reply(reply: str, parse: dict) -> dict | None:
    """Criterion -> score read from a judge's ``reply`` under a prompt's ``parse`` block, or None when the reply is
    unparsable (a score missing, ambiguous or invalid; see the module docstring)."""
    criteria: dict[str, list[str]] = parse["criteria"]
    if parse["format"] == "bracketed":
        [key] = criteria
        scores = {key: _one([_score(m) for m in _BRACKETED_RE.finditer(reply)])}
    elif parse["format"] == "first-line":
        lines = [line for line in reply.splitlines() if line.strip()]
        found = _line_scores(lines[0], len(criteria)) if lines else None
        if found is None and len(lines) >= len(criteria):
            per_line = [_line_scores(line, 1) for line in lines[: len(criteria)]]
            found = None if None in per_line else [s[0] for s in per_line]
        if found is None:
            scores = {k: _labelled(reply, labels) if labels else None for k, labels in criteria.items()}
        else:
            scores = dict(zip(criteria, found))
    else:
        scores = {k: _labelled(reply, labels) for k, labels in criteria.items()}
    if any(v is None or v is _BAD for v in scores.values()):
        return None
    return scores


def _check_prompt(prompt: dict, path: Path) -> dict:
    """A prompt file's keys and parse block, checked so that a broken file fails before any judging."""
    for key in ("name", "system", "template", "parse"):
        if key not in prompt:
            raise ValueError(f"judge prompt {path}: key {key!r} is missing")
    parse = prompt["parse"]
    if not isinstance(parse, dict) or parse.get("format") not in PARSE_FORMATS:
        raise ValueError(f"judge prompt {path}: parse.format must be one of {list(PARSE_FORMATS)}, "
                         f"got {parse.get('format') if isinstance(parse, dict) else parse!r}")
    criteria = parse.get("criteria")
    if not isinstance(criteria, dict) or not criteria or not all(
            isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v) for v in criteria.values()):
        raise ValueError(f"judge prompt {path}: parse.criteria must map each criterion to a list of labels")
    if parse["format"] == "bracketed" and len(criteria) != 1:
        raise ValueError(f"judge prompt {path}: a bracketed parse scores exactly one criterion, got {list(criteria)}")
    if parse["format"] == "labelled" and not all(criteria.values()):
        raise ValueError(f"judge prompt {path}: a labelled parse needs at least one label per criterion")
    return prompt


def load_prompt(name: str) -> dict:
    """A judge prompt by name (``pairwise-v1``, ``single-v1``, ``summary-v1``), its parse block checked."""
    path = PROMPT_DIR / f"{name}.json"
    if not path.exists():
        allowed = sorted(p.stem for p in PROMPT_DIR.glob("*.json"))
        raise ValueError(f"judge prompt: must be one of {allowed}, got {name!r}")
    return _check_prompt(json.loads(path.read_text(encoding="utf-8")), path)


class Backend(Protocol):
    """What a ``Judge`` needs of a judge model: a ``name`` (``<backend>:<model>``, recorded in results) and
    ``complete``."""

    name: str

    def complete(self, system: str, user: str) -> str:
        """The model's reply text to one ``system`` + ``user`` chat turn (deterministic decoding)."""
        ...


class ChatCompletionsBackend:
    """OpenAI-compatible chat completions (OpenAI, vLLM, TGI, ``transformers serve``, ...)."""

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", max_tokens: int = 512,
                 timeout: float = 120.0) -> None:
        try:
            import openai
        except ImportError as e:
            raise ImportError("the openai judge backend needs the openai client: pip install 'kick-hub[judge]'") from e
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url: must start with http:// or https://, got {base_url!r}")
        self.name = f"openai:{model}"
        self.model, self.max_tokens = model, max_tokens
        # The key stays inside the client; it is not kept on this object, so it cannot end up in a repr or a log.
        self._client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY",
                                     timeout=timeout, max_retries=2)

    def __repr__(self) -> str:
        return f"ChatCompletionsBackend(model={self.model!r})"

    def complete(self, system: str, user: str) -> str:
        """The endpoint's reply to one chat turn at temperature 0 and at most ``max_tokens`` tokens; ``""`` when
        the reply has no content. Raises the ``openai`` client's errors (``openai.APIError`` subclasses:
        connection, timeout, HTTP status) once its 2 retries are spent."""
        reply = self._client.chat.completions.create(
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            model=self.model, max_tokens=self.max_tokens, temperature=0.0,
        )
        return reply.choices[0].message.content or ""


class TransformersBackend:
    """A local chat model as judge (greedy)."""

    def __init__(self, model: str, max_new_tokens: int = 256) -> None:
        from kick_hub.engine import Engine

        self.name = f"transformers:{model}"
        self.engine = Engine.from_name(model, batch_size=1)
        self.max_new_tokens = max_new_tokens

    def complete(self, system: str, user: str) -> str:
        """The local model's greedy reply (at most ``max_new_tokens`` tokens) to ``system`` and ``user`` joined by
        a blank line as one user turn of its chat template (``Engine.generate(..., chat=True)``). Raises
        ValueError when that prompt plus ``max_new_tokens`` does not fit the model's context."""
        return self.engine.generate([f"{system}\n\n{user}"], self.max_new_tokens, chat=True)[0]


def make_backend(spec: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY") -> Backend:
    """``openai:<model>`` (needs ``base_url``) or ``transformers:<model id or dir>``."""
    kind, _, model = spec.partition(":")
    if kind not in BACKENDS or not model:
        raise ValueError(f"judge: must be '<backend>:<model>' with backend one of {list(BACKENDS)}, got {spec!r}")
    if kind == "openai":
        if not base_url:
            raise ValueError("judge base_url: required for the openai backend (e.g. https://api.openai.com/v1)")
        return ChatCompletionsBackend(base_url, model, api_key_env)
    return TransformersBackend(model)


@dataclass
class JudgeResult:
    """What ``Judge.score`` returns: per-criterion means (1-10 scale) over the parsable replies, each example's
    scores (None when its reply is unparsable), the unparsable count and every raw reply, in input order."""

    means: dict[str, float]          # criterion -> mean over parsable replies
    per_example: list[dict | None]   # criterion -> score, or None when unparsable
    unparsable: int
    replies: list[str]


class Judge:
    """Scores answers with a backend and a versioned prompt."""

    def __init__(self, backend: Backend, prompt: str) -> None:
        self.backend, self.prompt = backend, load_prompt(prompt)

    def parse(self, reply: str) -> dict | None:
        """Criterion -> score from one reply, or None when it is unparsable."""
        return parse_reply(reply, self.prompt["parse"])

    def score(self, questions: list[str], answers: list[str], references: list[str] | None = None,
              progress: str | None = None) -> JudgeResult:
        """Ask the backend once per answer (the prompt's template filled with question, answer and, for a
        pairwise prompt, reference) and parse each reply (``parse_reply``). ``progress``: a tqdm bar label (None:
        no bar). ``means`` is empty when no reply parses. Raises ValueError when the three lists differ in length
        or a pairwise prompt gets no ``references``; backend errors propagate."""
        from tqdm.auto import tqdm

        if len(questions) != len(answers) or (references is not None and len(references) != len(answers)):
            raise ValueError("questions/answers/references: lengths differ")
        if "{reference}" in self.prompt["template"] and references is None:
            raise ValueError(f"references: judge prompt {self.prompt['name']!r} is pairwise and needs references")
        per_example, replies = [], []
        for i in tqdm(range(len(answers)), desc=progress or "judge", disable=progress is None):
            user = self.prompt["template"].format(question=questions[i], answer=answers[i],
                                                  reference=references[i] if references else "")
            reply = self.backend.complete(self.prompt["system"], user)
            replies.append(reply)
            per_example.append(self.parse(reply))
        parsed = [p for p in per_example if p is not None]
        keys = parsed[0].keys() if parsed else []
        means = {k: sum(p[k] for p in parsed) / len(parsed) for k in keys}
        return JudgeResult(means, per_example, len(per_example) - len(parsed), replies)


def make_judges(spec: str | None, task_names: list[str], base_url: str | None = None,
                api_key_env: str = "OPENAI_API_KEY", prompt: str | None = None) -> dict[str, Judge] | None:
    """Task name -> ``Judge`` for each of ``task_names`` that has a judge prompt (``tasks.SPECS[n].judge_prompt``:
    icsum, instruction-following), all sharing one backend from ``spec`` (``make_backend``). ``prompt`` overrides
    every task's default prompt name. Returns None when ``spec`` is empty (no judge asked for); an empty dict when
    no task in ``task_names`` is judged. Raises ValueError for a bad ``spec``, a missing ``base_url`` for
    ``openai:`` or an unknown prompt name, ImportError when the openai client is not installed, and KeyError for a
    task name not in ``tasks.SPECS``."""
    if not spec:
        return None
    from kick_hub import tasks

    backend = make_backend(spec, base_url, api_key_env)
    return {n: Judge(backend, prompt or tasks.SPECS[n].judge_prompt)
            for n in task_names if tasks.SPECS[n].judge_prompt}
