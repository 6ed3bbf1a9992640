"""The transformers backend: a causal LM loaded by ``kick_hub.models.load_model``, run over prompts with batched
greedy generation, option log-likelihoods, perplexity and next-token distributions (the ``kick_hub.backends.Backend``
protocol).

One ``TransformersEngine`` (``kick_hub.engine.Engine``) wraps a loaded ``(model, tokenizer)``. Prompts are sorted by
length into batches of at most ``batch_size`` whose padding stays within ``PAD_SLACK`` of their own tokens
(``scoring.perplexity.batch_plan``; left padding; on a CPU, passes that only read logits run prompts of 256 tokens
or more, or suffixes that long after a shared prefix, only with ones of their own length,
``scoring.perplexity.solo_from``) and results come back in the caller's order; decoding is greedy, so runs are
deterministic. Tokenizing, the context length and left-padded batching come from ``kick_hub.scoring.perplexity``,
which the perplexity evaluate module ships alone (it may import only torch), so the engine and that module batch and
count tokens the same way.

Stop rule: generation ends where the model's own generation config says, at any id in
``generation_config.eos_token_id`` (an int or a list, as Llama-3-style instruct models write it); only when the
generation config names none does the tokenizer's ``eos_token`` stop it. Batch generation, ``stream`` and the judge's
local backend share this rule, and the generated text ends before the first stop id. Everything else in the model's
generation config that would change greedy decoding (sampling, beams, repetition penalties) is overridden (``GREEDY``).

Context rule: the engine never cuts a prompt. A prompt that does not fit the context (``max_length`` tokens, less the
room its continuation needs) raises ``ValueError``; the tasks fit their prompts first with the rules in
``kick_hub.tasks.fit`` (docs/context.md). Perplexity scores long texts in strided windows, so every token is scored.

Padding rule: padded positions are masked, so the pad id only has to be one the model can embed
(``choose_pad_token_id``): a tokenizer pad token past the embedding matrix is never fed to the model, and scores are
the same at every batch size. A real prompt token the model cannot embed is a ``ValueError`` naming it, raised before
the forward pass (``kick_hub.scoring.perplexity.check_embeddable``).

Shared-prefix rule: prompts of one ``generate`` or ``choice_logprobs`` call that share a long run of leading token ids
(an MCQ subject's header and shots, one passage asked several questions, one system text) are grouped
(``shared_prefix_groups``, on token ids, so the boundary is a token boundary of every member's own tokenization); the
group's shared prefix runs once into a key/value cache (``transformers.DynamicCache``), copied for each batch of the
group's suffixes, and only the suffixes run (padded between prefix and suffix, masked, positions counted from the
mask). Outputs equal the plain path's (greedy texts equal, log-likelihoods to float32 rounding). Where the cache
cannot be shared (``prefix_blocker``: sliding-window or chunked attention reaching the call's sequences, an attention
implementation other than sdpa / eager, a stateful or non-standard cache, a generation config with its own cache
implementation) the call runs plain and the engine logs one line, once. ``share_prefix=False`` runs every call plain.

Non-finite rule: every forward pass's logits are checked with one ``torch.isfinite(...).all()`` (greedy generation
steps, option log-probs, perplexity windows, next-token distributions). An input (prompt or text) with a NaN / inf
logit where it is read is counted in ``checked`` (``LogitCheck``: inputs run, inputs with non-finite logits); the
outputs keep their types (a text, NaN log-probs, NaN perplexity) and the caller decides: ``kick_hub.evaluation`` marks
the task invalid, the judge's local backend raises, ``stream`` raises ``NonFiniteLogits``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import tempfile
import threading
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from kick_hub.backends import LogitCheck, NonFiniteLogits, check_fits, cut_at_stop, until_stop
from kick_hub.models import load_model
from kick_hub.scoring import perplexity as _ppl

__all__ = ["TransformersEngine", "stop_token_ids", "choose_pad_token_id", "until_stop_streamer", "GREEDY",
           "shared_prefix_groups", "prefix_blocker", "MIN_SHARED_PREFIX", "token_ids_shared", "tokenizer_fingerprint"]

log = logging.getLogger(__name__)

# A group must share at least this many leading tokens, and at least half of its shortest member's tokens (the
# copies of the cache and the extra forward pass cost more than a short prefix saves).
MIN_SHARED_PREFIX = 16
# Attention implementations whose masks follow a 2-D padding mask with holes (padding between prefix and suffix).
_SHAREABLE_ATTENTION = ("sdpa", "eager")

# Passed to every ``model.generate`` call, above the model's generation config: plain greedy decoding, one sequence.
GREEDY = {"do_sample": False, "num_beams": 1, "num_return_sequences": 1, "repetition_penalty": 1.0,
          "no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": None, "bad_words_ids": None,
          "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
          "forced_eos_token_id": None, "sequence_bias": None, "exponential_decay_length_penalty": None}


# While ``token_ids_shared`` is open: tokenizer fingerprint -> text -> its token ids (``token_ids``), for the
# ``_MEMO_TOKENIZERS`` tokenizers used last.
_TOKEN_MEMO: dict[str, dict[str, array]] | None = None
_MEMO_TOKENIZERS = 2
_memo_blocks = 0  # blocks opened so far: an engine's fingerprint is taken once per block
_memo_lock = threading.Lock()  # the table's order and membership (a judge or the Space may call from threads)


def tokenizer_fingerprint(tokenizer) -> str | None:
    """sha256 of the tokenizer's class, of the files ``tokenizer.save_pretrained`` writes (vocabulary, merges,
    normalizer and post-processor, added and special tokens, flags such as ``add_bos_token``, the chat template), of
    ``split_special_tokens`` (a flag it does not save) and of the ids it gives a probe text made of its special
    tokens, a BOS and plain words, with and without special tokens added. Two tokenizers with one fingerprint are
    saved alike and agree on the probe; state that neither shows is not seen, so the fingerprint is only compared
    inside a block whose code does not change tokenizers (``token_ids_shared``). None when the tokenizer cannot be
    saved or saves no file (then nothing is shared)."""
    with tempfile.TemporaryDirectory(prefix="kick-tokenizer-") as tmp:
        try:
            tokenizer.save_pretrained(tmp)
            probe = "".join(map(str, getattr(tokenizer, "all_special_tokens", []) or [])) + \
                f"{tokenizer.bos_token or ''} Kelford 12 ü\n  x"
            probed = [tokenizer(text, add_special_tokens=special)["input_ids"]
                      for text in (probe, probe.lstrip(), "x") for special in (True, False)]
        except Exception:  # noqa: BLE001 - any tokenizer that cannot say what it is shares nothing
            return None
        files = sorted(p for p in Path(tmp).rglob("*") if p.is_file())
        if not files:
            return None
        digest = hashlib.sha256(f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}".encode())
        digest.update(repr((getattr(tokenizer, "split_special_tokens", None), probed)).encode())
        for path in files:
            digest.update(path.relative_to(tmp).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
        return digest.hexdigest()


@contextlib.contextmanager
def token_ids_shared() -> Iterator[None]:
    """While in the block, engines whose tokenizers have the same ``tokenizer_fingerprint`` share their texts' token
    ids (``TransformersEngine.token_ids``): a sweep's cells load the dense tokenizer again from every variant's
    directory and tokenize the same prompts, the same fitting candidates (``kick_hub.tasks.fit``) and the same
    perplexity texts. Ids are kept as int arrays for the last two tokenizers and dropped at the end. An engine takes
    its tokenizer's fingerprint once per block, at its first text, so code in the block must not change a tokenizer
    after that (the sweep's cells do not). The block is the process's: engines called from other threads meanwhile
    share its ids too (the table is locked). Nested blocks share the outer one's ids."""
    global _TOKEN_MEMO, _memo_blocks
    if _TOKEN_MEMO is not None:
        yield
        return
    _TOKEN_MEMO, _memo_blocks = {}, _memo_blocks + 1
    try:
        yield
    finally:
        _TOKEN_MEMO = None


class _FiniteCheck:
    """A logits processor (last in greedy decoding's list, which ``GREEDY`` leaves empty, so it sees the raw logits)
    that marks each row with a NaN / inf logit at a step before that row generated a stop id: one
    ``torch.isfinite(...).all(-1)`` per step, on the device and without a host sync (generation stays as fast)."""

    def __init__(self, rows: int, prompt_width: int, stop_ids: Sequence[int], device) -> None:
        self.bad = torch.zeros(rows, dtype=torch.bool, device=device)
        self.finished = torch.zeros(rows, dtype=torch.bool, device=device)
        self.prompt_width = prompt_width
        self.stops = torch.tensor(list(stop_ids) or [-1], device=device)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.prompt_width:  # the last token was generated: a stop ends its row
            self.finished |= torch.isin(input_ids[:, -1], self.stops)
        self.bad |= ~torch.isfinite(scores).all(-1) & ~self.finished
        return scores


def stop_token_ids(model, tokenizer) -> list[int]:
    """The token ids that end a generation: every id of the model's ``generation_config.eos_token_id`` (an int or a
    list), or, only when the generation config names none, the tokenizer's ``eos_token_id``. In first-seen order,
    without repeats; empty when neither names one."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [eos] if isinstance(eos, int) else list(eos or [])
    if not ids and tokenizer.eos_token_id is not None:
        ids = [tokenizer.eos_token_id]
    return list(dict.fromkeys(int(i) for i in ids if i is not None and int(i) >= 0))


def choose_pad_token_id(model, tokenizer, stop_ids: Sequence[int]) -> int:
    """The id that left-pads prompts in a batch and fills finished rows in batch generation (always masked out, so it
    only has to be an id the model can embed): the tokenizer's pad token when the model can embed it (an id below
    the rows of its input embedding, ``kick_hub.scoring.perplexity.embedding_rows``); otherwise the first of the
    generation config's pad, the model config's pad and the tokenizer's unk token that is such an id and not a stop
    id; otherwise the first stop id (pad = eos), else 0. A pad token added to the tokenizer without resizing the
    model (``add_special_tokens({"pad_token": "[PAD]"})``) is thus never fed to it."""
    vocab = _ppl.embedding_rows(model)
    if isinstance(tokenizer.pad_token_id, int) and 0 <= tokenizer.pad_token_id < vocab:
        return tokenizer.pad_token_id
    candidates = [getattr(getattr(model, "generation_config", None), "pad_token_id", None),
                  getattr(model.config, "pad_token_id", None), tokenizer.unk_token_id]
    for cand in candidates:
        if isinstance(cand, int) and 0 <= cand < vocab and cand not in stop_ids:
            return cand
    return next((i for i in stop_ids if 0 <= i < vocab), 0)


def shared_prefix_groups(encoded: Sequence[Sequence[int]], min_prefix: int = MIN_SHARED_PREFIX
                         ) -> tuple[list[tuple[list[int], int]], list[int]]:
    """Prompts (token ids each) grouped by shared leading token ids: ``(groups, rest)``, ``groups`` a list of
    ``(members, prefix_length)`` (member indices in ascending order; every member starts with the same
    ``prefix_length`` ids and has at least one id after them) and ``rest`` the indices that share with none (ascending).

    The prompts are sorted by their ids, so prompts with long common prefixes are neighbours; a group is a run of
    neighbours whose common prefix is at least ``min_prefix`` ids and at least half of the shorter neighbour, and its
    prefix is the run's common prefix (cut so each member keeps one id of its own). Deterministic: the result depends
    only on the ids, not on their order. Pure Python, no model."""
    import os.path

    order = sorted(range(len(encoded)), key=lambda i: (list(encoded[i]), i))
    groups: list[tuple[list[int], int]] = []
    rest: list[int] = []

    def close(run: list[int], prefix: int) -> None:
        prefix = min([prefix] + [len(encoded[i]) - 1 for i in run])
        if len(run) >= 2 and prefix >= max(min_prefix, 1):
            groups.append((sorted(run), prefix))
        else:
            rest.extend(run)

    run: list[int] = order[:1]
    prefix = len(encoded[order[0]]) if order else 0
    for a, b in zip(order, order[1:]):
        shared = len(os.path.commonprefix([list(encoded[a]), list(encoded[b])]))
        if shared >= min_prefix and 2 * shared >= min(len(encoded[a]), len(encoded[b])):
            run.append(b)
            prefix = min(prefix, shared)
        else:
            close(run, prefix)
            run, prefix = [b], len(encoded[b])
    if run:
        close(run, prefix)
    return groups, sorted(rest)


def prefix_blocker(model, width: int) -> str | None:
    """Why ``model`` cannot run prompt suffixes on a copied prefix key/value cache when its sequences reach ``width``
    tokens (prompt plus new tokens), or None when it can: an attention implementation other than sdpa / eager
    (the padding between prefix and suffix needs a mask with holes), sliding-window or chunked attention whose window
    the sequences reach (the window counts cache slots, padding included, so it would cover other tokens than in one
    pass), a stateful (recurrent) model or one without transformers' dynamic cache, an encoder-decoder, or a
    generation config naming its own cache implementation."""
    import inspect

    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    if getattr(model, "_is_stateful", False) or not getattr(model, "_supports_default_dynamic_cache",
                                                             lambda: False)():
        return f"{type(model).__name__} keeps no standard key/value cache"
    if "cache" not in inspect.signature(model.forward).parameters:
        return f"{type(model).__name__}.forward takes no key/value cache"
    impl = getattr(config, "_attn_implementation", None) or "eager"
    if impl not in _SHAREABLE_ATTENTION:
        return f"attention implementation {impl!r} (shared prefixes need one of {list(_SHAREABLE_ATTENTION)})"
    cache_impl = getattr(getattr(model, "generation_config", None), "cache_implementation", None)
    if cache_impl:
        return f"the generation config's cache implementation {cache_impl!r}"
    types = set(getattr(text, "layer_types", None) or [])  # per-layer kinds where the config lists them
    if types:
        windowed = bool(types & {"sliding_attention", "chunked_attention"})
    else:  # one kind for every layer: a window applies unless the config switches it off (Qwen2)
        windowed = getattr(text, "use_sliding_window", True) is not False
    for attr in ("sliding_window", "attention_chunk_size"):
        window = getattr(text, attr, None)
        if isinstance(window, int) and window > 0 and windowed and width >= window:
            return f"{attr.replace('_', ' ')} {window} reached by {width}-token sequences"
    return None


class TransformersEngine:
    """Batched inference over one causal LM (CPU or whatever device the model sits on; inputs go to the device of
    its input embeddings, so a model spread over several devices by accelerate's device map works too): the
    transformers implementation of ``kick_hub.backends.Backend``."""

    def __init__(self, model, tokenizer, batch_size: int = 32, max_length: int | None = None,
                 share_prefix: bool = True) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size: must be positive, got {batch_size}")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.share_prefix = share_prefix  # shared-prefix rule (module docstring); False: every call runs plain
        self._prefix_logged = False  # the fallback line is logged once per engine
        self.stop_token_ids = stop_token_ids(model, tokenizer)
        self.pad_token_id = choose_pad_token_id(model, tokenizer, self.stop_token_ids)
        tokenizer.padding_side = "left"
        self.max_length = _ppl.context_length(model, max_length)
        self.rows = _ppl.embedding_rows(model)  # token ids the model can embed: 0 .. rows - 1
        self.checked = LogitCheck()  # inputs run and those with non-finite logits (module docstring)
        from kick_hub.device import input_device

        self.device = input_device(model)  # the embeddings' device: the first one under a device map
        self._fingerprint: tuple[int, str | None] = (0, None)  # (block, tokenizer's fingerprint); ``_shared_ids``

    @classmethod
    def from_name(cls, name: str, placement=None, **kwargs) -> "TransformersEngine":
        """An engine over ``kick_hub.models.load_model(name, placement)`` (``placement``: a
        ``kick_hub.device.Placement``, None for auto device and dtype); ``kwargs`` go to the constructor. Raises what
        ``load_model`` raises."""
        return cls(*load_model(name, placement), **kwargs)

    def placement(self) -> dict:
        """Where the model runs, for a results file's config: ``device.Resolved.to_dict`` of the loaded model
        (device, dtype, device map, and what was asked), or, for a model loaded elsewhere, its device and dtype."""
        resolved = getattr(self.model, "kick_placement", None)
        if resolved is not None:
            return resolved.to_dict()
        from kick_hub.device import dtype_name

        return {"device": str(self.device), "dtype": dtype_name(self.model.dtype), "device_map": None, "asked": None}

    def generation_settings(self) -> dict:
        """How this engine decodes, for a results file's config: the stop token ids, the pad id and greedy."""
        return {"stop_token_ids": list(self.stop_token_ids), "pad_token_id": self.pad_token_id,
                "do_sample": False}

    def _generate_kwargs(self, max_new_tokens: int, stop: Sequence[str], check: _FiniteCheck) -> dict:
        """``model.generate`` keyword arguments shared by ``generate`` and ``stream``; ``check`` marks the rows
        whose logits were non-finite."""
        from transformers import LogitsProcessorList

        return dict(max_new_tokens=max_new_tokens, **GREEDY, pad_token_id=self.pad_token_id,
                    eos_token_id=list(self.stop_token_ids) or None, stop_strings=list(stop) or None,
                    tokenizer=self.tokenizer if stop else None, logits_processor=LogitsProcessorList([check]))

    # ------------------------------------------------------------ prompts
    def render(self, prompt: str, chat: bool) -> str:
        """Wrap a user prompt in the model's chat template when the task asks for it and the model has one."""
        if chat and self.has_chat_template():
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)
        return prompt

    def has_chat_template(self) -> bool:
        """Whether the tokenizer has a chat template (``render(..., chat=True)`` applies it)."""
        return bool(getattr(self.tokenizer, "chat_template", None))

    def token_ids(self, text: str) -> list[int]:
        """Token ids of an already rendered text, with the tokenizer's special tokens (BOS) unless the text already
        starts with BOS (chat templates that write it themselves). Inside ``token_ids_shared``, a text another engine
        with the same tokenizer already tokenized is not tokenized again (a fresh list each call)."""
        memo = self._shared_ids()
        if memo is None:
            return _ppl.token_ids(self.tokenizer, text)
        ids = memo.get(text)
        if ids is None:
            ids = memo[text] = array("q", _ppl.token_ids(self.tokenizer, text))
        return ids.tolist()

    def _shared_ids(self) -> dict[str, array] | None:
        """This tokenizer's ids in ``_TOKEN_MEMO`` (None outside ``token_ids_shared`` or for a tokenizer without a
        fingerprint); the most recently used tokenizers are kept."""
        table, block = _TOKEN_MEMO, _memo_blocks  # this call's block, even if it closes meanwhile
        if table is None:
            return None
        if self._fingerprint[0] != block:  # once per engine and block
            self._fingerprint = (block, tokenizer_fingerprint(self.tokenizer))
        key = self._fingerprint[1]
        if key is None:
            return None
        with _memo_lock:
            memo = table.pop(key, None)
            memo = table[key] = {} if memo is None else memo  # the last used goes to the end
            while len(table) > _MEMO_TOKENIZERS:
                del table[next(iter(table))]
        return memo

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, without special tokens (a continuation, an option, a reply)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def token_prefixes(self, text: str) -> list[str]:
        """``text`` cut after 0, 1, ..., n of its tokens (no special tokens): character offsets on fast tokenizers,
        so each kept text is a prefix of the original string; decoding the first ``k`` ids otherwise."""
        if getattr(self.tokenizer, "is_fast", False):
            offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            return [""] + [text[:end] for _, end in offsets]
        ids = self.tokenize(text)
        return [""] + [self.tokenizer.decode(ids[:k]) for k in range(1, len(ids) + 1)]

    def count_tokens(self, prompt: str, chat: bool = False) -> int:
        """Tokens the model reads for ``prompt`` (after the chat template when ``chat``), BOS included."""
        return len(self.token_ids(self.render(prompt, chat)))

    def room(self, reserve: int) -> int:
        """Prompt tokens that fit when ``reserve`` tokens (new tokens to generate, or a scored continuation) must fit
        after the prompt in the ``max_length``-token context."""
        if not 0 <= reserve < self.max_length:
            raise ValueError(f"max_new_tokens: must be between 0 and {self.max_length - 1} so that a prompt still fits "
                             f"the model's {self.max_length}-token context, got {reserve}")
        return self.max_length - reserve

    def encode(self, texts: Sequence[str], max_length: int) -> list[list[int]]:
        """Token ids of each text. A text longer than ``max_length`` tokens raises ``ValueError``: the engine never
        cuts a prompt (cutting from the left would silently drop the task header and instructions); callers fit
        their prompts first (``kick_hub.tasks.fit``). So does a token the model cannot embed
        (``scoring.perplexity.check_embeddable``)."""
        out = []
        for i, t in enumerate(texts):
            ids = self.token_ids(t)
            _ppl.check_embeddable(self.tokenizer, [ids], self.rows, f"prompt #{i}")
            check_fits(i, ids, max_length, self.max_length)
            out.append(ids)
        return out

    def _solo_from(self, prefill_only: bool) -> int | None:
        """``batch_plan``'s ``solo_from``: ``scoring.perplexity.solo_from`` of the device for passes that only read
        logits (option log-probs, next-token distributions; perplexity applies it in ``scoring.perplexity``), None
        for generation."""
        return _ppl.solo_from(self.device) if prefill_only else None

    def _batches(self, encoded: list[list[int]], prefill_only: bool):
        """``(indices, ids, mask)`` batches, longest first and padding bounded (``scoring.perplexity.batch_plan``),
        left-padded with the pad id (masked)."""
        return _ppl.left_padded_batches(encoded, self.batch_size, self.pad_token_id, self.device,
                                        self._solo_from(prefill_only))

    # ------------------------------------------------------ shared prefixes
    def _plan(self, encoded: list[list[int]], reserve: int) -> tuple[list[tuple[list[int], int]], list[int]]:
        """``(groups, rest)`` for one call (``shared_prefix_groups``): every prompt in ``rest`` when prefix sharing is
        off or blocked for this model at these widths (``prefix_blocker``; logged once per engine)."""
        everything = ([], list(range(len(encoded))))
        if not self.share_prefix or len(encoded) < 2:
            return everything
        groups, rest = shared_prefix_groups(encoded)
        if not groups:
            return everything
        reason = prefix_blocker(self.model, max(len(e) for e in encoded) + reserve)
        if reason is not None:
            if not self._prefix_logged:
                self._prefix_logged = True
                log.warning("kick: shared-prefix evaluation off for this model (%s): prompts run whole (same "
                            "results, slower)", reason)
            return everything
        return groups, rest

    @torch.inference_mode()
    def _prefix_cache(self, prefix: list[int]):
        """A ``DynamicCache`` (batch 1) holding the keys and values of ``prefix`` (token ids)."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=torch.tensor([prefix], device=self.device), cache=cache, use_cache=True,
                   logits_to_keep=1)
        return cache

    def _planned_batches(self, encoded: list[list[int]], reserve: int, prefill_only: bool):
        """``(count, batches)``: how many batches, and a generator of ``(indices, ids, mask, prefix, cache)`` over
        every prompt once. Plain batches (``prefix`` None, ``cache`` None) hold whole prompts, longest first and
        left-padded; a shared group's batches hold its members' suffixes (longest first, left-padded: the padding
        sits between prefix and suffix), ``prefix`` its ids ``[1, P]`` and ``cache`` a fresh copy of its key/value
        cache repeated for the batch's rows. A group's cache is computed when its first batch is reached and dropped
        after its last, so one group's cache is held at a time."""
        groups, rest = self._plan(encoded, reserve)
        solo = self._solo_from(prefill_only)
        count = len(_ppl.batch_plan([len(encoded[i]) for i in rest], self.batch_size, solo_from=solo)) + sum(
            len(_ppl.batch_plan([len(encoded[i]) - length for i in members], self.batch_size, solo_from=solo))
            for members, length in groups)

        def batches():
            if rest:
                for idx, ids, mask in self._batches([encoded[i] for i in rest], prefill_only):
                    yield [rest[j] for j in idx], ids, mask, None, None
            for members, length in groups:
                prefix = encoded[members[0]][:length]
                cache = self._prefix_cache(prefix)
                prefix_ids = torch.tensor([prefix], device=self.device)
                suffixes = [encoded[i][length:] for i in members]
                for idx, ids, mask in self._batches(suffixes, prefill_only):
                    copied = copy.deepcopy(cache)
                    copied.batch_repeat_interleave(len(idx))
                    yield [members[j] for j in idx], ids, mask, prefix_ids, copied
                del cache
        return count, batches()

    # --------------------------------------------------------- generation
    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, stop: Sequence[str] = (),
                 chat: bool = False, progress: str | None = None) -> list[str]:
        """Greedy continuations (prompt excluded), each ended at the model's stop token ids (``stop_token_ids``) and
        cut at its first stop string, in input order. Each prompt plus ``max_new_tokens`` must fit the context
        (``ValueError`` otherwise). Prompts whose logits were non-finite at a step before their stop are counted in
        ``checked``. Prompts sharing a long prefix run on one copied prefix cache (shared-prefix rule, module
        docstring), with the same texts."""
        from tqdm.auto import tqdm

        texts = [self.render(p, chat) for p in prompts]
        encoded = self.encode(texts, self.room(max_new_tokens))
        outputs: list[str] = [""] * len(texts)
        bad = [False] * len(texts)
        count, batches = self._planned_batches(encoded, max_new_tokens, prefill_only=False)
        for idx, ids, mask, prefix, cache in tqdm(batches, total=count, desc=progress or "generate", unit="batch",
                                                  disable=progress is None):
            extra = {}
            if prefix is not None:  # whole rows (prefix + padded suffix); generate runs only what the cache lacks
                ids = torch.cat([prefix.expand(len(idx), -1), ids], dim=1)
                mask = torch.cat([torch.ones_like(prefix).expand(len(idx), -1), mask], dim=1)
                extra = {"cache": cache}
            check = _FiniteCheck(len(idx), ids.shape[1], self.stop_token_ids, ids.device)
            gen = self.model.generate(input_ids=ids, attention_mask=mask, **extra,
                                      **self._generate_kwargs(max_new_tokens, stop, check))
            for i, flag in zip(idx, check.bad.tolist()):
                bad[i] = flag
            for row, i in enumerate(idx):
                new_ids = until_stop(gen[row, ids.shape[1]:].tolist(), self.stop_token_ids)
                text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
                outputs[i] = cut_at_stop(text, stop)
        self.checked.add(bad)
        return outputs

    def stream(self, prompt: str, max_new_tokens: int = 32, stop: Sequence[str] = (), chat: bool = False):
        """The same greedy continuation as ``generate`` for one prompt, yielded as the text grows token by token
        (``TextIteratorStreamer`` on a worker thread); the last value equals ``generate([prompt], ...)[0]``. An error
        inside ``model.generate`` ends the stream and is raised here; non-finite logits before the stop raise
        ``NonFiniteLogits`` once the stream has ended (the text shown is not the model's answer)."""
        from threading import Thread

        ids = self.encode([self.render(prompt, chat)], self.room(max_new_tokens))[0]
        streamer = until_stop_streamer(self.tokenizer, self.stop_token_ids)
        check = _FiniteCheck(1, len(ids), self.stop_token_ids, self.device)
        kwargs = dict(input_ids=torch.tensor([ids], device=self.device), streamer=streamer,
                      **self._generate_kwargs(max_new_tokens, stop, check))
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as e:  # noqa: BLE001 - raised in the caller's thread below
                errors.append(e)
                streamer.end()

        worker = Thread(target=work, daemon=True)
        worker.start()
        text = ""
        for piece in streamer:
            text += piece
            yield cut_at_stop(text, stop)
        worker.join()
        if errors:
            raise errors[0]
        self.checked.add(check.bad.tolist())
        if bool(check.bad.any()):
            raise NonFiniteLogits(f"model: non-finite (NaN / inf) logits while generating (dtype "
                                  f"{self.model.dtype}); the text is not the model's answer")

    # ----------------------------------------------------- log-likelihood
    @torch.inference_mode()
    def _last_logprobs(self, ids: torch.Tensor, mask: torch.Tensor, prefix: torch.Tensor | None = None,
                       cache=None) -> tuple[torch.Tensor, list[bool]]:
        """Log-probs ``[batch, vocab]`` of the token after each row, and per row whether its logits were non-finite.
        With ``prefix`` (ids ``[1, P]``) and ``cache`` (its keys and values, repeated for the rows), ``ids`` and
        ``mask`` are the rows' suffixes only."""
        extra = {}
        if prefix is not None:
            mask = torch.cat([torch.ones_like(prefix).expand(ids.shape[0], -1), mask], dim=1)
            extra = {"cache": cache, "use_cache": True}
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, mask.shape[1] - ids.shape[1]:]
        # only the last position's logits: a 49 k vocabulary over 2 k-token MMLU prompts would otherwise take GBs
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1,
                            **extra).logits[:, -1, :].float()
        bad = [False] * ids.shape[0]
        if not bool(torch.isfinite(logits).all()):
            bad = (~torch.isfinite(logits).all(-1)).tolist()
        return torch.log_softmax(logits, dim=-1), bad

    def choice_logprobs(self, prompts: Sequence[str], choices: Sequence[str], chat: bool = False,
                        progress: str | None = None) -> list[list[float]]:
        """log P(choice | prompt) for each prompt and each choice. When every choice is one token after the prompt
        (option letters) this is one forward pass per prompt; otherwise each option is scored by its own pass.
        Prompt plus choice must fit the context (``ValueError`` otherwise). A prompt with non-finite logits gets NaN
        log-probs and is counted in ``checked``. In the one-pass case, prompts sharing a long prefix run on one copied
        prefix cache (shared-prefix rule, module docstring), with the same log-probs to float32 rounding."""
        from tqdm.auto import tqdm

        texts = [self.render(p, chat) for p in prompts]
        choice_ids = [self.tokenize(c) for c in choices]
        if not all(len(c) == 1 for c in choice_ids):
            scored = [[self._continuation(t, c) for c in choices] for t in texts]
            self.checked.add([any(b for _, b in row) for row in scored])
            return [[v for v, _ in row] for row in scored]
        _ppl.check_embeddable(self.tokenizer, choice_ids, self.rows, "choice")
        token_ids = torch.tensor([c[0] for c in choice_ids], device=self.device)
        encoded = self.encode(texts, self.room(1))
        out: list[list[float]] = [[] for _ in texts]
        bad = [False] * len(texts)
        count, batches = self._planned_batches(encoded, 1, prefill_only=True)
        for idx, ids, mask, prefix, cache in tqdm(batches, total=count, desc=progress or "score", unit="batch",
                                                  disable=progress is None):
            logprobs, rows_bad = self._last_logprobs(ids, mask, prefix, cache)
            logprobs = logprobs[:, token_ids]
            for row, i in enumerate(idx):
                bad[i] = rows_bad[row]
                out[i] = [float("nan")] * len(choices) if bad[i] else logprobs[row].tolist()
        self.checked.add(bad)
        return out

    @torch.inference_mode()
    def continuation_logprob(self, context: str, continuation: str) -> float:
        """Sum of log P(continuation tokens | context), tokenized as lm-evaluation-harness does (whole string, then
        split at the context's length). Context plus continuation must fit ``max_length`` (``ValueError``
        otherwise; lm-evaluation-harness would cut the context from the left). NaN, counted in ``checked``, when the
        logits that score the continuation are non-finite."""
        value, bad = self._continuation(context, continuation)
        self.checked.add([bad])
        return value

    @torch.inference_mode()
    def _continuation(self, context: str, continuation: str) -> tuple[float, bool]:
        """``continuation_logprob`` (NaN when non-finite) and whether the scoring logits were non-finite."""
        ctx = self.token_ids(context)
        whole = self.encode([context + continuation], self.max_length)[0]
        n_ctx = len(ctx) if whole[: len(ctx)] == ctx else len(ctx) - 1
        ids = torch.tensor([whole], device=self.device)
        logits = self.model(input_ids=ids).logits[0, n_ctx - 1:-1].float()
        if not bool(torch.isfinite(logits).all()):
            return float("nan"), True
        logprobs = torch.log_softmax(logits, dim=-1)
        targets = ids[0, n_ctx:]
        return float(logprobs.gather(-1, targets[:, None]).sum()), False

    @torch.inference_mode()
    def next_token_logprobs(self, texts: Sequence[str], progress: str | None = None) -> list[torch.Tensor]:
        """One float32 CPU tensor ``[T_i, V]`` per text, in input order: row ``t`` is ``log_softmax`` of the logits
        after the text's first ``t + 1`` tokens (``T_i = len(token_ids(text))``, BOS included where the tokenizer
        adds one; the last row predicts past the text), over the model's ``V`` output logits. Texts run
        ``batch_size`` at a time, left-padded and masked (the distributions of one at a time to float32 rounding;
        exactly them at ``batch_size=1``). A text longer than ``max_length`` tokens, with no tokens at all, or with a
        token the model cannot embed raises ``ValueError`` before any forward pass; a text with a NaN / inf logit is
        counted in ``checked`` and its tensor keeps the non-finite values."""
        from tqdm.auto import tqdm

        encoded = self.encode(texts, self.max_length)
        empty = next((i for i, ids in enumerate(encoded) if not ids), None)
        if empty is not None:
            raise ValueError(f"text: #{empty} has no tokens (an empty text and a tokenizer that adds no BOS); there "
                             f"is no position to predict from")
        out: list[torch.Tensor] = [torch.empty(0)] * len(texts)
        bad = [False] * len(texts)
        for idx, ids, mask in tqdm(list(self._batches(encoded, prefill_only=True)), desc=progress or "logprobs",
                                   unit="batch", disable=progress is None):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            for row, i in enumerate(idx):
                own = logits[row, ids.shape[1] - len(encoded[i]):].float()  # the text's positions, padding dropped
                bad[i] = not bool(torch.isfinite(own).all())
                out[i] = torch.log_softmax(own, dim=-1).cpu()
        self.checked.add(bad)
        return out

    # ---------------------------------------------------------- perplexity
    def perplexity(self, texts: Sequence[str], progress: str | None = None,
                   stride: int | None = None) -> dict[str, float | int | list]:
        """Token-level perplexity: exp(total NLL / predicted tokens), each text scored on its own (first token
        conditioned on BOS where the tokenizer adds one).

        A text longer than the context is scored in windows of ``max_length`` tokens that start ``stride`` tokens
        apart (default ``max_length // 2``), each window scoring only the tokens no earlier window scored, so every
        token after the first is scored exactly once with at least ``max_length - stride`` tokens of context (the
        strided evaluation of Hugging Face's "Perplexity of fixed-length models" guide). Nothing is cut. The rule
        lives in ``kick_hub.scoring.perplexity``, which the ``perplexity`` evaluate module shares.

        Returns ``perplexity`` (``inf`` when exp overflows; ``nll`` stays finite), ``nll`` (mean per token),
        ``tokens`` (predicted tokens), ``per_example`` (each text's perplexity), ``per_example_windows`` and
        ``non_finite`` (texts with non-finite logits at a scored position, also counted in ``checked``; with any,
        ``perplexity`` and ``nll`` are NaN). A token the model cannot embed raises ``ValueError`` first.
        """
        encoded = [self.token_ids(t) for t in texts]
        _ppl.check_embeddable(self.tokenizer, encoded, self.rows, "text")
        result = _ppl.perplexity(self.model, encoded, self.max_length, self.batch_size, self.pad_token_id,
                                 stride=stride, progress=progress)
        self.checked.add(result.pop("per_example_non_finite"))
        return result


def until_stop_streamer(tokenizer, stop_ids: Sequence[int]):
    """A ``TextIteratorStreamer`` (prompt and special tokens skipped) that passes on only the generated tokens before
    the first stop token id, so a stream's text ends where ``TransformersEngine.generate``'s does."""
    from transformers import TextIteratorStreamer

    class UntilStopStreamer(TextIteratorStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.stopped = False

        def put(self, value: torch.Tensor) -> None:
            if self.stopped:
                return
            if self.next_tokens_are_prompt:
                super().put(value)
                return
            tokens = value.reshape(-1).tolist()
            kept = until_stop(tokens, stop_ids)
            self.stopped = len(kept) < len(tokens)
            if kept:
                super().put(torch.tensor(kept))

    return UntilStopStreamer()

