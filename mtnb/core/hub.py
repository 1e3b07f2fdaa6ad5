"""What a grid reads from the Hugging Face Hub: listed, found offline, fetched.

A grid reads two kinds of Hub repositories:

- **models**: every registry entry the grid uses (models, cka.models, svd base and models) whose
  source is a Hub id (``org/name``), at revision ``main``. What ``load_encoder`` reads: the
  top-level ``config.json``, the tokenizer files (``tokenizer.json``, ``tokenizer_config.json``,
  ``special_tokens_map.json``, ``sentencepiece.bpe.model``, ``vocab.txt``, ...) and the weights
  in safetensors (``model.safetensors``, or its shards and their index); PyTorch pickles only
  when the repository has no safetensors. Other formats (TensorFlow, Flax, ONNX, Rust) and
  subfolders are never fetched.
- **datasets**: XGLUE's parquet export (``microsoft/xglue``, revision ``refs/convert/parquet``),
  one folder ``{task}/{split}/`` per split the grid's jobs read: the English train and
  validation splits of each XGLUE task (fine-tuning and model selection), the zero-shot splits
  in each of the task's languages, and XNLI's (or NC's) test split in each CKA language when CKA
  samples come from there.

``hub_items(grid)`` lists them; ``find_cached(item)`` finds one in the local Hugging Face cache
without touching the network; ``preflight(grid)`` refuses, in one message, a grid whose items are
not all there; ``fetch(grid)`` (``mtnb fetch GRID``) downloads what is missing, through a client
(``HubClient``; tests pass a local stand-in), then loads everything offline.

The cache is huggingface_hub's own layout (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``):

    <cache>/<models|datasets>--<org>--<name>/
        refs/<revision>             the commit hash the revision points at (a revision such as
                                    refs/convert/parquet gives the file refs/refs/convert/parquet)
        blobs/<hash>                the files' contents
        snapshots/<commit>/<path>   each file of the commit, a link to its blob

``cache_put`` writes a file into that layout (the rehearsal's cache and the test stand-in use it).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from mtnb.core.errors import MtnbError

XGLUE_REPO = "microsoft/xglue"
PARQUET_REVISION = "refs/convert/parquet"
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


def xglue_item(task: str, split_name: str, repo_id: str = XGLUE_REPO) -> HubItem:
    """The export folder ``{task}/{split_name}`` (``train``, ``validation.de``, ...) of XGLUE's
    parquet export as a HubItem."""
    return HubItem("dataset", f"XGLUE {task} {split_name}", repo_id, PARQUET_REVISION, f"{task}/{split_name}")


def download_command(item: HubItem) -> str:
    """The ``hf download`` command that fetches ``item`` alone (for messages)."""
    if item.kind == "model":
        return f"hf download {item.repo_id} --include '*.json' '*.safetensors' '*.model' '*.txt'"
    return (f"hf download {item.repo_id} --repo-type dataset --revision {item.revision} "
            f"--include '{item.folder}/*.parquet'")


# --------------------------------------------------------------------------------------------
# What a grid reads
# --------------------------------------------------------------------------------------------

def grid_models(grid) -> list[str]:
    """The registry names a grid's jobs load, in order of first mention: models, cka.models,
    then each SVD job's base and models."""
    names = list(grid.models) + list(grid.sections.get("cka", {}).get("models", []))
    for section in grid.sections.get("svd", []):
        names += [section["base"], *section["models"]]
    return list(dict.fromkeys(names))


def xglue_splits(grid) -> list[tuple[str, str, str]]:
    """The (task, language, split) of XGLUE's records the grid's jobs read from the Hub export:
    empty when the grid reads a local release (``xglue_dir``) instead."""
    from mtnb.data.tasks import load_tasks

    if grid.sections["finetune"].get("xglue_dir") or grid.sections.get("cka", {}).get("xglue_dir"):
        return []
    tasks = load_tasks()
    wanted: list[tuple[str, str, str]] = []
    zeroshot = grid.sections["zeroshot"]
    for task in grid.tasks:
        if tasks[task].source != "xglue":
            continue
        wanted += [(task, "en", "train"), (task, "en", "validation")]
        for lang in zeroshot.get("languages") or tasks[task].languages:
            for split in zeroshot.get("splits", ["test"]):
                wanted.append((task, lang, "validation" if split == "dev" else split))
    cka = grid.sections.get("cka")
    if cka and cka.get("sample_set") in ("xnli", "nc"):
        wanted += [(cka["sample_set"], lang, "test") for lang in cka.get("languages", [])]
    return list(dict.fromkeys(wanted))


