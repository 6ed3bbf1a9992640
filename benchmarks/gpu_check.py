"""kick-hub on a CUDA GPU against the CPU: one prepared run (about 5-8 min on one H200).

    python benchmarks/gpu_check.py [--models world,smollm2] [--limit 64] [--nsamples 16] [--seqlen 256]
        [--json PATH]

For each model (``world``: the shipped world model; ``smollm2``: SmolLM2-135M-Instruct, kick_hub.models, skipped
with a note when its wheel is not installed):

- dense evaluation on ``cuda`` vs ``cpu``, both float32: greedy continuations of the world's factoid questions
  (identical, or the number that differ and the first difference shown) and MCQ option log-likelihoods (max |diff|,
  expected below 1e-3, and the chosen option's agreement);
- Wanda and SparseGPT at 50 % and 2:4 with the model in CPU memory and each block offloaded to the GPU
  (``compress(..., device="cuda:0")``) vs in place on the CPU: mask agreement (share of equal mask entries, and layers
  whose masks are identical) and max |diff| of the kept weights;
- GPTQ 4-bit and AWQ 4-bit on cuda (``make_variant`` with ``--device cuda``), then the variant's perplexity on a few
  world texts on cuda;

then prints one table of wall times and peak GPU memory (``torch.cuda.max_memory_allocated``, reset before each
step). Without CUDA it says so and exits 2. Nothing here is a test: tests never need a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROWS: list[dict] = []


def step(model: str, what: str, fn):
    """Run ``fn()`` timed, with the GPU's peak memory reset before and read after; record a table row. An exception
    is recorded as the row's note (the run goes on)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        note = fn()
    except Exception as e:  # noqa: BLE001 - a failed step is reported, the others still run
        traceback.print_exc()
        note = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    torch.cuda.synchronize()
    row = {"model": model, "step": what, "wall_s": round(time.perf_counter() - start, 2),
           "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1), "result": note or ""}
    ROWS.append(row)
    print(f"[{row['model']}] {row['step']}: {row['wall_s']} s, {row['peak_gpu_mib']} MiB GPU - {row['result']}",
          flush=True)
    return row


def prompts(limit: int) -> tuple[list[str], list[str]]:
    """Factoid questions and MCQ prompts (with option letters) from the world's eval data."""
    from kick_hub.tasks import records

    qa = [f"Question: {r['question']}\nAnswer:" for r in records.load("factoid-qa", "world", limit)]
    mcq = []
    for r in records.load("mcq-reasoning", "world", limit):
        opts = "\n".join(f"{letter}. {o}" for letter, o in zip("ABCD", r["options"]))
        mcq.append(f"{r['question']}\n{opts}\nAnswer:")
    return qa, mcq


def dense(model: str, limit: int) -> None:
    from kick_hub.device import CPU, Placement
    from kick_hub.engine import Engine

    qa, mcq = prompts(limit)
    out: dict = {}

    def run(where: str, placement):
        def go():
            engine = Engine.from_name(model, placement=placement, batch_size=16)
            out[where] = (engine.generate(qa, 16), engine.choice_logprobs(mcq, [" A", " B", " C", " D"]))
            return f"{where} {engine.placement()['device']} {engine.placement()['dtype']}"
        return go

    step(model, "dense eval cpu fp32", run("cpu", CPU))
    step(model, "dense eval cuda fp32", run("cuda", Placement(device="cuda", dtype="float32")))
    step(model, "dense eval cuda auto dtype", run("cuda-auto", Placement(device="cuda")))
    if "cpu" in out and "cuda" in out:
        (g_cpu, l_cpu), (g_gpu, l_gpu) = out["cpu"], out["cuda"]
        differ = [i for i, (a, b) in enumerate(zip(g_cpu, g_gpu)) if a != b]
        diff = max(abs(a - b) for ra, rb in zip(l_cpu, l_gpu) for a, b in zip(ra, rb))
        agree = sum(max(range(4), key=ra.__getitem__) == max(range(4), key=rb.__getitem__)
                    for ra, rb in zip(l_cpu, l_gpu))
        first = f"; first: #{differ[0]} cpu {g_cpu[differ[0]]!r} vs cuda {g_gpu[differ[0]]!r}" if differ else ""
        ROWS.append({"model": model, "step": "dense cuda vs cpu (fp32)", "wall_s": "", "peak_gpu_mib": "",
                     "result": f"greedy: {len(qa) - len(differ)}/{len(qa)} identical{first}; MCQ log-lik max |diff| "
                               f"{diff:.2e} ({'<' if diff < 1e-3 else '>='} 1e-3), argmax agree {agree}/{len(mcq)}"})
        print(ROWS[-1]["result"], flush=True)


def masks(model: str, nsamples: int, seqlen: int) -> None:
    from kick_hub.compress import CompressSpec, compress
    from kick_hub.compress.blockwise import prunable_layers
    from kick_hub.compress.calibration import calibration_ids
    from kick_hub.device import CPU
    from kick_hub.engine import load_model

    _, tok = load_model(model, CPU)
    ids = calibration_ids("world", tok, nsamples, seqlen, 0)
    for spec in (CompressSpec("wanda", sparsity=0.5), CompressSpec("wanda", pattern="2:4"),
                 CompressSpec("sparsegpt", sparsity=0.5), CompressSpec("sparsegpt", pattern="2:4")):
        pruned: dict = {}

        def run(where: str):
            def go():
                m, _ = load_model(model, CPU, purpose="compress")
                compress(m, spec, ids, progress=False, device=None if where == "cpu" else "cuda:0")
                pruned[where] = {n: lin.weight.detach().clone() for n, lin in prunable_layers(m).items()}
                return f"{spec.label} on {where} (model in CPU memory)"
            return go

        step(model, f"{spec.label} cpu in place", run("cpu"))
        step(model, f"{spec.label} cuda block offload", run("cuda"))
        if len(pruned) == 2:
            a, b = pruned["cpu"], pruned["cuda"]
            equal = sum(int(((a[n] == 0) == (b[n] == 0)).sum()) for n in a)
            total = sum(a[n].numel() for n in a)
            same_layers = sum(torch.equal(a[n] == 0, b[n] == 0) for n in a)
            kept = max(float((a[n] - b[n]).abs().max()) for n in a)
            ROWS.append({"model": model, "step": f"{spec.label} cuda vs cpu", "wall_s": "", "peak_gpu_mib": "",
                         "result": f"mask agreement {equal / total:.6f} ({total - equal} of {total} differ), "
                                   f"{same_layers}/{len(a)} layers identical, weights max |diff| {kept:.2e}"})
            print(ROWS[-1]["result"], flush=True)


def quantized(model: str, nsamples: int, seqlen: int, tmp: Path) -> None:
    from kick_hub.compress import CompressSpec, make_variant
    from kick_hub.device import Placement
    from kick_hub.engine import Engine
    from kick_hub.variant import load_manifest

    from kick_hub.tasks import records

    texts = [r["text"] for r in records.load("perplexity", "world", 8)]
    for spec in (CompressSpec("gptq", bits=4), CompressSpec("awq", bits=4)):
        out = tmp / f"{model}-{spec.label}"

        def build():
            make_variant(model, spec, out, "world", nsamples, seqlen, overwrite=True, progress=False,
                         placement=Placement(device="cuda"))
            m = load_manifest(out)
            return f"variant written; manifest placement {m['placement']['device']} {m['placement']['dtype']}, " \
                   f"compute_device {m['compute_device']}"

        def score():
            engine = Engine.from_name(str(out), placement=Placement(device="cuda"), batch_size=8)
            return f"perplexity {engine.perplexity(texts)['perplexity']:.3f} on {len(texts)} world texts"

        if step(model, f"{spec.label} make_variant cuda", build)["result"].startswith("FAILED"):
            continue
        step(model, f"{spec.label} evaluate cuda", score)


def table(rows: list[dict]) -> str:
    """A Markdown table of the rows."""
    lines = ["| model | step | wall (s) | peak GPU (MiB) | result |", "|---|---|---:|---:|---|"]
    lines += [f"| {r['model']} | {r['step']} | {r['wall_s']} | {r['peak_gpu_mib']} | {r['result']} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="world,smollm2")
    parser.add_argument("--limit", type=int, default=64, help="prompts per dense comparison")
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False, torch "
              f"{torch.__version__}); run this script on a CUDA machine", file=sys.stderr)
        return 2
    from kick_hub.engine import set_threads

    set_threads()
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            if model == "smollm2":
                try:
                    from kick_hub.models import smollm2_dir

                    smollm2_dir()
                except (ImportError, ValueError) as e:
                    ROWS.append({"model": model, "step": "skipped", "wall_s": "", "peak_gpu_mib": "",
                                 "result": str(e)})
                    continue
            dense(model, args.limit)
            masks(model, args.nsamples, args.seqlen)
            quantized(model, args.nsamples, args.seqlen, Path(tmp))
    print("\n" + table(ROWS))
    if args.json:
        Path(args.json).write_text(json.dumps({"gpu": torch.cuda.get_device_name(0), "rows": ROWS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
