"""Shared fixtures: random-weight checkpoints at the paper models' shapes, the mini corpus, tiny
checkpoints, the smoke grid run end to end and a small grid run, each built once a session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("bert", "xlm-roberta", "mbart", "m2m100")
# fixtures that run grids, notebooks or books, build the real corpus (30-60 s) or write 3.5 GB of
# checkpoints: a test using one is marked slow (pytest -m "not slow" is the fast loop)
SLOW_FIXTURES = {"paper_checkpoints", "real_corpus", "smoke_grid_run", "small_grid_run", "smoke_book", "small_book",
                 "book", "random_registry", "smoke_zoo", "trained", "tiny_root", "rehearsal", "stand_in_repos"}


def pytest_collection_modifyitems(config, items):
    """Mark slow every test that uses a SLOW_FIXTURES fixture or executes a notebook."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or "notebook" in item.name:
            item.add_marker(pytest.mark.slow)


def patch_everywhere(monkeypatch, module: str, name: str, value) -> None:
    """Replace function ``name`` of ``module`` (e.g. ``mtnb.models.loading``, ``load_encoder``)
    with ``value`` in that module and in every loaded mtnb module that imported it (each holds
    its own reference), for the test's duration."""
    import importlib

    original = getattr(importlib.import_module(module), name)
    for loaded_name, loaded in list(sys.modules.items()):
        if loaded_name.startswith("mtnb") and getattr(loaded, name, None) is original:
            monkeypatch.setattr(loaded, name, value)


@pytest.fixture(scope="session")
def paper_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """{family: folder} of random checkpoints at the paper's layer shapes (about 3.5 GB, 30 s)."""
    from mtnb.models.random_checkpoints import build_random_checkpoint

    out = tmp_path_factory.mktemp("paper-checkpoints")
    return {family: build_random_checkpoint(family, out / family, seed=0) for family in FAMILIES}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """An empty project root (with params/) that mtnb uses instead of the repository."""
    (tmp_path / "params").mkdir()
    monkeypatch.setenv("MTNB_ROOT", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory) -> Path:
    """The mini corpus built from Debian's LibreOffice help packages (downloaded once into
    runs/data/cache/apt, then parsed and built into a temporary folder: about 30-60 s)."""
    from mtnb.data.mini.corpus import build_corpus

    out = tmp_path_factory.mktemp("mini") / "corpus"
    build_corpus(out, cache=ROOT / "runs" / "data" / "cache" / "apt", progress=False)
    return out


def tiny_bert(folder: Path, seed: int = 0) -> Path:
    """Write a 2-layer, 64-wide BERT with the character tokenizer (weights drawn with ``seed``)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from mtnb.models.random_checkpoints import character_tokenizer

    tokenizer = character_tokenizer("bert")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide BERT with the character tokenizer: fast enough to fine-tune in tests."""
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), seed=0)


