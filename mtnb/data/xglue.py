"""The eight XGLUE understanding tasks of the study, one task/language/split at a time.

``load_xglue(task, lang, split)`` returns a ``datasets.Dataset`` whose columns carry the names
the Hugging Face dataset ``microsoft/xglue`` gives them (table below), the labels as integer ids
of ``ClassLabel`` features (``ds.features[label_field].names``, or ``.feature.names`` for the
tag lists), in XGLUE's order. A label missing from the source (the test files of the first
XGLUE release carried none) is ``-1``.

==========  =============================================  ===============  ================
task        text columns                                   label column     label names
==========  =============================================  ===============  ================
ner         words (list of str)                            ner (list)       O, B-PER, ... (9)
pos         words (list of str)                            pos (list)       ADJ ... X (17 UPOS)
nc          news_title, news_body                          news_category    10 categories
xnli        premise, hypothesis                            label            entailment, ...
paws-x      sentence1, sentence2                           label            different, same
qadsm       query, ad_title, ad_description                relevance_label  Bad, Good
wpr         query, web_page_title, web_page_snippet        relavance_label  Bad ... Perfect
qam         question, answer                               label            False, True
==========  =============================================  ===============  ================

(``relavance_label`` is spelled so in the Hub dataset.) WPR records also get ``query_id``
(int64): the source has no query id, so every record with the same query string gets the same
id, numbered 0, 1, ... in the order the queries first appear in the file.

Splits are ``train`` (English only), ``validation`` (``dev`` is accepted for it) and ``test``.
The data comes one of three ways, each giving identical datasets for identical records:

1. ``local_dir``: the official release ``xglue_full_dataset.tar.gz``, extracted. The folder holds
   one subfolder per task (NER, POS, NC, XNLI, PAWSX, QADSM, WPR, QAM; the folder above it,
   holding ``xglue_full_dataset/``, is accepted too), with these files (``{l}`` the language):

   - NER, POS: ``en.train``, ``{l}.dev``, ``{l}.test``; one token a line, the word, a space
     and the tag (a tab instead of the space is accepted, so a word may hold spaces); further
     fields are ignored; blank lines end sentences; ``-DOCSTART-`` lines are skipped; a line
     holding only the word has no tag.
   - NC, QADSM, WPR, QAM: ``xglue.{task}.en.train``, ``xglue.{task}.{l}.dev``,
     ``xglue.{task}.{l}.test``; tab-separated, no header, the text fields then the label.
   - XNLI: ``multinli.train.en.tsv`` (with a header line), ``{l}.dev``, ``{l}.test``;
     premise, hypothesis, label; the train file says ``contradictory`` for ``contradiction``.
   - PAWS-X: ``en/train.tsv``, ``{l}/dev_2k.tsv``, ``{l}/test_2k.tsv``; a header line, then
     id, sentence1, sentence2, label (0 different, 1 same); the id is dropped.

   In the tab-separated files a line with only the text fields has no label, fields past the
   label are ignored, blank lines are skipped; labels are names or ids (``0``, ``1``, ...).
   Lines end at ``\\n`` only (a stray ``\\r`` inside a text stays part of it), a trailing
   ``\\r`` and a leading byte-order mark are dropped, and text fields are kept verbatim.
2. ``parquet_dir``: a folder laid out like the Hub's automatic parquet export of the dataset
   (revision ``refs/convert/parquet``): ``{task}/{split}/0000.parquet`` (more shards:
   ``0001.parquet``, ... read in name order), the split folder named ``train``,
   ``validation.{l}`` or ``test.{l}``, e.g. ``ner/validation.de/0000.parquet``.
3. Neither: the same export, fetched from the Hub (only the needed split's files) into the
   Hugging Face cache with ``huggingface_hub.snapshot_download``, then read as in 2. Without
   network the files must already be in the cache.

Unknown tasks, languages the task lacks and splits that do not exist are refused before any
file is read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import ClassLabel, Dataset, DatasetInfo, Features, List, Value
from huggingface_hub import constants, snapshot_download

from mtnb.core.errors import MtnbError
from mtnb.core.hub_cache import HubItem, download_command, find_cached

XGLUE_REPO = "microsoft/xglue"
PARQUET_REVISION = "refs/convert/parquet"
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"dev": "validation", "valid": "validation"}
RELEASE_FOLDER = "xglue_full_dataset"

NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")
UPOS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON",
             "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")
NEWS_CATEGORIES = ("foodanddrink", "sports", "travel", "finance", "lifestyle", "news",
                   "entertainment", "health", "video", "autos")
SIMPLE_FILES = ("xglue.{task}.en.train", "xglue.{task}.{lang}.dev", "xglue.{task}.{lang}.test")


@dataclass(frozen=True)
class XglueTask:
    """What XGLUE task ``name`` is and how its release files are laid out.

    ``files`` are the train, validation and test file names inside ``folder`` (``{lang}`` and
    ``{task}`` filled in); ``tagging`` tasks have word-per-line files, the others tab-separated
    ones; ``id_column`` marks files whose first field is a record id; ``label_aliases`` maps
    spellings in the files to label names.
    """

    name: str
    folder: str
    languages: tuple[str, ...]
    text_fields: tuple[str, ...]
    label_field: str
    labels: tuple[str, ...]
    files: tuple[str, str, str] = SIMPLE_FILES
    tagging: bool = False
    id_column: bool = False
    label_aliases: tuple[tuple[str, str], ...] = ()


XGLUE: dict[str, XglueTask] = {t.name: t for t in (
    XglueTask("ner", "NER", ("en", "de", "es", "nl"), ("words",), "ner", NER_TAGS,
              files=("en.train", "{lang}.dev", "{lang}.test"), tagging=True),
    XglueTask("pos", "POS", ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "it", "nl", "pl", "ru",
                             "th", "tr", "ur", "vi", "zh"), ("words",), "pos", UPOS_TAGS,
              files=("en.train", "{lang}.dev", "{lang}.test"), tagging=True),
    XglueTask("nc", "NC", ("en", "de", "es", "fr", "ru"), ("news_title", "news_body"),
              "news_category", NEWS_CATEGORIES),
    XglueTask("xnli", "XNLI", ("en", "ar", "bg", "de", "el", "es", "fr", "hi", "ru", "sw", "th",
                               "tr", "ur", "vi", "zh"), ("premise", "hypothesis"), "label",
              ("entailment", "neutral", "contradiction"),
              files=("multinli.train.en.tsv", "{lang}.dev", "{lang}.test"),
              label_aliases=(("contradictory", "contradiction"),)),
    XglueTask("paws-x", "PAWSX", ("en", "de", "es", "fr"), ("sentence1", "sentence2"), "label",
              ("different", "same"), files=("en/train.tsv", "{lang}/dev_2k.tsv", "{lang}/test_2k.tsv"),
              id_column=True),
    XglueTask("qadsm", "QADSM", ("en", "de", "fr"), ("query", "ad_title", "ad_description"),
              "relevance_label", ("Bad", "Good")),
    XglueTask("wpr", "WPR", ("en", "de", "es", "fr", "it", "pt", "zh"),
              ("query", "web_page_title", "web_page_snippet"), "relavance_label",
              ("Bad", "Fair", "Good", "Excellent", "Perfect")),
    XglueTask("qam", "QAM", ("en", "de", "fr"), ("question", "answer"), "label", ("False", "True")),
)}


# --------------------------------------------------------------------------------------------
# The one entry point
# --------------------------------------------------------------------------------------------


def xglue_item(task: str, split_name: str, repo_id: str = XGLUE_REPO) -> HubItem:
    """The export folder ``{task}/{split_name}`` (``train``, ``validation.de``, ...) of XGLUE's
    parquet export as a HubItem."""
    return HubItem("dataset", f"XGLUE {task} {split_name}", repo_id, PARQUET_REVISION, f"{task}/{split_name}")


def load_xglue(task: str, lang: str, split: str, *, local_dir: str | Path | None = None,
               parquet_dir: str | Path | None = None, repo_id: str = XGLUE_REPO):
    """The records of XGLUE ``task`` in language ``lang``, split ``split``, as a Dataset.

    ``local_dir``: the extracted official release; ``parquet_dir``: a folder laid out like the
    Hub's parquet export; neither: that export from the Hub (``repo_id``, revision
    refs/convert/parquet), through the Hugging Face cache. See the module docstring for the
    schema. Raises MtnbError for an unknown task, language or split, for both folders given, and
    for missing or malformed files.
    """
    spec, split = check_request(task, lang, split)
    if local_dir is not None and parquet_dir is not None:
        raise MtnbError("load_xglue: pass local_dir (the official release) or parquet_dir "
                        "(a parquet export), not both")
    if local_dir is not None:
        path = release_file(spec, lang, split, Path(local_dir))
        texts, labels = read_tagging_file(path, spec) if spec.tagging else read_tsv_file(path, spec)
        return build_dataset(spec, texts, labels)
    if parquet_dir is not None:
        return read_parquet_split(Path(parquet_dir), spec, lang, split, where=str(parquet_dir))
    folder = hub_parquet_folder(spec, parquet_split_name(lang, split), repo_id)
    return read_parquet_split(folder, spec, lang, split, where=f"the Hub's {repo_id} parquet export")


def check_request(task: str, lang: str, split: str) -> tuple[XglueTask, str]:
    """The task's description and the split's canonical name; MtnbError when the request
    names no XGLUE task, a language the task lacks, or a split that does not exist."""
    spec = XGLUE.get(task)
    if spec is None:
        raise MtnbError(f"unknown XGLUE task {task!r}: use one of {', '.join(XGLUE)}")
    canonical = SPLIT_ALIASES.get(split, split)
    if canonical not in SPLITS:
        raise MtnbError(f"XGLUE {task}: unknown split {split!r}; use train, validation (or dev) or test")
    if lang not in spec.languages:
        raise MtnbError(f"XGLUE {task} has no language {lang!r}; its languages are {', '.join(spec.languages)}")
    if canonical == "train" and lang != "en":
        raise MtnbError(f"XGLUE {task}: the train split exists only in English; use lang='en', "
                        f"or split validation/test for {lang!r}")
    return spec, canonical


def xglue_features(task: str):
    """The ``datasets.Features`` of ``task``'s records: strings (word lists for ner/pos), the
    label as ClassLabel ids (-1: no label), and for wpr ``query_id`` as int64."""
    spec = XGLUE[task]
    if spec.tagging:
        columns = {"words": List(Value("string")), spec.label_field: List(ClassLabel(names=list(spec.labels)))}
    else:
        columns = {name: Value("string") for name in spec.text_fields}
        columns[spec.label_field] = ClassLabel(names=list(spec.labels))
    if task == "wpr":
        columns["query_id"] = Value("int64")
    return Features(columns)


def build_dataset(spec: XglueTask, texts: dict[str, list], labels: list):
    """A Dataset of ``texts`` (column name -> values) and ``labels`` (ids, or lists of ids for
    tagging tasks), with ``xglue_features``; adds WPR's ``query_id``."""
    columns = {**texts, spec.label_field: labels}
    if spec.name == "wpr":
        columns["query_id"] = query_ids(texts["query"])
    features = xglue_features(spec.name)
    table = pa.table({name: columns[name] for name in features}, schema=features.arrow_schema)
    return Dataset(table, info=DatasetInfo(features=features))


