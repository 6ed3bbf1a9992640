"""The per-token KL strip under a comparison's outputs: KL(base || variant) at every token of the base model's
output, teacher-forced, drawn as a heat-coloured strip."""

from __future__ import annotations

import math

from kick_hub.space.compare import check_compare
from kick_hub.space.models import Models

KL_FULL = 1.0  # nats: a token's background is white at KL 0 and full red at KL_FULL nats or more (linear between)
KL_RGB = (220, 38, 38)  # the strip's red


def token_pieces(engine, text: str, ids: list[int]) -> list[str]:
    """The text of each token of ``ids`` (``engine.token_ids(text)``), from ``Backend.token_prefixes`` (a special
    token such as BOS, which the prefixes do not cover, is ``""``). Character offsets on fast tokenizers make the
    pieces join back into ``text``."""
    prefixes = engine.token_prefixes(text)
    special = len(ids) - (len(prefixes) - 1)  # tokens token_ids adds before the text's own (BOS)
    pieces = [""] * max(special, 0)
    for a, b in zip(prefixes[:-1], prefixes[1:]):
        pieces.append(b[len(a):] if b.startswith(a) else b)
    return (pieces + [""] * len(ids))[:len(ids)]


def output_kl(dense, variant, prompt: str, output: str, chat: bool) -> tuple[list[str], list[float]]:
    """Per-token KL(dense || variant) in nats over ``output`` (dense's greedy output of ``prompt``), teacher-forced:
    the rendered prompt (``dense.render(prompt, chat)``) plus the output run once through each model's
    ``next_token_logprobs``, and ``scoring.fidelity.token_kl`` at every position that predicts an output token.
    Returns ``(pieces, kl)``, one entry per output token (``token_pieces``), both empty for an empty output.
    ``dense`` and ``variant`` are ``Backend`` s. Raises ValueError (naming the field) when the two read the text as
    other tokens or over other vocabularies, or it does not fit a model's context."""
    from kick_hub.scoring.fidelity import token_kl

    rendered = dense.render(prompt, chat)
    text = rendered + output
    ids = dense.token_ids(text)
    if variant.token_ids(text) != ids:
        raise ValueError("variant: reads the text as other tokens than the base model (another tokenizer); a "
                         "per-token KL needs the same tokens")
    limit = min(dense.max_length, variant.max_length)
    if len(ids) > limit:
        raise ValueError(f"output: the prompt and output are {len(ids)} tokens, over the {limit}-token context")
    head = dense.token_ids(rendered)
    start = next((i for i, (a, b) in enumerate(zip(head, ids)) if a != b), min(len(head), len(ids)))
    start = max(start, 1)  # the first token has no prediction; a token merged across the boundary is output's
    if start >= len(ids):
        return [], []
    p = dense.next_token_logprobs([text])[0]
    q = variant.next_token_logprobs([text])[0]
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"variant: its vocabulary has {q.shape[-1]} tokens, the base model's {p.shape[-1]}")
    kl = token_kl(p[start - 1:len(ids) - 1], q[start - 1:len(ids) - 1])
    return token_pieces(dense, text, ids)[start:], [float(k) for k in kl]


def kl_strip_html(base: str, variant: str, pieces: list[str], kl: list[float]) -> str:
    """The heat-coloured strip of ``output_kl``: one ``<span class='kl-token'>`` per output token, its background
    red with opacity ``min(KL / KL_FULL, 1)`` (grey for a non-finite KL), a tooltip with the KL in nats, every
    text HTML-escaped; above it the mean KL over the tokens and the scale in words."""
    import html

    from kick_hub.io import format_number

    esc = html.escape
    head = f"KL({esc(base)} ‖ {esc(variant)}) per token of {esc(base)}'s output"
    if not pieces:
        return f"<div class='kl-strip'><b>{head}</b>: no output tokens to compare.</div>"
    finite = [k for k in kl if math.isfinite(k)]
    mean = sum(kl) / len(kl) if len(finite) == len(kl) else math.nan
    spans = []
    for piece, k in zip(pieces, kl):
        if math.isfinite(k):
            colour = "rgba({}, {}, {}, {:.3f})".format(*KL_RGB, min(max(k, 0.0) / KL_FULL, 1.0))
        else:
            colour = "#9ca3af"
        tip = f"{piece!r}: KL {format_number(k, '.4g')} nats"
        spans.append(f"<span class='kl-token' style='background:{colour}' title=\"{esc(tip, quote=True)}\">"
                     f"{esc(piece)}</span>")
    return (f"<div class='kl-strip'><div><b>{head}</b>: mean {format_number(mean, '.4g')} nats over "
            f"{len(kl)} tokens; colour: 0 nats white to {KL_FULL:g} nat or more full red (linear), hover a token "
            f"for its KL</div><div style='white-space:pre-wrap;font-family:monospace;line-height:1.6'>"
            + "".join(spans) + "</div></div>")


def kl_strips(models: Models, base: str, variants: list[str], prompt: str, output: str, task: str,
              prompt_format: str | None = None) -> str:
    """The KL strip endpoint: for the base model's output ``output`` of ``prompt`` (the first pane), one
    ``kl_strip_html`` per chosen variant (``output_kl`` of base against it), joined; empty without a variant. The
    inputs are checked as the Compare endpoint checks them (``check_compare``), ``output`` as text. Raises
    ValueError naming the field."""
    chosen, _, _, _, chat = check_compare(models, {}, base, variants, prompt, 1, "", task, 0, False, prompt_format)
    if not isinstance(output, str):
        raise ValueError(f"output: must be the base model's output text, got {output!r}")
    dense, dense_lock = models.engine(chosen[0])
    out = []
    for name in chosen[1:]:
        engine, lock = models.engine(name)
        first, second = (lock, dense_lock) if name < chosen[0] else (dense_lock, lock)
        with first, second:  # taken in the order of the names, so two strips never wait on each other
            pieces, kl = output_kl(dense, engine, prompt, output, chat)
        out.append(kl_strip_html(chosen[0], name, pieces, kl))
    return "\n".join(out)
