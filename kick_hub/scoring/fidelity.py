"""Distribution fidelity: how far a variant's next-token distributions are from its dense parent's, on the same
texts (the perplexity task's), whatever its accuracy says.

Definitions are llama.cpp's ``llama-perplexity --kl-divergence`` (tools/perplexity/perplexity.cpp, ``log_softmax``
and the "KL divergence statistics" it prints), per scored position ``t`` with dense distribution ``P`` and variant
distribution ``Q`` over the vocabulary and the text's true next token ``y``:

- ``KL(P || Q) = sum_i P_i (log P_i - log Q_i)`` in nats; ``kl_mean``, ``kl_median``, ``kl_p90``, ``kl_p99``,
  ``kl_max`` over all positions (percentiles interpolate linearly between order statistics, numpy's default);
- "same top p": the share of positions where ``argmax P == argmax Q`` (``top1_agreement``);
- ``delta_p = Q_y - P_y`` (the change in the probability of the correct token): ``delta_p_mean`` and
  ``delta_p_rms = sqrt(mean(delta_p ** 2))`` (llama.cpp prints both in percent, here they are fractions);
- ``ppl_ratio = exp(mean(-log Q_y) - mean(-log P_y))``, llama.cpp's "Mean PPL(Q)/PPL(base)" over the same positions.

Where they differ from llama.cpp: the positions are every token after the first of each text (the perplexity task's
tokens; a text longer than the context is compared over its first ``max_length`` tokens), not the second half of
fixed-size chunks; the standard errors (``kl_mean_stderr``, ``top1_agreement_stderr``) take the texts as sampling
units (``stats.nll_stderr``'s ratio estimator), because positions of one text are correlated: llama.cpp's per-token
formula treats them as independent and gives smaller errors.

Dense's distributions are computed once per run (``measure_reference``) and stored (``save_reference``,
safetensors). A vocabulary of up to ``FULL_VOCAB`` tokens is stored whole; a larger one as each position's
``TOP_K`` most likely tokens plus the log of the mass outside them (``rest``). Then the KL is estimated by merging
the tokens outside the top ``K`` into one: ``KL_K = sum_{i in K} P_i log(P_i / Q_i) + P_r log(P_r / Q_r)`` (``P_r``,
``Q_r``: mass outside ``K``). By the log-sum inequality ``KL_K <= KL``, and since each ``P_i <= P_r`` outside ``K``,
``KL <= sum_{i in K} P_i log(P_i / Q_i) + P_r (log P_r - min_{i not in K} log Q_i)``: ``compare`` reports that upper
bound's mean as ``kl_mean_upper`` when the reference is truncated (exact, and absent, when it is whole). Top-1
agreement, ``delta_p`` and ``ppl_ratio`` are exact either way (the top token and ``P_y`` are always stored).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from kick_hub.backends import Backend

FULL_VOCAB = 4096  # vocabularies up to this many tokens are stored whole (world: 2,048 tokens, 8 KiB a position)
TOP_K = 128  # otherwise each position keeps its 128 most likely tokens: 1 KiB a position (float32 + int32)
FORMAT = "kick-hub/dense-distributions/1"


@dataclass
class Reference:
    """Dense's next-token distributions over ``n`` scored positions of a list of texts.

    ``logprobs [n, K]`` float32: the whole log-distribution (``indices`` None, ``K = vocab``) or its ``K`` largest
    entries in descending order at ``indices [n, K]`` (int64); ``rest [n]`` (float64): log of the probability mass
    outside the stored entries (``-inf`` when whole); ``targets [n]``: the true next token at each position;
    ``target_logprobs [n]``: dense's log-prob of it; ``offsets``: text ``j``'s positions are
    ``offsets[j]:offsets[j + 1]``; ``meta``: what determines the numbers (model, texts digest, dtype, ...)."""

    logprobs: torch.Tensor
    indices: torch.Tensor | None
    rest: torch.Tensor
    targets: torch.Tensor
    target_logprobs: torch.Tensor
    offsets: list[int]
    vocab: int
    meta: dict = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        """Whether only the top ``K`` entries of each distribution are stored."""
        return self.indices is not None

    def text_rows(self, j: int) -> slice:
        """The rows of text ``j``."""
        return slice(self.offsets[j], self.offsets[j + 1])


def positions(ids: Sequence[int]) -> tuple[int, list[int]]:
    """``(rows, targets)`` for a text read as token ids ``ids`` (BOS included where the tokenizer adds one): the
    distributions of rows ``0 .. len(ids) - 2`` are scored, each against the next id."""
    return max(len(ids) - 1, 0), list(ids[1:])


def reference(dists: Sequence[torch.Tensor], token_ids: Sequence[Sequence[int]], top_k: int | None = None,
              meta: dict | None = None) -> Reference:
    """A ``Reference`` from dense's log-distributions ``dists`` (one ``[T_j, V]`` float tensor per text, as
    ``Backend.next_token_logprobs`` returns) of texts read as ``token_ids`` (``T_j`` ids each). ``top_k``: keep
    that many entries per position; None: whole when ``V <= FULL_VOCAB``, else ``TOP_K``. Raises ValueError when
    a tensor's rows do not match its ids."""
    if not dists:
        raise ValueError("dists: no texts")
    vocab = dists[0].shape[-1]
    k = _stored_k(vocab, top_k)
    return _assemble([_reduce(j, d, ids, k) for j, (d, ids) in enumerate(zip(dists, token_ids, strict=True))],
                     vocab, k, meta)


