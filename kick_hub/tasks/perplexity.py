"""Perplexity on a text set (WikiText-style): the metric LLM-KICK shows to hide knowledge loss.

Context: a text longer than the model's context is never cut; ``Backend.perplexity`` scores it in strided windows
(Hugging Face's fixed-length-model perplexity guide) so every token counts, and each sample records ``windows``.
A model whose loss overflows ``exp`` reports ``perplexity`` as ``inf`` with a finite ``nll``.
"""

from __future__ import annotations

import math

from kick_hub.backends import Backend
from kick_hub.tasks import SPECS, check_protocol

SPEC = SPECS["perplexity"]


def run(engine: Backend, records: list[dict], protocol: str = "default", **_) -> tuple[dict, list[dict]]:
    """Corpus perplexity, mean NLL and token count; each sample holds its text's perplexity (``score``),
    ``windows``, ``tokens`` (predicted tokens) and ``nll`` (summed NLL in nats; absent when the perplexity
    overflows)."""
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
    return result, samples
