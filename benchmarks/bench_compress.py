"""Compression cost: wall time, peak RSS and bytes on disk per method, each run in its own process.

    python benchmarks/bench_compress.py [--models world,random-110m,smollm2] [--methods M,...] [--nsamples 16] [--seqlen 256]
        [--group-size 128]

``random-110m`` is a randomly initialised Llama (768 hidden, 12 layers, ~107 M params, world tokenizer) written to a
temp dir. Peak RSS counts the whole process (Linux VmHWM); "RSS over base" subtracts the process's peak after it
has imported every library the method uses, before the model is loaded, so it is the memory of the work itself
(model copy, statistics, activations); its ratio to the model's fp32 bytes is the memory target (<= 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = [("magnitude", ["--sparsity", "0.5"]), ("magnitude-global", ["--sparsity", "0.5"]),
           ("random", ["--sparsity", "0.5"]), ("wanda", ["--sparsity", "0.5"]), ("sparsegpt", ["--sparsity", "0.5"]),
           ("wanda", ["--pattern", "2:4"]), ("sparsegpt", ["--pattern", "2:4"]), ("gptq", ["--bits", "4"]),
           ("gptq", ["--bits", "8"]), ("int8", []), ("bnb-int8", []), ("nf4", []),
           ("magnitude", ["--sparsity", "0.5", "--storage", "sparse"]),
           ("wanda", ["--pattern", "2:4", "--storage", "sparse"])]

CHILD = """
import importlib, json, sys
from kick_hub.cli import main
from kick_hub.compress.memory import peak_rss_mb
method = sys.argv[sys.argv.index("--method") + 1]
# every library the run will import, so the base holds code and the difference holds the work
for mod in ["kick_hub.engine", "kick_hub.compress.calibration", "kick_hub.compress.blockwise",
            "kick_hub.compress.methods.magnitude", "kick_hub.compress.methods.wanda",
            "kick_hub.compress.methods.sparsegpt", "kick_hub.formats.sparse_bitmask", "datasets", "evaluate", *LIBS.get(method, [])]:
    importlib.import_module(mod)
base = peak_rss_mb()
code = main(sys.argv[1:])
print(json.dumps({"base_rss_mb": base}))
"""

LIBS = {"gptq": ["optimum.gptq", "gptqmodel", "kick_hub.compress.methods.gptq"],
        "int8": ["torchao", "kick_hub.compress.methods.weight_only"],
        "bnb-int8": ["bitsandbytes", "kick_hub.compress.methods.weight_only"],
        "nf4": ["bitsandbytes", "kick_hub.compress.methods.weight_only"]}


def make_random_llama(path: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from kick_hub.engine import WORLD_MODEL_DIR

    tok = AutoTokenizer.from_pretrained(WORLD_MODEL_DIR)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=2048, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=1024,
                         tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.suffix == ".safetensors" and "calibration" not in p.name)


def from_run(run_dir: Path) -> None:
    """The same table from the variants a ``kick bench`` sweep already made (its manifests); peak RSS there is the
    whole sweep process's so far, so only its upper bound on the compression's own memory is printed."""
    variants = sorted(p.parent for p in (run_dir / "variants").glob("*/kick_manifest.json"))
    if not variants:
        raise SystemExit(f"{run_dir} has no variants")
    from kick_hub.bench.store import Store
    from kick_hub.models import resolve

    store = Store(run_dir, None)  # the sweep's model as given locally (manifests name it without local paths)
    base = Path(resolve(store.model))
    store.close()
    model_bytes = dir_bytes(base)
    print(f"\nvariants of {run_dir} (base {base.name}, {model_bytes / 2**20:.0f} MB)\n")
    print("| method | wall s | process peak RSS MB | / model bytes | disk MB | vs dense |\n|---|---|---|---|---|---|")
    for v in variants:
        m = json.loads((v / "kick_manifest.json").read_text())
        disk = dir_bytes(v)
        print(f"| {m['label']} | {m['wall_time_s']:.1f} | {m['peak_rss_mb']:.0f} | "
              f"{m['peak_rss_mb'] * 2**20 / model_bytes:.2f} | {disk / 2**20:.1f} | {disk / model_bytes:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="world,random-110m")
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=256)
    parser.add_argument("--methods", default=None, help="comma-separated subset, e.g. sparsegpt,gptq")
    parser.add_argument("--group-size", type=int, default=128,
                        help="GPTQ group size (must divide every in_features: 64 for SmolLM2's 576)")
    parser.add_argument("--from-run", type=Path, default=None, help="tabulate a kick bench run dir's variants instead")
    args = parser.parse_args()
    if args.from_run:
        return from_run(args.from_run)
    methods = [m for m in METHODS if args.methods is None or m[0] in args.methods.split(",")]
    from kick_hub.engine import resolve_model

    tmp = Path(tempfile.mkdtemp(prefix="kick-bench-"))
    print(f"\n{args.nsamples} calibration samples x {args.seqlen} tokens (world text), {os.cpu_count()} cores\n")
    print("| model | params | method | wall s | peak RSS MB | RSS over base MB | / model bytes | disk MB | vs dense |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models.split(","):
        path = make_random_llama(tmp / name) if name.startswith("random") else Path(resolve_model(name))
        model_bytes = dir_bytes(path)
        params = model_bytes // 4
        for method, extra in methods:
            if method == "gptq":
                extra = [*extra, "--group-size", str(args.group_size)]
            out = tmp / f"{name}-{method}-{'-'.join(extra).replace(':', 'of')}"
            child = f"LIBS = {LIBS!r}\n" + CHILD
            cmd = [sys.executable, "-c", child, "compress", "--model", str(path), "--method", method, *extra,
                   "--nsamples", str(args.nsamples), "--seqlen", str(args.seqlen), "--output", str(out)]
            run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if run.returncode != 0:
                print(f"| {name} | | {method} {' '.join(extra)} | failed: {run.stderr.strip().splitlines()[-1]} |")
                continue
            base = json.loads(run.stdout.strip().splitlines()[-1])["base_rss_mb"]
            m = json.loads((out / "kick_manifest.json").read_text())
            over = m["peak_rss_mb"] - base
            disk = dir_bytes(out)
            label = m["label"] + (" sparse-stored" if m.get("storage") == "sparse" else "")
            print(f"| {name} | {params / 1e6:.1f} M | {label} | {m['wall_time_s']:.1f} | {m['peak_rss_mb']:.0f} | "
                  f"{over:.0f} | {over * 2**20 / model_bytes:.2f} | {disk / 2**20:.1f} | {disk / model_bytes:.2f} |")


if __name__ == "__main__":
    main()
