"""Closed-book factoid QA (FreebaseQA): recall a fact from the weights.

Context: the question is the whole prompt and is never cut; one that does not fit the model's context with room for
``max_new_tokens`` is not scored (sample ``skipped``, counted in the output's config). See docs/context.md.
"""

from __future__ import annotations

from kick_hub.backends import Backend
from kick_hub.scoring.qa import contains, score_factoid
from kick_hub.tasks import SPECS, check_protocol
from kick_hub.tasks.fit import fit_whole, kept, sample_fields, spread, warn_once

SPEC = SPECS["factoid-qa"]


def prompt(record: dict) -> str:
    """The question as the model reads it."""
    return SPEC.prompts["prompt"].format(question=record["question"])


def score(records: list[dict], outputs: list[str], protocol: str = "default",
          prompts: list[str] | None = None) -> tuple[dict, list[dict]]:
    """``(results, per_example)`` of the model's ``outputs`` (continuations) for ``records``: ``exact_match`` (and,
    under the default protocol, ``contains``) and per example those metrics, ``score`` and ``output``. LLM-KICK matched
    against the decoded text, which still contains the prompt (``prompts``, default ``prompt(record)``); an empty
    continuation is no answer, so it is scored as "" (never a hit on an answer that the question itself contains).
    Raises ValueError as ``scoring.qa.score_factoid`` does."""
    texts = list(outputs)
    if protocol == "llm-kick":
        prompts = [prompt(r) for r in records] if prompts is None else prompts
        texts = [p + o if o.strip() else "" for p, o in zip(prompts, outputs)]
    results = score_factoid(texts, [r["answers"] for r in records], protocol)
    hits = results.pop("per_example")
    per = []
    for r, o, h in zip(records, outputs, hits):
        per.append({"exact_match": h, "score": h, "output": o})
        if "contains" in results:  # each example's value of every reported metric (kick_hub.scoring.stats)
            per[-1]["contains"] = contains(o, r["answers"])
    return results, per


def run(engine: Backend, records: list[dict], protocol: str = "default", **_) -> tuple[dict, list[dict]]:
    """Exact match (and LLM-KICK's containment) over the questions that fit the context; samples of questions not
    scored carry ``skipped``."""
    check_protocol(SPEC, protocol)
    fitted = [fit_whole(engine, prompt(r), SPEC.max_new_tokens) for r in records]
    idx = kept(fitted)
    prompts = [fitted[i] for i in idx]
    outputs = engine.generate(prompts, SPEC.max_new_tokens, SPEC.stop, progress=SPEC.id)
    scores, per = score([records[i] for i in idx], outputs, protocol, prompts)
    n = len(records)
    outputs_all, per_all = spread(outputs, idx, n, ""), spread(per, idx, n)
    warn_once(SPEC.id, engine, n, 0, n - len(idx), "")
    samples = []
    for i, r in enumerate(records):
        sample = {"id": r["id"], "prompt": prompt(r), "output": outputs_all[i], "reference": r["answers"]}
        sample.update(sample_fields(fitted[i], False))  # never shortened: fits whole or is skipped
        if fitted[i] is not None:
            sample["score"] = per_all[i]["score"]
            if "contains" in per_all[i]:
                sample["contains"] = per_all[i]["contains"]
        samples.append(sample)
    return scores, samples
