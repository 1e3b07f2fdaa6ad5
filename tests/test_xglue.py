"""XGLUE records from the official release files and from the Hub's parquet export, and the
checks of params/tasks.yaml. Offline: release-format fixtures are in tests/fixtures/xglue, the
parquet export is written here into a temporary folder."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from datasets import ClassLabel, Dataset, Features, List, Value

from mtnb.core.errors import MtnbError
from mtnb.data.tasks import get_task, load_tasks
from mtnb.data.xglue import load_xglue
from conftest import patch_everywhere

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "xglue"
RELEASE = FIXTURES / "xglue_full_dataset"
TASK_TABLE = ROOT / "params" / "tasks.yaml"

# The schema of microsoft/xglue, per task: text fields, label field, label names (XGLUE's order).
SCHEMA = {
    "ner": (["words"], "ner", ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]),
    "pos": (["words"], "pos", ["ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
                              "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X"]),
    "nc": (["news_title", "news_body"], "news_category",
           ["foodanddrink", "sports", "travel", "finance", "lifestyle", "news", "entertainment", "health",
            "video", "autos"]),
    "xnli": (["premise", "hypothesis"], "label", ["entailment", "neutral", "contradiction"]),
    "paws-x": (["sentence1", "sentence2"], "label", ["different", "same"]),
    "qadsm": (["query", "ad_title", "ad_description"], "relevance_label", ["Bad", "Good"]),
    "wpr": (["query", "web_page_title", "web_page_snippet"], "relavance_label",
            ["Bad", "Fair", "Good", "Excellent", "Perfect"]),
    "qam": (["question", "answer"], "label", ["False", "True"]),
}

# Record counts of every fixture file, by (task, language, split).
COUNTS = {
    ("ner", "en", "train"): 3, ("ner", "en", "validation"): 2, ("ner", "de", "validation"): 2,
    ("ner", "de", "test"): 2, ("ner", "es", "test"): 2,
    ("pos", "en", "train"): 3, ("pos", "en", "validation"): 2, ("pos", "fr", "validation"): 1,
    ("pos", "vi", "test"): 1,
    ("nc", "en", "train"): 3, ("nc", "en", "validation"): 2, ("nc", "de", "validation"): 2, ("nc", "fr", "test"): 2,
    ("xnli", "en", "train"): 3, ("xnli", "en", "validation"): 3, ("xnli", "de", "validation"): 2,
    ("xnli", "sw", "test"): 2,
    ("paws-x", "en", "train"): 3, ("paws-x", "en", "validation"): 2, ("paws-x", "de", "validation"): 2,
    ("paws-x", "es", "test"): 2,
    ("qadsm", "en", "train"): 3, ("qadsm", "en", "validation"): 2, ("qadsm", "de", "validation"): 2,
    ("qadsm", "fr", "test"): 2,
    ("wpr", "en", "train"): 6, ("wpr", "en", "validation"): 3, ("wpr", "de", "validation"): 4,
    ("wpr", "zh", "test"): 3,
    ("qam", "en", "train"): 3, ("qam", "en", "validation"): 2, ("qam", "fr", "validation"): 2,
    ("qam", "de", "test"): 2,
}

# Some fixture files' records, written out independently of them: labels by name, None = no label.
EXPECTED = {
    ("ner", "de", "validation"): [
        {"words": ["Jürgen", "wohnt", "in", "Köln", "."], "ner": ["B-PER", "O", "O", "B-LOC", "O"]},
        {"words": ["Die", "Stadtwerke", "Münster", "streiken"], "ner": ["O", "B-ORG", "I-ORG", "O"]},
    ],
    ("ner", "es", "test"): [
        {"words": ["Marta", "corre", "en", "Sevilla"], "ner": [None, None, None, None]},
        {"words": ["Hola"], "ner": [None]},
    ],
    ("pos", "en", "train"): [
        {"words": ["The", "cat", "sleeps", "."], "pos": ["DET", "NOUN", "VERB", "PUNCT"]},
        {"words": ["She", "can", "swim", "and", "read"], "pos": ["PRON", "AUX", "VERB", "CCONJ", "VERB"]},
        {"words": ["Two", "old", "boats"], "pos": ["NUM", "ADJ", "NOUN"]},
    ],
    ("pos", "vi", "test"): [{"words": ["Hà Nội", "rất", "đẹp"], "pos": ["PROPN", "ADV", "ADJ"]}],
    ("nc", "en", "train"): [
        {"news_title": "Ten quick pasta dinners", "news_body": "Weeknight recipes that need one pot.",
         "news_category": "foodanddrink"},
        {"news_title": "Late goal lifts the home side", "news_body": "A header in stoppage time decided it.",
         "news_category": "sports"},
        {"news_title": 'Markets "cautious" ahead of rate call', "news_body": "", "news_category": "finance"},
    ],
    ("xnli", "en", "train"): [
        {"premise": "A man plays a guitar on stage.", "hypothesis": "Someone is making music.",
         "label": "entailment"},
        {"premise": "The shop opens at nine.", "hypothesis": 'The shop is "closed" all day.',
         "label": "contradiction"},
        {"premise": "Kids run in the park.", "hypothesis": "The kids are brothers.", "label": "neutral"},
    ],
    ("xnli", "de", "validation"): [
        {"premise": "Der Zug ist pünktlich.", "hypothesis": "Der Zug hat Verspätung.", "label": "contradiction"},
        {"premise": "Sie liest ein Buch.", "hypothesis": "Sie liest.", "label": "entailment"},
    ],
    ("paws-x", "es", "test"): [
        {"sentence1": "El tren sale a las ocho.", "sentence2": "A las ocho sale el tren.", "label": "same"},
        {"sentence1": "Luis vende pan.", "sentence2": "Luis compra pan.", "label": "different"},
    ],
    ("qadsm", "fr", "test"): [
        {"query": "vol pas cher", "ad_title": "Vols Pas Chers", "ad_description": "Réservez en ligne.",
         "relevance_label": None},
        {"query": "vol pas cher", "ad_title": "Chaussures de ski", "ad_description": "Toutes les tailles.",
         "relevance_label": None},
    ],
    ("qadsm", "de", "validation"): [
        {"query": "winterreifen kaufen", "ad_title": "Winterreifen Online", "ad_description": "",
         "relevance_label": "Good"},
        {"query": "winterreifen kaufen", "ad_title": "Kochkurs in Hamburg",
         "ad_description": "Lernen Sie italienisch kochen.", "relevance_label": "Bad"},
    ],
    ("wpr", "en", "train"): [
        {"query": "boil an egg", "web_page_title": "How to Boil an Egg",
         "web_page_snippet": "Place eggs in boiling water for 7 minutes.", "relavance_label": "Perfect"},
        {"query": "boil an egg", "web_page_title": "Egg - Wikipedia",
         "web_page_snippet": "An egg is laid by a female animal.", "relavance_label": "Fair"},
        {"query": "boil an egg", "web_page_title": "Kitchen Timers",
         "web_page_snippet": "Buy a timer for your kitchen.", "relavance_label": "Bad"},
        {"query": "tide times dover", "web_page_title": "Dover Tide Table",
         "web_page_snippet": "High and low water for the week.", "relavance_label": "Excellent"},
        {"query": "tide times dover", "web_page_title": "Dover Castle",
         "web_page_snippet": "Visit the castle above the port.", "relavance_label": "Fair"},
        {"query": "boil an egg", "web_page_title": "Soft Boiled Eggs",
         "web_page_snippet": "Six minutes for a runny yolk.", "relavance_label": "Excellent"},
    ],
    ("qam", "fr", "validation"): [
        {"question": "quelle est la capitale du canada", "answer": "La capitale du Canada est Ottawa.",
         "label": "True"},
        {"question": "quelle est la capitale du canada", "answer": "Le Canada a dix provinces.",
         "label": "False"},
    ],
}


def label_ids(task: str, record: dict) -> dict:
    """``record`` with its label name(s) turned into XGLUE ids (None -> -1)."""
    _, label_field, names = SCHEMA[task]
    to_id = lambda name: -1 if name is None else names.index(name)  # noqa: E731
    value = record[label_field]
    return {**record, label_field: [to_id(v) for v in value] if isinstance(value, list) else to_id(value)}


def single_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# --------------------------------------------------------------------------------------------
# The official release files
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", sorted(COUNTS), ids=lambda key: ".".join(key))
def test_release_file_loads_into_the_schema(key):
    task, lang, split = key
    text_fields, label_field, names = SCHEMA[task]
    ds = load_xglue(task, lang, split, local_dir=RELEASE)
    expected_columns = text_fields + [label_field] + (["query_id"] if task == "wpr" else [])
    assert ds.column_names == expected_columns
    assert len(ds) == COUNTS[key]
    if task in ("ner", "pos"):
        assert ds.features["words"] == List(Value("string"))
        assert ds.features[label_field] == List(ClassLabel(names=names))
        for row in ds:
            assert len(row["words"]) == len(row[label_field]) > 0
    else:
        assert all(ds.features[name] == Value("string") for name in text_fields)
        assert ds.features[label_field] == ClassLabel(names=names)
    if key in EXPECTED:
        rows = [{k: v for k, v in row.items() if k != "query_id"} for row in ds]
        assert rows == [label_ids(task, record) for record in EXPECTED[key]]


def test_spot_checks_pin_xglue_label_ids():
    ner = load_xglue("ner", "en", "train", local_dir=RELEASE)[0]
    assert ner["words"][:2] == ["Lena", "Marsh"] and ner["ner"][:2] == [1, 2]   # B-PER, I-PER
    assert ner["words"][4] == "Bank" and ner["ner"][4] == 4                     # trailing space kept out
    nc = load_xglue("nc", "de", "dev", local_dir=RELEASE)
    assert nc["news_category"] == [7, 6]                                         # health, entertainment
    paws = load_xglue("paws-x", "en", "train", local_dir=RELEASE)
    assert paws["label"] == [1, 0, 1] and paws[1]["sentence1"] == "Ann met Bob in Paris."
    wpr = load_xglue("wpr", "zh", "test", local_dir=RELEASE)
    assert wpr["relavance_label"] == [4, 1, 3] and wpr[0]["query"] == "北京 天气"
    qam = load_xglue("qam", "de", "test", local_dir=RELEASE)
    assert qam["label"] == [1, 0]


def test_release_folder_or_the_folder_above_it():
    inner = load_xglue("qam", "en", "validation", local_dir=RELEASE)
    outer = load_xglue("qam", "en", "dev", local_dir=FIXTURES)
    assert inner.to_list() == outer.to_list()


def test_wpr_query_ids_group_records_by_query():
    ds = load_xglue("wpr", "en", "train", local_dir=RELEASE)
    assert ds["query_id"] == [0, 0, 0, 1, 1, 0]   # "boil an egg" comes back after "tide times dover"
    for row in ds:
        same = [other["query"] == row["query"] for other in ds]
        assert same == [other["query_id"] == row["query_id"] for other in ds]
    assert load_xglue("wpr", "de", "dev", local_dir=RELEASE)["query_id"] == [0, 0, 1, 1]


# --------------------------------------------------------------------------------------------
# The parquet export, written here from the expected records
# --------------------------------------------------------------------------------------------

def hub_features(task: str) -> Features:
    """The features microsoft/xglue stores for ``task`` (its ClassLabel names, no query_id)."""
    text_fields, label_field, names = SCHEMA[task]
    if task in ("ner", "pos"):
        return Features({"words": List(Value("string")), label_field: List(ClassLabel(names=names))})
    return Features({**{name: Value("string") for name in text_fields}, label_field: ClassLabel(names=names)})


def write_export(root: Path) -> None:
    """Write EXPECTED as the Hub's export: ``{task}/{split}[.{lang}]/NNNN.parquet``, with a few
    variants: ner without the datasets metadata, nc with labels stored as names, wpr in two
    shards, qam with an extra column."""
    for (task, lang, split), records in EXPECTED.items():
        folder = root / task / (split if split == "train" else f"{split}.{lang}")
        folder.mkdir(parents=True)
        rows = [label_ids(task, record) for record in records]
        if task == "ner":
            pq.write_table(pa.Table.from_pylist(rows), folder / "0000.parquet")
        elif task == "nc":
            pq.write_table(pa.Table.from_pylist(records), folder / "0000.parquet")
        elif task == "wpr":
            for shard, part in enumerate((rows[:4], rows[4:])):
                Dataset.from_list(part, features=hub_features(task)).to_parquet(folder / f"{shard:04d}.parquet")
        elif task == "qam":
            extra = [{**row, "idx": i} for i, row in enumerate(rows)]
            features = Features({**hub_features(task), "idx": Value("int32")})
            Dataset.from_list(extra, features=features).to_parquet(folder / "0000.parquet")
        else:
            Dataset.from_list(rows, features=hub_features(task)).to_parquet(folder / "0000.parquet")


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xglue-parquet")
    write_export(root)
    return root


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda key: ".".join(key))
def test_parquet_export_loads_the_same_records(export_dir, key):
    task, lang, split = key
    from_release = load_xglue(task, lang, split, local_dir=RELEASE)
    from_parquet = load_xglue(task, lang, "dev" if split == "validation" else split, parquet_dir=export_dir)
    assert from_parquet.features == from_release.features
    assert from_parquet.to_list() == from_release.to_list()


def test_hub_export_is_fetched_into_the_cache_then_read(export_dir, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append({"repo_id": repo_id, **kwargs})
        if kwargs.get("local_files_only"):      # the offline lookup first: not in the cache
            raise LocalEntryNotFoundError("not cached")
        return str(export_dir)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    patch_everywhere(monkeypatch, "huggingface_hub", "snapshot_download", fake_snapshot_download)
    ds = load_xglue("xnli", "de", "validation")
    assert [c.get("local_files_only", False) for c in calls] == [True, False], "offline first, then the download"
    assert calls[-1] == {"repo_id": "microsoft/xglue", "repo_type": "dataset", "revision": "refs/convert/parquet",
                         "allow_patterns": ["xnli/validation.de/*.parquet"]}
    assert ds.to_list() == load_xglue("xnli", "de", "dev", local_dir=RELEASE).to_list()


def test_hub_export_offline_and_not_cached_says_how_to_get_it(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MtnbError) as err:
        load_xglue("ner", "de", "test")
    message = single_line(err)
    assert "microsoft/xglue" in message and "refs/convert/parquet" in message
    assert "local_dir=" in message and "ner/test.de/*.parquet" in message


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("task, lang, split, words", [
    ("mlqa", "en", "train", "unknown XGLUE task 'mlqa'"),
    ("ner", "fr", "validation", "has no language 'fr'"),
    ("ner", "de", "train", "only in English"),
    ("pos", "en", "training", "unknown split 'training'"),
])
def test_bad_requests_are_refused_before_reading(task, lang, split, words):
    with pytest.raises(MtnbError) as err:
        load_xglue(task, lang, split, local_dir="/nonexistent/xglue")
    assert words in single_line(err)


def test_both_folders_at_once_is_refused(export_dir):
    with pytest.raises(MtnbError) as err:
        load_xglue("ner", "en", "train", local_dir=RELEASE, parquet_dir=export_dir)
    assert "not both" in single_line(err)


def test_missing_release_file_names_the_path(tmp_path):
    with pytest.raises(MtnbError) as err:
        load_xglue("nc", "ru", "test", local_dir=tmp_path)
    message = single_line(err)
    assert str(tmp_path / "NC" / "xglue.nc.ru.test") in message and "official release" in message


def test_missing_parquet_split_names_the_layout(export_dir):
    with pytest.raises(MtnbError) as err:
        load_xglue("ner", "nl", "test", parquet_dir=export_dir)
    assert "ner/test.nl/0000.parquet" in single_line(err)


@pytest.mark.parametrize("relative, text, words", [
    ("NER/en.dev", "Tom B-PER\nsaw O\nFoo B-XYZ\n", "en.dev:3: label 'B-XYZ'"),
    ("QAM/xglue.qam.en.dev", "who wrote hamlet\t0\nno tab here\n", "xglue.qam.en.dev:2: 1 tab-separated field"),
    ("WPR/xglue.wpr.en.dev", "q\tt\ts\t7\n", "label '7' is not one of"),
    ("XNLI/en.dev", b"\xff\xfe bad bytes\n", "en.dev:1: not UTF-8"),
])
def test_malformed_release_files_point_at_the_line(tmp_path, relative, text, words):
    path = tmp_path / relative
    path.parent.mkdir(parents=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    task = {"NER": "ner", "QAM": "qam", "WPR": "wpr", "XNLI": "xnli"}[relative.split("/")[0]]
    with pytest.raises(MtnbError) as err:
        load_xglue(task, "en", "validation", local_dir=tmp_path)
    assert words in single_line(err)


def test_parquet_with_other_label_names_or_ids_is_refused(tmp_path):
    folder = tmp_path / "qam" / "validation.en"
    folder.mkdir(parents=True)
    other = Features({"question": Value("string"), "answer": Value("string"), "label": ClassLabel(names=["no", "yes"])})
    Dataset.from_list([{"question": "q", "answer": "a", "label": 1}], features=other).to_parquet(folder / "0000.parquet")
    with pytest.raises(MtnbError) as err:
        load_xglue("qam", "en", "validation", parquet_dir=tmp_path)
    assert "stored with labels no, yes" in single_line(err)
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a", "label": 5}]), folder / "0000.parquet")
    with pytest.raises(MtnbError) as err:
        load_xglue("qam", "en", "validation", parquet_dir=tmp_path)
    assert "label id 5 is outside" in single_line(err)


# --------------------------------------------------------------------------------------------
# params/tasks.yaml
# --------------------------------------------------------------------------------------------

def test_task_table_holds_the_eight_xglue_tasks():
    tasks = {name: t for name, t in load_tasks().items() if t.source == "xglue"}
    assert list(tasks) == ["ner", "pos", "nc", "xnli", "paws-x", "qadsm", "wpr", "qam"]
    assert tasks["ner"].metric == "f1_entity" and tasks["wpr"].metric == "ndcg"
    assert {name for name, t in tasks.items() if t.metric == "accuracy"} == {"pos", "nc", "xnli", "paws-x", "qadsm", "qam"}
    assert {name: t.head for name, t in tasks.items()} == {
        "ner": "token", "pos": "token", "nc": "sequence", "xnli": "pair", "paws-x": "pair",
        "qadsm": "pair", "wpr": "ranking", "qam": "pair"}
    assert tasks["pos"].lr == 2.0e-5 and all(t.lr == 5.0e-6 for n, t in tasks.items() if n != "pos")
    for name, (text_fields, label_field, names) in SCHEMA.items():
        spec = tasks[name]
        assert (list(spec.text_fields), spec.label_field, list(spec.labels)) == (text_fields, label_field, names)
        assert "en" in spec.languages
    assert len(tasks["xnli"].languages) == 15 and len(tasks["pos"].languages) == 17


def test_segments_pair_the_texts_as_documented():
    tasks = load_tasks()
    ad = load_xglue("qadsm", "de", "dev", local_dir=RELEASE)[1]
    assert tasks["qadsm"].segments(ad) == ("winterreifen kaufen", "Kochkurs in Hamburg Lernen Sie italienisch kochen.")
    news = load_xglue("nc", "en", "train", local_dir=RELEASE)[0]
    assert tasks["nc"].segments(news) == ("Ten quick pasta dinners Weeknight recipes that need one pot.",)
    no_description = load_xglue("qadsm", "de", "dev", local_dir=RELEASE)[0]
    assert tasks["qadsm"].segments(no_description) == ("winterreifen kaufen", "Winterreifen Online")
    sentence = load_xglue("ner", "en", "dev", local_dir=RELEASE)[1]
    assert tasks["ner"].segments(sentence) == (["Rain", "hit", "Leeds"],)


def test_get_task_lists_the_known_tasks():
    assert get_task("paws-x").labels == ("different", "same")
    with pytest.raises(MtnbError) as err:
        get_task("sst2")
    assert "unknown task 'sst2'" in single_line(err) and "ner, pos, nc" in str(err.value)


def table() -> dict:
    return yaml.safe_load(TASK_TABLE.read_text(encoding="utf-8"))


def write_table(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def changed(task: str, **changes) -> dict:
    """The real table with ``task``'s keys changed (a value of ... deletes the key)."""
    doc = copy.deepcopy(table())
    for key, value in changes.items():
        if value is ...:
            del doc["tasks"][task][key]
        else:
            doc["tasks"][task][key] = value
    return doc


