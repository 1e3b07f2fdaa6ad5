"""Loading the mini corpus (built by ``mtnb data mini``) as ``datasets.Dataset`` records.

Records keep the corpus's field names; label columns become ``ClassLabel`` features so a
fine-tuning notebook reads label names and ids the same way for the mini tasks and XGLUE:

| dataset     | fields                                                      |
|-------------|-------------------------------------------------------------|
| mini-spans  | id, words (list of str), tags (list of ClassLabel SPAN_TAGS) |
| mini-topic  | id, text, label (ClassLabel TOPIC_MODULES)                  |
| mini-rank   | query_id, query, text, label (ClassLabel RANK_GRADES: 0/1/2), id |
| parallel    | id, en, <lang>                                              |
| monolingual | id, text                                                    |
| cka-samples | id, module, en, de, es, fr, ru                              |
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from mtnb.core.errors import MtnbError
from mtnb.core.paths import project_root
from mtnb.data.mini.corpus import LANGS, RANK_GRADES, SPAN_TAGS, TOPIC_MODULES

DATASETS = ("mini-spans", "mini-topic", "mini-rank", "parallel", "monolingual", "cka-samples")


def default_corpus_dir() -> Path:
    """``<project>/runs/data/mini``: where ``mtnb data mini`` writes the corpus by default."""
    return project_root() / "runs" / "data" / "mini"


def corpus_manifest(root: str | Path | None = None) -> dict:
    """The corpus's manifest.json; MtnbError (with the command to build it) when absent."""
    root = Path(root) if root is not None else default_corpus_dir()
    path = root / "manifest.json"
    if not path.is_file():
        raise MtnbError(f"no mini corpus at {root}: build it with 'mtnb data mini' (or pass its folder)")
    return json.loads(path.read_text())


def load_mini(dataset: str, lang: str = "en", split: str = "train", root: str | Path | None = None):
    """One file of the mini corpus as a ``datasets.Dataset``.

    ``dataset`` is one of DATASETS; ``lang`` an ISO code (ignored for cka-samples, whose rows hold
    all five languages); ``split`` train, dev or test. Raises MtnbError for an unknown dataset,
    language or split, or a file that the corpus does not have (e.g. German training data).
    """
    if dataset not in DATASETS:
        raise MtnbError(f"unknown mini dataset {dataset!r}: use one of {', '.join(DATASETS)}")
    if lang not in LANGS:
        raise MtnbError(f"the mini corpus has no language {lang!r}: use one of {', '.join(LANGS)}")
    if split == "validation":
        split = "dev"
    root = Path(root) if root is not None else default_corpus_dir()
    manifest = corpus_manifest(root)
    name = f"{dataset}/test.all" if dataset == "cka-samples" else f"{dataset}/{split}.{lang}"
    if f"{name}.parquet" not in manifest["files"]:
        have = sorted(f[:-8].split("/", 1)[1] for f in manifest["files"] if f.startswith(dataset + "/"))
        raise MtnbError(f"the mini corpus has no {dataset} {split} split in {lang!r} "
                        f"(it has: {', '.join(have)})")
    table = datasets.Dataset(pq.read_table(root / f"{name}.parquet"))  # in memory, no cache copy
    quiet = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    if dataset == "mini-spans":
        features = table.features.copy()
        features["tags"] = datasets.Sequence(datasets.ClassLabel(names=list(SPAN_TAGS)))
        table = table.cast(features)
    elif dataset == "mini-topic":
        table = table.cast_column("label", datasets.ClassLabel(names=list(TOPIC_MODULES)))
    elif dataset == "mini-rank":
        table = table.cast_column("label", datasets.ClassLabel(names=list(RANK_GRADES)))
    if quiet:
        datasets.enable_progress_bars()
    return table
