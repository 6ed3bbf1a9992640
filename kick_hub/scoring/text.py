"""Reference-based scores for generated text (icsum, instruction-following): ROUGE, distinct-n, unique tokens.

Rules every scorer here shares:

- Aggregates are arithmetic means of per-example F-measures: deterministic, the same in every process (no bootstrap
  resampling).
- An empty list of predictions is a ValueError naming ``predictions``; a blank reference is a ValueError naming
  ``references`` (there is nothing to score against).
- A prediction with no tokens (empty, blank, only punctuation) scores 0 for every ROUGE type.
- Tokens are Unicode-aware: runs of letters, digits and combining marks in any script, lower-cased after NFKC; each
  character of a script written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar, Yi) is a token of its
  own; ASCII words longer than 3 characters are Porter-stemmed. English (ASCII) text gets exactly the tokens of
  rouge-score's default tokenizer, so English scores equal the rouge-score package's.
- For ``rougeLsum`` a text is split into sentences after . ! ? … (followed by whitespace), after 。！？ and at newlines.
"""

from __future__ import annotations

import functools
import re
import unicodedata

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# Code-point ranges of scripts written without spaces between words: each character (with its combining marks) is
# one token. The same table is in kick_hub/scoring/qa.py: each file is published alone inside an evaluate module,
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
_ASCII_WORD = re.compile(r"^[a-z0-9]+$")
# Sentence ends for rougeLsum: . ! ? … (closing quotes/brackets may follow) before whitespace; 。！？｡ anywhere.
_SENTENCE_END = re.compile(r"([.!?…][\"'”’)\]]*)\s+|([。！？｡])")

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


class UnicodeTokenizer:
    """ROUGE tokenizer for any script (passed to ``rouge_score.rouge_scorer.RougeScorer(tokenizer=...)``).

    NFKC, lowercase, every character that is not a letter, digit or combining mark becomes a space, then
    ``split_words``; ASCII tokens longer than 3 characters are Porter-stemmed, as rouge-score's default tokenizer does
    (which keeps only [a-z0-9] and so drops every non-Latin word). Tokens are a pure function of the text, so they
    are computed once per process for each text (``_tokens``): ROUGE scores each reference once per ROUGE type, and
    a sweep scores the same references for every model."""

    def __init__(self, use_stemmer: bool = True):
        self._use_stemmer = use_stemmer

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text``."""
        return list(_tokens(text, self._use_stemmer))


@functools.lru_cache(maxsize=8192)
def _tokens(text: str, use_stemmer: bool) -> tuple[str, ...]:
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch if unicodedata.category(ch)[0] in "LNM" else " " for ch in text)
    tokens = split_words(text)
    if use_stemmer:
        tokens = [_stem(t) if len(t) > 3 and _ASCII_WORD.match(t) else t for t in tokens]
    return tuple(tokens)


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """nltk's Porter stemmer (its default mode, as rouge-score's tokenizer uses it) on one word."""
    return _porter().stem(word)


@functools.lru_cache(maxsize=1)
def _porter():
    from nltk.stem import porter

    return porter.PorterStemmer()


def split_sentences(text: str) -> str:
    """``text`` with one sentence per line (rougeLsum reads sentences from lines): a sentence ends after . ! ? or …
    followed by whitespace, after 。！？, or at a newline. Blank lines are dropped."""
    marked = _SENTENCE_END.sub(lambda m: (m.group(1) or m.group(2)) + "\n", text)
    return "\n".join(s.strip() for s in marked.splitlines() if s.strip())


def _validate(predictions, references) -> None:
    if not isinstance(predictions, (list, tuple)) or not all(isinstance(p, str) for p in predictions):
        raise ValueError("predictions: must be a list of strings")
    if not isinstance(references, (list, tuple)) or not all(isinstance(r, str) for r in references):
        raise ValueError("references: must be a list of strings")
    if len(predictions) != len(references):
        raise ValueError(f"predictions/references: lengths differ ({len(predictions)} vs {len(references)})")
    if not predictions:
        raise ValueError("predictions: must not be empty")
    blank = [i for i, r in enumerate(references) if not r.strip()]
    if blank:
        raise ValueError(f"references: must be non-blank texts; element {blank[0]} is empty or blank")


def _fmeasures(predictions: list[str], references: list[str], rouge_types: tuple[str, ...]) -> list[dict]:
    from rouge_score import rouge_scorer

    _validate(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(rouge_types), tokenizer=UnicodeTokenizer())
    out = []
    for p, r in zip(predictions, references):
        scores = scorer.score(split_sentences(r), split_sentences(p))
        out.append({k: float(scores[k].fmeasure) for k in rouge_types})
    return out


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """ROUGE-1/2/L/Lsum: the arithmetic mean over examples of each example's F-measure (Lin, 2004; the rouge-score
    package with ``UnicodeTokenizer`` and Porter stemming). A prediction with no tokens scores 0."""
    per = _fmeasures(predictions, references, ROUGE_TYPES)
    return {k: sum(s[k] for s in per) / len(per) for k in ROUGE_TYPES}


def rouge_per_example(predictions: list[str], references: list[str], rouge_type: str = "rougeL") -> list[float]:
    """Each example's ROUGE F-measure of ``rouge_type`` (one of ``ROUGE_TYPES``), scored as ``rouge`` scores it."""
    if rouge_type not in ROUGE_TYPES:
        raise ValueError(f"rouge_type: must be one of {list(ROUGE_TYPES)}, got {rouge_type!r}")
    return [s[rouge_type] for s in _fmeasures(predictions, references, (rouge_type,))]


def words(text: str) -> list[str]:
    """Lower-cased whitespace tokens, characters of scripts written without spaces split apart (``split_words``)."""
    return split_words(text.lower())


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the tokens (``words``) of all texts (Li et al., 2016); 0 when none."""
    grams = [tuple(t[i:i + n]) for t in (words(x) for x in texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity(texts: list[str]) -> dict[str, float]:
    """distinct-1/2/3, unique lower-cased tokens, mean length in tokens (tokens as in ``words``). An empty list is a
    ValueError naming ``predictions``; empty texts count as answers of length 0."""
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise ValueError("predictions: must be a list of strings")
    if not texts:
        raise ValueError("predictions: must not be empty")
    tokens = [t for x in texts for t in words(x)]
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), "distinct_3": distinct_n(texts, 3),
            "unique_tokens": float(len(set(tokens))), "mean_length": len(tokens) / len(texts)}
