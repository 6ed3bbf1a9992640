"""Token-level perplexity of a causal LM over texts, scored in strided windows: the one implementation behind
``Engine.perplexity`` and the ``perplexity`` evaluate module.

The evaluate module links this file (``kick_perplexity.py``) and is published without kick-hub, so this file imports
nothing from ``kick_hub``: only ``math`` and ``torch`` (``tqdm`` when a progress bar is asked for).

Rules:

- Token ids: the tokenizer's special tokens (BOS) are added unless the text already starts with BOS (chat templates
  that write it themselves); the first token is never scored, every later token is scored exactly once.
- Window rule: a text longer than the context (``max_length`` tokens) is scored in windows of ``max_length`` tokens
  that start ``stride`` tokens apart (default ``max_length // 2``), each window scoring only the tokens no earlier
  window scored, so every token has at least ``max_length - stride`` tokens of context (the strided evaluation of
  Hugging Face's "Perplexity of fixed-length models" guide). Nothing is cut.
- ``perplexity`` is ``exp(total NLL / predicted tokens)``; ``inf`` where exp overflows (a broken model), never an
  ``OverflowError``; ``nll`` stays finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

DEFAULT_CONTEXT = 2048  # when the model config names no max_position_embeddings


def safe_exp(x: float) -> float:
    """``math.exp`` that returns ``inf`` instead of raising ``OverflowError`` (perplexity of a broken model)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def context_length(model, max_length: int | None = None) -> int:
    """Tokens one forward pass may hold: the model's ``max_position_embeddings`` (else 2048), or ``max_length`` when
    that is smaller."""
    limit = getattr(model.config, "max_position_embeddings", None) or DEFAULT_CONTEXT
    return min(max_length or limit, limit)


def token_ids(tokenizer, text: str) -> list[int]:
    """Token ids of an already rendered text, with the tokenizer's special tokens (BOS) unless the text already
    starts with BOS."""
    bos = tokenizer.bos_token
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


def left_padded_batches(encoded: Sequence[Sequence[int]], batch_size: int, pad_token_id: int, device):
    """``(indices, ids, mask)`` batches of ``encoded``, longest first, left-padded with ``pad_token_id`` (masked)."""
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        ids = torch.tensor([[pad_token_id] * (width - len(encoded[i])) + list(encoded[i]) for i in idx],
                           device=device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in idx], device=device)
        yield idx, ids, mask


def windows(n_tokens: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """``(begin, end, first)`` per window of a text of ``n_tokens`` tokens: the window holds tokens
    ``[begin, end)`` and scores the predictions of its tokens from index ``first`` (window-relative) on."""
    if not 1 <= stride < max_length:
        raise ValueError(f"stride: must be between 1 and {max_length - 1}, got {stride}")
    out, scored_until = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + max_length, n_tokens)
        out.append((begin, end, max(scored_until - begin, 1)))
        scored_until = end
        if end >= n_tokens:
            break
    return out


@torch.inference_mode()
def perplexity(model, encoded: Sequence[Sequence[int]], max_length: int, batch_size: int, pad_token_id: int,
               stride: int | None = None, progress: str | None = None) -> dict[str, float | int | list]:
    """Perplexity of ``model`` over texts given as token ids (``token_ids``), each text scored on its own.

    Returns ``perplexity``, ``nll`` (mean per predicted token), ``tokens`` (predicted tokens), ``per_example`` (each
    text's perplexity) and ``per_example_windows`` (windows per text)."""
    stride = max_length // 2 if stride is None else stride
    if batch_size <= 0:
        raise ValueError(f"batch_size: must be positive, got {batch_size}")
    # segments: (text index, window ids, index of the first window token whose prediction is scored)
    segments: list[tuple[int, list[int], int]] = []
    n_windows = [0] * len(encoded)
    for i, ids in enumerate(encoded):
        for begin, end, first in windows(len(ids), max_length, stride):
            segments.append((i, list(ids[begin:end]), first))
            n_windows[i] += 1
    seg_ids = [seg[1] for seg in segments]
    text_nll = [0.0] * len(encoded)
    text_count = [0] * len(encoded)
    batches = list(left_padded_batches(seg_ids, batch_size, pad_token_id, next(model.parameters()).device))
    if progress is not None:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=progress or "perplexity", unit="batch")
    for idx, ids, mask in batches:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, :-1].float()
        token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        # target column c holds window token c + 1 - pad; score it from the segment's first scored token on
        first = torch.tensor([ids.shape[1] - len(seg_ids[i]) + segments[i][2] for i in idx], device=ids.device)
        columns = torch.arange(1, ids.shape[1], device=ids.device)
        valid = mask[:, 1:] * mask[:, :-1] * (columns[None, :] >= first[:, None])
        token_nll = token_nll * valid
        for row, i in enumerate(idx):
            text = segments[i][0]
            text_nll[text] += float(token_nll[row].sum())
            text_count[text] += int(valid[row].sum())
    nll, count = sum(text_nll), sum(text_count)
    per_text = [safe_exp(n / max(c, 1)) for n, c in zip(text_nll, text_count)]
    return {"perplexity": safe_exp(nll / max(count, 1)), "nll": nll / max(count, 1), "tokens": count,
            "per_example": per_text, "per_example_windows": n_windows}
