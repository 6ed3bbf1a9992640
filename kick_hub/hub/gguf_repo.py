"""A sweep's GGUF variants pushed as GGUF repos are laid out on the Hub: one model repo ``<org>/<model>-GGUF`` holding
one ``<model>-<QUANT_TYPE>.gguf`` per quant type, each type's public manifest (``manifests/<QUANT_TYPE>.json``), the
calibration ids the importance matrix came from, and a card with the LLM-KICK table per quant type (every task's
score against dense, distribution fidelity) and the importance matrix's provenance.

One commit, exact like every push (``hub.push.exact_operations``): the repo afterwards holds what this push wrote.
Nothing published names a path of this machine (``push.public_manifest``, ``io.public_name``).
"""

from __future__ import annotations

from pathlib import Path

from kick_hub.io import dumps, format_number, loads, public_name

__all__ = ["gguf_variants", "gguf_card", "push_gguf", "repo_name"]


def repo_name(model: str) -> str:
    """``<model name>-GGUF`` (``world-GGUF``), the Hub's naming of GGUF repos."""
    return f"{public_name(model).split('/')[-1].removesuffix('.gguf')}-GGUF"


def gguf_variants(store) -> list[dict]:
    """The store's finished gguf variants (``Store.variants`` rows with a ``gguf`` manifest and a path), with
    ``manifest`` parsed, in quant-type order of ``compress.methods.gguf.QUANT_TYPES``."""
    from kick_hub.compress.methods.gguf import QUANT_TYPES

    out = []
    for v in store.variants():
        if v["method"] == "gguf" and v["manifest"] and v["path"]:
            out.append({**v, "manifest": loads(v["manifest"])})
    order = list(QUANT_TYPES)
    return sorted(out, key=lambda v: order.index(v["manifest"]["quant_type"]))


def gguf_card(run_dir: str | Path, repo_id: str, variants: list[dict]) -> str:
    """The repo's README: front matter (base model, tags, ``library_name: gguf``), the files, the LLM-KICK table per
    quant type (headline score per task and its share of dense) with the distribution-fidelity table, and how the
    importance matrix was made. ``variants``: ``gguf_variants`` rows."""
    from kick_hub import tasks
    from kick_hub.bench import analysis, report
    from kick_hub.bench.store import Store

    store = Store(run_dir, None)
    try:
        rows, dense = analysis.table_data(store)
        meta = store.meta()
        model = public_name(store.model)
    finally:
        store.close()
    by_label = {r["label"]: r for r in rows}
    task_names = list(dense)
    base = model if "/" in (model or "") else None
    front = ["---", "library_name: gguf", "tags:", "- gguf", "- llama.cpp", "- llm-kick", "- kick-hub"]
    if base:
        front += ["base_model:", f"- {base}", "base_model_relation: quantized"]
    front.append("---")
    lines = front + ["", f"# {repo_id.split('/')[-1]}", "",
                     f"GGUF quantizations of `{model}` made with llama.cpp's own quantizer (llama-cpp-python "
                     f"`llama_model_quantize`) by kick-hub, each evaluated with the LLM-KICK tasks in llama.cpp and "
                     f"compared with the dense model on the same examples (data `{public_name(meta.get('data'))}`, "
                     f"{meta.get('limit')} examples per task, greedy decoding).", "",
                     "| file | quant type | bits per weight | tensors falling back | size |",
                     "|---|---|---:|---:|---:|"]
    for v in variants:
        m = v["manifest"]
        size = (Path(v["path"]) / m["gguf_file"]).stat().st_size
        lines.append(f"| `{m['gguf_file']}` | {m['quant_type']} | {m['bits_per_weight']:.2f} | "
                     f"{len(m['fallbacks'])} of {sum(m['tensor_types'].values())} | {size / 2**20:.1f} MiB |")
    header = ["variant"]
    for t in task_names:
        spec = tasks.get(t).SPEC
        header.append(f"{t} ({spec.metric}{', lower is better' if spec.lower_is_better else ''})")
    lines += ["", "## LLM-KICK per quant type", "",
              "Headline score per task; in brackets its share of dense (knowledge tasks first among LLM-KICK's "
              "concerns: perplexity can stay flat while they fall).", "",
              "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
              "| dense | " + " | ".join(format_number(dense[t]) for t in task_names) + " |"]
    fidelity_rows = []
    for v in variants:
        row = by_label.get(v["label"], {})
        cells = []
        for t in task_names:
            value = row.get("abs", {}).get(t)
            share = row.get("rel", {}).get(t)
            cells.append("-" if value is None else f"{format_number(value)} ({format_number(share, '.2f')})"
                         if share is not None else format_number(value))
        lines.append(f"| {v['manifest']['quant_type']} | " + " | ".join(cells) + " |")
        if row.get("fidelity"):
            fidelity_rows.append({"label": v["manifest"]["quant_type"], "fidelity": row["fidelity"]})
    if fidelity_rows:
        head = report.fidelity_header(fidelity_rows)
        lines += ["", "Distribution fidelity against dense on the perplexity texts, as llama.cpp defines it "
                  "(`llama-perplexity --kl-divergence`):", "", "| " + " | ".join(head) + " |",
                  "|" + "---:|" * len(head)]
        lines += ["| " + " | ".join(cells) + " |" for cells in report.fidelity_rows(fidelity_rows)]
    lines += ["", "## Importance matrix", ""]
    made = [v for v in variants if v["manifest"].get("imatrix")]
    if made:
        cal = made[0]["manifest"]["calibration"]
        im = made[0]["manifest"]["imatrix"]
        types = ", ".join(v["manifest"]["quant_type"] for v in made)
        lines += [f"Made with an importance matrix: {types}. The matrix is the mean squared input activation of "
                  f"each input column of every linear layer of the decoder blocks ({im['tensors']} tensors), over {im['tokens']} tokens of kick's calibration ids "
                  f"(source `{public_name(cal['source'])}`, {cal['nsamples']} x {cal['seqlen']}, seed {cal['seed']}, "
                  f"ids sha256 `{cal['ids_sha256']}`: `calibration_ids.safetensors` here), computed with forward "
                  f"hooks in transformers."]
    plain = [v["manifest"]["quant_type"] for v in variants if not v["manifest"].get("imatrix")]
    if plain:
        lines += ["", f"{', '.join(plain)}: no importance matrix (these kernels read none)."]
    source = variants[0]["manifest"]["source"]
    made_from = ("the transformers checkpoint, written as an F32 GGUF" if source["kind"] == "transformers" else
                 f"the GGUF file {source.get('name')} (requantized)")
    lines += ["", f"Source: {made_from}. "
              f"Made with llama-cpp-python {variants[0]['manifest']['quantizer_versions'].get('llama-cpp-python')}; "
              "each type's manifest (`manifests/<TYPE>.json`) records its tensor types and llama.cpp's fallbacks for "
              "rows not divisible by 256.", "",
              "Reproduce one file: `kick compress --model " + (base or model) + " --method gguf --quant-type TYPE "
              "--calibration calibration_ids.safetensors --output DIR`.", ""]
    return "\n".join(lines)


