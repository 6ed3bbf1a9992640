"""Calibration token ids: ``c4``, ``wikitext2``, ``world`` or a PATH (text file, ``.pt`` or ``.safetensors``).

Sampling follows locuslab/wanda ``lib/data.py`` (LLM-KICK: 128 x 2048 from C4, seed 0): for C4, pick random
documents longer than ``seqlen`` and a random window in each; for a single text stream (WikiText-2, the world, a text
file), random windows of the tokenized stream. The ids used are saved beside every variant.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import torch

SOURCES = ("c4", "wikitext2", "world")
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
    import datasets

    docs = datasets.load_dataset("allenai/c4", data_files={"train": C4_FILE}, split="train")
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


def world_text(n_docs: int = 4000, seed: int = 1000) -> str:
    """Text from the world's corpus stream (a seed the training run did not use)."""
    import itertools

    from kick_hub.world.corpus import documents
    from kick_hub.world.generate import World

    docs = itertools.islice(documents(World(), seed=seed), n_docs)
    return "\n\n".join("".join(d) if isinstance(d, tuple) else d for d in docs)


def load_ids(path: Path, nsamples: int, seqlen: int) -> torch.Tensor:
    """A saved id tensor [n, L] (``.pt`` or ``.safetensors`` with key ``input_ids``), cut to [nsamples, seqlen]."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        ids = load_file(path)["input_ids"]
    else:
        ids = torch.load(path, weights_only=True)
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32):
        raise ValueError(f"calibration: {path} must hold an integer tensor [nsamples, seqlen]")
    if ids.shape[0] < nsamples or ids.shape[1] < seqlen:
        raise ValueError(f"calibration: {path} holds {tuple(ids.shape)}, fewer than nsamples x seqlen = "
                         f"{nsamples} x {seqlen}")
    return ids[:nsamples, :seqlen].long()


def calibration_ids(source: str, tokenizer, nsamples: int = 128, seqlen: int = 2048, seed: int = 0) -> torch.Tensor:
    """[nsamples, seqlen] token ids for ``source``."""
    if nsamples <= 0 or seqlen <= 0:
        raise ValueError(f"nsamples/seqlen: must be positive, got {nsamples} x {seqlen}")
    if source == "c4":
        return _c4(tokenizer, nsamples, seqlen, seed)
    if source == "wikitext2":
        import datasets

        text = "\n\n".join(datasets.load_dataset("wikitext", "wikitext-2-raw-v1", split="train")["text"])
        return _windows(tokenizer(text)["input_ids"], nsamples, seqlen, seed, source)
    if source == "world":
        return _windows(tokenizer(world_text())["input_ids"], nsamples, seqlen, seed, source)
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"calibration: must be one of {list(SOURCES)} or an existing file, got {source!r}")
    if path.suffix in (".pt", ".safetensors"):
        return load_ids(path, nsamples, seqlen)
    return _windows(tokenizer(path.read_text(encoding="utf-8"))["input_ids"], nsamples, seqlen, seed, str(path))


def ids_hash(ids: torch.Tensor) -> str:
    return hashlib.sha256(ids.to(torch.int64).numpy().tobytes()).hexdigest()
