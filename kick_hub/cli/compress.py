"""``kick compress`` (one pruned or quantized variant, ``kick_hub.compress``) and ``kick sparsity`` (a variant's
per-layer sparsity against its manifest, ``kick_hub.variant``)."""

from __future__ import annotations

import argparse

from kick_hub.cli.options import (_add_device_options, _add_threads_option, _method_arg, _method_args, _nonneg_int,
                                  _placement, _positive_int, _ratio, _writable_file)


def compress_spec(args: argparse.Namespace):
    """The ``CompressSpec`` of parsed ``kick compress`` options (``--method`` a built-in method, a plugin's name or
    ``package.module:name``; ``--method-arg`` its parameters, typed by the plugin)."""
    from kick_hub.compress import CompressSpec

    return CompressSpec(method=args.method, sparsity=args.sparsity, pattern=args.pattern, bits=args.bits,
                        group_size=args.group_size, desc_act=args.desc_act, sym=not args.asym, damp=args.damp,
                        blocksize=args.blocksize, seed=args.seed, quant_type=getattr(args, "quant_type", None),
                        args=_method_args(args.method_arg))


def cmd_compress(args) -> int:
    """``kick compress``: write one pruned or quantized variant directory (``compress.make_variant``) and print its
    label, sparsity (pruning) or effective bits per weight (quantization, ``variant.storage_summary``), wall time
    (s) and peak RSS. Returns 0; raises ValueError for a spec the method cannot take or
    a bad calibration option."""
    from kick_hub.compress import make_variant
    from kick_hub.compress.pipeline import check_calibration_options
    from kick_hub.device import set_threads

    spec = compress_spec(args)
    # options that this method reads none of are refused here (a sweep gives every cell the sweep's calibration
    # options: there `check_plan` refuses them only when no cell calibrates)
    check_calibration_options([spec], args.calibration, args.nsamples, args.seqlen)
    set_threads(args.threads)
    out = make_variant(args.model, spec, args.output, args.calibration, args.nsamples, args.seqlen,
                       overwrite=args.overwrite, storage=args.storage, placement=_placement(args))
    from kick_hub.variant import load_manifest, storage_summary

    m = load_manifest(out)
    stored = storage_summary(out, m)
    what = (f"sparsity {m['sparsity']:.4f}" if spec.prunes else
            f"{stored['bits_per_weight']:.2f} bits per weight" if stored["bits_per_weight"] else
            f"{m['bits_per_weight']:.2f} bits per weight" if m.get("bits_per_weight") else "quantized")
    print(f"wrote {out}: {m['label']}, {what}, {m['wall_time_s']} s, peak RSS {m['peak_rss_mb']:.0f} MB")
    return 0


def cmd_sparsity(args) -> int:
    """``kick sparsity``: compare a variant's per-layer sparsity with its manifest (``variant.check_sparsity``) and
    print the report. Returns 0 when every layer matches, 1 otherwise; raises ValueError when the variant is not a
    pruned one or has nothing to compare."""
    from kick_hub.variant import check_sparsity, format_sparsity

    rows = check_sparsity(args.variant)  # raises (exit 2) when there is nothing to compare
    print(format_sparsity(rows, args.verbose))
    return 0 if rows and all(r["ok"] for r in rows) else 1


def add_compress(sub: argparse._SubParsersAction) -> None:
    """The ``compress`` command."""
    from kick_hub.compress import GPTQ_BITS, METHODS

    p = sub.add_parser("compress", help="prune or quantize a model into a loadable variant directory")
    p.add_argument("--model", default="world", help="Hub id, local directory, or 'world' (default)")
    p.add_argument("--method", required=True, metavar="METHOD", help=f"one of {', '.join(METHODS)}, an installed "
                   "method plugin's name (entry points of group kick_hub.methods) or package.module:name")
    p.add_argument("--method-arg", type=_method_arg, action="append", metavar="KEY=VALUE", help="a method "
                   "plugin's parameter (repeatable), typed and checked by the plugin")
    p.add_argument("--sparsity", type=_ratio, default=None, help="unstructured ratio in [0, 1)")
    p.add_argument("--pattern", default=None, help="N:M semi-structured pattern: N of every M consecutive weights "
                   "are pruned (2:4 and 4:8 = 50 %% sparsity, 3:4 = 75 %%)")
    p.add_argument("--quant-type", default=None, metavar="TYPE", help="gguf: llama.cpp's quant type, e.g. Q8_0, "
                   "Q6_K, Q5_K_M, Q4_K_M, Q3_K_M, Q2_K, IQ4_XS (docs/gguf.md)")
    p.add_argument("--bits", type=int, default=None, help=f"GPTQ bits, one of {list(GPTQ_BITS)} (awq: 4, the "
                   "default)")
    p.add_argument("--group-size", type=int, default=128, help="GPTQ group size (-1 = per row)")
    p.add_argument("--desc-act", action="store_true", help="GPTQ act-order")
    p.add_argument("--asym", action="store_true", help="GPTQ asymmetric quantization")
    p.add_argument("--damp", type=float, default=0.01, help="Hessian dampening (SparseGPT / GPTQ)")
    p.add_argument("--blocksize", type=_positive_int, default=128, help="SparseGPT columns per block")
    p.add_argument("--calibration", default="world", help="c4 | wikitext2 | world (default) | PATH "
                   "(.txt, or .pt/.safetensors ids [nsamples, seqlen])")
    p.add_argument("--nsamples", type=_positive_int, default=None,
                   help="calibration rows (default: 128; for a .pt/.safetensors file, its rows)")
    p.add_argument("--seqlen", type=_positive_int, default=None,
                   help="calibration tokens per row (default: min(2048, model context); for a .pt/.safetensors "
                        "file, its row length)")
    p.add_argument("--seed", type=_nonneg_int, default=0)
    p.add_argument("--output", type=_writable_file, required=True, help="variant directory to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    _add_threads_option(p)
    p.add_argument("--storage", choices=["dense", "sparse"], default="dense", help="sparse: pruned weights in "
                   "the sparse-bitmask layout (loads after `import kick_hub.formats.sparse_bitmask`)")
    _add_device_options(p, device_map=False)
    p.set_defaults(func=cmd_compress)


def add_sparsity(sub: argparse._SubParsersAction) -> None:
    """The ``sparsity`` command."""
    p = sub.add_parser("sparsity", help="check a variant's per-layer sparsity against its manifest")
    p.add_argument("variant", help="variant directory")
    p.add_argument("--verbose", action="store_true", help="print every layer")
    p.set_defaults(func=cmd_sparsity)
