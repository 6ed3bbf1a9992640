"""The playground on the world model: checkpoints of every format, made by their own libraries, as paired cells of
one sweep beside kick's built-in methods.

    python benchmarks/bench_external.py [--limit 100] [--run-dir DIR]

Makes, in a temporary folder, the checkpoints ``tests/test_external_variants.py`` makes (a kick magnitude 50 %
variant, a 4-bit GPTQ checkpoint made directly with GPTQModel, an int8 compressed-tensors checkpoint, torchao int8
weight-only and bitsandbytes NF4 checkpoints saved by transformers), then runs ``kick bench --methods magnitude wanda
gptq --sparsities 0.5 --patterns --bits 4`` with each checkpoint as ``--variant LABEL=PATH`` (default tasks,
``--limit`` examples per task) and prints the report's Scores and External checkpoints tables. GGUF files are cells
too; they run in llama.cpp and are best paired with a GGUF dense model (docs/gguf.md, tests/test_gguf.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
    os.environ.setdefault(key, value)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' checkpoint makers


def section(markdown: str, title: str) -> str:
    """The table of the report section ``title``."""
    part = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in part.splitlines() if line.startswith("|"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--run-dir", type=Path, default=None)
    args = p.parse_args(argv)
    from kick_hub.cli import main as kick
    from kick_hub.compress import CompressSpec, make_variant
    from tests.test_external_variants import make_compressed_tensors, make_gptqmodel, make_transformers_quantized

    root = Path(tempfile.mkdtemp(prefix="bench-external-"))
    start = time.perf_counter()
    made = {"kick-mag": Path(make_variant("world", CompressSpec("magnitude", sparsity=0.5), root / "kick-mag",
                                          progress=False)),
            "gptqmodel": make_gptqmodel(root / "gptqmodel"),
            "ct-int8": make_compressed_tensors(root / "ct-int8"),
            "torchao": make_transformers_quantized(root / "torchao", "torchao"),
            "bnb-nf4": make_transformers_quantized(root / "bnb-nf4", "bnb")}
    print(f"checkpoints made in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    run_dir = args.run_dir or root / "run"
    argv = ["bench", "--run-dir", str(run_dir), "--methods", "magnitude", "wanda", "gptq", "--sparsities", "0.5",
            "--patterns", "--bits", "4", "--limit", str(args.limit)]
    for label, path in made.items():
        argv += ["--variant", f"{label}={path}"]
    start = time.perf_counter()
    code = kick(argv)
    if code not in (0, None):
        raise SystemExit(f"kick bench exited {code}")
    md = (run_dir / "report.md").read_text()
    print(f"\n`python benchmarks/bench_external.py --limit {args.limit}`: sweep {time.perf_counter() - start:.0f} s\n")
    print(section(md, "Scores"))
    print()
    print(section(md, "External checkpoints"))


if __name__ == "__main__":
    main()