@pytest.mark.parametrize("task, changes, words", [
    ("ner", {"epochs": 3}, "unknown key 'epochs'"),
    ("pos", {"metric": ...}, "missing key 'metric'"),
    ("nc", {"metric": "f1"}, "metric 'f1' is not one of"),
    ("xnli", {"head": "pairs"}, "head 'pairs' is not one of"),
    ("qam", {"source": "hub"}, "source 'hub' is not one of"),
    ("ner", {"languages": "en de"}, "languages must be a non-empty list"),
    ("ner", {"languages": []}, "languages must be a non-empty list"),
    ("ner", {"languages": ["en", "DE"]}, "languages: 'DE' is not a lowercase ISO 639 code"),
    ("ner", {"languages": ["en", "de", "de"]}, "languages: 'de' is listed twice"),
    ("ner", {"languages": ["de", "es"]}, "languages must include 'en'"),
    ("paws-x", {"languages": ["en", "ja"]}, "languages: XGLUE paws-x has no 'ja'"),
    ("pos", {"lr": -1.0}, "lr -1.0 is not a positive number"),
    ("pos", {"lr": "fast"}, "lr 'fast' is not a positive number"),
    ("pos", {"lr": True}, "lr True is not a positive number"),
    ("qam", {"labels": [False, True]}, "labels: False is not a name (a non-empty string); quote it"),
    ("xnli", {"labels": ["neutral", "entailment", "contradiction"]}, "labels must be XGLUE's, in its order"),
    ("wpr", {"label_field": "relevance_label"}, "label_field must be XGLUE's"),
    ("ner", {"text_fields": ["words", "lemmas"]}, "text_fields: a token head reads exactly 1"),
    ("qam", {"text_fields": ["question"]}, "text_fields: a pair head reads at least 2"),
    ("nc", {"dataset": "news"}, "key 'dataset' is only for source mini"),
])
def test_task_table_malformations_name_file_task_and_key(tmp_path, task, changes, words):
    path = write_table(tmp_path, changed(task, **changes))
    with pytest.raises(MtnbError) as err:
        load_tasks(path)
    message = single_line(err)
    assert str(path) in message and f"task {task!r}" in message and words in message


