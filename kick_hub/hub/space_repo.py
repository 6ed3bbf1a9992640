"""``kick publish-space``: the comparison app as a Gradio Space on the Hub.

One commit makes the Space hold exactly (plus ``.gitattributes``; ``hub.push.exact_operations`` deletes any other
file in the same commit):

- ``app.py`` and ``README.md`` from ``kick_hub/space_app/`` (``space/`` at the repository root links there), the
  card's header naming the allowed models (``models``), the results dataset (``datasets``) and the requested
  hardware (``suggested_hardware``);
- ``requirements.txt``: kick-hub's own dependencies and its ``space`` extra, from the installed package's metadata;
- ``kick_hub/``: the package that runs the command (its files, the world model included; caches and
  ``space_app/`` left out), which ``app.py`` imports, so the Space runs the code that published it.

Then the Space's variables that the command manages (``MANAGED``: KICK_ALLOW, KICK_RESULTS_REPO) are set to what it
says and deleted when it does not say them (the others, such as KICK_DATA or KICK_DEVICE set by hand, are left
alone), and ``--hardware`` is requested (``HfApi.request_space_hardware``). Every input is checked before the token
is read or the network used; no token, secret or local path is written anywhere.
"""

from __future__ import annotations

from pathlib import Path

from kick_hub.hub import check_repo_id, hub_errors, token

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


def requirements() -> str:
    """``requirements.txt`` of the Space: the installed kick-hub's dependencies without an extra and those of its
    ``space`` extra (markers dropped), in the metadata's order, one per line. Raises ValueError when kick-hub is
    not installed (``pip install -e .``)."""
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
    return "\n".join(dict.fromkeys(lines)) + "\n"


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
                app_dir: str | Path = APP_DIR, package_dir: str | Path = PACKAGE_DIR) -> dict[str, bytes | Path]:
    """path in the Space -> content (bytes) or local file: everything one ``publish_space`` commit writes."""
    app_dir = Path(app_dir)
    missing = [name for name in APP_FILES if not (app_dir / name).is_file()]
    if missing:
        raise ValueError(f"space: {app_dir} lacks {missing}; the Space app is kick_hub/space_app/ of a kick-hub "
                         f"checkout or install")
    files: dict[str, bytes | Path] = {"app.py": app_dir / "app.py",
                                      "README.md": space_card(allow, results_repo, hardware, app_dir).encode(),
                                      "requirements.txt": requirements().encode()}
    files.update(package_files(package_dir))
    return files


def variables(allow: list[str] = (), results_repo: str | None = None) -> dict[str, str | None]:
    """The ``MANAGED`` Space variables as the command sets them: name -> value, None for one to delete."""
    return {"KICK_ALLOW": ",".join(allow) or None, "KICK_RESULTS_REPO": results_repo or None}


def publish_space(repo_id: str, allow: list[str] = (), results_repo: str | None = None, hardware: str | None = None,
                  private: bool = False) -> dict:
    """Create the Gradio Space ``repo_id`` (if needed), make it hold exactly ``space_files`` in one commit, set its
    ``MANAGED`` variables and request ``hardware``; returns ``{"space": URL, "commit": commit URL, "variables":
    {name: value}, "hardware": the requested flavor or None}``.

    ``repo_id``, every ``allow`` id, ``results_repo`` and ``hardware`` are checked (ValueError naming the option and
    what is allowed) before the token is read or the network used; a failed Hub call raises ``HubError`` saying
    what stayed as it was. Re-running is safe: unchanged files are not uploaded again (the commit is skipped when
    nothing changed) and unchanged variables are not set again."""
    from huggingface_hub import CommitOperationAdd, HfApi

    from kick_hub.hub import endpoint
    from kick_hub.hub.push import exact_operations

    check_repo_id(repo_id)
    allow = list(dict.fromkeys(check_repo_id(r, "allow") for r in allow))
    if results_repo is not None:
        check_repo_id(results_repo, "results-repo")
    check_hardware(hardware)
    files = space_files(allow, results_repo, hardware)
    wanted = variables(allow, results_repo)
    secret = token()
    api = HfApi()
    ops = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data if isinstance(data, bytes) else str(data))
           for path, data in files.items()]
    safe = ("Steps before the failed one are done (repo created, files committed, variables set, hardware "
            "requested, in that order) and the rest is as it was; re-run the same command to finish (unchanged "
            "files are not uploaded again).")
    with hub_errors(f"publishing the Space {repo_id}", safe, secret):
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
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
            "variables": {k: v for k, v in wanted.items() if v is not None}, "hardware": hardware}
