"""``kick publish-space``: the comparison app as a Gradio Space on the Hub.

One commit makes the Space hold exactly (plus ``.gitattributes``; ``hub.push.exact_operations`` deletes any other
file in the same commit):

- ``app.py`` and ``README.md`` from ``kick_hub/space_app/`` (``space/`` at the repository root links there), the
  card's header naming the allowed models (``models``), the results dataset (``datasets``) and the requested
  hardware (``suggested_hardware``);
- ``requirements.txt``: kick-hub's own dependencies and its ``space`` extra, from the installed package's metadata,
  then the kernels the allowed models need to load (``kernel_requirements``: optimum + gptqmodel for GPTQ,
  bitsandbytes for nf4 / bnb-int8, torchao for int8), pinned to the versions their manifests record;
- ``kick_hub/``: the package that runs the command (its files, the world model included; caches and
  ``space_app/`` left out), which ``app.py`` imports, so the Space runs the code that published it.

Then the Space's variables that the command manages (``MANAGED``: KICK_ALLOW, KICK_RESULTS_REPO) are set to what it
says and deleted when it does not say them (the others, such as KICK_DATA or KICK_DEVICE set by hand, are left
alone), and ``--hardware`` is requested (``HfApi.request_space_hardware``). Every input is checked before the token
is read or the network used; no token, secret or local path is written anywhere.
"""

from __future__ import annotations

from pathlib import Path

from kick_hub.hub import check_repo_id, ensure_repo, hub_errors, token

PACKAGE_DIR = Path(__file__).resolve().parents[1]
APP_DIR = PACKAGE_DIR / "space_app"
APP_FILES = ("app.py", "README.md")
DISTRIBUTION = "kick-hub"
MANAGED = {"KICK_ALLOW": "comma-separated Hub model repos visitors may load (kick publish-space --allow)",
           "KICK_RESULTS_REPO": "results dataset repo for the leaderboard (kick publish-space --results-repo)"}


def hardware_flavors() -> list[str]:
    """The Space hardware flavors the Hub knows: huggingface_hub's ``SpaceHardware`` values (``cpu-basic``,
    ``zero-a10g``, ``t4-small`` ...)."""
    from huggingface_hub import SpaceHardware

    return [h.value for h in SpaceHardware]


def check_hardware(hardware: str | None) -> str | None:
    """``hardware`` when it is None or one of ``hardware_flavors``; otherwise a ValueError naming ``hardware`` and
    the allowed values."""
    allowed = hardware_flavors()
    if hardware is not None and hardware not in allowed:
        raise ValueError(f"hardware: must be one of {allowed}, got {hardware!r}")
    return hardware


# ``quantization_config.quant_method`` of a model's config.json -> the kick method whose libraries load it (for an
# allowed model without a kick manifest)
QUANT_METHOD_TO_METHOD = {"gptq": "gptq", "awq": "awq", "torchao": "int8", "bitsandbytes": "bnb-int8"}


