"""Answer matching for open QA (factoid-qa, icra-qa): TriviaQA/SQuAD normalisation, EM, containment, F1.

``protocol="default"`` scores only the model's continuation against the alias list. ``protocol="llm-kick"``
reproduces the original LLM-KICK code so paper numbers compare: factoid counts a hit when any answer, lowercased with
spaces removed, is a substring of the decoded text (prompt included); TriviaQA counts a hit when either normalised
string contains the other (so an empty prediction matches everything, a quirk kept on purpose).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

PROTOCOLS = ("default", "llm-kick")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_EXTRA_PUNCT = set(string.punctuation) | {"‘", "’", "´", "`", "“", "”"}


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: must be one of {list(PROTOCOLS)}, got {protocol!r}")
    return protocol


def normalize_answer(text: str) -> str:
    """TriviaQA normalisation: lowercase, '_' -> ' ', punctuation (ASCII and Unicode) -> ' ', drop a/an/the,
    collapse whitespace. Unicode is NFKC-folded first so full-width and composed forms compare equal."""
    text = unicodedata.normalize("NFKC", text).lower().replace("_", " ")
    text = "".join(" " if ch in _EXTRA_PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, aliases: list[str]) -> float:
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(a) for a in aliases))


def contains(prediction: str, aliases: list[str]) -> float:
    """1 when a whole normalised alias occurs as a token run inside the normalised prediction."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(a) and f" {normalize_answer(a)} " in pred for a in aliases))


def f1(prediction: str, aliases: list[str]) -> float:
    """Best token-level F1 over the aliases (SQuAD / TriviaQA)."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for alias in aliases:
        gold = normalize_answer(alias).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
        elif not pred and not gold:
            best = 1.0
    return best


def llm_kick_factoid_hit(decoded_text: str, aliases: list[str]) -> float:
    """LLM-KICK factoid rule: any answer (lowercase, spaces removed) is a substring of the decoded text."""
    text = decoded_text.lower().replace(" ", "")
    return float(any(a.lower().replace(" ", "") in text for a in aliases))


def llm_kick_lenient_em(prediction: str, aliases: list[str]) -> float:
    """LLM-KICK TriviaQA rule: either normalised string is a substring of the other."""
    pred = normalize_answer(prediction)
    return float(any(pred in normalize_answer(a) or normalize_answer(a) in pred for a in aliases))


def validate(predictions, references) -> None:
    """Shape and type checks shared by every QA scorer (errors name the field)."""
    if not isinstance(predictions, (list, tuple)) or not all(isinstance(p, str) for p in predictions):
        raise ValueError("predictions: must be a list of strings")
    if not isinstance(references, (list, tuple)) or not all(
        isinstance(r, (list, tuple)) and r and all(isinstance(a, str) for a in r) for r in references
    ):
        raise ValueError("references: must be a list of non-empty lists of alias strings")
    if len(predictions) != len(references):
        raise ValueError(f"predictions/references: lengths differ ({len(predictions)} vs {len(references)})")
    if not predictions:
        raise ValueError("predictions: must not be empty")


def score_factoid(predictions: list[str], references: list[list[str]], protocol: str = "default") -> dict:
    """factoid-qa: ``exact_match`` (and ``contains``) in [0, 1], plus per-example hits."""
    validate(predictions, references)
    if check_protocol(protocol) == "llm-kick":
        hits = [llm_kick_factoid_hit(p, r) for p, r in zip(predictions, references)]
        return {"exact_match": sum(hits) / len(hits), "per_example": hits}
    em = [exact_match(p, r) for p, r in zip(predictions, references)]
    cont = [contains(p, r) for p, r in zip(predictions, references)]
    return {"exact_match": sum(em) / len(em), "contains": sum(cont) / len(cont), "per_example": em}


def score_icra(predictions: list[str], references: list[list[str]], protocol: str = "default") -> dict:
    """icra-qa: ``exact_match`` and ``f1`` in [0, 1] (TriviaQA rules), plus per-example EM."""
    validate(predictions, references)
    if check_protocol(protocol) == "llm-kick":
        em = [llm_kick_lenient_em(p, r) for p, r in zip(predictions, references)]
    else:
        em = [exact_match(p, r) for p, r in zip(predictions, references)]
    f = [f1(p, r) for p, r in zip(predictions, references)]
    return {"exact_match": sum(em) / len(em), "f1": sum(f) / len(f), "per_example": em}
