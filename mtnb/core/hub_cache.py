"""The local Hugging Face cache: what a repository's snapshot holds, and how to write one.

``HubItem`` is one thing read from the Hub: a model repository, or one folder of a dataset
repository (a split of XGLUE's parquet export). ``find_cached(item)`` finds it complete in the
cache without touching the network; ``select_files`` picks, from a repository's listing, the
files the study's jobs read: config, tokenizer files and safetensors weights (shards and their
index), PyTorch pickles only when the repository has no safetensors; other formats
(TensorFlow, Flax, ONNX, Rust) and subfolders never.

The cache is huggingface_hub's own layout (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``):

    <cache>/<models|datasets>--<org>--<name>/
        refs/<revision>             the commit hash the revision points at (a revision such as
                                    refs/convert/parquet gives the file refs/refs/convert/parquet)
        blobs/<hash>                the files' contents
        snapshots/<commit>/<path>   each file of the commit, a link to its blob

``cache_put`` writes a file into that layout (the rehearsal's cache and the tests' stand-in
Hub use it).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from huggingface_hub import constants, snapshot_download, try_to_load_from_cache
from huggingface_hub.errors import LocalEntryNotFoundError

from mtnb.core.files import write_bytes

# the top-level files of a model repository that load_encoder reads besides the weights
MODEL_FILE_PATTERNS = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                       "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "*.model")

SAFETENSORS_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")

PICKLE_PATTERNS = ("pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class HubItem:
    """One thing a grid reads from the Hub: a model repository, or one split folder of a dataset
    export. ``label`` names it in messages (``model mbart (facebook/mbart-large-50)``,
    ``XGLUE ner validation.de``); ``folder`` is the split's folder inside the repository
    (datasets only)."""

    kind: str            # model | dataset
    label: str
    repo_id: str
    revision: str = "main"
    folder: str | None = None

    @property
    def repo_type(self) -> str:
        return "model" if self.kind == "model" else "dataset"


@dataclass(frozen=True)
class RemoteFile:
    """A file of a Hub repository: its path in the repository and its size in bytes."""

    path: str
    size: int


def download_command(item: HubItem) -> str:
    """The ``hf download`` command that fetches ``item`` alone (for messages)."""
    if item.kind == "model":
        return f"hf download {item.repo_id} --include '*.json' '*.safetensors' '*.model' '*.txt'"
    return (f"hf download {item.repo_id} --repo-type dataset --revision {item.revision} "
            f"--include '{item.folder}/*.parquet'")


def snapshot_folder(item: HubItem, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder of ``item``'s repository at its revision, or None; reads the
    cache only (``local_files_only``), never the network."""
    try:
        return Path(snapshot_download(item.repo_id, repo_type=item.repo_type, revision=item.revision,
                                      cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def lacking(item: HubItem, folder: Path) -> list[str]:
    """What the snapshot ``folder`` lacks of what ``item``'s jobs read (empty: complete)."""
    if item.kind == "dataset":
        return [] if any((folder / item.folder).glob("*.parquet")) else [f"{item.folder}/*.parquet"]
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files")
    index = next((folder / n for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
                  if (folder / n).is_file()), None)
    if index is not None:
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing += [s for s in shards if not (folder / s).is_file()]
    elif not any((folder / n).is_file() for n in ("model.safetensors", "pytorch_model.bin")):
        missing.append("weights (model.safetensors)")
    return missing


def find_cached(item: HubItem, cache_dir: str | Path | None = None) -> Path | None:
    """The snapshot folder holding everything ``item``'s jobs read, or None (offline only)."""
    folder = snapshot_folder(item, cache_dir)
    return folder if folder is not None and not lacking(item, folder) else None


def describe(items: list[HubItem]) -> str:
    """Items as one compact phrase: models by label, XGLUE splits grouped by task."""
    models = [i.label.removeprefix("model ") for i in items if i.kind == "model"]
    by_task: dict[str, list[str]] = {}
    for item in items:
        if item.kind == "dataset":
            task, split = item.folder.split("/", 1)
            by_task.setdefault(task, []).append(split)
    parts = []
    if models:
        parts.append(f"{len(models)} model(s): {', '.join(models)}")
    if by_task:
        splits = "; ".join(f"{task} {', '.join(s)}" for task, s in by_task.items())
        repos = ", ".join(dict.fromkeys(i.repo_id for i in items if i.kind == "dataset"))
        parts.append(f"{sum(map(len, by_task.values()))} XGLUE split(s) of {repos}'s parquet export: {splits}")
    return "; and ".join(parts)


def cache_location(cache_dir: str | Path | None = None) -> str:
    """The Hugging Face cache folder in use (for messages)."""
    return str(cache_dir or constants.HF_HUB_CACHE)


def select_files(item: HubItem, listing: list[RemoteFile]) -> list[RemoteFile]:
    """The files of ``listing`` that ``item``'s jobs read (see the module docstring)."""
    if item.kind == "dataset":
        return [f for f in listing if f.path.startswith(item.folder + "/") and f.path.endswith(".parquet")]
    top = [f for f in listing if "/" not in f.path]
    weights = [f for f in top if any(fnmatch(f.path, p) for p in SAFETENSORS_PATTERNS)]
    if not any(f.path.endswith(".safetensors") for f in weights):
        weights = [f for f in top if any(fnmatch(f.path, p) for p in PICKLE_PATTERNS)]
    other = [f for f in top if any(fnmatch(f.path, p) for p in MODEL_FILE_PATTERNS)]
    chosen = {f.path: f for f in other + weights}
    return sorted(chosen.values(), key=lambda f: f.path)


def cached_file(item: HubItem, path: str, cache_dir: str | Path | None = None) -> bool:
    """Whether ``path`` of ``item``'s repository is complete in the cache."""
    found = try_to_load_from_cache(item.repo_id, path, cache_dir=cache_dir, revision=item.revision,
                                   repo_type=item.repo_type)
    return isinstance(found, str)


def human_size(n: int) -> str:
    """Bytes as B, kB, MB or GB (powers of 1000, as the Hub shows them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def repo_storage(cache_dir: str | Path, repo_type: str, repo_id: str) -> Path:
    """``<cache>/<repo_type>s--<org>--<name>``: a repository's folder in the cache."""
    return Path(cache_dir) / "--".join([f"{repo_type}s", *repo_id.split("/")])


def commit_of(repo_id: str, revision: str) -> str:
    """A stand-in commit hash (40 hex digits) for a repository built locally."""
    return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()


def cache_put(cache_dir: str | Path, repo_type: str, repo_id: str, revision: str, path: str, data: bytes) -> Path:
    """Write ``data`` as file ``path`` of repository ``repo_id`` at ``revision`` into the cache's
    layout (blob, snapshot link, ref; see the module docstring); returns the snapshot path."""
    storage = repo_storage(cache_dir, repo_type, repo_id)
    commit = commit_of(repo_id, revision)
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.is_file():
        write_bytes(blob, data)
    link = storage / "snapshots" / commit / path
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
    return link


def cache_put_folder(cache_dir: str | Path, repo_type: str, repo_id: str, revision: str, folder: Path,
                     prefix: str = "") -> list[str]:
    """Put every file under ``folder`` into the cache as ``prefix + its relative path``; returns
    the paths written."""
    written = []
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        path = prefix + file.relative_to(folder).as_posix()
        cache_put(cache_dir, repo_type, repo_id, revision, path, file.read_bytes())
        written.append(path)
    return written