def push_gguf(run_dir: str | Path, repo_id: str, private: bool = False) -> str:
    """Push the sweep's gguf variants (``gguf_variants``) to ``repo_id`` in one exact commit (``gguf_card``); returns
    the commit URL. ValueError when the run dir holds none; HubError (``hub.hub_errors``) when the Hub refuses."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from kick_hub.bench.store import FILENAME, Store
    from kick_hub.hub import check_repo_id, ensure_repo, hub_errors, token
    from kick_hub.hub.push import exact_operations, public_manifest
    from kick_hub.variant import CALIBRATION_FILE

    check_repo_id(repo_id)
    if not (Path(run_dir) / FILENAME).exists():
        raise ValueError(f"run-dir: {run_dir} holds no {FILENAME} (run `kick bench --run-dir {run_dir}` first)")
    store = Store(run_dir, None)
    try:
        variants = gguf_variants(store)
    finally:
        store.close()
    if not variants:
        raise ValueError(f"run-dir: {run_dir} has no gguf variants to push")
    card = gguf_card(run_dir, repo_id, variants)
    ops = []
    for v in variants:
        m, path = v["manifest"], Path(v["path"])
        ops.append(CommitOperationAdd(path_in_repo=m["gguf_file"], path_or_fileobj=str(path / m["gguf_file"])))
        ops.append(CommitOperationAdd(path_in_repo=f"manifests/{m['quant_type']}.json",
                                      path_or_fileobj=(dumps(public_manifest(m), indent=2) + "\n").encode()))
    with_ids = next((Path(v["path"]) / CALIBRATION_FILE for v in variants
                     if (Path(v["path"]) / CALIBRATION_FILE).exists()), None)
    if with_ids is not None:
        ops.append(CommitOperationAdd(path_in_repo=CALIBRATION_FILE, path_or_fileobj=str(with_ids)))
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    secret = token()
    api = HfApi()
    safe = ("The local variants are untouched and the remote repo stays at its previous commit; re-run the same "
            "command to retry (files already on the Hub are not uploaded again).")
    with hub_errors(f"push of the GGUF variants to {repo_id}", safe, secret):
        ensure_repo(api, repo_id, "model", private, secret)
        ops, head = exact_operations(api, repo_id, "model", ops)
        info = api.create_commit(repo_id, ops, repo_type="model", parent_commit=head,
                                 commit_message=f"kick-hub: {len(variants)} GGUF quant types")
    return info.commit_url if info is not None else api.repo_info(repo_id).sha