def _stored_k(vocab: int, top_k: int | None) -> int:
    """Entries kept per position for a vocabulary of ``vocab`` tokens (``reference``'s rule); ValueError when
    ``top_k`` is not between 1 and ``vocab``."""
    k = top_k if top_k is not None else (vocab if vocab <= FULL_VOCAB else TOP_K)
    if not 1 <= k <= vocab:
        raise ValueError(f"top_k: must be between 1 and the vocabulary ({vocab}), got {k}")
    return k


def _reduce(j: int, d: torch.Tensor, ids: Sequence[int], k: int) -> tuple[torch.Tensor, ...]:
    """Text ``j``'s stored rows: ``(logprobs [n, k], indices [n, k] or None, rest [n], targets [n],
    target_logprobs [n])`` of its ``[T, V]`` log-distributions ``d`` (one text at a time, so a caller never holds
    more than one batch of full distributions)."""
    if d.ndim != 2 or d.shape[0] != len(ids):
        raise ValueError(f"dists: text #{j} has {tuple(d.shape)} for {len(ids)} token ids")
    n, t = positions(ids)
    lp = d[:n].float()
    tgt = torch.tensor(t, dtype=torch.long)
    target_lp = lp.gather(1, tgt[:, None])[:, 0] if n else torch.empty(0)
    if k == lp.shape[1]:
        return lp.contiguous(), None, torch.full((n,), -math.inf, dtype=torch.float64), tgt, target_lp
    values, idx = lp.topk(k, dim=1)
    # log of the mass outside the top k, summed over those tokens themselves in float64 (1 - the top k's mass
    # would cancel to float32 noise where little is left, and the KL bounds would no longer hold at that noise)
    rest = lp.double().scatter(1, idx, -math.inf).logsumexp(1)
    return values.contiguous(), idx.contiguous(), rest, tgt, target_lp


def _assemble(parts: list[tuple[torch.Tensor, ...]], vocab: int, k: int, meta: dict | None) -> Reference:
    """A ``Reference`` of texts whose rows ``_reduce`` gave, in text order."""
    offsets = [0]
    for p in parts:
        offsets.append(offsets[-1] + len(p[3]))
    lp = torch.cat([p[0] for p in parts]) if parts else torch.empty(0, k)
    idx = None if k == vocab else torch.cat([p[1] for p in parts])
    return Reference(lp, idx, torch.cat([p[2] for p in parts]), torch.cat([p[3] for p in parts]),
                     torch.cat([p[4] for p in parts]), offsets, vocab, dict(meta or {}))


