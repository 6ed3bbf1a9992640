"""Multiple-choice reasoning (MMLU, 5-shot): pick the option letter.

Protocols: ``default`` compares the log-likelihood of the four letters after ``Answer:`` (one forward pass per
question, as lm-evaluation-harness); ``llm-kick`` generates one greedy token and reads the first option letter it
emits (``kick_hub.scoring.mcq.extract_letter``).

Shots: each record carries ``shots_available`` (solved dev items the data had for its subject); the scores record
``shots_per_subject``, the fewest shots any scored question of a subject used, so a subject that ran 0-shot (no dev
file) or lost shots to the context is visible in the results.

Context (both protocols): a prompt that does not fit the model's context, with room for the answer token, keeps its
header and question and drops whole solved examples from the end until it fits (hendrycks/test and LLM-KICK:
``while crop(prompt) != prompt: k -= 1``); each sample records ``shots`` used. A question that does not fit even with
no shots is not scored (sample ``skipped``). See ``kick_hub.tasks.fit`` and docs/context.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from kick_hub.backends import Backend
from kick_hub.scoring.mcq import LETTERS, extract_letter, score_mcq
from kick_hub.tasks import SPECS, check_protocol
from kick_hub.tasks.fit import fit_shots, kept, sample_fields, spread, warn_once

SPEC = SPECS["mcq-reasoning"]
# ``--mcq-protocols`` names -> the task protocol each runs: ``loglik`` scores the letters' log-likelihoods (lm-eval),
# ``generate`` reads the letter the model generates (LLM-KICK). Each one asked adds ``accuracy_<name>`` to the scores
# and ``score_<name>`` / ``output_<name>`` to every sample, so one run shows both and their gap.
MCQ_PROTOCOLS = {"loglik": "default", "generate": "llm-kick"}


def check_mcq_protocols(names) -> list[str] | None:
    """``names`` (``--mcq-protocols``) as a list in ``MCQ_PROTOCOLS`` order without repeats, or None when empty;
    ValueError naming the option and the allowed values otherwise."""
    if not names:
        return None
    bad = [n for n in names if n not in MCQ_PROTOCOLS]
    if bad:
        raise ValueError(f"mcq-protocols: each must be one of {list(MCQ_PROTOCOLS)}, got {bad}")
    return [n for n in MCQ_PROTOCOLS if n in names]


def mcq_prompt(question: str, options: list[str], answer: str | None = None) -> str:
    """One MMLU item; with ``answer`` it is a solved few-shot example ending in a blank line."""
    opts = "".join(SPEC.prompts["option"].format(letter=l, text=o) for l, o in zip(LETTERS, options))
    body = SPEC.prompts["item"].format(question=question, options=opts)
    return body if answer is None else f"{body} {answer}\n\n"


def build_prompt(record: dict, num_fewshot: int = SPEC.num_fewshot) -> str:
    """MMLU prompt: subject header, ``num_fewshot`` solved dev items, then the question."""
    text = SPEC.prompts["header"].format(subject=record["subject"].replace("_", " "))
    for shot in record.get("fewshot", [])[:num_fewshot]:
        text += mcq_prompt(shot["question"], shot["options"], shot["answer"])
    return text + mcq_prompt(record["question"], record["options"])


def prompt(record: dict) -> str:
    """The prompt with the task's ``num_fewshot`` solved examples (the Space shows it; ``run`` fits it)."""
    return build_prompt(record, SPEC.num_fewshot)


def score(records: list[dict], outputs: list[str], protocol: str = "default",
          shots: list[int] | None = None) -> tuple[dict, list[dict]]:
    """``(results, per_example)`` of ``outputs`` for ``records``: each output is an option letter (the
    log-likelihood protocol's pick) or a generation read with ``extract_letter``. ``results``: ``accuracy``,
    ``invalid``, ``per_subject``, ``per_category`` (``scoring.mcq.score_mcq``) and ``shots_per_subject`` (the fewest
    solved examples any scored prompt of a subject kept; ``shots``, one per record, default the task's
    ``num_fewshot`` or as many as the record has); per example ``accuracy``, ``score`` and ``output``. Raises
    ValueError as ``score_mcq`` does."""
    results = score_mcq(list(outputs), [r["answer"] for r in records], [r["subject"] for r in records])
    hits = results.pop("per_example")
    if shots is None:
        shots = [min(SPEC.num_fewshot, len(r.get("fewshot", []))) for r in records]
    used: dict[str, int] = {}
    for r, k in zip(records, shots):
        used[r["subject"]] = min(k, used.get(r["subject"], k))
    results["shots_per_subject"] = dict(sorted(used.items()))
    return results, [{"accuracy": h, "score": h, "output": o} for h, o in zip(hits, outputs)]


