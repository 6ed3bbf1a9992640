"""Reading a judge's reply: the scores it gives per criterion (the rules in the package docstring), its
reasoning blocks removed first."""

from __future__ import annotations

import re

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


# reasoning blocks of reasoning judges (DeepSeek-R1, Qwen3: <think>; others <thinking>, <reasoning>, <thought>)
REASONING_TAGS = ("think", "thinking", "reasoning", "thought")
_TAGS = "|".join(REASONING_TAGS)
_REASONING_BLOCK_RE = re.compile(rf"<\s*({_TAGS})\s*>.*?<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL)
_REASONING_OPEN_RE = re.compile(rf"<\s*(?:{_TAGS})\s*>", re.IGNORECASE)
_REASONING_CLOSE_RE = re.compile(rf"<\s*/\s*(?:{_TAGS})\s*>", re.IGNORECASE)


def strip_reasoning(reply: str) -> str | None:
    """``reply`` without its reasoning blocks (``<think>...</think>``, likewise ``thinking``, ``reasoning``,
    ``thought``; any case), or None when a block is left open or a tag is left over: the reply was cut while the
    judge was still reasoning, and what it wrote so far is a draft, not its verdict. A reply that starts inside a
    block (its chat template wrote the opening tag into the prompt, as DeepSeek-R1's does) loses everything up to the
    first closing tag that comes before any opening one."""
    close, opening = _REASONING_CLOSE_RE.search(reply), _REASONING_OPEN_RE.search(reply)
    if close and (opening is None or close.start() < opening.start()):
        reply = reply[close.end():]
    out = _REASONING_BLOCK_RE.sub("\n", reply)
    if _REASONING_OPEN_RE.search(out) or _REASONING_CLOSE_RE.search(out):
        return None
    return out


def parse_reply(reply: str, parse: dict) -> dict | None:
    """Criterion -> score read from a judge's ``reply`` under a prompt's ``parse`` block, or None when the reply is
    unparsable (a score missing, ambiguous or invalid, or a reasoning block left open; see the module docstring).
    Reasoning blocks are removed first (``strip_reasoning``), whatever the format."""
    criteria: dict[str, list[str]] = parse["criteria"]
    reply = strip_reasoning(reply)
    if reply is None:
        return None
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
