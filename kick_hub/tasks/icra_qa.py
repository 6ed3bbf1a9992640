"""In-context retrieval-augmented QA (TriviaQA rc with evidence): answer from a passage, open and closed book.

The open-book score reads the passage; the closed-book score asks the same question without it. Their gap is what
the passage contributes, so both are reported.
"""

from __future__ import annotations

from kick_hub.scoring.qa import exact_match, score_icra
from kick_hub.tasks import TaskSpec, check_protocol
from kick_hub.tasks.prompts import PROMPTS

SPEC = TaskSpec(name="icra-qa", kind="icra", metric="exact_match", knowledge=False,
                description="In-context retrieval QA (TriviaQA rc): EM and F1, open book vs closed book.",
                max_new_tokens=24, stop=("\n",),
                hub_task="question-answering")


def prompt(record: dict) -> str:
    return PROMPTS["icra_open"].format(context=record["context"], question=record["question"])


def score(record: dict, output: str) -> float:
    return exact_match(output.strip(), record["answers"])


def run(engine, records: list[dict], protocol: str = "default", **_) -> tuple[dict, list[dict]]:
    check_protocol(SPEC, protocol)
    answers = [r["answers"] for r in records]
    open_prompts = [prompt(r) for r in records]
    closed_prompts = [PROMPTS["icra_closed"].format(question=r["question"]) for r in records]
    open_out = [o.strip() for o in engine.generate(open_prompts, SPEC.max_new_tokens, SPEC.stop, progress="icra open")]
    closed_out = [o.strip() for o in engine.generate(closed_prompts, SPEC.max_new_tokens, SPEC.stop,
                                                     progress="icra closed")]
    opened, closed = score_icra(open_out, answers, protocol), score_icra(closed_out, answers, protocol)
    scores = {"exact_match": opened["exact_match"], "f1": opened["f1"],
              "closed_book_exact_match": closed["exact_match"], "closed_book_f1": closed["f1"],
              "open_minus_closed_exact_match": opened["exact_match"] - closed["exact_match"]}
    samples = [{"id": r["id"], "prompt": p, "output": o, "closed_book_output": c, "reference": r["answers"],
                "score": s, "closed_book_score": cs}
               for r, p, o, c, s, cs in zip(records, open_prompts, open_out, closed_out, opened["per_example"],
                                            closed["per_example"])]
    return scores, samples