def answer_rank(logprobs: Sequence[float], answer: int) -> int:
    """The rank (1 = first) of option ``answer`` among ``logprobs`` (one log-likelihood per option), ties broken as
    the prediction breaks them (the earlier option first), so rank 1 is exactly "the log-likelihood protocol picks
    it"."""
    mine = logprobs[answer]
    return 1 + sum(1 for j, x in enumerate(logprobs) if x > mine or (x == mine and j < answer))


def run(engine: Backend, records: list[dict], protocol: str = "default", num_fewshot: int | None = None,
        protocols: list[str] | None = None, **_) -> tuple[dict, list[dict]]:
    """Accuracy (overall, per subject, per category) over the questions whose prompt fits the context; samples
    record ``shots`` (solved examples in the prompt), ``shortened`` and, for questions not scored, ``skipped``.

    ``protocols`` (names of ``MCQ_PROTOCOLS``): also score the questions under each, adding ``accuracy_<name>`` to
    the scores and ``score_<name>`` / ``output_<name>`` to the samples (the one matching ``protocol`` reuses its
    predictions); ``accuracy`` stays ``protocol``'s. Under the log-likelihood protocol each scored sample also records
    ``rank_loglik``, the rank of the right option (``answer_rank``; 1 = the prediction)."""
    check_protocol(SPEC, protocol)
    protocols = check_mcq_protocols(protocols)
    if protocols:
        scores, samples = run(engine, records, protocol, num_fewshot)
        for name in protocols:
            if MCQ_PROTOCOLS[name] == protocol:
                other_scores, other_samples = scores, samples
            else:
                other_scores, other_samples = run(engine, records, MCQ_PROTOCOLS[name], num_fewshot)
            scores[f"accuracy_{name}"] = other_scores["accuracy"]
            for sample, other in zip(samples, other_samples):
                sample[f"output_{name}"] = other["output"]
                if "score" in other:
                    sample[f"score_{name}"] = other["score"]
                if "rank_loglik" in other:
                    sample["rank_loglik"] = other["rank_loglik"]
        return scores, samples
    shots = SPEC.num_fewshot if num_fewshot is None else num_fewshot
    choices = [f" {l}" for l in LETTERS]
    if protocol == "llm-kick":
        reserve = SPEC.max_new_tokens
    else:  # the longest option continuation must fit after the prompt
        reserve = max(len(engine.tokenize(c)) for c in choices)
    wanted = [min(shots, len(r.get("fewshot", []))) for r in records]
    fitted = [fit_shots(engine, lambda k, r=r: build_prompt(r, k), w, reserve) for r, w in zip(records, wanted)]
    prompts = [p for p, _ in fitted]
    idx = kept(prompts)
    scored_prompts = [prompts[i] for i in idx]
    if protocol == "llm-kick":
        outputs = engine.generate(scored_prompts, SPEC.max_new_tokens, progress=SPEC.id)
        ranks = None
    else:
        logprobs = engine.choice_logprobs(scored_prompts, choices, progress=SPEC.id)
        outputs = [LETTERS[max(range(4), key=lp.__getitem__)] for lp in logprobs]
        ranks = spread([answer_rank(lp, LETTERS.index(records[i]["answer"])) for lp, i in zip(logprobs, idx)],
                       idx, len(records))
    scores, per = score([records[i] for i in idx], outputs, protocol, [fitted[i][1] for i in idx])
    per_example = spread([e["score"] for e in per], idx, len(records))
    outputs = spread(outputs, idx, len(records), "")
    shortened = [p is not None and k < w for (p, k), w in zip(fitted, wanted)]
    warn_once(SPEC.id, engine, len(records), sum(shortened), len(records) - len(idx),
              "few-shot examples dropped from the end")
    samples = []
    for j, (r, (p, k), o, s, short) in enumerate(zip(records, fitted, outputs, per_example, shortened)):
        sample = {"id": r["id"], "prompt": p if p is not None else build_prompt(r, 0), "output": o,
                  "reference": r["answer"], **sample_fields(p, short, shots=k)}
        if p is not None:
            sample["score"] = s
            if ranks is not None:
                sample["rank_loglik"] = ranks[j]
        samples.append(sample)
    return scores, samples
