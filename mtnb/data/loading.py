"""One entry point to every task's records: ``load_task(task, lang, split)``.

The task table (``params/tasks.yaml``, ``mtnb.data.tasks``) says where a task's data comes from:
``source: xglue`` records come from ``mtnb.data.xglue`` (the XGLUE release or the Hub's parquet
export), ``source: mini`` records from the offline corpus (``mtnb.data.mini.datasets``), ``source:
ud`` records from the UD treebanks in XGLUE's POS layout (``mtnb data ud``, ``mtnb.data.ud``), read
by XGLUE's POS loader as a local release. Either way the
result is a ``datasets.Dataset`` whose fields are the task's ``text_fields`` and
``label_field`` (a ClassLabel, or a sequence of them for token tasks), plus ``query_id`` for
ranking tasks, so the notebooks consume both sources unchanged.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from mtnb.core.errors import MtnbError
from mtnb.data.mini.datasets import load_mini
from mtnb.data.tasks import TaskSpec, get_task
from mtnb.data.ud import POS, POS_FOLDER, default_ud_dir, ud_manifest
from mtnb.data.xglue import load_xglue

SPLITS = ("train", "dev", "test")


def load_task(task: str | TaskSpec, lang: str, split: str, *, mini_root: str | Path | None = None,
              xglue_dir: str | Path | None = None, xglue_parquet: str | Path | None = None,
              ud_root: str | Path | None = None):
    """Records of ``task`` in language ``lang`` (ISO code) for ``split`` (train, dev, test).

    Checks the task, language and split before any data is read: training data is English only.
    ``mini_root`` is the mini corpus folder (default runs/data/mini); ``xglue_dir`` a local XGLUE
    release, ``xglue_parquet`` a local copy of the Hub's parquet export; ``ud_root`` the folder
    ``mtnb data ud`` built (default runs/data/ud).
    """
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    split = "dev" if split == "validation" else split
    if split not in SPLITS:
        raise MtnbError(f"unknown split {split!r}: use train, dev or test")
    if lang not in spec.languages:
        raise MtnbError(f"task {spec.name} has no language {lang!r}: it has {', '.join(spec.languages)}")
    if split == "train" and lang != "en":
        raise MtnbError(f"task {spec.name} trains on English only: there is no {lang!r} train split")
    if spec.source == "mini":
        return load_mini(spec.dataset or spec.name, lang, split, root=mini_root)
    if spec.source == "ud":
        return load_ud(spec, lang, split, ud_root)
    return load_xglue(spec.name, lang, "validation" if split == "dev" else split,
                      local_dir=xglue_dir, parquet_dir=xglue_parquet)


def load_ud(spec: TaskSpec, lang: str, split: str, root: str | Path | None = None):
    """Records of a ``source: ud`` task: XGLUE's POS loader on the local release that ``mtnb
    data ud`` built in ``root`` (default runs/data/ud). MtnbError naming the build command when
    nothing is built, and the splits there are when ``split`` is not among them."""
    root = Path(root) if root is not None else default_ud_dir()
    manifest = ud_manifest(root)
    name = f"{POS_FOLDER}/{lang}.{split}"
    if name not in manifest["files"]:
        have = sorted(f.rsplit("/", 1)[1] for f in manifest["files"])
        raise MtnbError(f"task {spec.name} has no {split} split in {lang!r} (it has: {', '.join(have)})")
    return load_xglue(POS.name, lang, "validation" if split == "dev" else split, local_dir=root)


def subsample(records, n: int | None, seed: int):
    """At most ``n`` records, drawn with ``seed`` (all of them when ``n`` is None)."""
    if n is None or n >= len(records):
        return records
    return records.shuffle(seed=seed).select(range(n))


EVAL_DRAW = 0  # the seed of the one draw of evaluation examples


def eval_subset(records, max_eval: int | None):
    """At most ``max_eval`` of a language's evaluation records, drawn once with ``EVAL_DRAW``:
    every model and every training seed is scored on the same examples, so the spread over
    seeds is the training's alone and models compare example for example."""
    return subsample(records, max_eval, EVAL_DRAW)


def ud_unit_sentences(lang: str, split: str = "test", max_eval: int | None = None,
                      root: str | Path | None = None) -> list[str]:
    """The UD ``sent_id`` of each unit of a zero-shot evaluation of ``ud-pos`` in ``lang``:
    element i names the sentence of unit ``str(i)`` (``mtnb.transfer.scoring.metric_units``
    numbers a language's evaluated examples 0, 1, ...), with ``max_eval`` as the evaluation drew
    them (``eval_subset``). The test files hold the same PUD sentences in the same order in every
    language and the draw depends only on their number, so the list is the same for every
    language: a cluster bootstrap that draws unit i draws one sentence for all languages."""
    root = Path(root) if root is not None else default_ud_dir()
    name = f"{POS_FOLDER}/{lang}.{'dev' if split == 'validation' else split}"
    files = ud_manifest(root)["files"]
    if name not in files:
        raise MtnbError(f"{root}: no {name} (it has: {', '.join(sorted(files))}); rebuild with 'mtnb data ud'")
    return list(eval_subset(Dataset.from_dict({"sent_id": files[name]["sent_ids"]}), max_eval)["sent_id"])
