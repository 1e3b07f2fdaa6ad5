"""The metrics: each against its reference implementation, local offline loading, errors.

References: seqeval (XGLUE's NER scorer) for entity_f1, sklearn's accuracy_score for accuracy,
and for ndcg a per-query loop over sklearn's ndcg_score written here as XGLUE's official WPR
scorer writes it (group by query, skip queries with fewer than two candidates, mean).

Importing evaluate takes about 10 s on a small machine (it imports transformers.pipelines for
its evaluator); the tests themselves take about 10 s more, the offline subprocess 4 s of it.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from sklearn.metrics import accuracy_score, ndcg_score

from mtnb.core.errors import MtnbError
from mtnb.transfer.metrics import METRIC_NAMES, load_metric, score

ROOT = Path(__file__).resolve().parent.parent
TYPES = ("PER", "LOC", "ORG")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache folder for evaluate's copies of the scripts, shared by the module's tests."""
    return tmp_path_factory.mktemp("evaluate-cache")


@pytest.fixture
def metrics(cache) -> dict:
    """{name: metric}, fresh for each test (evaluate leaves a metric unusable after an input error)."""
    return {name: load_metric(name, cache_dir=cache) for name in METRIC_NAMES}


# --------------------------------------------------------------------------------------------
# entity_f1 against seqeval
# --------------------------------------------------------------------------------------------

def random_tags(rng: random.Random, length: int) -> list[str]:
    """Random tags, ill-formed ones included: I- after O, I- after another type, B- after B-."""
    return [rng.choice(["O", "O", "O"] + [f"{p}-{t}" for p in "BI" for t in TYPES]) for _ in range(length)]


def perturbed(rng: random.Random, tags: list[str]) -> list[str]:
    """``tags`` with about a quarter of them replaced (so that some entities match)."""
    return [rng.choice(["O", "B-PER", "I-PER", "I-LOC", "B-ORG"]) if rng.random() < 0.25 else t for t in tags]


def seqeval_figures(references, predictions) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns when a figure is 0/0 and sets it to 0
        return {"f1": f1_score(references, predictions),
                "precision": precision_score(references, predictions),
                "recall": recall_score(references, predictions),
                "report": classification_report(references, predictions, output_dict=True)}


def test_entity_f1_matches_seqeval_on_random_bio(metrics):
    rng = random.Random(0)
    for case in range(200):
        references = [random_tags(rng, rng.randint(0, 12)) for _ in range(rng.randint(1, 6))]
        if case % 3 == 0:
            predictions = [random_tags(rng, len(s)) for s in references]
        else:
            predictions = [perturbed(rng, s) for s in references]
        ours = metrics["entity_f1"].compute(predictions=predictions, references=references)
        theirs = seqeval_figures(references, predictions)
        for key in ("f1", "precision", "recall"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-12), (case, key, references, predictions)
        for kind, figures in ours["per_type"].items():
            row = theirs["report"][kind]
            assert figures["precision"] == pytest.approx(row["precision"], abs=1e-12)
            assert figures["recall"] == pytest.approx(row["recall"], abs=1e-12)
            assert figures["f1"] == pytest.approx(row["f1-score"], abs=1e-12)
            assert figures["number"] == row["support"]


