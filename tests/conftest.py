"""Shared fixtures: random-weight checkpoints at the paper models' shapes, built once a session."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("bert", "xlm-roberta", "mbart", "m2m100")


@pytest.fixture(scope="session")
def paper_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """{family: folder} of random checkpoints at the paper's layer shapes (about 3.5 GB, 30 s)."""
    from mtnb.random_checkpoints import build_random_checkpoint

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
    from mtnb.minicorpus import build_corpus

    out = tmp_path_factory.mktemp("mini") / "corpus"
    build_corpus(out, cache=ROOT / "runs" / "data" / "cache" / "apt", progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide BERT with the character tokenizer: fast enough to fine-tune in tests."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from mtnb.random_checkpoints import character_tokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = character_tokenizer("bert")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
