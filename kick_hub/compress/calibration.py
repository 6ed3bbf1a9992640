"""Calibration token ids: ``c4``, ``wikitext2``, ``world`` or a PATH (text file, ``.pt`` or ``.safetensors``).

Text is cut into ``nsamples`` (default 128) windows of ``seqlen`` tokens; a saved id tensor is cut to
``nsamples x seqlen``, its own shape when they are not given. ``check_ids`` checks ids against the model they
calibrate (vocabulary, context) before any work.

Sampling follows locuslab/wanda ``lib/data.py`` (LLM-KICK: 128 x 2048 from C4, seed 0): for C4, pick random
documents longer than ``seqlen`` and a random window in each; for a single text stream (WikiText-2, the world, a text
file), random windows of the tokenized stream. The ids used are saved beside every variant.
"""

from __future__ import annotations

import functools
import hashlib
import random
from pathlib import Path

import torch

SOURCES = ("c4", "wikitext2", "world")
ID_SUFFIXES = (".pt", ".safetensors")
DEFAULT_NSAMPLES = 128  # LLM-KICK's
DEFAULT_SEQLEN = 2048
C4_FILE = "en/c4-train.00000-of-01024.json.gz"


def _windows(ids: list[int], nsamples: int, seqlen: int, seed: int, source: str) -> torch.Tensor:
    if len(ids) <= seqlen:
        raise ValueError(f"calibration: {source} gives {len(ids)} tokens, fewer than seqlen + 1 = {seqlen + 1}; "
                         f"lower --seqlen or give more text")
    rng = random.Random(seed)
    rows = []
    for _ in range(nsamples):
        i = rng.randint(0, len(ids) - seqlen - 1)
        rows.append(ids[i:i + seqlen])
    return torch.tensor(rows, dtype=torch.long)


def _c4(tokenizer, nsamples: int, seqlen: int, seed: int) -> torch.Tensor:
    from kick_hub.data import hub_dataset

    docs = hub_dataset("allenai/c4", field="calibration", data_files={"train": C4_FILE}, split="train")
    rng = random.Random(seed)
    rows = []
    for _ in range(nsamples):
        for _attempt in range(10000):
            ids = tokenizer(docs[rng.randint(0, len(docs) - 1)]["text"])["input_ids"]
            if len(ids) > seqlen:
                break
        else:
            raise ValueError(f"calibration: no C4 document longer than seqlen {seqlen}")
        i = rng.randint(0, len(ids) - seqlen - 1)
        rows.append(ids[i:i + seqlen])
    return torch.tensor(rows, dtype=torch.long)


@functools.lru_cache(maxsize=2)
def world_text(n_docs: int = 4000, seed: int = 1000) -> str:
    """Text from the world's corpus stream (a seed the training run did not use); made once per process (a pure
    function of its arguments: 0.2 s for the default 1.2 M characters)."""
    import itertools

    from kick_hub.world.corpus import documents
    from kick_hub.world.generate import World

    docs = itertools.islice(documents(World(), seed=seed), n_docs)
    return "\n\n".join("".join(d) if isinstance(d, tuple) else d for d in docs)


def is_id_file(source: str) -> bool:
    """Whether ``source`` names a saved id tensor (``.pt`` / ``.safetensors``), whose shape is the default size."""
    return source not in SOURCES and Path(source).suffix in ID_SUFFIXES


def load_ids(path: Path, nsamples: int | None = None, seqlen: int | None = None) -> torch.Tensor:
    """A saved id tensor [n, L] (``.pt`` or ``.safetensors`` with key ``input_ids``), cut to [nsamples, seqlen];
    ``None`` keeps the file's own size on that axis."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        ids = load_file(path)["input_ids"]
    else:
        ids = torch.load(path, weights_only=True)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32):
        raise ValueError(f"calibration: {path} must hold an integer tensor [nsamples, seqlen]")
    if ids.numel() == 0:
        raise ValueError(f"calibration: {path} holds an empty tensor {tuple(ids.shape)}")
    nsamples = ids.shape[0] if nsamples is None else nsamples
    seqlen = ids.shape[1] if seqlen is None else seqlen
    if ids.shape[0] < nsamples or ids.shape[1] < seqlen:
        raise ValueError(f"calibration: {path} holds {tuple(ids.shape)}, fewer than nsamples x seqlen = "
                         f"{nsamples} x {seqlen}")
    return ids[:nsamples, :seqlen].long()


def calibration_ids(source: str, tokenizer, nsamples: int | None = None, seqlen: int | None = None,
                    seed: int = 0) -> torch.Tensor:
    """[nsamples, seqlen] token ids for ``source``. ``None`` sizes: a saved id tensor's own shape, else
    ``DEFAULT_NSAMPLES`` windows of ``DEFAULT_SEQLEN`` tokens."""
    if (nsamples is not None and nsamples <= 0) or (seqlen is not None and seqlen <= 0):
        raise ValueError(f"nsamples/seqlen: must be positive, got {nsamples} x {seqlen}")
    if is_id_file(source):
        if not Path(source).is_file():
            raise ValueError(f"calibration: must be one of {list(SOURCES)} or an existing file, got {source!r}")
        return load_ids(Path(source), nsamples, seqlen)
    nsamples, seqlen = nsamples or DEFAULT_NSAMPLES, seqlen or DEFAULT_SEQLEN
    if source == "c4":
        return _c4(tokenizer, nsamples, seqlen, seed)
    if source == "wikitext2":
        from kick_hub.data import hub_dataset

        text = "\n\n".join(hub_dataset("wikitext", "wikitext-2-raw-v1", "calibration", split="train")["text"])
        return _windows(tokenized(tokenizer, text), nsamples, seqlen, seed, source)
    if source == "world":
        return _windows(tokenized(tokenizer, world_text()), nsamples, seqlen, seed, source)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"calibration: must be one of {list(SOURCES)} or an existing file, got {source!r}")
    return _windows(tokenized(tokenizer, path.read_text(encoding="utf-8")), nsamples, seqlen, seed, str(path))


_TOKENIZED: dict[tuple[str, str], list[int]] = {}  # (text digest, tokenizer digest) -> ids; see ``tokenized``
_TOKENIZED_MAX = 2  # entries kept (a sweep calibrates every cell on one text with one tokenizer)


def tokenized(tokenizer, text: str) -> list[int]:
    """``tokenizer(text)["input_ids"]``, computed once per process for the same text and the same fast tokenizer
    (keyed by sha256 of the text and of the tokenizer's serialized JSON, so an equal tokenizer loaded again by the
    next sweep cell hits): a sweep's calibrated cells share the work (on the world model 1.1 s a cell). A slow
    tokenizer (no JSON to key on) is run every time. Returns a copy, so a caller may change it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(text)["input_ids"]
    key = (hashlib.sha256(text.encode("utf-8")).hexdigest(),
           hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest())
    if key not in _TOKENIZED:
        while len(_TOKENIZED) >= _TOKENIZED_MAX:
            _TOKENIZED.pop(next(iter(_TOKENIZED)))
        _TOKENIZED[key] = tokenizer(text)["input_ids"]
    return list(_TOKENIZED[key])