def test_entity_f1_ill_formed_starts_and_boundaries(metrics):
    # reference: PER(0-1), LOC(3), ORG(5-6), PER(7); I-LOC after O starts an entity, I-PER after
    # I-ORG starts another, and an entity never runs over into the next sentence
    references = [["B-PER", "I-PER", "O", "I-LOC", "O", "B-ORG", "I-ORG", "I-PER"], ["I-PER"]]
    predictions = [["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "B-ORG", "I-PER"], ["I-PER"]]
    ours = metrics["entity_f1"].compute(predictions=predictions, references=references)
    # predicted: PER(0-1) LOC(3) ORG(5) ORG(6) PER(7) PER(s1): 4 of 6 right; 4 of 5 found
    assert ours["precision"] == pytest.approx(4 / 6)
    assert ours["recall"] == pytest.approx(4 / 5)
    assert ours["f1"] == pytest.approx(8 / 11)
    assert ours["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "number": 1}
    assert ours["f1"] == pytest.approx(seqeval_figures(references, predictions)["f1"])


def test_entity_f1_no_entities_is_zero(metrics):
    ours = metrics["entity_f1"].compute(predictions=[["O", "O"]], references=[["O", "O"]])
    assert ours == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}}


def test_entity_f1_rejects_bad_input(metrics):
    with pytest.raises(MtnbError, match="'NOUN' is not O, B-TYPE or I-TYPE"):
        metrics["entity_f1"].compute(predictions=[["NOUN"]], references=[["O"]])
    with pytest.raises(MtnbError, match="'B-' is not"):
        metrics["entity_f1"].compute(predictions=[["O"]], references=[["B-"]])
    with pytest.raises(MtnbError, match="sentence 1 has 1 predicted tags but 2 reference tags"):
        metrics["entity_f1"].compute(predictions=[["O"], ["O"]], references=[["O"], ["O", "O"]])


# --------------------------------------------------------------------------------------------
# accuracy against sklearn
# --------------------------------------------------------------------------------------------

def test_accuracy_matches_sklearn_on_flat_labels(metrics):
    rng = random.Random(1)
    for case in range(60):
        n = rng.randint(1, 40)
        references = [rng.randint(0, 4) for _ in range(n)]
        predictions = [r if rng.random() < 0.6 else rng.randint(0, 4) for r in references]
        if case % 2:
            references = [f"label{r}" for r in references]
            predictions = [f"label{p}" for p in predictions]
        ours = metrics["accuracy"].compute(predictions=predictions, references=references)
        assert ours["accuracy"] == pytest.approx(accuracy_score(references, predictions), abs=1e-12)
        assert ours["count"] == n


def test_accuracy_over_tokens_ignores_minus_100_and_none(metrics):
    rng = random.Random(2)
    for case in range(60):
        references, predictions = [], []
        for _ in range(rng.randint(1, 5)):
            sentence = [rng.choice([-100, 0, 1, 2, 3]) for _ in range(rng.randint(1, 10))]
            references.append(sentence)
            predictions.append([rng.randint(0, 3) for _ in sentence])
        references[0][-1] = rng.randint(0, 3)  # evaluate reads the label type from sentence 0
        if case % 2:  # strings, None as the ignore mark
            references = [[None if r == -100 else f"t{r}" for r in s] for s in references]
            predictions = [[f"t{p}" for p in s] for s in predictions]
        kept = [(p, r) for ps, rs in zip(predictions, references) for p, r in zip(ps, rs) if r not in (-100, None)]
        if not kept:
            continue
        ours = metrics["accuracy"].compute(predictions=predictions, references=references)
        flat_predictions, flat_references = zip(*kept)
        assert ours["accuracy"] == pytest.approx(accuracy_score(flat_references, flat_predictions), abs=1e-12)
        assert ours["count"] == len(kept)


def test_accuracy_takes_none_in_the_first_sentence(metrics):
    accuracy = metrics["accuracy"]
    assert accuracy.compute(predictions=[["a", "b"], ["c"]], references=[[None, "b"], ["x"]]) == \
        {"accuracy": 0.5, "count": 2}
    assert accuracy.compute(predictions=[[1], [2, 3]], references=[[None], [2, 0]]) == \
        {"accuracy": 0.5, "count": 2}


def test_accuracy_keeps_digit_strings_as_strings(metrics):
    ours = metrics["accuracy"].compute(predictions=["3", "a"], references=["03", "a"])
    assert ours["accuracy"] == 0.5


def test_accuracy_rejects_bad_input(metrics):
    with pytest.raises(MtnbError, match="every reference is -100 or None"):
        metrics["accuracy"].compute(predictions=[[1, 2]], references=[[-100, -100]])
    with pytest.raises(MtnbError, match="sentence 0 has 1 predictions but 2 references"):
        metrics["accuracy"].compute(predictions=[[1]], references=[[1, 2]])


# --------------------------------------------------------------------------------------------
# ndcg against the official scorer's loop
# --------------------------------------------------------------------------------------------

def official_ndcg(scores, grades, query_ids) -> float:
    """XGLUE's WPR scorer: per query sklearn ndcg_score (defaults), queries of one candidate
    skipped, the mean over the others."""
    groups: dict = {}
    for s, g, q in zip(scores, grades, query_ids):
        groups.setdefault(q, ([], []))
        groups[q][0].append(float(s))
        groups[q][1].append(float(g))
    values = [ndcg_score(np.asarray([g]), np.asarray([s])) for s, g in groups.values() if len(g) >= 2]
    return float(np.mean(values))


def random_ranking(rng: random.Random, case: int):
    """Interleaved candidates of a few queries, some of one candidate, some of one grade."""
    rows = []
    for q in range(rng.randint(1, 8)):
        n = rng.choice([1, 2, 3, 5, 8])
        shape = rng.random()
        if shape < 0.15:
            grades = [0] * n  # nothing relevant
        elif shape < 0.3:
            grades = [rng.randint(1, 4)] * n  # all equally relevant
        else:
            grades = [rng.randint(0, 4) for _ in range(n)]
        for g in grades:
            if case % 3 == 0:
                s = float(rng.randint(0, 4))  # predicted grades, as XGLUE submissions: many ties
            else:
                s = rng.random()
            rows.append((s, g, q if case % 2 else f"query-{q}"))
    rng.shuffle(rows)
    scores, grades, query_ids = map(list, zip(*rows))
    return scores, grades, query_ids


def test_ndcg_matches_the_official_loop_on_random_groups(metrics):
    rng = random.Random(3)
    checked = 0
    for case in range(150):
        scores, grades, query_ids = random_ranking(rng, case)
        if all(query_ids.count(q) < 2 for q in set(query_ids)):
            continue
        ours = metrics["ndcg"].compute(predictions=scores, references=grades, query_ids=query_ids)
        assert ours["ndcg"] == pytest.approx(official_ndcg(scores, grades, query_ids), abs=1e-12), case
        assert ours["queries"] + ours["skipped"] == len(set(query_ids))
        checked += 1
    assert checked > 100


def test_ndcg_edge_queries_follow_sklearn_and_the_official_scorer(metrics):
    # sklearn: all grades 0 -> 0 and all grades equal and positive -> 1, whatever the scores
    assert ndcg_score([[0, 0, 0]], [[0.3, 0.2, 0.1]]) == 0.0
    assert ndcg_score([[2, 2, 2]], [[0.1, 0.2, 0.3]]) == 1.0
    ndcg = metrics["ndcg"]
    # query a: all 0 (scores 0); b: all 2 (scores 1); c: one candidate (skipped)
    result = ndcg.compute(predictions=[0.9, 0.1, 0.5, 0.7, 0.3], references=[0, 0, 2, 2, 4],
                          query_ids=["a", "a", "b", "b", "c"])
    assert result == {"ndcg": 0.5, "queries": 2, "skipped": 1}
    # a perfect and a reversed ranking of grades 0..2
    perfect = ndcg.compute(predictions=[3, 2, 1], references=[2, 1, 0], query_ids=[7, 7, 7])["ndcg"]
    reverse = ndcg.compute(predictions=[1, 2, 3], references=[2, 1, 0], query_ids=[7, 7, 7])["ndcg"]
    assert perfect == 1.0
    assert reverse == pytest.approx((0 + 1 / np.log2(3) + 2 / np.log2(4)) / (2 + 1 / np.log2(3)))


def test_ndcg_rejects_bad_input(metrics):
    with pytest.raises(MtnbError, match="no query has two or more candidates"):
        metrics["ndcg"].compute(predictions=[0.1, 0.2], references=[1, 0], query_ids=[1, 2])
    with pytest.raises(MtnbError, match="negative"):
        metrics["ndcg"].compute(predictions=[0.1, 0.2], references=[1, -1], query_ids=[1, 1])


# --------------------------------------------------------------------------------------------
# load_metric and score
# --------------------------------------------------------------------------------------------

def test_load_metric_gives_evaluate_metrics_and_rejects_unknown_names(tmp_path):
    import evaluate

    metric = load_metric("accuracy", cache_dir=tmp_path / "one")
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == "accuracy"
    # a second cache folder in the same process is a second package, not a stale one
    again = load_metric("accuracy", cache_dir=tmp_path / "two")
    assert again.compute(predictions=[1, 0], references=[1, 1])["accuracy"] == 0.5
    assert list((tmp_path / "two" / "modules").rglob("accuracy.py"))
    with pytest.raises(MtnbError, match="unknown metric 'f1_entity': use one of entity_f1, accuracy, ndcg"):
        load_metric("f1_entity")


def test_score_maps_the_task_table_names(project):
    from mtnb.data.tasks import METRICS

    assert set(METRICS) == {"f1_entity", "accuracy", "ndcg"}
    assert score("f1_entity", [["B-PER", "O"]], [["B-PER", "O"]]) == 1.0
    assert score("accuracy", [1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    assert score("ndcg", [0.2, 0.1], [2, 0], query_ids=["q", "q"]) == 1.0
    assert list((project / ".cache" / "evaluate" / "modules").rglob("ndcg.py"))  # the default folder


def test_score_rejects_bad_input(project):
    with pytest.raises(MtnbError, match="unknown task metric 'f1': use one of f1_entity, accuracy, ndcg"):
        score("f1", [1], [1])
    with pytest.raises(MtnbError, match="2 predictions but 1 references"):
        score("accuracy", [1, 2], [1])
    with pytest.raises(MtnbError, match="no predictions"):
        score("accuracy", [], [])
    with pytest.raises(MtnbError, match="give query_ids="):
        score("ndcg", [0.1, 0.2], [1, 0])
    with pytest.raises(MtnbError, match="accuracy: Predictions and/or references don't match"):
        score("accuracy", [1, 2], ["a", "b"])  # evaluate's own format check, in one line


OFFLINE_SCRIPT = textwrap.dedent("""
    import json, socket, sys

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    # evaluate imports transformers.pipelines only for its evaluator (about 8 s here); a None in
    # sys.modules makes that import fail, which evaluate expects, and leaves loading as it is
    sys.modules["transformers.pipelines"] = None
    from mtnb.transfer.metrics import load_metric, score

    cache = sys.argv[1]
    out = {
        "entity_f1": load_metric("entity_f1", cache).compute(
            predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "B-LOC"]])["f1"],
        "accuracy": load_metric("accuracy", cache).compute(predictions=[1, 2], references=[1, 1])["accuracy"],
        "ndcg": load_metric("ndcg", cache).compute(
            predictions=[0.9, 0.1], references=[0, 3], query_ids=[5, 5])["ndcg"],
        "score": score("accuracy", ["a", "b"], ["a", "a"]),
    }
    print(json.dumps(out))
""")


def test_loading_is_local_offline_and_leaves_the_hf_cache_alone(tmp_path):
    hf_home = tmp_path / "hf-home"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(hf_home), "MTNB_ROOT": str(tmp_path / "project"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for key in ("HF_MODULES_CACHE", "HF_EVALUATE_CACHE", "HF_METRICS_CACHE", "XDG_CACHE_HOME"):
        env.pop(key, None)
    run = subprocess.run([sys.executable, "-c", OFFLINE_SCRIPT, str(tmp_path / "cache")],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["entity_f1"] == pytest.approx(2 / 3)  # 1 of 1 predicted right, 1 of 2 found
    assert out["accuracy"] == 0.5
    assert out["ndcg"] == pytest.approx(ndcg_score([[0, 3]], [[0.9, 0.1]]))
    assert out["score"] == 0.5
    # nothing under HF_HOME (where evaluate's default caches live); the copies are in our folders
    assert not [p for p in hf_home.rglob("*") if p.is_file()]
    for name in METRIC_NAMES:
        assert list((tmp_path / "cache" / "modules").rglob(f"{name}.py")), name
    assert list((tmp_path / "project" / ".cache" / "evaluate" / "modules").rglob("accuracy.py"))


@pytest.mark.parametrize("task_name", ["mini-topic", "pos", "mini-spans", "ner", "mini-rank"])
def test_metric_units_sum_to_the_metric(task_name):
    """Per-unit numerators and denominators (what the paired bootstrap resamples) give the
    task's metric as sum(num) / sum(den), for every metric and label shape."""
    from mtnb.transfer.scoring import metric_units
    from mtnb.transfer.scoring import score as task_score
    from mtnb.data.tasks import get_task

    task = get_task(task_name)
    rng = random.Random(0)
    k = len(task.labels)
    if task.head == "token":
        lengths = [rng.randint(1, 9) for _ in range(40)]
        # entity tags drawn so that sentences hold entities; some predictions exactly right
        gold = [[rng.randrange(k) for _ in range(n)] for n in lengths]
        predictions = [g if rng.random() < 0.3 else [rng.randrange(k) for _ in g] for g in gold]
        examples = [{} for _ in gold]
    elif task.head == "ranking":
        query_ids = [q for q in range(15) for _ in range(rng.randint(1, 5))]
        gold = [float(rng.randrange(k)) for _ in query_ids]
        predictions = [rng.random() for _ in query_ids]
        examples = [{"query_id": q} for q in query_ids]
    else:
        gold = [rng.randrange(k) for _ in range(50)]
        predictions = [g if rng.random() < 0.4 else rng.randrange(k) for g in gold]
        examples = [{} for _ in gold]
    units, num, den = metric_units(task, predictions, gold, examples)
    assert len(units) == len(num) == len(den) and len(set(units)) == len(units)
    assert num.sum() / den.sum() == pytest.approx(task_score(task, predictions, gold, examples), abs=1e-12)
    if task.head == "ranking":     # one-candidate queries are not units, as the scorer skips them
        assert len(units) == sum(1 for q in set(query_ids) if query_ids.count(q) >= 2)
