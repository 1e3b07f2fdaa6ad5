"""What a grid reads from the Hub: the cache layout, the offline lookup, the preflight, ``mtnb
fetch`` (against a local stand-in for the Hub), ``mtnb stop`` and the dry run's sizing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtnb.core.errors import MtnbError
from mtnb.data.xglue import PARQUET_REVISION, XGLUE_REPO
from mtnb.core.hub_cache import (cache_put, cache_put_folder, find_cached, HubItem, RemoteFile, repo_storage, select_files)
from mtnb.study.fetch import fetch, hub_items, preflight

ROOT = Path(__file__).resolve().parent.parent
JUNK = {"pytorch_model.bin": b"pickle", "tf_model.h5": b"h5", "flax_model.msgpack": b"flax",
        "rust_model.ot": b"rust", "onnx/model.onnx": b"onnx", "onnx/config.json": b"{}", "README.md": b"# card"}


@pytest.fixture(scope="session")
def stand_in_repos(tmp_path_factory) -> dict:
    """The rehearsal's stand-in repositories as plain folders, each model repository with the
    other formats a Hub repository holds beside its safetensors (which fetch must skip)."""
    from mtnb.study.rehearsal import build_repositories

    repos = build_repositories(tmp_path_factory.mktemp("remote"))
    for (repo_type, _, _), folder in repos.items():
        if repo_type == "model":
            for path, data in JUNK.items():
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
                (folder / path).write_bytes(data)
    return repos


class LocalHub:
    """A stand-in for ``mtnb.study.fetch.HubClient``: serves the repositories of ``stand_in_repos`` and
    writes downloads into the cache layout; ``fail_after`` downloads, it raises (a dropped
    connection)."""

    def __init__(self, repos: dict, fail_after: int | None = None):
        self.repos, self.fail_after, self.downloaded = repos, fail_after, []

    def folder(self, item: HubItem) -> Path:
        return self.repos[(item.repo_type, item.repo_id, item.revision)]

    def list_files(self, item: HubItem) -> list[RemoteFile]:
        root = self.folder(item)
        start = root / item.folder if item.folder else root
        files = start.rglob("*") if item.folder else start.glob("*")
        return [RemoteFile(p.relative_to(root).as_posix(), p.stat().st_size) for p in sorted(files) if p.is_file()]

    def download(self, item: HubItem, path: str, cache_dir=None) -> None:
        if self.fail_after is not None and len(self.downloaded) >= self.fail_after:
            raise ConnectionError("connection reset")
        cache_put(cache_dir, item.repo_type, item.repo_id, item.revision, path, (self.folder(item) / path).read_bytes())
        self.downloaded.append((item.repo_id, path))


def test_the_cache_layout_is_the_one_huggingface_hub_reads(tmp_path):
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    cache_put(tmp_path, "model", "org/name", "main", "config.json", b'{"a": 1}')
    cache_put(tmp_path, "dataset", XGLUE_REPO, PARQUET_REVISION, "nc/test.de/0000.parquet", b"x")
    found = try_to_load_from_cache("org/name", "config.json", cache_dir=tmp_path)
    assert isinstance(found, str) and Path(found).read_bytes() == b'{"a": 1}'
    folder = snapshot_download(XGLUE_REPO, repo_type="dataset", revision=PARQUET_REVISION, cache_dir=tmp_path,
                               local_files_only=True)
    assert (Path(folder) / "nc" / "test.de" / "0000.parquet").read_bytes() == b"x"
    assert (repo_storage(tmp_path, "dataset", XGLUE_REPO) / "refs" / "refs" / "convert" / "parquet").is_file()


def test_fetch_selects_safetensors_config_and_tokenizer_files_only():
    item = HubItem("model", "model m (org/m)", "org/m")
    names = ["config.json", "tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model", "vocab.txt",
             "model.safetensors", "generation_config.json", *JUNK]
    chosen = {f.path for f in select_files(item, [RemoteFile(n, 1) for n in names])}
    assert chosen == {"config.json", "tokenizer.json", "tokenizer_config.json", "sentencepiece.bpe.model",
                      "vocab.txt", "model.safetensors"}
    sharded = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json"]
    assert {f.path for f in select_files(item, [RemoteFile(n, 1) for n in sharded])} == set(sharded[:4])
    pickles = ["config.json", "pytorch_model.bin", "tf_model.h5"]   # no safetensors: the pickle, read weights_only
    assert {f.path for f in select_files(item, [RemoteFile(n, 1) for n in pickles])} == {"config.json", "pytorch_model.bin"}


def test_fetch_lists_downloads_resumes_and_loads_offline(stand_in_repos, tmp_path):
    cache = tmp_path / "hub"
    lines = []
    assert fetch("paper", dry_run=True, client=LocalHub(stand_in_repos), cache_dir=cache, out=lines.append) == 0
    listed = "\n".join(lines)
    assert "model mbart (facebook/mbart-large-50): 4 file(s)" in listed and "model.safetensors" in listed
    assert "XGLUE xnli test.sw: 1 file(s)" in listed and "dry run: nothing downloaded" in listed
    assert not any(name in listed for name in ("pytorch_model.bin", "tf_model.h5", "onnx", "README"))
    assert not cache.exists()

    broken = LocalHub(stand_in_repos, fail_after=20)
    with pytest.raises(ConnectionError):
        fetch("paper", client=broken, cache_dir=cache, out=lines.append)
    resumed = LocalHub(stand_in_repos)
    lines.clear()
    fetch("paper", client=resumed, cache_dir=cache, out=lines.append)
    total = int(next(line for line in lines if line.endswith("in all")).split()[0])
    assert not set(broken.downloaded) & set(resumed.downloaded) and len(resumed.downloaded) == total
    assert lines[-1] == "loaded offline: 7 model(s) and 74 XGLUE split(s)"
    assert all(not any(j in path for j in JUNK) for _, path in broken.downloaded + resumed.downloaded)

    lines.clear()
    fetch("paper", dry_run=True, client=LocalHub({}), cache_dir=cache, out=lines.append)  # never asks the Hub
    assert lines[-1] == "nothing missing: every model and XGLUE split grid paper reads is in the cache"


def test_the_paper_grid_reads_seven_models_and_every_language_of_every_task():
    from mtnb.study.grids import load_grid
    from mtnb.data.tasks import load_tasks

    items = hub_items(load_grid("paper"))
    models = [i.repo_id for i in items if i.kind == "model"]
    assert len(models) == 7 and "facebook/mbart-large-50-one-to-many-mmt" in models
    folders = {i.folder for i in items if i.kind == "dataset"}
    for name, task in load_tasks().items():
        if task.source == "xglue":
            assert {f"{name}/train", f"{name}/validation.en"} <= folders
            assert {f"{name}/test.{lang}" for lang in task.languages} <= folders


def rehearsal_project(root: Path) -> Path:
    """A project root (params/ copied, notebooks/ linked) for grid runs in a subprocess."""
    shutil.copytree(ROOT / "params", root / "params")
    (root / "notebooks").symlink_to(ROOT / "notebooks")
    return root


def mtnb(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtnb.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MTNB_ROOT": str(root), **env})


def test_a_grid_missing_a_model_and_a_dataset_stops_before_any_job(stand_in_repos, tmp_path):
    cache = tmp_path / "hub"
    for (repo_type, repo_id, revision), folder in stand_in_repos.items():
        if repo_id != "facebook/mbart-large-50-many-to-one-mmt":
            cache_put_folder(cache, repo_type, repo_id, revision, folder)
    split = repo_storage(cache, "dataset", XGLUE_REPO) / "snapshots"
    shutil.rmtree(next(split.iterdir()) / "pos" / "test.th")
    root = rehearsal_project(tmp_path / "project")
    out = mtnb(root, "run", "paper-rehearsal", HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
    message = out.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "model(s): mbart-m2o (facebook/mbart-large-50-many-to-one-mmt)" in message
    assert "1 XGLUE split(s)" in message and "pos test.th" in message
    assert "'mtnb fetch paper-rehearsal'" in message and message.endswith("nothing was started")
    assert "checkpoint folder" not in message
    assert not (root / "runs" / "paper-rehearsal" / "finetune").exists()
    dry = mtnb(root, "run", "paper-rehearsal", "--dry-run", HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    assert dry.returncode == 2 and "114 jobs" in dry.stdout and "mbart-m2o" in dry.stderr


def test_a_registry_folder_without_a_checkpoint_is_named_before_any_job(tmp_path, monkeypatch):
    import yaml

    from mtnb.study.grids import load_grid

    root = rehearsal_project(tmp_path)
    registry = yaml.safe_load((root / "params" / "models.yaml").read_text())
    registry["models"]["mine"] = {"source": "./checkpoints/not-built", "family": "bert", "role": "lm"}
    (root / "params" / "mine.yaml").write_text(yaml.safe_dump(registry))
    grid = {"name": "mine", "registry": "params/mine.yaml", "models": ["mine"], "tasks": ["mini-topic"], "seeds": [0]}
    (root / "params" / "grids" / "mine.yaml").write_text(yaml.safe_dump(grid))
    monkeypatch.setenv("MTNB_ROOT", str(root))
    with pytest.raises(MtnbError, match=r"checkpoint folder\(s\) without a checkpoint: mine \(.*not-built\)"):
        preflight(load_grid("mine"))


def test_loading_an_uncached_hub_model_names_the_fetch_command_in_full(tmp_path, monkeypatch):
    from mtnb.models.registry import checkpoint_folder, ModelSpec
    from mtnb.data.xglue import load_xglue

    spec = ModelSpec(name="m", source="org/not-here", family="bert", role="lm")
    with pytest.raises(MtnbError) as model_error:
        checkpoint_folder(spec, cache_dir=tmp_path, local_only=True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MtnbError) as data_error:
        load_xglue("qam", "de", "test")
    assert "HF_HUB_OFFLINE is set" in str(data_error.value)
    for message in (str(model_error.value), str(data_error.value)):
        assert "'mtnb fetch GRID'" in message and "'hf download " in message and "huggingface-cli" not in message
        assert message.endswith(("folder", "(a copy of the export)")), message


def test_preflight_passes_when_everything_is_cached(stand_in_repos, tmp_path):
    from mtnb.study.grids import load_grid

    for (repo_type, repo_id, revision), folder in stand_in_repos.items():
        cache_put_folder(tmp_path, repo_type, repo_id, revision, folder)
    items = preflight(load_grid("paper-rehearsal"), cache_dir=tmp_path)
    assert len(items) == 81 and all(find_cached(i, tmp_path) for i in items)


def test_a_rerun_refused_by_running_jobs_names_their_processes_and_stop_ends_them(tmp_path, monkeypatch):
    from mtnb.study.grids import load_grid
    from mtnb.study.runner import expand, running_jobs, stop

    root = rehearsal_project(tmp_path)
    monkeypatch.setenv("MTNB_ROOT", str(root))
    holder = None
    try:
        job = expand(load_grid("smoke"))[0]
        job.folder.mkdir(parents=True)
        (job.folder / "job.json").write_text("{}")
        holder = subprocess.Popen([sys.executable, "-c", (
            "import fcntl, json, os, sys, time\n"
            f"f = open({str(job.folder / 'job.json')!r})\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            f"json.dump({{'pid': os.getpid(), 'host': os.uname().nodename}}, open({str(job.folder / 'process.json')!r}, 'w'))\n"
            "print('held', flush=True)\n"
            "time.sleep(300)\n")], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        out = mtnb(root, "run", "smoke")
        assert out.returncode == 2 and f"process ids {holder.pid}" in out.stderr and "'mtnb stop smoke'" in out.stderr
        start = time.perf_counter()
        assert stop("smoke", wait_s=20) == 0
        assert holder.wait(timeout=5) != 0 and time.perf_counter() - start < 20
        assert running_jobs([job]) == []
    finally:
        if holder is not None and holder.poll() is None:
            holder.kill()


def test_sizing_counts_tokens_and_flops_from_the_records_and_the_config(stand_in_repos, tmp_path, monkeypatch):
    from transformers import AutoConfig, AutoTokenizer, BertModel

    from mtnb.study import sizing
    from mtnb.study.grids import load_grid
    from mtnb.models.registry import load_registry
    from mtnb.data.tasks import load_tasks
    from mtnb.data.xglue import load_xglue

    for (repo_type, repo_id, revision), folder in stand_in_repos.items():
        cache_put_folder(tmp_path, repo_type, repo_id, revision, folder)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    grid = load_grid("paper-rehearsal")
    size = sizing.task_size("mbert", "xnli", grid, load_registry(), load_tasks())
    folder = stand_in_repos[("model", "google-bert/bert-base-multilingual-cased", "main")]
    records = load_xglue("xnli", "en", "train", parquet_dir=stand_in_repos[("dataset", XGLUE_REPO, PARQUET_REVISION)])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    lengths = [len(tokenizer(r["premise"], r["hypothesis"], truncation=True, max_length=32)["input_ids"]) for r in records]
    assert size.examples == 32 and size.mean_tokens == pytest.approx(sum(lengths) / len(lengths))
    assert size.epochs == pytest.approx(2 * 8 / 32)    # max_steps x batch_size / examples
    model = BertModel(AutoConfig.from_pretrained(folder), add_pooling_layer=False)
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("embeddings."))
    assert size.flops == pytest.approx(6 * n * 32 * size.epochs * size.mean_tokens)
    lines = sizing.sizing_lines(grid, [size])
    assert lines[0].startswith("sizing") and "GPU-hours" in lines[-1]
