"""``kick push``: a compressed variant, its model card and the sweep plots to a Hub model repo, in one commit.

Commits are atomic on the Hub: a failed push leaves the remote repo at its previous commit and never touches the
local variant. huggingface_hub compares each file's hash with the remote one before uploading, so re-running a push
uploads only what changed.
"""

from __future__ import annotations

from pathlib import Path

from kick_hub.hub import HubError, check_org, check_repo_id, hub_errors, token
from kick_hub.variant import load_manifest

PLOTS = ("sparsity.png", "nm_quant.png")


def _operations(variant_dir: Path, card_text: str, plots: dict[str, Path]):
    from huggingface_hub import CommitOperationAdd

    ops = [CommitOperationAdd(path_in_repo=p.relative_to(variant_dir).as_posix(), path_or_fileobj=str(p))
           for p in sorted(variant_dir.rglob("*"))
           if p.is_file() and not any(part.startswith(".") for part in p.relative_to(variant_dir).parts)
           and p.name != "README.md"]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card_text.encode()))
    ops += [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in plots.items()]
    return ops


def push_variant(variant_dir: str | Path, repo_id: str, private: bool = False, run_dir: str | Path | None = None,
                 base_model: str | None = None) -> str:
    """Create ``repo_id`` (if needed) and upload the variant + card in one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    from kick_hub.hub.card import variant_card

    check_repo_id(repo_id)
    variant_dir = Path(variant_dir)
    if not (variant_dir / "config.json").exists():
        raise ValueError(f"variant: {variant_dir} is not a saved model directory (no config.json)")
    manifest = load_manifest(variant_dir)
    if run_dir is not None and not (Path(run_dir) / "results.sqlite").exists():
        raise ValueError(f"run-dir: {run_dir} holds no results.sqlite (run `kick bench --run-dir {run_dir}` first)")
    secret = token()
    plots = {f"plots/{name}": Path(run_dir) / name for name in PLOTS if run_dir and (Path(run_dir) / name).exists()}
    card = variant_card(variant_dir, repo_id, run_dir, plots=list(plots), base_model=base_model)
    safe = (f"The local variant {variant_dir} is untouched and the remote repo stays at its previous commit; re-run "
            f"the same command to retry (files already on the Hub are not uploaded again).")
    api = HfApi()
    with hub_errors(f"push of {variant_dir} to {repo_id}", safe, secret):
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.create_commit(repo_id, _operations(variant_dir, str(card), plots), repo_type="model",
                                 commit_message=f"kick-hub: {manifest['label']} of {manifest['base_model']}")
    return info.commit_url if info is not None else api.repo_info(repo_id).sha


def repo_name(model: str, label: str) -> str:
    """Repo name of a sweep variant: ``<model name>-<label>`` (``world-wanda-50``)."""
    base = Path(model).name if Path(model).exists() else model.split("/")[-1]
    return f"{base}-{label}"


def push_sweep(run_dir: str | Path, org: str, private: bool = False) -> dict[str, str]:
    """Every compressed variant of a sweep's run dir to ``org/<model>-<label>``; label -> commit URL."""
    from kick_hub.bench.store import Store

    check_org(org)
    store = Store(run_dir, None)
    model = store.model
    variants = [v for v in store.variants() if v["label"] != "dense" and v["path"]]
    store.close()
    if not variants:
        raise HubError(f"run-dir: {run_dir} has no compressed variants to push")
    repos = {v["label"]: f"{org}/{repo_name(model, v['label'])}" for v in variants}
    for repo_id in repos.values():
        check_repo_id(repo_id)
    return {v["label"]: push_variant(v["path"], repos[v["label"]], private, run_dir) for v in variants}
