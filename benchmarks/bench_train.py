"""World-model training speed: seconds per step and how full the packed rows are, the numbers behind the recipe's
wall time (``kick world train`` must fit 45 min on 2 cores).

    python benchmarks/bench_train.py [--steps 10]

Each row trains a fresh model from the shipped tokenizer on real packed batches of the corpus (warm-up steps,
including torch.compile's, are not timed). Run it on an idle machine: the step is compute-bound on both cores.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings


def batches(tokenizer, curriculum: str, cfg, open_rows: int, n: int):
    """``n`` training batches of a recipe curriculum's stream packed with ``open_rows``: (batches, row fill,
    s/batch)."""
    from kick_hub.world.corpus import CURRICULA, documents
    from kick_hub.world.generate import World
    from kick_hub.world.train import RECIPE, encode, next_batch, pack

    phase = next(p for p in RECIPE if p.curriculum == curriculum)
    docs = documents(World(), seed=0, curriculum=CURRICULA[curriculum], fresh=True)
    rows = pack((encode(tokenizer, d, phase.prompt_weight) for d in docs), cfg.seq_len, open_rows)
    out, filled, start = [], 0, time.perf_counter()
    for _ in range(n):
        ids, weights, used = next_batch(rows, tokenizer, cfg)
        out.append((ids, weights))
        filled += used
    return out, filled / (n * cfg.batch_size * cfg.seq_len), (time.perf_counter() - start) / n


def seconds_per_step(tokenizer, cfg, data, steps: int) -> float:
    """Seconds per optimizer step of a fresh model of ``cfg`` on ``data``, after three untimed warm-up steps."""
    import torch

    from kick_hub.world.train import build_model, make_loss

    model = build_model(tokenizer, cfg)
    model.train()
    batch_loss = make_loss(model, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

    def step(batch):
        batch_loss(*batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for batch in data[:3]:
        step(batch)
    start = time.perf_counter()
    for batch in data[3:3 + steps]:
        step(batch)
    return (time.perf_counter() - start) / steps


def attention_ms(batch: int, seq_len: int, heads: int, dim: int, repeats: int = 5) -> float:
    """Forward + backward of one layer's causal SDPA in bf16, as training calls it, in milliseconds."""
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.randn(batch, heads, seq_len, dim, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    """Print the tables: row fill per stream, attention cost per head shape, step time eager vs compiled."""
    import torch
    from transformers import AutoTokenizer

    from kick_hub.engine import WORLD_MODEL_DIR
    from kick_hub.world.train import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    tokenizer = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    cfg = TrainConfig()

    print("| stream | open rows | row fill | data s/step |\n|---|---|---|---|")
    data = None
    for curriculum, open_rows in [("facts_read", 1), ("facts_read", 8), ("skills", 1), ("skills", 8)]:
        got, fill, data_s = batches(tokenizer, curriculum, cfg, open_rows, args.steps + 3)
        data = got if (curriculum, open_rows) == ("facts_read", 8) else data
        print(f"| {curriculum} | {open_rows} | {fill:.3f} | {data_s:.3f} |", flush=True)

    print("\n| attention heads x dim | causal SDPA forward + backward per layer |\n|---|---|")
    for heads in (8, 4):
        ms = attention_ms(cfg.batch_size, cfg.seq_len, heads, cfg.hidden_size // heads)
        print(f"| {heads} x {cfg.hidden_size // heads} | {ms:.0f} ms |", flush=True)

    print("\n| forward + loss | heads x dim | s/step | tokens/s |\n|---|---|---|---|")
    for compiled, heads, kv in [(False, 8, 4), (True, 8, 4), (False, 4, 2), (True, 4, 2)]:
        run = TrainConfig(compile=compiled, num_heads=heads, num_kv_heads=kv)
        s = seconds_per_step(tokenizer, run, data, args.steps)
        print(f"| {'torch.compile' if compiled else 'eager'} | {heads} x {run.hidden_size // heads} | {s:.3f} | "
              f"{run.batch_size * run.seq_len / s:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