def model_limits(model_or_config) -> tuple[int | None, int | None]:
    """(vocabulary size, context length) of a model (its embedding rows) or of a config; ``None`` where unknown."""
    config = getattr(model_or_config, "config", model_or_config)
    vocab = None
    if hasattr(model_or_config, "get_input_embeddings"):
        vocab = getattr(model_or_config.get_input_embeddings(), "num_embeddings", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return vocab or getattr(text, "vocab_size", None), getattr(text, "max_position_embeddings", None)


def check_ids(ids, vocab_size: int | None, context: int | None, source: str = "calibration ids") -> None:
    """Fail before any work when ``ids`` cannot calibrate a model with ``vocab_size`` tokens and ``context``
    positions (``model_limits``): not an integer tensor [nsamples, seqlen], ids outside the vocabulary (negative,
    or >= its size: the model would raise IndexError deep in the first forward pass), or rows longer than the
    context. ``source`` names the ids in the message."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point() or ids.numel() == 0:
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"calibration: {source} must be a non-empty integer tensor [nsamples, seqlen], got {shape}")
    low, high = int(ids.min()), int(ids.max())
    if vocab_size is not None and (low < 0 or high >= vocab_size):
        raise ValueError(f"calibration: {source} holds token ids from {low} to {high}, but the model's vocabulary "
                         f"has {vocab_size} tokens (ids 0 to {vocab_size - 1}); use ids made with this model's "
                         "tokenizer")
    if context and ids.shape[1] > context:
        raise ValueError(f"calibration: {source} rows are {ids.shape[1]} tokens, longer than the model's context "
                         f"({context}); pass --seqlen {context} or less to cut them")


def check_calibration(source: str, model_name: str, nsamples: int | None = None, seqlen: int | None = None) -> None:
    """Check calibration options against ``model_name``'s config (a GGUF file's headers) alone (no weights loaded),
    for runs that would otherwise meet a bad option only at their first calibrated variant: ``seqlen`` within the
    context, a PATH source that exists, and an id file that holds ``nsamples x seqlen`` ids within the vocabulary and
    context."""
    from kick_hub.backends.llamacpp import find_gguf

    gguf = find_gguf(model_name)
    if gguf is not None:  # a GGUF file (requantized by the gguf method): its headers
        from kick_hub.compress.methods.gguf import gguf_limits

        vocab, context = gguf_limits(gguf)
    else:
        from transformers import AutoConfig

        from kick_hub.models import resolve as resolve_model

        vocab, context = model_limits(AutoConfig.from_pretrained(resolve_model(model_name)))
    if seqlen is not None and context and seqlen > context:
        raise ValueError(f"seqlen: {seqlen} exceeds the model's context ({context})")
    if (nsamples is not None and nsamples <= 0) or (seqlen is not None and seqlen <= 0):
        raise ValueError(f"nsamples/seqlen: must be positive, got {nsamples} x {seqlen}")
    if source in SOURCES:
        return
    if not Path(source).is_file():
        raise ValueError(f"calibration: must be one of {list(SOURCES)} or an existing file, got {source!r}")
    if is_id_file(source):
        check_ids(load_ids(Path(source), nsamples, seqlen), vocab, context, source)


def ids_hash(ids: torch.Tensor) -> str:
    """SHA-256 hex digest of calibration token ids ``[nsamples, seqlen]`` as row-major int64 bytes (native byte
    order; the shape itself is not hashed), recorded in the variant manifest. A CUDA tensor raises TypeError."""
    return hashlib.sha256(ids.to(torch.int64).numpy().tobytes()).hexdigest()
