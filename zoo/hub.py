"""The Hugging Face Hub, through ``huggingface_hub`` (the optional extra ``zoo[hub]``).

``hf://ORG/NAME[@REV]`` resolves to a snapshot folder in the hub's own cache (``HF_HUB_CACHE`` / ``HF_HOME``),
downloaded once; with ``HF_HUB_OFFLINE=1`` only the cache is read. Only an export's own files are fetched
(config.json, model.safetensors, README.md, samples.png, eval.json). ``push`` uploads an export folder with
the token huggingface_hub finds (``HF_TOKEN`` or ``hf auth login``). Every failure is one line.
"""
from __future__ import annotations

from pathlib import Path

from .errors import ZooError

FILES = ["config.json", "model.safetensors", "README.md", "samples.png", "eval.json"]
INSTALL = "pip install 'zoo[hub]' (or pip install huggingface_hub)"


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ZooError(f"hf:// and --push need huggingface_hub, which is not installed: {INSTALL}") from None
    return huggingface_hub


def parse(spec: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REV]`` -> (repo id, revision or None); anything else is a one-line error."""
    repo, sep, rev = spec.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts) or (sep and not rev):
        raise ZooError(f"'hf://{spec}': write hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return repo, rev or None


def snapshot(spec: str) -> Path:
    """The local snapshot folder of ``ORG/NAME[@REV]`` (the hub cache; downloaded when online and missing)."""
    hub = _hub()
    from huggingface_hub import errors
    repo, rev = parse(spec)
    where = f"hf://{spec}"
    try:
        return Path(hub.snapshot_download(repo, revision=rev, allow_patterns=FILES, library_name="zoo"))
    except errors.RevisionNotFoundError:
        raise ZooError(f"{where}: the Hub has no revision '{rev}' of {repo}") from None
    except (errors.RepositoryNotFoundError, errors.GatedRepoError):
        raise ZooError(f"{where}: no such model repository on the Hub (or it is private or gated: log in with "
                       f"`hf auth login` or set HF_TOKEN)") from None
    except errors.LocalEntryNotFoundError:
        from huggingface_hub import constants
        why = "HF_HUB_OFFLINE=1 is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
        raise ZooError(f"{where}: {why} and it is not in the hub cache ({constants.HF_HUB_CACHE}): "
                       f"download it once online, or unset HF_HUB_OFFLINE") from None
    except (errors.HFValidationError, errors.HfHubHTTPError, OSError) as e:
        raise ZooError(f"{where}: {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}") from None


def check_push(repo_id: str) -> str:
    """Before any work: the repo id is ORG/NAME, huggingface_hub is installed and a token is configured."""
    hub = _hub()
    parse(repo_id)
    if "@" in repo_id:
        raise ZooError(f"--push {repo_id}: give ORG/NAME (a revision is not pushed to)")
    token = hub.get_token()
    if not token:
        raise ZooError(f"--push {repo_id}: no Hugging Face token is configured: run `hf auth login` or set HF_TOKEN")
    return token


def push(folder: Path, repo_id: str) -> str:
    """Create ``repo_id`` (if needed) and upload ``folder`` to it; returns the repository's URL."""
    hub = _hub()
    token = check_push(repo_id)
    api = hub.HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="model", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                          commit_message="zoo export")
    except Exception as e:  # noqa: BLE001 - network, auth, quota: all one line naming the repository
        raise ZooError(f"--push {repo_id}: the upload failed: {type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}") from None
    return str(url)
