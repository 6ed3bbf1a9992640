"""Perplexity on a text set (WikiText-style): the metric LLM-KICK shows to hide knowledge loss.

Context: a text longer than the model's context is never cut; ``Backend.perplexity`` scores it in strided windows
(Hugging Face's fixed-length-model perplexity guide) so every token counts, and each sample records ``windows``.
A model whose loss overflows ``exp`` reports ``perplexity`` as ``inf`` with a finite ``nll``.

Distribution fidelity: given dense's distributions on the same texts (``reference``, a
``kick_hub.scoring.fidelity.Reference``; the sweep computes it once per run), the task also compares the model's
next-token distributions with them (``fidelity.measure``: KL divergence, top-1 agreement, change in the correct
token's probability, PPL ratio; llama.cpp's definitions, docs/statistics.md).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from kick_hub.backends import Backend
from kick_hub.tasks import SPECS, check_protocol

if TYPE_CHECKING:
    from kick_hub.scoring.fidelity import Reference

SPEC = SPECS["perplexity"]


def run(engine: Backend, records: list[dict], protocol: str = "default", reference: "Reference | None" = None,
        **_) -> tuple[dict, list[dict]]:
    """Corpus perplexity, mean NLL and token count; each sample holds its text's perplexity (``score``),
    ``windows``, ``tokens`` (predicted tokens) and ``nll`` (summed NLL in nats; absent when the perplexity
    overflows). With a ``reference`` (dense's distributions on these texts) the results also hold
    ``fidelity.summary``'s scores (``kl_mean``, ``kl_mean_stderr``, ..., ``top1_agreement``, ``ppl_ratio``,
    ``kl_positions``) and each sample its text's ``kl`` (summed over its positions, nats), ``top1_same`` and
    ``kl_positions``. Raises ValueError when the reference was measured on other texts or another tokenizer."""
    check_protocol(SPEC, protocol)
    result = engine.perplexity([r["text"] for r in records], progress=SPEC.id)
    per_text = result.pop("per_example")
    windows = result.pop("per_example_windows")
    result.pop("non_finite")  # counted in engine.checked; kick_hub.evaluation marks the task invalid
    samples = [{"id": r["id"], "prompt": r["text"], "output": "", "reference": "", "score": s, "windows": w}
               for r, s, w in zip(records, per_text, windows)]
    for sample in samples:  # what the standard error needs (kick_hub.scoring.stats): each text's NLL and tokens
        sample["tokens"] = max(len(engine.token_ids(sample["prompt"])) - 1, 0)  # every token after the first
        if math.isfinite(sample["score"]) and sample["score"] > 0:
            sample["nll"] = math.log(sample["score"]) * sample["tokens"]
    if reference is not None:
        from kick_hub.scoring import fidelity

        scores, per_text = fidelity.measure(engine, [r["text"] for r in records], reference,
                                            progress=f"{SPEC.id} fidelity")
        result.update(scores)
        for sample, values in zip(samples, per_text, strict=True):
            sample.update(values)
    return result, samples
