"""One entry point to every task's records: ``load_task(task, lang, split)``.

The task table (``params/tasks.yaml``, ``mtnb.data.tasks``) says where a task's data comes from:
``source: xglue`` records come from ``mtnb.data.xglue`` (the XGLUE release or the Hub's parquet
export), ``source: mini`` records from the offline corpus (``mtnb.data.mini.datasets``), ``source:
ud`` records from the UD treebanks in XGLUE's POS layout (``mtnb data ud``, ``mtnb.data.ud``), read
by XGLUE's POS loader as a local release. Either way the
result is a ``datasets.Dataset`` whose fields are the task's ``text_fields`` and
``label_field`` (a ClassLabel, or a sequence of them for token tasks), plus ``query_id`` for
ranking tasks, so the notebooks consume both sources unchanged.

Tasks whose examples are the same in every language (``ALIGNED_SOURCES``: the mini tasks, whose
test paragraphs are translations of one another, and ``ud-pos``, the same PUD sentences in every
language) also carry ``id``, naming the example in every language (a mini paragraph's
``page#paragraph#k``; a UD ``sent_id``), and ``cluster``, the group of examples that are not
independent of one another: the help page of a mini paragraph (before the first ``#``; for
mini-rank, the page of the row's query, whose title is the query), the sentence of ``ud-pos``.
Their evaluation examples are drawn once for all languages (``aligned_eval_ids``), so that every
language is scored on the same examples and a cluster bootstrap can draw a page once for all.
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
ALIGNED_SOURCES = ("mini", "ud")   # sources whose records carry ``id`` and ``cluster``, shared by every language
SAME_PAGE = "same-page"            # the mini-rank grade of a query's own page's paragraphs


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
        return with_clusters(spec, load_mini(spec.dataset or spec.name, lang, split, root=mini_root))
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
    records = load_xglue(POS.name, lang, "validation" if split == "dev" else split, local_dir=root)
    sent_ids = manifest["files"][name]["sent_ids"]
    if len(sent_ids) != len(records):
        raise MtnbError(f"{root}: {name} holds {len(records)} sentences but its manifest names {len(sent_ids)}; "
                        "rebuild with 'mtnb data ud'")
    return records.add_column("id", list(sent_ids)).add_column("cluster", list(sent_ids))


def with_clusters(spec: TaskSpec, records):
    """A mini task's records with ``cluster`` added: the help page of each record's ``id`` (the
    part before the first ``#``) or, for a ranking task, the page of the record's query (the page
    of its same-page candidates; every query has some in the full split)."""
    if spec.head != "ranking":
        return records.add_column("cluster", [i.split("#", 1)[0] for i in records["id"]])
    grade = spec.labels.index(SAME_PAGE)
    pages = {q: i.split("#", 1)[0] for q, i, label in zip(records["query_id"], records["id"], records["label"])
             if label == grade}
    missing = sorted(set(records["query_id"]) - set(pages))
    if missing:
        raise MtnbError(f"task {spec.name}: query {missing[0]} has no {SAME_PAGE} candidate, so its page is "
                        "unknown; rebuild the mini corpus with 'mtnb data mini'")
    return records.add_column("cluster", [pages[q] for q in records["query_id"]])


def aligned(task: str | TaskSpec) -> bool:
    """Whether the task's records carry ``id`` and ``cluster`` naming the same example in every
    language (its source is one of ``ALIGNED_SOURCES``)."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    return spec.source in ALIGNED_SOURCES


def record_ids(records) -> list[str]:
    """The id of each record of an aligned task, the same in every language: ``id``, or for a
    ranking record (a query's candidate) ``<query_id>|<id>``."""
    if "query_id" in records.column_names:
        return [f"{q}|{i}" for q, i in zip(records["query_id"], records["id"])]
    return [str(i) for i in records["id"]]


