"""What distribution fidelity costs: dense's stored distributions (time, bytes) and one variant's comparison.

    python benchmarks/bench_fidelity.py [--model world] [--data world] [--limit 100] [--vocabs 49152 151936 262144]

Part 1, the sweep's cost on ``--model``: ``fidelity.measure_reference`` over the perplexity texts the sweep would use
(``--data``, ``--limit``: the default world sweep's 100), the file ``save_reference`` writes, and ``fidelity.measure``
for one variant (the same model: a cell's extra work), against the perplexity task's own run on the same texts.

Part 2, per 1,000 tokens at large vocabularies (random log-distributions, one text of 1,000 positions in chunks of
250 rows as a backend hands them over): the time to reduce dense's rows to the stored top ``fidelity.TOP_K`` plus the
rest mass, the time to compare a variant's rows against them (KL, its upper bound, top-1, delta-p), the bytes on disk,
and what storing the whole distribution would take instead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def sweep_cost(model: str, data_source: str, limit: int) -> None:
    from kick_hub.backends import make_engine
    from kick_hub.scoring import fidelity
    from kick_hub.tasks import perplexity
    from kick_hub.tasks import records as task_records

    records = task_records.load("perplexity", data_source, limit)
    texts = [r["text"] for r in records]
    engine = make_engine(model)
    perplexity.run(engine, records)  # warm-up
    _, ppl_s = timed(lambda: perplexity.run(engine, records))
    ref, ref_s = timed(lambda: fidelity.measure_reference(engine, texts))
    path = Path(tempfile.mkdtemp(prefix="bench-fidelity-")) / "dense.safetensors"
    _, save_s = timed(lambda: fidelity.save_reference(ref, path))
    _, load_s = timed(lambda: fidelity.load_reference(path))
    _, cmp_s = timed(lambda: fidelity.measure(engine, texts, ref))
    size = path.stat().st_size
    print(f"\n`python benchmarks/bench_fidelity.py --model {model} --data {data_source} --limit {limit}`: "
          f"{len(texts)} texts, {len(ref.targets):,} positions, vocabulary {ref.vocab:,} "
          f"({'top ' + str(ref.logprobs.shape[1]) if ref.truncated else 'stored whole'})\n")
    print("| step | seconds | note |")
    print("|---|---|---|")
    print(f"| perplexity task (for scale) | {ppl_s:.2f} | what every cell already runs |")
    print(f"| dense reference (`measure_reference`) | {ref_s:.2f} | once per run |")
    print(f"| save / load the file | {save_s:.2f} / {load_s:.2f} | {size / 2**20:.1f} MiB on disk |")
    print(f"| one variant's comparison (`measure`) | {cmp_s:.2f} | per cell |")


def large_vocab(vocabs: list[int], tokens: int = 1000, chunk: int = 250) -> None:
    import torch

    from kick_hub.scoring import fidelity

    g = torch.Generator().manual_seed(0)
    print(f"\nper {tokens:,} tokens, top {fidelity.TOP_K} stored (random log-distributions, {torch.get_num_threads()} "
          f"threads)\n")
    print("| vocabulary | reduce (dense, s) | compare (variant, s) | file | whole distribution would be |")
    print("|---|---|---|---|---|")
    for vocab in vocabs:
        ids = torch.randint(0, vocab, (tokens + 1,), generator=g).tolist()
        dense = [torch.log_softmax(3 * torch.randn(min(chunk, tokens + 1 - s), vocab, generator=g), -1)
                 for s in range(0, tokens + 1, chunk)]
        variant = [torch.log_softmax(d + 0.3 * torch.randn(d.shape, generator=g), -1) for d in dense]
        dense_all, variant_all = torch.cat(dense), torch.cat(variant)
        ref, reduce_s = timed(lambda: fidelity.reference([dense_all], [ids]))
        _, compare_s = timed(lambda: fidelity.compare(ref, [variant_all], [ids]))
        path = Path(tempfile.mkdtemp(prefix="bench-fidelity-")) / "dense.safetensors"
        stored = fidelity.save_reference(ref, path).stat().st_size  # as a sweep stores it (int32 indices)
        print(f"| {vocab:,} | {reduce_s:.2f} | {compare_s:.2f} | {stored / 2**20:.2f} MiB | "
              f"{tokens * vocab * 4 / 2**20:,.0f} MiB |")
        del dense, variant


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="world")
    p.add_argument("--data", default="world")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--vocabs", type=int, nargs="*", default=[49152, 151936, 262144])
    args = p.parse_args(argv)
    sweep_cost(args.model, args.data, args.limit)
    if args.vocabs:
        large_vocab(args.vocabs)


if __name__ == "__main__":
    main()