@dataclass
class Comparison:
    """Per-position comparison of a variant with a ``Reference`` (``[n]`` arrays, float64): ``kl`` (the estimate:
    exact when the reference is whole, ``KL_K`` otherwise), ``kl_upper`` (its upper bound; equal to ``kl`` when
    whole), ``same_top`` (bool), ``delta_p``, ``nll`` (variant's) and ``nll_dense`` at the true next token;
    ``offsets`` as the reference's."""

    kl: np.ndarray
    kl_upper: np.ndarray
    same_top: np.ndarray
    delta_p: np.ndarray
    nll: np.ndarray
    nll_dense: np.ndarray
    offsets: list[int]
    truncated: bool


def compare(ref: Reference, dists: Sequence[torch.Tensor], token_ids: Sequence[Sequence[int]]) -> Comparison:
    """Compare a variant's log-distributions ``dists`` (one ``[T_j, V]`` tensor per text, the reference's texts in
    its order) with ``ref`` at every scored position (module docstring). Raises ValueError when the texts were read
    as other tokens (another tokenizer: the positions would not pair) or the vocabularies differ."""
    if len(dists) != len(ref.offsets) - 1:
        raise ValueError(f"dists: {len(dists)} texts, the dense reference has {len(ref.offsets) - 1}")
    pairs = enumerate(zip(dists, token_ids, strict=True))
    return _join(ref, [_compare_text(ref, j, d, ids) for j, (d, ids) in pairs])


def _compare_text(ref: Reference, j: int, d: torch.Tensor, ids: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Text ``j``'s per-position ``(kl, kl_upper, same_top, delta_p, nll, nll_dense)`` against ``ref`` (``compare``
    for one text, so a caller holds one batch of full distributions at a time)."""
    rows = ref.text_rows(j)
    n, targets = positions(ids)
    if n != rows.stop - rows.start or targets != ref.targets[rows].tolist():
        raise ValueError(f"token ids: text #{j} is read as other tokens than the dense reference's (another "
                         f"tokenizer?); its positions would not pair")
    if d.shape[-1] != ref.vocab:
        raise ValueError(f"vocabulary: the variant has {d.shape[-1]} tokens, the dense reference {ref.vocab}")
    q = d[:n].double()
    p_lp = ref.logprobs[rows].double()
    if ref.truncated:
        idx = ref.indices[rows]
        q_k = q.gather(1, idx)
        p_r, q_r = ref.rest[rows].double(), q.scatter(1, idx, -math.inf).logsumexp(1)  # masses outside the top k
        head = (p_lp.exp() * (p_lp - q_k)).sum(1)
        tail = torch.where(p_r > -math.inf, p_r.exp() * (p_r - q_r), torch.zeros_like(p_r))
        outside = q.scatter(1, idx, math.inf).min(1).values  # min log Q over the tokens outside the top k
        kl = head + tail
        upper = head + torch.where(p_r > -math.inf, p_r.exp() * (p_r - outside), torch.zeros_like(p_r))
        top_p = idx[:, 0]
    else:
        # 0 * log 0 terms (P_i = 0) contribute nothing; a -inf in Q where P > 0 gives +inf, as it should
        p = p_lp.exp()
        kl = torch.where(p > 0, p * (p_lp - q), torch.zeros_like(p)).sum(1)
        upper = kl
        top_p = p_lp.argmax(1)
    tgt = ref.targets[rows]
    q_y = q.gather(1, tgt[:, None])[:, 0]
    p_y = ref.target_logprobs[rows].double()
    return kl, upper, top_p == q.argmax(1), q_y.exp() - p_y.exp(), -q_y, -p_y


def _join(ref: Reference, parts: list[tuple[torch.Tensor, ...]]) -> Comparison:
    """The ``Comparison`` of every text of ``ref`` from ``_compare_text``'s parts, in text order."""
    def cat(i: int) -> np.ndarray:
        return torch.cat([p[i] for p in parts]).numpy() if parts else np.zeros(0)

    return Comparison(cat(0), cat(1), cat(2).astype(bool), cat(3), cat(4), cat(5), list(ref.offsets), ref.truncated)


