"""The functions the exported lm-eval task YAMLs reference (through the ``utils.py`` written beside them), and the
scoring the importer shares with them: records, prompts and scores all come from kick's own code.

- ``load`` (``custom_dataset``): a task's records from ``kick_hub.tasks.records.load`` (the world's sets, a local
  file or data root in a real dataset's format, or the Hub), as a ``datasets.DatasetDict`` with one ``test`` split
  whose rows are ``{id, task, protocol, part, record}``: ``record`` is the kick record as JSON, so every field (alias
  lists, few-shot examples) reaches the prompt and the scorer exactly as ``kick evaluate`` reads it.
- ``doc_to_text``: the prompt from the task module's prompt builder (``kick_hub.tasks.<task>``); mcq-reasoning
  carries its solved examples itself (``num_fewshot: 0`` in lm-eval).
- ``doc_to_target``: the gold answer (an option index for mcq-reasoning's log-likelihood protocol).
- ``process_results``: one document's scores from ``score`` (``kick_hub.scoring``).
- ``score``: a whole task's results and per-example scores from the task module's own ``score`` (the importer
  calls it on lm-eval's logged outputs).

Context: kick fits prompts that exceed the model's context (``kick_hub.tasks.fit``: dropping shots or a passage's
tail); lm-eval cuts a too-long prompt from the left instead. The exported prompts are kick's whole prompts, so the
two agree whenever a prompt fits (always on the world model), and differ on prompts longer than the context.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from kick_hub.scoring.mcq import LETTERS
from kick_hub.tasks.specs import SPECS

# (task, protocol) -> the lm-eval metrics it reports per document (aggregated as the mean), from the task's
# declaration (``TaskSpec.lm_eval_metrics``); the importer rescores the whole task
METRICS: dict[tuple[str, str], tuple[str, ...]] = {
    (t, p): m for t, s in SPECS.items() for p, m in s.lm_eval_metrics.items()}


def load(kick_task: str, kick_data: str, kick_protocol: str = "default", kick_part: str = "main", **_) -> dict:
    """``{"test": datasets.Dataset}`` of task ``kick_task``'s records from ``kick_data`` (any source
    ``kick_hub.tasks.records.load`` takes), each row ``{id, task, protocol, part, record}``. lm-eval calls it with the
    task's ``dataset_kwargs`` (and its ``metadata``, ignored). Raises ValueError as ``kick_hub.tasks.records.load``
    does."""
    import datasets

    from kick_hub.tasks import records as task_records

    records = task_records.load(kick_task, kick_data)
    rows = [{"id": str(r["id"]), "task": kick_task, "protocol": kick_protocol, "part": kick_part,
             "record": json.dumps(r)}
            for r in records]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def record(doc: dict) -> dict:
    """The kick record a document carries."""
    return json.loads(doc["record"])


def prompt(task: str, protocol: str, part: str, rec: dict) -> str:
    """The prompt ``kick evaluate`` gives the model for ``rec`` when it fits the context, from the task module."""
    from kick_hub import tasks

    module = tasks.get(task)
    if task == "icra-qa" and part == "closed_book":
        return module.SPEC.prompts["closed_book"].format(question=rec["question"])
    if task == "icsum":
        return module.SPEC.prompts["prompt"].format(story=story(rec, protocol))
    if task == "mcq-reasoning":
        return module.build_prompt(rec, module.SPEC.num_fewshot)
    if task == "perplexity":
        return ""
    return module.prompt(rec)


def story(rec: dict, protocol: str) -> str:
    """The icsum story as the model reads it (and the judge sees it): with the ``@highlight`` reference appended
    under the llm-kick protocol, whose prompts kept it (``kick_hub.tasks.icsum.run``)."""
    return rec["story"] + ("\n\n" + rec["reference"] if protocol == "llm-kick" else "")


def doc_to_text(doc: dict) -> str:
    """lm-eval ``doc_to_text``: kick's prompt for the document."""
    return prompt(doc["task"], doc["protocol"], doc["part"], record(doc))