def query_ids(queries: list[str]) -> list[int]:
    """One id per record: records with equal query strings share it; ids count 0, 1, ... in
    the order the queries first appear."""
    ids: dict[str, int] = {}
    return [ids.setdefault(query, len(ids)) for query in queries]


def label_id(value: str, spec: XglueTask, where: str) -> int:
    """The id of label ``value`` (a name, an alias, or an id written as digits); ``where``
    (file and line) goes into the MtnbError raised for anything else."""
    value = dict(spec.label_aliases).get(value, value)
    if value in spec.labels:
        return spec.labels.index(value)
    if value.isdigit() and int(value) < len(spec.labels):
        return int(value)
    raise MtnbError(f"{where}: label {value!r} is not one of XGLUE {spec.name}'s labels "
                    f"({', '.join(spec.labels)}); is this an XGLUE {spec.name} file?")


# --------------------------------------------------------------------------------------------
# The official release (xglue_full_dataset)
# --------------------------------------------------------------------------------------------

def release_file(spec: XglueTask, lang: str, split: str, local_dir: Path) -> Path:
    """The path of ``spec``'s ``split`` file for ``lang`` in the release folder ``local_dir``."""
    root = local_dir / RELEASE_FOLDER if (local_dir / RELEASE_FOLDER).is_dir() else local_dir
    name = spec.files[SPLITS.index(split)].format(task=spec.name, lang=lang)
    path = root / spec.folder / name
    if not path.is_file():
        raise MtnbError(f"XGLUE {spec.name} {split} {lang}: {path} not found; local_dir must be the "
                        f"extracted official release (the folder holding {spec.folder}/)")
    return path