def summary(c: Comparison) -> tuple[dict[str, float], list[dict]]:
    """``(scores, per_text)`` of a ``Comparison``: the scores named in the module docstring plus
    ``kl_mean_stderr`` / ``top1_agreement_stderr`` (texts as sampling units; only with 2 or more texts),
    ``kl_mean_upper`` (truncated references only) and ``kl_positions``; ``per_text[j]`` holds text ``j``'s
    ``kl`` (summed over its positions, nats), ``top1_same`` (positions whose top token agrees) and
    ``kl_positions``. Raises ValueError when there is no scored position."""
    from kick_hub.scoring.stats import nll_stderr

    n = len(c.kl)
    if n == 0:
        raise ValueError("texts: no scored position (every text has a single token)")
    bounds = list(zip(c.offsets[:-1], c.offsets[1:]))
    per_text = [{"kl": float(c.kl[a:b].sum()), "top1_same": int(c.same_top[a:b].sum()), "kl_positions": b - a}
                for a, b in bounds]
    scores = {
        "kl_mean": float(c.kl.mean()), "kl_median": float(np.quantile(c.kl, 0.5)),
        "kl_p90": float(np.quantile(c.kl, 0.9)), "kl_p99": float(np.quantile(c.kl, 0.99)),
        "kl_max": float(c.kl.max()), "top1_agreement": float(c.same_top.mean()),
        "delta_p_mean": float(c.delta_p.mean()), "delta_p_rms": float(math.sqrt(np.mean(c.delta_p ** 2))),
        "ppl_ratio": _exp(float(c.nll.mean() - c.nll_dense.mean())), "kl_positions": n,
    }
    if c.truncated:
        scores["kl_mean_upper"] = float(c.kl_upper.mean())
    used = [t for t in per_text if t["kl_positions"]]
    if len(used) >= 2:
        tokens = [t["kl_positions"] for t in used]
        scores["kl_mean_stderr"] = nll_stderr([t["kl"] for t in used], tokens)[1]
        scores["top1_agreement_stderr"] = nll_stderr([t["top1_same"] for t in used], tokens)[1]
    return scores, per_text


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def token_kl(p_logprobs: torch.Tensor, q_logprobs: torch.Tensor) -> torch.Tensor:
    """``[T]`` KL(P || Q) in nats per row of two ``[T, V]`` log-distributions over one vocabulary (the Space's
    per-token strip). Raises ValueError for other shapes."""
    if p_logprobs.shape != q_logprobs.shape or p_logprobs.ndim != 2:
        raise ValueError(f"logprobs: need two [T, V] tensors of one shape, got {tuple(p_logprobs.shape)} and "
                         f"{tuple(q_logprobs.shape)}")
    p_lp, q_lp = p_logprobs.double(), q_logprobs.double()
    p = p_lp.exp()
    return torch.where(p > 0, p * (p_lp - q_lp), torch.zeros_like(p)).sum(-1).float()