def doc_to_target(doc: dict):
    """lm-eval ``doc_to_target``: the gold option's index (mcq-reasoning, log-likelihood), the gold letter
    (mcq-reasoning, generated), the text (perplexity), else the reference (first alias) as logged text."""
    rec = record(doc)
    if doc["task"] == "mcq-reasoning":
        return LETTERS.index(rec["answer"]) if doc["protocol"] == "default" else rec["answer"]
    if doc["task"] == "perplexity":
        return rec["text"]
    ref = rec.get("answers", rec.get("reference"))
    return ref[0] if isinstance(ref, list) else ref


def prediction(task: str, protocol: str, results: Sequence) -> str | float:
    """The model's output for one document from lm-eval's results: the generated text, for mcq-reasoning's
    log-likelihood protocol the letter with the highest log-likelihood (the first on a tie, as ``kick evaluate``),
    for perplexity the text's log-likelihood (a float, nats)."""
    if task == "mcq-reasoning" and protocol == "default":
        lls = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in results]
        return LETTERS[max(range(len(lls)), key=lls.__getitem__)]
    if task == "perplexity":  # loglikelihood_rolling: the text's summed log-likelihood
        return float(results[0][0] if isinstance(results[0], (list, tuple)) else results[0])
    return results[0]


def process_results(doc: dict, results: Sequence) -> dict[str, float]:
    """lm-eval ``process_results``: this document's ``METRICS`` from ``score``."""
    task, protocol, part = doc["task"], doc["protocol"], doc["part"]
    _, per_example = score(task, protocol, part, [record(doc)], [prediction(task, protocol, results)])
    return {m: per_example[0][m] for m in METRICS[task, protocol]}


def score(task: str, protocol: str, part: str, records: list[dict], outputs: list[str]) -> tuple[dict, list[dict]]:
    """``(results, per_example)`` of ``records`` given the model's ``outputs`` (generated text; option letters for
    mcq-reasoning's log-likelihood protocol): the task module's own ``score``, the one ``kick evaluate`` runs
    (``results`` in kick's names, e.g. mcq-reasoning's ``accuracy``, ``per_subject``, ``per_category``;
    ``per_example`` one dict per record with each ``METRICS`` entry, ``score`` and ``output`` as the task stores
    it). Raises ValueError as the scorers do (empty lists, bad references) and for perplexity (``perplexity``)."""
    from kick_hub import tasks

    if task == "perplexity":
        raise ValueError("task: 'perplexity' is not scored from generated outputs (use ``perplexity``)")
    module = tasks.get(task)
    if task == "factoid-qa":
        return module.score(records, list(outputs), protocol, [prompt(task, protocol, part, r) for r in records])
    return module.score(records, list(outputs), protocol)


def perplexity(lls: Sequence[float], tokens: Sequence[int]) -> tuple[dict, list[dict]]:
    """Token-level perplexity from lm-eval's ``loglikelihood_rolling`` results: ``lls`` (each text's summed
    log-likelihood, nats) and ``tokens`` (the tokens each was summed over): ``perplexity`` = exp(total NLL / total
    tokens), ``nll`` (mean per token), ``tokens``, as ``kick_hub.scoring.perplexity`` reports them, and per text its
    ``score`` (perplexity), ``nll`` (summed) and ``tokens``. ``inf`` where exp overflows. ValueError on empty or
    unequal lists or a text with no tokens."""
    from kick_hub.scoring.perplexity import safe_exp

    if not lls or len(lls) != len(tokens) or min(tokens) <= 0:
        raise ValueError("lls/tokens: must be non-empty lists of equal length, every text with tokens")
    nll, count = -sum(lls), sum(tokens)
    per = [{"score": safe_exp(-ll / n), "nll": -ll, "tokens": n} for ll, n in zip(lls, tokens)]
    return {"perplexity": safe_exp(nll / count), "nll": nll / count, "tokens": count}, per

