"""Scores of predictions against gold labels, by the task's metric (``mtnb.transfer.metrics``):
entity F1 for token tasks, accuracy for classification, nDCG for ranking; the per-unit
counts (``metric_units``) that paired bootstraps resample, and the units' names and clusters
(``unit_clusters``).
"""

from __future__ import annotations

import numpy as np

from mtnb.transfer.metrics import score as metric_score
from mtnb.transfer.metrics.accuracy.accuracy import IGNORED
from mtnb.transfer.metrics.entity_f1.entity_f1 import entities
from mtnb.transfer.metrics.ndcg.ndcg import by_query, query_ndcg


def references(examples: list[dict], task) -> list:
    """The gold labels in the form ``predict`` returns predictions."""
    if task.head == "token":
        return [[label for label in e["labels"] if label != -100] for e in examples]
    return [e["labels"] for e in examples]


def score(task, predictions: list, gold: list, examples: list[dict]) -> float:
    """The task's metric (see the task table) in [0, 1]."""
    if task.metric == "f1_entity":
        names = task.labels
        return metric_score("f1_entity", [[names[i] for i in p] for p in predictions],
                            [[names[i] for i in g] for g in gold])
    if task.metric == "ndcg":
        return metric_score("ndcg", predictions, gold, query_ids=[e["query_id"] for e in examples])
    return metric_score("accuracy", predictions, gold)


def metric_units(task, predictions: list, gold: list, examples: list[dict]):
    """The task's metric split into the units a bootstrap resamples, each with a numerator and a
    denominator whose sums give the metric: ``score = sum(num) / sum(den)`` (0 when sum(den) = 0).

    - accuracy: a unit is an example; num = its correctly predicted labels (1 for a text, the
      right tokens for a tagged sentence), den = its scored labels;
    - f1_entity (micro F1 = 2 correct / (predicted + reference)): a unit is a sentence; num =
      2 x its correct entities, den = its predicted + reference entities;
    - ndcg (the mean over queries with two or more candidates): a unit is such a query; num =
      its nDCG, den = 1.

    Returns ``(units, num, den)``: unit ids (example index, or query id) as strings, and two
    float arrays, each (k,)."""
    if task.metric == "ndcg":
        groups = by_query(predictions, gold, [e["query_id"] for e in examples])
        kept = [(q, query_ndcg(grades, scores)) for q, (scores, grades) in groups.items() if len(grades) >= 2]
        return [str(q) for q, _ in kept], np.array([v for _, v in kept]), np.ones(len(kept))
    num, den = np.zeros(len(gold)), np.zeros(len(gold))
    for i, (p, g) in enumerate(zip(predictions, gold)):
        if task.metric == "f1_entity":
            names = task.labels
            predicted = set(entities([names[k] for k in p]))
            reference = set(entities([names[k] for k in g]))
            num[i], den[i] = 2 * len(predicted & reference), len(predicted) + len(reference)
        elif isinstance(g, (list, tuple)):
            pairs = [(a, b) for a, b in zip(p, g) if b not in IGNORED]
            num[i], den[i] = sum(a == b for a, b in pairs), len(pairs)
        else:
            num[i], den[i] = float(p == g and g not in IGNORED), float(g not in IGNORED)
    return [str(i) for i in range(len(gold))], num, den


def unit_clusters(task, records, units: list[str]) -> tuple[list[str], list[str]]:
    """The name and the cluster of each of ``metric_units``' units of ``records`` (the records
    evaluated, in the order scored; ``units`` as ``metric_units`` returns them).

    Records of an aligned task (``mtnb.data.loading.aligned``) carry ``id`` and ``cluster``: an
    example's unit is named by its ``id`` (the same example in every language), a ranking query
    keeps its query id (the same query in every language), and each takes its record's
    ``cluster`` (a query's rows share its page). Other tasks' units keep ``metric_units``' names
    (the example's position) and are each their own cluster. Returns two lists of strings."""
    if "cluster" not in records.column_names:
        return list(units), list(units)
    clusters = records["cluster"]
    if task.metric == "ndcg":
        page = {str(q): c for q, c in zip(records["query_id"], clusters)}
        return list(units), [page[u] for u in units]
    ids = records["id"]
    return [str(ids[int(u)]) for u in units], [str(clusters[int(u)]) for u in units]
