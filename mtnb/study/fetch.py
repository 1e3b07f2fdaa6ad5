"""What a grid reads from the Hugging Face Hub: listed, checked before a run, fetched.

A grid reads two kinds of Hub repositories:

- **models**: every registry entry the grid uses (models, cka.models, svd base and models) whose
  source is a Hub id (``org/name``), at revision ``main``: what ``load_encoder`` reads
  (``mtnb.core.hub_cache.select_files``).
- **datasets**: XGLUE's parquet export (``mtnb.data.xglue``), one folder ``{task}/{split}/`` per
  split the grid's jobs read: the English train and validation splits of each XGLUE task
  (fine-tuning and model selection), the zero-shot splits in each of the task's languages, and
  XNLI's (or NC's) test split in each CKA language when CKA samples come from there.

``hub_items(grid)`` lists them; ``preflight(grid)`` refuses, in one message, a grid whose items
are not all in the cache (or whose local checkpoint folders are empty); ``fetch(grid)``
(``mtnb fetch GRID``) downloads what is missing, through a client (``HubClient``; tests pass a
local stand-in), then loads everything offline.
"""

from __future__ import annotations

import time
from pathlib import Path

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.hf_api import RepoFile
from tqdm.auto import tqdm

from mtnb.core.errors import MtnbError
from mtnb.core.hub_cache import (HubItem, RemoteFile, cache_location, cached_file, describe, find_cached, human_size,
                                 select_files)
from mtnb.core.paths import project_root
from mtnb.data.tasks import load_tasks
from mtnb.data.xglue import load_xglue, parquet_split_name, xglue_item
from mtnb.models.loading import load_encoder
from mtnb.models.registry import load_registry
from mtnb.pretraining.members import E5_BASE
from mtnb.study.grids import load_grid, named_models


def grid_models(grid) -> list[str]:
    """The registry names a grid's jobs load (``mtnb.study.grids.named_models``)."""
    return named_models(grid.models, grid.sections)


def xglue_splits(grid) -> list[tuple[str, str, str]]:
    """The (task, language, split) of XGLUE's records the grid's jobs read from the Hub export:
    empty when the grid reads a local release (``xglue_dir``) instead."""
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
    registry = load_registry(project_root() / grid.registry if grid.registry else None)
    items = []
    for name in grid_models(grid):
        spec = registry.get(name)
        if spec is not None and name not in grid.zoo_members and spec.local_folder() is None:
            items.append(HubItem("model", f"model {name} ({spec.source})", spec.source))
    for task, lang, split in xglue_splits(grid):
        items.append(xglue_item(task, parquet_split_name(lang, split)))
    return items


def missing_folders(grid) -> list[str]:
    """The grid's models whose source is a local folder that holds no checkpoint, as
    ``name (folder)``; models the grid builds itself (zoo and e5 members, and multilingual-e5-small,
    which the runner converts) are not checked."""
    registry = load_registry(project_root() / grid.registry if grid.registry else None)
    missing = []
    for name in grid_models(grid):
        spec = registry.get(name)
        folder = spec.local_folder() if spec is not None else None
        if folder is not None and name not in grid.zoo_members and name != E5_BASE and not (folder / "config.json").is_file():
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


class HubClient:
    """The Hugging Face Hub, as ``fetch`` uses it: list a repository's files with their sizes,
    download one file into the cache (resuming a partial download)."""

    def list_files(self, item: HubItem) -> list[RemoteFile]:
        """The files of ``item``'s repository at its revision: top level for a model, the split's
        folder for a dataset."""
        entries = HfApi().list_repo_tree(item.repo_id, path_in_repo=item.folder, repo_type=item.repo_type,
                                         revision=item.revision)
        return [RemoteFile(e.path, int(e.size or 0)) for e in entries if isinstance(e, RepoFile)]

    def download(self, item: HubItem, path: str, cache_dir: str | Path | None = None) -> None:
        """Download ``path`` of ``item``'s repository into the cache."""
        hf_hub_download(item.repo_id, path, repo_type=item.repo_type, revision=item.revision, cache_dir=cache_dir)


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