def hub_items(grid) -> list[HubItem]:
    """Every Hub repository (models) and export folder (XGLUE splits) ``grid`` reads."""
    from mtnb.models.registry import load_registry
    from mtnb.core.paths import project_root
    from mtnb.data.xglue import parquet_split_name

    registry = load_registry(project_root() / grid.registry if grid.registry else None)
    items = []
    for name in grid_models(grid):
        spec = registry.get(name)
        if spec is not None and name not in grid.zoo_members and spec.local_folder() is None:
            items.append(HubItem("model", f"model {name} ({spec.source})", spec.source))
    for task, lang, split in xglue_splits(grid):
        items.append(xglue_item(task, parquet_split_name(lang, split)))
    return items


# --------------------------------------------------------------------------------------------
# Found offline
# --------------------------------------------------------------------------------------------

def snapshot_folder(item: HubItem, cache_dir: str | Path | None = None) -> Path | None:
    """The cached snapshot folder of ``item``'s repository at its revision, or None; reads the
    cache only (``local_files_only``), never the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

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
        import json

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
        parts.append(f"{sum(map(len, by_task.values()))} XGLUE split(s) of {XGLUE_REPO}'s parquet export: {splits}")
    return "; and ".join(parts)


def cache_location(cache_dir: str | Path | None = None) -> str:
    """The Hugging Face cache folder in use (for messages)."""
    from huggingface_hub import constants

    return str(cache_dir or constants.HF_HUB_CACHE)


def missing_folders(grid) -> list[str]:
    """The grid's models whose source is a local folder that holds no checkpoint, as
    ``name (folder)``; models the grid builds itself (zoo and e5 members, and multilingual-e5-small,
    which the runner converts) are not checked."""
    from mtnb.pretraining.e5_family import BASE
    from mtnb.models.registry import load_registry
    from mtnb.core.paths import project_root

    registry = load_registry(project_root() / grid.registry if grid.registry else None)
    missing = []
    for name in grid_models(grid):
        spec = registry.get(name)
        folder = spec.local_folder() if spec is not None else None
        if folder is not None and name not in grid.zoo_members and name != BASE and not (folder / "config.json").is_file():
            missing.append(f"{name} ({folder})")
    return missing


def preflight(grid, cache_dir: str | Path | None = None) -> list[HubItem]:
    """Before any job of ``grid`` starts: every Hub item it reads must be in the local cache and
    every local checkpoint folder it names must hold a checkpoint. Returns the Hub items; raises
    one MtnbError naming everything missing and how to get it."""
    items = hub_items(grid)
    missing = [item for item in items if find_cached(item, cache_dir) is None]
    folders = missing_folders(grid)
    problems = []
    if missing:
        problems.append(f"not in the Hugging Face cache ({cache_location(cache_dir)}): {describe(missing)}; fetch "
                        f"them with 'mtnb fetch {grid.name}' where there is internet (then copy the cache to "
                        "machines without)")
    if folders:
        problems.append(f"checkpoint folder(s) without a checkpoint: {', '.join(folders)}; build or copy the "
                        "checkpoints there, or point their sources in the registry elsewhere")
    if problems:
        raise MtnbError(f"grid {grid.name} reads what is not on this machine: {'; and '.join(problems)}; "
                        "nothing was started")
    return items


# --------------------------------------------------------------------------------------------
# Fetched
# --------------------------------------------------------------------------------------------

class HubClient:
    """The Hugging Face Hub, as ``fetch`` uses it: list a repository's files with their sizes,
    download one file into the cache (resuming a partial download)."""

    def list_files(self, item: HubItem) -> list[RemoteFile]:
        """The files of ``item``'s repository at its revision: top level for a model, the split's
        folder for a dataset."""
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        entries = HfApi().list_repo_tree(item.repo_id, path_in_repo=item.folder, repo_type=item.repo_type,
                                         revision=item.revision)
        return [RemoteFile(e.path, int(e.size or 0)) for e in entries if isinstance(e, RepoFile)]

    def download(self, item: HubItem, path: str, cache_dir: str | Path | None = None) -> None:
        """Download ``path`` of ``item``'s repository into the cache."""
        from huggingface_hub import hf_hub_download

        hf_hub_download(item.repo_id, path, repo_type=item.repo_type, revision=item.revision, cache_dir=cache_dir)


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
    from huggingface_hub import try_to_load_from_cache

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


