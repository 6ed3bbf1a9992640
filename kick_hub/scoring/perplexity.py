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
- Padding: padded positions are masked, so they are filled with an id the model can embed (``safe_pad_id``): a
  tokenizer whose pad token lies past the embedding matrix (``add_special_tokens({"pad_token": "[PAD]"})`` on a
  model that was not resized) scores the same at every batch size. A real token id the model cannot embed is a
  ``ValueError`` naming the token (``check_embeddable``), raised before any forward pass.
- Non-finite logits (NaN / inf, e.g. a float16 overflow) at a scored position make that text's perplexity, and the
  corpus ``perplexity`` and ``nll``, NaN, and are counted in ``non_finite`` (texts) and ``per_example_non_finite``:
  a number computed from them would read as the model's score.
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


def embedding_rows(model) -> int:
    """Token ids ``model`` can embed: the rows of its input embedding (``config.vocab_size`` when it exposes no
    ``num_embeddings``)."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return int(getattr(emb, "num_embeddings", None) or model.config.vocab_size)


def safe_pad_id(pad_token_id: int | None, rows: int) -> int:
    """``pad_token_id`` when the model can embed it (``0 <= id < rows``), else 0: padded positions are masked, so
    any embeddable id gives the same scores, while an id past the embedding matrix would fail the lookup."""
    return pad_token_id if isinstance(pad_token_id, int) and 0 <= pad_token_id < rows else 0


def check_embeddable(tokenizer, encoded: Sequence[Sequence[int]], rows: int, what: str = "prompt") -> None:
    """ValueError naming the first token of ``encoded`` (token ids per text) that the model cannot embed (id outside
    ``0 .. rows - 1``): the tokenizer does not match the model, and the lookup would fail or read the wrong row."""
    for i, ids in enumerate(encoded):
        if ids and (max(ids) >= rows or min(ids) < 0):
            bad = next(t for t in ids if not 0 <= t < rows)
            raise ValueError(f"{what}: #{i} has the token {tokenizer.convert_ids_to_tokens(bad)!r} (id {bad}), but "
                             f"the model embeds only ids 0 to {rows - 1}: its tokenizer does not match the model")


PAD_SLACK = 0.25  # a batch's padding adds at most this fraction to the positions its own tokens fill
CPU_SOLO_TOKENS = 256  # on a CPU, a prefill-only sequence this long batches only with sequences of its own length


def solo_from(device: torch.device | str) -> int | None:
    """``batch_plan``'s ``solo_from`` for prefill-only passes (no generation) on ``device``: ``CPU_SOLO_TOKENS`` on
    a CPU, else None. On 2 CPU cores a float32 matmul of SmolLM2's widths runs at 188 GFLOP/s with 256 rows and
    199 with 512 (175 with 128), so a sequence of 256 tokens fills the matmuls alone, and padding it would cost twice
    over: the padded positions' compute, and the mask that padding needs makes attention compute every key for every
    query where causal attention without a mask skips the future half. Generation keeps batching: each decoding
    step's matmuls read every weight for a few rows, so more rows are nearly free. Not measured on accelerators,
    where batching long sequences still fills matmuls that one sequence does not."""
    return CPU_SOLO_TOKENS if torch.device(device).type == "cpu" else None


def batch_plan(lengths: Sequence[int], batch_size: int, slack: float = PAD_SLACK,
               solo_from: int | None = None) -> list[list[int]]:
    """Indices into ``lengths`` (tokens per sequence) grouped into batches, longest first: at most ``batch_size`` per
    batch, and a shorter sequence joins a batch only while left-padding every member to the batch's longest costs at
    most ``slack`` times the batch's own tokens in extra positions. Without that bound one long prompt pads the short
    ones it is batched with: SmolLM2's 40 five-shot MMLU prompts (274 to 2,724 tokens) ran 1.52x their tokens at batch
    size 8, and attention grows with the square of the padded width. With ``solo_from``, a batch whose longest
    sequence has at least that many tokens takes only sequences of the same length (no padding; ``solo_from``
    above). ValueError for a ``batch_size`` below 1, a negative ``slack`` or a ``solo_from`` that is not an int of at
    least 1."""
    if batch_size < 1 or slack < 0:
        raise ValueError(f"batch_size / slack: must be at least 1 / 0, got {batch_size} / {slack}")
    if solo_from is not None and (not isinstance(solo_from, int) or isinstance(solo_from, bool) or solo_from < 1):
        raise ValueError(f"solo_from: must be an int of at least 1, or None, got {solo_from!r}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    plan: list[list[int]] = []
    own = 0
    for i in order:
        batch = plan[-1] if plan else None
        if batch is None or len(batch) == batch_size or \
                (len(batch) + 1) * lengths[batch[0]] > (1 + slack) * (own + lengths[i]) or \
                (solo_from is not None and lengths[batch[0]] >= solo_from and lengths[i] != lengths[batch[0]]):
            plan.append([i])
            own = lengths[i]
        else:
            batch.append(i)
            own += lengths[i]
    return plan


def left_padded_batches(encoded: Sequence[Sequence[int]], batch_size: int, pad_token_id: int, device,
                        solo_from: int | None = None):
    """``(indices, ids, mask)`` batches of ``encoded`` as ``batch_plan`` groups them (longest first, padding
    bounded, ``solo_from`` passed on), left-padded with ``pad_token_id`` (masked)."""
    for idx in batch_plan([len(e) for e in encoded], batch_size, solo_from=solo_from):
        width = len(encoded[idx[0]])
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
    text's perplexity), ``per_example_windows`` (windows per text), ``non_finite`` (texts with a non-finite logit at
    a scored position; then ``perplexity`` and ``nll`` are NaN, as is each such text's perplexity) and
    ``per_example_non_finite``. ``pad_token_id`` is replaced by 0 when the model cannot embed it (``safe_pad_id``).
    """
    pad_token_id = safe_pad_id(pad_token_id, embedding_rows(model))
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
    text_bad = [False] * len(encoded)
    device = next(model.parameters()).device
    batches = list(left_padded_batches(seg_ids, batch_size, pad_token_id, device, solo_from(device)))
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
        valid = (mask[:, 1:] * mask[:, :-1] * (columns[None, :] >= first[:, None])).bool()
        bad = torch.zeros(len(idx), dtype=torch.bool, device=ids.device)
        if not bool(torch.isfinite(logits).all()):  # one check per forward; rows only when something is off
            bad = (~torch.isfinite(logits).all(-1) & valid).any(-1)
        token_nll = torch.where(valid, token_nll, 0.0)  # padded positions never leak into the sum (NaN * 0 is NaN)
        bad = bad.tolist()
        for row, i in enumerate(idx):
            text = segments[i][0]
            text_nll[text] += float(token_nll[row].sum())
            text_count[text] += int(valid[row].sum())
            text_bad[text] = text_bad[text] or bad[row]
    nll, count = sum(text_nll), sum(text_count)
    per_text = [math.nan if b else safe_exp(n / max(c, 1)) for n, c, b in zip(text_nll, text_count, text_bad)]
    mean = math.nan if any(text_bad) else nll / max(count, 1)
    return {"perplexity": safe_exp(mean), "nll": mean, "tokens": count, "per_example": per_text,
            "per_example_windows": n_windows, "non_finite": sum(text_bad), "per_example_non_finite": text_bad}
