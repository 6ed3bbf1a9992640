"""In-context retrieval-augmented QA (TriviaQA rc with evidence): answer from a passage, open and closed book.

The open-book score reads the passage; the closed-book score asks the same question without it. Their gap is what
the passage contributes, so both are reported.

Context: an open-book prompt that does not fit the model's context with room for ``max_new_tokens`` keeps the
instruction and the question whole and drops the passage's tail (its first tokens are kept, the direction of
LLM-KICK's 3,072-character cut); each sample records ``truncated_tokens``. A question that does not fit even with an
empty passage, or closed book, is not scored (sample ``skipped``). See ``kick_hub.tasks.fit`` and docs/context.md.
"""

from __future__ import annotations

from kick_hub.backends import Backend
from kick_hub.scoring.qa import f1, score_icra
from kick_hub.tasks import SPECS, check_protocol
from kick_hub.tasks.fit import fit_passage, kept, sample_fields, spread, warn_once

SPEC = SPECS["icra-qa"]


def prompt(record: dict) -> str:
    """The open-book prompt: the passage, then the question."""
    return SPEC.prompts["prompt"].format(context=record["context"], question=record["question"])


def score(records: list[dict], outputs: list[str], protocol: str = "default") -> tuple[dict, list[dict]]:
    """``(results, per_example)`` of the answers ``outputs`` (open- or closed-book alike) for ``records``, each
    stripped first: ``exact_match`` and ``f1`` (TriviaQA rules, ``scoring.qa.score_icra``) and per example those,
    ``score`` (the exact match) and ``output`` (stripped). Raises ValueError as ``score_icra`` does."""
    stripped = [o.strip() for o in outputs]
    answers = [r["answers"] for r in records]
    results = score_icra(stripped, answers, protocol)
    em = results.pop("per_example")
    return results, [{"exact_match": e, "f1": f1(o, a), "score": e, "output": o}
                     for e, o, a in zip(em, stripped, answers)]


def run(engine: Backend, records: list[dict], protocol: str = "default", **_) -> tuple[dict, list[dict]]:
    """Open- and closed-book EM/F1 over the questions whose prompts fit the context; samples record
    ``truncated_tokens`` (passage tokens dropped), ``shortened`` and, for questions not scored, ``skipped``."""
    check_protocol(SPEC, protocol)
    fitted = [fit_passage(engine, lambda c, r=r: prompt({**r, "context": c}), r["context"], SPEC.max_new_tokens)
              for r in records]
    closed_all = [SPEC.prompts["closed_book"].format(question=r["question"]) for r in records]
    room = engine.room(SPEC.max_new_tokens)
    closed_fits = [engine.count_tokens(c) <= room for c in closed_all]
    idx = kept([p if ok else None for (p, _, _), ok in zip(fitted, closed_fits)])
    scored_records = [records[i] for i in idx]
    open_out = engine.generate([fitted[i][0] for i in idx], SPEC.max_new_tokens, SPEC.stop, progress="icra open")
    closed_out = engine.generate([closed_all[i] for i in idx], SPEC.max_new_tokens, SPEC.stop, progress="icra closed")
    (opened, open_per), (closed, closed_per) = (score(scored_records, open_out, protocol),
                                                score(scored_records, closed_out, protocol))
    scores = {"exact_match": opened["exact_match"], "f1": opened["f1"],
              "closed_book_exact_match": closed["exact_match"], "closed_book_f1": closed["f1"],
              "open_minus_closed_exact_match": opened["exact_match"] - closed["exact_match"]}
    n = len(records)
    open_per, closed_per = spread(open_per, idx, n), spread(closed_per, idx, n)
    scored = set(idx)
    shortened = [i in scored and fitted[i][2] > 0 for i in range(n)]
    warn_once(SPEC.id, engine, n, sum(shortened), n - len(idx), "passage tail dropped")
    samples = []
    for i, r in enumerate(records):
        p = fitted[i][0] if i in scored else None
        sample = {"id": r["id"], "prompt": p if p is not None else prompt(r),
                  "output": open_per[i]["output"] if p is not None else "",
                  "closed_book_output": closed_per[i]["output"] if p is not None else "", "reference": r["answers"],
                  **sample_fields(p, shortened[i], truncated_tokens=fitted[i][2])}
        if p is not None:
            sample.update(score=open_per[i]["score"], closed_book_score=closed_per[i]["score"],
                          f1=open_per[i]["f1"], closed_book_f1=closed_per[i]["f1"])
        samples.append(sample)
    return scores, samples