def text_lines(path: Path):
    """Yield ``(line number, line)`` of UTF-8 file ``path``, split at ``\\n`` only, without the
    line end (``\\n``, ``\\r\\n``) and without a leading byte-order mark."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise MtnbError(f"{path}:{number}: not UTF-8 text; is this an XGLUE file?") from None
            if number == 1:
                line = line.lstrip("\ufeff")
            yield number, line.rstrip("\n").rstrip("\r")


def read_tagging_file(path: Path, spec: XglueTask) -> tuple[dict[str, list], list[list[int]]]:
    """``({'words': sentences}, tag ids)`` of a word-per-line NER/POS file (format in the
    module docstring); a word without a tag gets -1."""
    sentences, tag_lists = [], []
    words: list[str] = []
    tags: list[int] = []
    for number, line in text_lines(path):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(words)
                tag_lists.append(tags)
                words, tags = [], []
            continue
        fields = [f.strip() for f in line.split("\t")] if "\t" in line else [f for f in line.split(" ") if f]
        words.append(fields[0])
        tags.append(label_id(fields[1], spec, f"{path}:{number}") if len(fields) > 1 and fields[1] else -1)
    if words:
        sentences.append(words)
        tag_lists.append(tags)
    return {"words": sentences}, tag_lists


def read_tsv_file(path: Path, spec: XglueTask) -> tuple[dict[str, list], list[int]]:
    """``({text field: values}, label ids)`` of a tab-separated release file (format in the
    module docstring); a record without a label gets -1."""
    n = len(spec.text_fields)
    texts: dict[str, list] = {name: [] for name in spec.text_fields}
    labels: list[int] = []
    header_pending = path.name.endswith(".tsv")
    for number, line in text_lines(path):
        if not line.strip():
            continue
        if header_pending:
            header_pending = False
            continue
        fields = line.split("\t")[1:] if spec.id_column else line.split("\t")
        if len(fields) < n:
            raise MtnbError(f"{path}:{number}: {len(fields)} tab-separated field(s) where XGLUE {spec.name} "
                            f"has {n} ({', '.join(spec.text_fields)}) and the label; is this an XGLUE "
                            f"{spec.name} file?")
        for name, value in zip(spec.text_fields, fields):
            texts[name].append(value)
        raw_label = fields[n].strip() if len(fields) > n else ""
        labels.append(label_id(raw_label, spec, f"{path}:{number}") if raw_label else -1)
    return texts, labels


# --------------------------------------------------------------------------------------------
# The Hub's parquet export (revision refs/convert/parquet)
# --------------------------------------------------------------------------------------------

def parquet_split_name(lang: str, split: str) -> str:
    """The export's split folder: ``train``, ``validation.{lang}`` or ``test.{lang}``."""
    return "train" if split == "train" else f"{split}.{lang}"