def subsample(records, n: int | None, seed: int):
    """At most ``n`` records, drawn with ``seed`` (all of them when ``n`` is None)."""
    if n is None or n >= len(records):
        return records
    return records.shuffle(seed=seed).select(range(n))


EVAL_DRAW = 0  # the seed of the one draw of evaluation examples


def eval_subset(records, max_eval: int | None, ids: list[str] | None = None):
    """At most ``max_eval`` of a language's evaluation records, drawn once with ``EVAL_DRAW``:
    every model and every training seed is scored on the same examples, so the spread over
    seeds is the training's alone and models compare example for example. With ``ids`` (an
    aligned task's draw, ``aligned_eval_ids``): exactly the records with those ids
    (``record_ids``), in that order, so that every language is scored on the same examples;
    MtnbError when the language lacks one of them."""
    if ids is None:
        return subsample(records, max_eval, EVAL_DRAW)
    position = {key: k for k, key in enumerate(record_ids(records))}
    missing = [key for key in ids if key not in position]
    if missing:
        raise MtnbError(f"{len(missing)} of the {len(ids)} drawn evaluation examples are missing in this "
                        f"language's records (e.g. {missing[0]!r}); draw the ids over the languages evaluated")
    return records.select([position[key] for key in ids])


def aligned_eval_ids(task: str | TaskSpec, langs, split: str, max_eval: int | None, *,
                     mini_root: str | Path | None = None, xglue_dir: str | Path | None = None,
                     xglue_parquet: str | Path | None = None, ud_root: str | Path | None = None) -> list[str] | None:
    """The evaluation examples of an aligned task (``aligned``), drawn once for every language:
    the ids (``record_ids``) present in every language of ``langs`` that has ``split``, sorted,
    then drawn as ``eval_subset`` draws records (the first ``max_eval`` of a shuffle with
    ``EVAL_DRAW``; all of them, sorted, when ``max_eval`` is None or not below their number).
    Pass ``eval_subset(records, max_eval, ids)`` each language's records. None for a task whose
    languages hold different examples (XGLUE): each language then draws its own.

    Languages that lack the split (MtnbError from ``load_task``) are left out of the
    intersection, so the draw depends on the task, the split, the data and ``max_eval``; callers
    pass the task's languages, not the subset they evaluate, so that every choice of languages
    scores each language on the same examples."""
    spec = task if isinstance(task, TaskSpec) else get_task(task)
    if not aligned(spec):
        return None
    shared = None
    for lang in langs:
        try:
            records = load_task(spec, lang, split, mini_root=mini_root, xglue_dir=xglue_dir,
                                xglue_parquet=xglue_parquet, ud_root=ud_root)
        except MtnbError:
            continue
        keys = set(record_ids(records))
        shared = keys if shared is None else shared & keys
    if not shared:
        return []
    return list(subsample(Dataset.from_dict({"id": sorted(shared)}), max_eval, EVAL_DRAW)["id"])


def ud_unit_sentences(lang: str, split: str = "test", max_eval: int | None = None,
                      root: str | Path | None = None) -> list[str]:
    """The UD ``sent_id`` of each example of a zero-shot evaluation of ``ud-pos`` in ``lang``, in
    the order evaluated, with ``max_eval`` as ``eval_subset`` draws them. The test files hold the
    same PUD sentences in ``sent_id`` order in every language and the draw depends only on their
    number, so the list is the same for every language and equals ``aligned_eval_ids`` (which the
    evaluation uses; the units of ``units.csv.gz`` are these ``sent_id``s themselves)."""
    root = Path(root) if root is not None else default_ud_dir()
    name = f"{POS_FOLDER}/{lang}.{'dev' if split == 'validation' else split}"
    files = ud_manifest(root)["files"]
    if name not in files:
        raise MtnbError(f"{root}: no {name} (it has: {', '.join(sorted(files))}); rebuild with 'mtnb data ud'")
    return list(eval_subset(Dataset.from_dict({"sent_id": files[name]["sent_ids"]}), max_eval)["sent_id"])
