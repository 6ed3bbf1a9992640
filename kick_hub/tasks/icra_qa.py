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
from kick_hub.scoring.qa import exact_match, f1, score_icra
from kick_hub.tasks import SPECS, check_protocol
from kick_hub.tasks.fit import fit_passage, kept, sample_fields, spread, warn_once

SPEC = SPECS["icra-qa"]


def prompt(record: dict) -> str:
    """The open-book prompt: the passage, then the question."""
    return SPEC.prompts["prompt"].format(context=record["context"], question=record["question"])


def score(record: dict, output: str) -> float:
    """One open-book answer's exact match against the aliases."""
    return exact_match(output.strip(), record["answers"])


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
    answers = [records[i]["answers"] for i in idx]
    open_prompts = [fitted[i][0] for i in idx]
    closed_prompts = [closed_all[i] for i in idx]
    open_out = [o.strip() for o in engine.generate(open_prompts, SPEC.max_new_tokens, SPEC.stop, progress="icra open")]
    closed_out = [o.strip() for o in engine.generate(closed_prompts, SPEC.max_new_tokens, SPEC.stop,
                                                     progress="icra closed")]
    opened, closed = score_icra(open_out, answers, protocol), score_icra(closed_out, answers, protocol)
    scores = {"exact_match": opened["exact_match"], "f1": opened["f1"],
              "closed_book_exact_match": closed["exact_match"], "closed_book_f1": closed["f1"],
              "open_minus_closed_exact_match": opened["exact_match"] - closed["exact_match"]}
    n = len(records)
    open_out, closed_out = spread(open_out, idx, n, ""), spread(closed_out, idx, n, "")
    open_scores, closed_scores = spread(opened["per_example"], idx, n), spread(closed["per_example"], idx, n)
    scored = set(idx)
    shortened = [i in scored and fitted[i][2] > 0 for i in range(n)]
    warn_once(SPEC.id, engine, n, sum(shortened), n - len(idx), "passage tail dropped")
    samples = []
    for i, r in enumerate(records):
        p = fitted[i][0] if i in scored else None
        sample = {"id": r["id"], "prompt": p if p is not None else prompt(r), "output": open_out[i],
                  "closed_book_output": closed_out[i], "reference": r["answers"],
                  **sample_fields(p, shortened[i], truncated_tokens=fitted[i][2])}
        if p is not None:
            sample.update(score=open_scores[i], closed_book_score=closed_scores[i],
                          f1=f1(open_out[i], r["answers"]), closed_book_f1=f1(closed_out[i], r["answers"]))
        samples.append(sample)
    return scores, samples