def allowed_manifests(allow: list[str]) -> dict[str, dict | None]:
    """Allowed repo id -> what it says about its weights, read from the Hub (endpoint and token in use): its
    ``kick_manifest.json``; for a model kick-hub did not make, ``{"method": M}`` with M the kick method of its
    config's ``quantization_config`` (``QUANT_METHOD_TO_METHOD``; bitsandbytes 4-bit as ``nf4``), ``{}`` for a
    plain model; None when the repo is not found (it cannot be checked). Other Hub failures propagate."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    from kick_hub.io import loads
    from kick_hub.variant import MANIFEST

    out: dict[str, dict | None] = {}
    for repo in allow:
        try:
            try:
                out[repo] = loads(Path(hf_hub_download(repo, MANIFEST)).read_text(encoding="utf-8"))
                continue
            except EntryNotFoundError:
                config = loads(Path(hf_hub_download(repo, "config.json")).read_text(encoding="utf-8"))
        except EntryNotFoundError:
            out[repo] = {}
            continue
        except RepositoryNotFoundError:
            out[repo] = None
            continue
        quant = (config.get("quantization_config") or {}) if isinstance(config, dict) else {}
        method = QUANT_METHOD_TO_METHOD.get(quant.get("quant_method"))
        if method == "bnb-int8" and (quant.get("load_in_4bit") or quant.get("_load_in_4bit")):
            method = "nf4"
        out[repo] = {"method": method} if method else {}
    return out


def kernel_requirements(manifests: dict[str, dict | None]) -> list[str]:
    """The requirement lines that let the Space load every allowed model: each manifest's quantizer libraries
    (``variant.quantizer_libraries``), pinned (``name==version``) where the manifest records the version, in a
    stable order. Raises ValueError naming ``allow`` when two models need different versions of one library (a
    Space installs one)."""
    from kick_hub.variant import quantizer_libraries

    wanted: dict[str, tuple[str | None, str]] = {}
    for repo, manifest in manifests.items():
        for name, version in quantizer_libraries(manifest or {}).items():
            have = wanted.get(name)
            if have is not None and have[0] and version and have[0] != version:
                raise ValueError(f"allow: {have[1]} needs {name}=={have[0]} but {repo} needs {name}=={version}; a "
                                 f"Space installs one version, so allow variants made with the same {name}")
            if have is None or (version and not have[0]):
                wanted[name] = (version, repo)
    return [f"{name}=={version}" if version else name for name, (version, _) in sorted(wanted.items())]


def requirements(kernels: list[str] = ()) -> str:
    """``requirements.txt`` of the Space: the installed kick-hub's dependencies without an extra and those of its
    ``space`` extra (markers dropped), in the metadata's order, one per line, then ``kernels``
    (``kernel_requirements``). Raises ValueError when kick-hub is not installed (``pip install -e .``)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    try:
        declared = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        raise ValueError(f"{DISTRIBUTION} is not installed, so its dependencies are unknown; install it "
                         f"(pip install -e .) and run again") from None
    lines = []
    for text in declared:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": "space"}):
            req.marker = None
            lines.append(str(req))
    return "\n".join(dict.fromkeys([*lines, *kernels])) + "\n"


def package_files(package_dir: str | Path = PACKAGE_DIR) -> dict[str, Path]:
    """path in the Space -> local file of the ``kick_hub`` package: every file under ``package_dir`` (links as
    their targets) except ``__pycache__``, compiled files, hidden files and ``space_app/``, under ``kick_hub/``."""
    root = Path(package_dir)
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (not path.is_file() or rel.parts[0] == APP_DIR.name or path.suffix in (".pyc", ".pyo")
                or any(part.startswith(".") or part == "__pycache__" for part in rel.parts)):
            continue
        out[f"kick_hub/{rel.as_posix()}"] = path
    return out


def space_card(allow: list[str] = (), results_repo: str | None = None, hardware: str | None = None,
               app_dir: str | Path = APP_DIR) -> str:
    """The Space's ``README.md``: ``app_dir``'s card with ``models`` = ``allow``, ``datasets`` = [``results_repo``]
    and ``suggested_hardware`` = ``hardware`` in its header (each left out when empty)."""
    from huggingface_hub import SpaceCard

    card = SpaceCard((Path(app_dir) / "README.md").read_text(encoding="utf-8"))
    card.data.models = list(allow) or None
    card.data.datasets = [results_repo] if results_repo else None
    card.data.suggested_hardware = hardware
    return str(card)


def space_files(allow: list[str] = (), results_repo: str | None = None, hardware: str | None = None,
                app_dir: str | Path = APP_DIR, package_dir: str | Path = PACKAGE_DIR,
                kernels: list[str] = ()) -> dict[str, bytes | Path]:
    """path in the Space -> content (bytes) or local file: everything one ``publish_space`` commit writes
    (``kernels``: the extra requirement lines, ``kernel_requirements``)."""
    app_dir = Path(app_dir)
    missing = [name for name in APP_FILES if not (app_dir / name).is_file()]
    if missing:
        raise ValueError(f"space: {app_dir} lacks {missing}; the Space app is kick_hub/space_app/ of a kick-hub "
                         f"checkout or install")
    files: dict[str, bytes | Path] = {"app.py": app_dir / "app.py",
                                      "README.md": space_card(allow, results_repo, hardware, app_dir).encode(),
                                      "requirements.txt": requirements(kernels).encode()}
    files.update(package_files(package_dir))
    return files