# ------------------------------------------------------------------ texts and engines
def fit_texts(engine: "Backend", texts: Sequence[str]) -> tuple[list[str], int]:
    """``(texts, cut)``: each text as compared (one longer than ``engine.max_length`` tokens cut to its longest
    token prefix that fits, ``Backend.token_prefixes``) and how many were cut."""
    out, cut = [], 0
    for text in texts:
        if len(engine.token_ids(text)) <= engine.max_length:
            out.append(text)
            continue
        fits = [p for p in engine.token_prefixes(text) if len(engine.token_ids(p)) <= engine.max_length]
        out.append(fits[-1] if fits else "")
        cut += 1
    return out, cut


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 of the texts (JSON list): what a stored reference was computed on."""
    return hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()


def _passes(engine: "Backend", texts: Sequence[str], progress: str | None):
    """``(j, ids, dists)`` for every text, one ``next_token_logprobs`` call per batch of the engine's own plan
    (``perplexity.batch_plan`` with the device's ``solo_from``, as the engine batches them), so the numbers equal one
    call over all the texts, while at most one batch of ``[T, V]`` distributions is held (a 150 k vocabulary's would
    not fit)."""
    from tqdm.auto import tqdm

    from kick_hub.scoring.perplexity import batch_plan, solo_from

    ids = [engine.token_ids(t) for t in texts]
    size = max(int(getattr(engine, "batch_size", 1) or 1), 1)
    device = getattr(engine, "device", None)
    solo = solo_from(device) if device is not None else None
    for chunk in tqdm(batch_plan([len(i) for i in ids], size, solo_from=solo), desc=progress or "fidelity",
                      unit="batch", disable=progress is None):
        for j, d in zip(chunk, engine.next_token_logprobs([texts[i] for i in chunk]), strict=True):
            yield j, ids[j], d


def measure_reference(engine: "Backend", texts: Sequence[str], meta: dict | None = None, top_k: int | None = None,
                      progress: str | None = None) -> Reference:
    """Dense's ``Reference`` on ``texts`` (fitted by ``fit_texts``), one ``next_token_logprobs`` pass (in batches,
    ``_passes``), with ``meta`` plus ``texts`` (their digest), ``texts_cut``, ``top_k``, ``vocab`` and
    ``format``. Raises ValueError for no texts."""
    fitted, cut = fit_texts(engine, texts)
    if not fitted:
        raise ValueError("texts: no texts to measure the dense distributions on")
    parts: dict[int, tuple] = {}
    vocab = k = None
    for j, ids, d in _passes(engine, fitted, progress):
        if k is None:
            vocab = d.shape[-1]
            k = _stored_k(vocab, top_k)
        parts[j] = _reduce(j, d, ids, k)
    ref = _assemble([parts[j] for j in range(len(fitted))], vocab, k, None)
    ref.meta = {**(meta or {}), "texts": texts_digest(texts), "texts_cut": cut, "format": FORMAT,
                "top_k": ref.logprobs.shape[1], "vocab": ref.vocab, "truncated": ref.truncated}
    return ref


def measure(engine: "Backend", texts: Sequence[str], ref: Reference,
            progress: str | None = None) -> tuple[dict[str, float], list[dict]]:
    """``summary`` of ``engine`` against ``ref`` on the ``texts`` it was measured on (ValueError when they are other
    texts: the digest differs, or the count). One ``next_token_logprobs`` pass (in batches, ``_passes``); the
    engine's non-finite logits are counted in its ``checked`` as for every pass."""
    if ref.meta.get("texts") not in (None, texts_digest(texts)) or len(texts) != len(ref.offsets) - 1:
        raise ValueError("texts: not the texts the dense reference was measured on")
    fitted, _ = fit_texts(engine, texts)
    parts: dict[int, tuple] = {}
    for j, ids, d in _passes(engine, fitted, progress):
        parts[j] = _compare_text(ref, j, d, ids)
    return summary(_join(ref, [parts[j] for j in range(len(fitted))]))


# ------------------------------------------------------------------ storage
def save_reference(ref: Reference, path: str | Path) -> Path:
    """Write ``ref`` to ``path`` (safetensors; ``meta`` in its metadata as JSON) through a temp file renamed into
    place, so a reader never sees half a file."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {"logprobs": ref.logprobs, "rest": ref.rest, "targets": ref.targets,
               "target_logprobs": ref.target_logprobs, "offsets": torch.tensor(ref.offsets, dtype=torch.long)}
    if ref.indices is not None:
        tensors["indices"] = ref.indices.to(torch.int32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"format": FORMAT, "vocab": str(ref.vocab), "meta": json.dumps(ref.meta, sort_keys=True)})
    os.replace(tmp, path)
    return path


def stored_meta(path: str | Path) -> dict | None:
    """The ``meta`` of the dense distributions stored at ``path`` without reading its tensors; None when there is no
    such file or it is not one (``save_reference``)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, RuntimeError, ValueError, SafetensorError):
        return None
    if meta.get("format") != FORMAT:
        return None
    try:
        return json.loads(meta.get("meta", "{}"))
    except ValueError:
        return None


def load_reference(path: str | Path) -> Reference:
    """The ``Reference`` stored at ``path`` (``save_reference``). Raises ValueError naming the file when it is not
    one."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a kick-hub dense-distributions file")
            t = {k: f.get_tensor(k) for k in f.keys()}
    except (OSError, RuntimeError, SafetensorError) as e:  # a missing, unreadable or corrupt file
        raise ValueError(f"{path}: cannot read the dense distributions ({e})") from e
    idx = t.get("indices")
    return Reference(t["logprobs"], None if idx is None else idx.long(), t["rest"], t["targets"],
                     t["target_logprobs"], t["offsets"].tolist(), int(meta["vocab"]), json.loads(meta["meta"]))
