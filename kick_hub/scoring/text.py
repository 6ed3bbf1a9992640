"""Reference-based scores for generated text (icsum, instruction-following): ROUGE, distinct-n, unique tokens."""

from __future__ import annotations

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean ROUGE F-measures with Porter stemming (the rouge-score package, as ``evaluate``'s rouge uses)."""
    from rouge_score import rouge_scorer, scoring

    if len(predictions) != len(references):
        raise ValueError(f"predictions/references: lengths differ ({len(predictions)} vs {len(references)})")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    agg = scoring.BootstrapAggregator()
    for p, r in zip(predictions, references):
        # rougeLsum splits summaries on newlines; keep each sentence on its own line.
        agg.add_scores(scorer.score(r.replace(". ", ".\n"), p.replace(". ", ".\n")))
    result = agg.aggregate()
    return {k: float(result[k].mid.fmeasure) for k in ROUGE_TYPES}


def rouge_per_example(predictions: list[str], references: list[str], rouge_type: str = "rougeL") -> list[float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)
    return [float(scorer.score(r, p)[rouge_type].fmeasure) for p, r in zip(predictions, references)]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over whitespace tokens of all texts (Li et al., 2016); 0 when none."""
    grams = [tuple(t[i:i + n]) for t in (x.lower().split() for x in texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity(texts: list[str]) -> dict[str, float]:
    """distinct-1/2/3, unique lower-cased tokens, mean length in tokens."""
    tokens = [t for x in texts for t in x.lower().split()]
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), "distinct_3": distinct_n(texts, 3),
            "unique_tokens": float(len(set(tokens))), "mean_length": len(tokens) / len(texts) if texts else 0.0}
