"""Answer matching for open QA (factoid-qa, icra-qa): TriviaQA/SQuAD normalisation, EM, containment, F1.

``protocol="default"`` scores only the model's continuation against the alias list. ``protocol="llm-kick"``
reproduces the original LLM-KICK code so paper numbers compare: factoid counts a hit when any answer, lowercased with
spaces removed, is a substring of the decoded text (prompt included); TriviaQA counts a hit when either normalised
string contains the other.

Rules every scorer here shares:

- An empty or blank prediction (or one with no tokens left after normalisation) scores 0 under every protocol and
  every metric: saying nothing is never a hit, whatever the aliases are.
- A blank alias, or one with no tokens after normalisation, never matches; a reference must hold at least one
  non-blank alias.
- When removing the articles a/an/the would leave nothing ("The", "A"), the text is compared with its articles kept,
  so "The" does not equal "A".
- Words of scripts written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar, Yi) are split into
  characters, as MLQA's evaluation does for Chinese, so F1 and ``contains`` see their words.
"""

from __future__ import annotations

import string
import unicodedata
from collections import Counter

PROTOCOLS = ("default", "llm-kick")
_ARTICLES = frozenset({"a", "an", "the"})
_EXTRA_PUNCT = set(string.punctuation) | {"‘", "’", "´", "`", "“", "”"}

# Code-point ranges of scripts written without spaces between words: each character (with its combining marks) is
# one token. The same table is in kick_hub/scoring/text.py: each file is published alone inside an evaluate module,
# so neither can import the other (tests check the two tables are equal).
NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),    # Thai, Lao
    (0x1000, 0x109F),    # Myanmar
    (0x1780, 0x17FF),    # Khmer
    (0x19E0, 0x19FF),    # Khmer symbols
    (0x2E80, 0x2FDF),    # CJK and Kangxi radicals
    (0x3005, 0x3007),    # ideographic iteration / closing mark, ideographic zero
    (0x3040, 0x31FF),    # Hiragana, Katakana, Bopomofo, CJK strokes
    (0x3400, 0x4DBF),    # CJK extension A
    (0x4E00, 0x9FFF),    # CJK unified ideographs
    (0xA000, 0xA4CF),    # Yi
    (0xA9E0, 0xA9FF),    # Myanmar extended-B
    (0xAA60, 0xAA7F),    # Myanmar extended-A
    (0xF900, 0xFAFF),    # CJK compatibility ideographs
    (0xFF66, 0xFF9F),    # half-width Katakana
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)

_NO_SPACE_FROM = min(lo for lo, _ in NO_SPACE_RANGES)  # every code point below is in no range (the common case)


def _no_space(ch: str) -> bool:
    cp = ord(ch)
    return cp >= _NO_SPACE_FROM and any(lo <= cp <= hi for lo, hi in NO_SPACE_RANGES)


def split_words(text: str) -> list[str]:
    """Whitespace tokens, with each character of a script written without spaces (CJK, Thai, ...) a token of its
    own; combining marks stay with the character before them."""
    tokens: list[str] = []
    cur, cur_is_char = "", False
    for ch in text:
        if ch.isspace():
            if cur:
                tokens.append(cur)
            cur, cur_is_char = "", False
        elif unicodedata.category(ch).startswith("M"):
            cur += ch
        elif _no_space(ch):
            if cur:
                tokens.append(cur)
            cur, cur_is_char = ch, True
        else:
            if cur_is_char:
                tokens.append(cur)
                cur = ""
            cur, cur_is_char = cur + ch, False
    if cur:
        tokens.append(cur)
    return tokens


def check_protocol(protocol: str) -> str:
    """``protocol`` itself, or a ValueError naming the allowed values."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: must be one of {list(PROTOCOLS)}, got {protocol!r}")
    return protocol


def normalize_answer(text: str) -> str:
    """TriviaQA normalisation (the official TriviaQA/SQuAD evaluation scripts), Unicode-aware: NFKC, lowercase,
    '_' -> ' ', punctuation (ASCII and Unicode) -> ' ', drop the articles a/an/the unless that leaves nothing, collapse
    whitespace. Characters of scripts written without spaces come out space-separated (see ``split_words``)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("_", " ")
    text = "".join(" " if ch in _EXTRA_PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text)
    tokens = split_words(text)
    kept = [t for t in tokens if t not in _ARTICLES]
    return " ".join(kept or tokens)


def exact_match(prediction: str, aliases: list[str]) -> float:
    """1 when the normalised prediction is non-empty and equals a normalised alias (TriviaQA EM), else 0."""
    pred = normalize_answer(prediction)
    return float(bool(pred) and any(pred == normalize_answer(a) for a in aliases))


def contains(prediction: str, aliases: list[str]) -> float:
    """1 when a whole non-empty normalised alias occurs as a token run inside the normalised prediction."""
    pred = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(a) and f" {normalize_answer(a)} " in pred for a in aliases))


def f1(prediction: str, aliases: list[str]) -> float:
    """Best token-level F1 over the aliases (SQuAD / TriviaQA scripts); 0 for a prediction with no tokens."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for alias in aliases:
        gold = normalize_answer(alias).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def llm_kick_factoid_hit(decoded_text: str, aliases: list[str]) -> float:
    """LLM-KICK factoid rule: any answer (lowercase, spaces removed) is a substring of the decoded text. A decoded
    text or an alias with no tokens after ``normalize_answer`` (empty, blank, only punctuation) takes no part."""
    if not normalize_answer(decoded_text):
        return 0.0
    text = decoded_text.lower().replace(" ", "")
    return float(any(normalize_answer(a) and a.lower().replace(" ", "") in text for a in aliases))


def llm_kick_lenient_em(prediction: str, aliases: list[str]) -> float:
    """LLM-KICK TriviaQA rule: either normalised string is a substring of the other. Empty strings take no part:
    an empty prediction scores 0 (the original counted it as contained in every alias)."""
    pred = normalize_answer(prediction)
    if not pred:
        return 0.0
    golds = [g for g in (normalize_answer(a) for a in aliases) if g]
    return float(any(pred in g or g in pred for g in golds))


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
    blank = [i for i, r in enumerate(references) if not any(a.strip() for a in r)]
    if blank:
        raise ValueError(f"references: each alias list needs a non-blank alias; element {blank[0]} has none")


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