def variables(allow: list[str] = (), results_repo: str | None = None) -> dict[str, str | None]:
    """The ``MANAGED`` Space variables as the command sets them: name -> value, None for one to delete."""
    return {"KICK_ALLOW": ",".join(allow) or None, "KICK_RESULTS_REPO": results_repo or None}


def publish_space(repo_id: str, allow: list[str] = (), results_repo: str | None = None, hardware: str | None = None,
                  private: bool = False) -> dict:
    """Create the Gradio Space ``repo_id`` (if needed), make it hold exactly ``space_files`` in one commit, set its
    ``MANAGED`` variables and request ``hardware``; returns ``{"space": URL, "commit": commit URL, "variables":
    {name: value}, "hardware": the requested flavor or None, "kernels": the requirement lines added for the allowed
    models, "unchecked": allowed repos not found on the Hub, whose needs could not be read}``.

    ``repo_id``, every ``allow`` id, ``results_repo`` and ``hardware`` are checked (ValueError naming the option and
    what is allowed) before the token is read or the network used; a failed Hub call raises ``HubError`` saying
    what stayed as it was. Each allowed model's manifest (or config) is read before the Space is created, and the
    kernels it needs to load are added to ``requirements.txt`` (``kernel_requirements``). Re-running is safe:
    unchanged files are not uploaded again (the commit is skipped when nothing changed) and unchanged variables are
    not set again."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from kick_hub.hub import endpoint
    from kick_hub.hub.push import exact_operations

    check_repo_id(repo_id)
    allow = list(dict.fromkeys(check_repo_id(r, "allow") for r in allow))
    if results_repo is not None:
        check_repo_id(results_repo, "results-repo")
    check_hardware(hardware)
    space_files(allow, results_repo, hardware)  # the app files are there, before the token is read
    wanted = variables(allow, results_repo)
    secret = token()
    with hub_errors("reading the allowed models' manifests", "Nothing was changed.", secret):
        manifests = allowed_manifests(allow)
    kernels = kernel_requirements(manifests)
    files = space_files(allow, results_repo, hardware, kernels=kernels)
    api = HfApi()
    ops = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data if isinstance(data, bytes) else str(data))
           for path, data in files.items()]
    safe = ("Steps before the failed one are done (repo created, files committed, variables set, hardware "
            "requested, in that order) and the rest is as it was; re-run the same command to finish (unchanged "
            "files are not uploaded again).")
    with hub_errors(f"publishing the Space {repo_id}", safe, secret):
        ensure_repo(api, repo_id, "space", private, secret, space_sdk="gradio")
        ops, head = exact_operations(api, repo_id, "space", ops)
        info = api.create_commit(repo_id, ops, repo_type="space", parent_commit=head,
                                 commit_message=f"kick-hub: the comparison Space {repo_id}")
        current = {k: v.value for k, v in api.get_space_variables(repo_id).items()}
        for key, value in wanted.items():
            if value is None and key in current:
                api.delete_space_variable(repo_id, key)
            elif value is not None and current.get(key) != value:
                api.add_space_variable(repo_id, key, value, description=MANAGED[key])
        if hardware is not None:
            api.request_space_hardware(repo_id, hardware)
    return {"space": f"{endpoint()}/spaces/{repo_id}", "commit": info.commit_url,
            "variables": {k: v for k, v in wanted.items() if v is not None}, "hardware": hardware,
            "kernels": kernels, "unchecked": [repo for repo, m in manifests.items() if m is None]}