def hub_parquet_folder(spec: XglueTask, split_name: str, repo_id: str) -> Path:
    """A local folder holding ``{task}/{split_name}/*.parquet`` of the Hub's parquet export of
    ``repo_id``: found in the Hugging Face cache first, else downloaded (only those files) when
    the network is allowed (HF_HUB_OFFLINE unset)."""

    item = xglue_item(spec.name, split_name, repo_id)
    folder = find_cached(item)
    if folder is not None:
        return folder
    why = "HF_HUB_OFFLINE is set"
    if not constants.HF_HUB_OFFLINE:
        try:
            return Path(snapshot_download(repo_id=repo_id, repo_type="dataset", revision=PARQUET_REVISION,
                                          allow_patterns=[f"{item.folder}/*.parquet"]))
        except Exception as err:  # noqa: BLE001 - any failure to reach or read the Hub
            why = f"the download failed: {type(err).__name__}"
    raise MtnbError(
        f"XGLUE {spec.name} {split_name}: the parquet export of {repo_id} is not in the local Hugging Face cache "
        f"and {why}; where there is internet run 'mtnb fetch GRID' (every model and dataset of a grid) or "
        f"'{download_command(item)}', and copy the cache here, or pass local_dir= (the extracted official "
        "XGLUE release) or parquet_dir= (a copy of the export)")