def plan_fetch(items: list[HubItem], client, cache_dir=None) -> list[tuple[HubItem, list[RemoteFile]]]:
    """For each item not complete in the cache: the files still to download (listed through
    ``client``). Raises MtnbError, naming the item, when the Hub cannot be reached."""
    plan = []
    for item in items:
        if find_cached(item, cache_dir) is not None:
            continue
        try:
            listing = client.list_files(item)
        except Exception as err:  # noqa: BLE001 - any failure to reach the Hub
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise MtnbError(f"{item.label}: cannot list its files on the Hub ({type(err).__name__}: {first}); "
                            "run 'mtnb fetch' on a machine with internet (a cluster's login node)") from None
        files = select_files(item, listing)
        if not files:
            raise MtnbError(f"{item.label}: the Hub repository {item.repo_id} holds none of the files the jobs read "
                            f"({'parquet files under ' + item.folder if item.folder else 'config.json and weights'}); "
                            "check the source in params/models.yaml")
        plan.append((item, [f for f in files if not cached_file(item, f.path, cache_dir)]))
    return plan


def fetch(grid_name: str, dry_run: bool = False, client=None, cache_dir=None, out=print) -> int:
    """``mtnb fetch GRID``: list what ``grid_name`` reads from the Hub and is not in the cache,
    with sizes; unless ``dry_run``, download it (progress bar over bytes; an interrupted fetch
    resumes where it stopped), then load every model and split offline. Returns 0."""
    from tqdm.auto import tqdm

    from mtnb.study.grids import load_grid

    grid = load_grid(grid_name)
    items = hub_items(grid)
    client = client or HubClient()
    plan = plan_fetch(items, client, cache_dir)
    files = [(item, f) for item, todo in plan for f in todo]
    total = sum(f.size for _, f in files)
    out(f"grid {grid.name} reads {len(items)} Hub item(s); cache: {cache_location(cache_dir)}")
    if not files and not plan:
        out(f"nothing missing: every model and XGLUE split grid {grid.name} reads is in the cache")
        return 0
    for item, todo in plan:
        out(f"  {item.label}: {len(todo)} file(s), {human_size(sum(f.size for f in todo))}")
        for f in todo:
            out(f"      {f.path}  {human_size(f.size)}")
    out(f"{len(files)} file(s) to download, {human_size(total)} in all")
    if dry_run:
        out("dry run: nothing downloaded")
        return 0
    start = time.perf_counter()
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"mtnb fetch {grid.name}") as bar:
        for item, f in files:
            client.download(item, f.path, cache_dir)
            bar.update(f.size)
    out(f"downloaded {human_size(total)} in {time.perf_counter() - start:.0f} s")
    check_offline(grid, items, cache_dir, out)
    return 0


def check_offline(grid, items: list[HubItem], cache_dir=None, out=print) -> None:
    """Load every model (its encoder and tokenizer) and XGLUE split of ``items`` from the cache
    alone; raises MtnbError naming what does not load."""
    from mtnb.models.registry import load_encoder, load_registry
    from mtnb.core.paths import project_root
    from mtnb.data.xglue import load_xglue

    missing = [item for item in items if find_cached(item, cache_dir) is None]
    if missing:
        raise MtnbError(f"after the download, still not in the cache: {describe(missing)}; run 'mtnb fetch {grid.name}' again")
    registry = load_registry(project_root() / grid.registry if grid.registry else None)
    models = [name for name in grid_models(grid) if any(i.kind == "model" and i.repo_id == registry[name].source
                                                         for i in items)]
    for name in models:
        load_encoder(name, registry, cache_dir=cache_dir, local_only=True)
    splits = [item for item in items if item.kind == "dataset"]
    for item in splits:
        task, split = item.folder.split("/", 1)
        lang = "en" if split == "train" else split.split(".", 1)[1]
        load_xglue(task, lang, split.split(".", 1)[0], parquet_dir=find_cached(item, cache_dir))
    out(f"loaded offline: {len(models)} model(s) and {len(splits)} XGLUE split(s)")


# --------------------------------------------------------------------------------------------
# Writing the cache layout (rehearsal caches, test stand-ins)
# --------------------------------------------------------------------------------------------

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
        tmp = blob.with_name(blob.name + ".incomplete")
        tmp.write_bytes(data)
        os.replace(tmp, blob)
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