def test_task_table_structure_errors(tmp_path):
    cases = {
        "tasks:\n  ner: [source, xglue\n": "not valid YAML",
        "task:\n  ner: {}\n": "expected only a top-level 'tasks:' mapping",
        "tasks:\n  - ner\n": "expected only a top-level 'tasks:' mapping",
        "tasks:\n  ner: xglue\n": "task 'ner': expected a mapping of keys, got str",
    }
    for text, words in cases.items():
        path = tmp_path / "tasks.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(MtnbError) as err:
            load_tasks(path)
        assert str(path) in single_line(err) and words in str(err.value)
    doc = table()
    doc["tasks"]["sentiment"] = {**doc["tasks"]["nc"], "labels": ["neg", "pos"]}
    with pytest.raises(MtnbError) as err:
        load_tasks(write_table(tmp_path, doc))
    assert "task 'sentiment': source xglue, but XGLUE has no task 'sentiment'" in single_line(err)


def test_mini_entries_are_accepted_with_an_optional_dataset(tmp_path):
    doc = table()
    doc["tasks"]["mini-sst"] = {"source": "mini", "dataset": "sst-mini", "languages": ["en", "de", "sw"],
                                "metric": "accuracy", "head": "sequence", "lr": "1e-4",
                                "text_fields": ["sentence"], "label_field": "label", "labels": ["neg", "pos"]}
    doc["tasks"]["mini-tags"] = {"source": "mini", "languages": ["en"], "metric": "f1_entity", "head": "token",
                                 "lr": 3.0e-5, "text_fields": ["tokens"], "label_field": "tags",
                                 "labels": ["O", "B-X", "I-X"]}
    tasks = load_tasks(write_table(tmp_path, doc))
    assert tasks["mini-sst"].dataset == "sst-mini" and tasks["mini-sst"].lr == 1e-4
    assert tasks["mini-tags"].dataset is None and tasks["mini-tags"].languages == ("en",)
    doc["tasks"]["mini-sst"]["dataset"] = "../elsewhere"
    with pytest.raises(MtnbError) as err:
        load_tasks(write_table(tmp_path, doc))
    assert "task 'mini-sst': dataset '../elsewhere' must be a folder name" in single_line(err)