def read_parquet_split(root: Path, spec: XglueTask, lang: str, split: str, *, where: str):
    """The Dataset of the export's ``{task}/{split folder}/*.parquet`` under ``root`` (shards in
    name order). Integer labels are taken as ids, string labels as names; a ClassLabel stored
    with other names than XGLUE's is refused."""
    split_name = parquet_split_name(lang, split)
    folder = root / spec.name / split_name
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise MtnbError(f"XGLUE {spec.name} {split_name}: no parquet files in {where} at {folder}; "
                        f"expected the export layout {spec.name}/{split_name}/0000.parquet")
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    missing = [c for c in (*spec.text_fields, spec.label_field) if c not in table.column_names]
    if missing:
        raise MtnbError(f"{files[0]}: no column {missing[0]!r} (has {', '.join(table.column_names)}); "
                        f"is this the XGLUE {spec.name} export?")
    stored = stored_label_names(pq.read_schema(files[0]), spec.label_field)
    if stored is not None and tuple(stored) != spec.labels:
        raise MtnbError(f"{files[0]}: {spec.label_field} is stored with labels {', '.join(stored)}, "
                        f"not XGLUE's {', '.join(spec.labels)}; is this the XGLUE {spec.name} export?")
    texts = {name: table.column(name).to_pylist() for name in spec.text_fields}
    labels = [parquet_label(value, spec, str(folder)) for value in table.column(spec.label_field).to_pylist()]
    return build_dataset(spec, texts, labels)


def parquet_label(value, spec: XglueTask, where: str):
    """A label as read from parquet (an id, a name, or a list of them) -> id(s), range-checked."""
    if isinstance(value, list):
        return [parquet_label(v, spec, where) for v in value]
    if value is None:
        return -1
    if isinstance(value, str):
        return label_id(value, spec, where)
    if not -1 <= value < len(spec.labels):
        raise MtnbError(f"{where}: label id {value} is outside XGLUE {spec.name}'s "
                        f"{len(spec.labels)} labels; is this the XGLUE {spec.name} export?")
    return int(value)


def stored_label_names(schema, field: str) -> list[str] | None:
    """The ClassLabel names the ``datasets`` library stored for column ``field`` in a parquet
    schema's ``huggingface`` metadata, or None when there are none."""
    metadata = (schema.metadata or {}).get(b"huggingface")
    if metadata is None:
        return None
    try:
        feature = json.loads(metadata)["info"]["features"][field]
    except (ValueError, KeyError, TypeError):
        return None
    while isinstance(feature, dict) and "names" not in feature and "feature" in feature:
        feature = feature["feature"]
    return feature.get("names") if isinstance(feature, dict) else None