@dataclass
class GridRun:
    """A grid run by ``mtnb run`` in its own project root (``MTNB_ROOT``)."""

    root: Path
    name: str
    threads: str      # OMP_NUM_THREADS its jobs ran with
    seconds: float
    output: str = ""  # what mtnb run printed

    @property
    def runs(self) -> Path:
        return self.root / "runs" / self.name

    def env(self, **extra: str) -> dict:
        return {**os.environ, "MTNB_ROOT": str(self.root), **extra}

    def mtnb(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """``mtnb ARGS`` in a subprocess on this root."""
        return subprocess.run([sys.executable, "-m", "mtnb.cli", *args], cwd=ROOT, env=self.env(**env),
                              capture_output=True, text=True)

    def run_grid(self) -> "GridRun":
        """``mtnb run NAME --jobs 2`` with OMP_NUM_THREADS=threads for its jobs; its wall time."""
        start = time.perf_counter()
        out = self.mtnb("run", self.name, "--jobs", "2", OMP_NUM_THREADS=self.threads)
        self.seconds = time.perf_counter() - start
        self.output = out.stdout
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        return self


@pytest.fixture(scope="session")
def smoke_grid_run(tmp_path_factory, real_corpus) -> GridRun:
    """The study's smoke grid, params/grids/smoke.yaml unchanged, run end to end once a session by
    ``mtnb run smoke --jobs 2`` (a subprocess, OMP_NUM_THREADS=1 for its jobs): mini-xlmr and
    mini-random pretrained at the smoke budget, fine-tuned (mini-random: probed) on the three mini
    tasks, scored in five languages, a layer sweep, CKA and SVD; 17 jobs, about four minutes on two cores.

    Its project root is a temporary folder with a copy of the repository's params/, a link to
    notebooks/, and runs/data/mini (the grid's default corpus) a link to the ``real_corpus``
    folder."""
    root = tmp_path_factory.mktemp("smoke-grid")
    shutil.copytree(ROOT / "params", root / "params")
    (root / "notebooks").symlink_to(ROOT / "notebooks")
    (root / "runs" / "data").mkdir(parents=True)
    (root / "runs" / "data" / "mini").symlink_to(real_corpus)
    return GridRun(root=root, name="smoke", threads="1", seconds=0.0).run_grid()


SMALL_FINETUNE = {"learning_rate": 1.0e-3, "epochs": 1, "max_train": 32, "max_dev": 16, "max_length": 32,
                  "batch_size": 16, "max_steps": 3}


@pytest.fixture(scope="session")
def small_grid_run(tmp_path_factory, real_corpus) -> GridRun:
    """The grid ``small``, run once a session by ``mtnb run small --jobs 2`` (a subprocess, with
    OMP_NUM_THREADS=1 for its jobs): two tiny BERTs, ``tiny`` and ``tiny-o2m`` (registered as tiny
    continued on translation, so the two form the grid's book family), mini-topic, seeds 0 and
    1, zero-shot on 16 examples per language (and English dev), CKA, SVD and the verdict (a plan
    comparing tiny-o2m with tiny, its margin set so that the task enters); about two minutes on
    two cores.

    Its project root is a temporary folder with the repository's params/ (grids replaced by this
    one, registry params/tiny.yaml), a link to notebooks/, and a benchmark JSON in
    runs/benchmarks/."""
    root = tmp_path_factory.mktemp("small-grid")
    (root / "params").mkdir()
    for name in ("models.yaml", "tasks.yaml"):
        (root / "params" / name).write_text((ROOT / "params" / name).read_text())
    (root / "params" / "grids").mkdir()
    (root / "notebooks").symlink_to(ROOT / "notebooks")
    models = {"tiny": {"source": str(tiny_bert(root / "tiny", seed=0)), "family": "bert", "role": "lm"},
              "tiny-o2m": {"source": str(tiny_bert(root / "tiny-o2m", seed=1)), "family": "bert", "role": "cp",
                           "base": "tiny"}}
    (root / "params" / "tiny.yaml").write_text(yaml.safe_dump({"models": models}))
    grid = {"name": "small", "registry": "params/tiny.yaml", "mini_root": str(real_corpus),
            "models": ["tiny", "tiny-o2m"], "tasks": ["mini-topic"], "seeds": [0, 1],
            "finetune": SMALL_FINETUNE, "zeroshot": {"max_eval": 16, "splits": ["dev", "test"], "dev_languages": ["en"]},
            "cka": {"n_samples": 8, "max_length": 32}, "svd": {"base": "tiny"},
            "book": {"family": ["tiny", "tiny-o2m"], "base": "tiny", "title": "The tiny family"},
            "verdict": {"base": "tiny", "translation": ["tiny-o2m"], "tasks": ["mini-topic"], "margin": -100.0}}
    (root / "params" / "grids" / "small.yaml").write_text(yaml.safe_dump(grid, sort_keys=False))
    (root / "runs" / "benchmarks").mkdir(parents=True)
    (root / "runs" / "benchmarks" / "finetune.json").write_text(
        '{"examples": 256, "batching": {"speedup": 3.2938559521033577, "goal_met": true}}')
    return GridRun(root=root, name="small", threads="1", seconds=0.0).run_grid()
