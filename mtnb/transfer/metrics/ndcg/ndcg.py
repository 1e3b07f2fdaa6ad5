"""nDCG for ranking tasks (WPR), exactly as XGLUE's official scorer computes it.

The official scorer (``simple_ndcg`` in ``evaluation/xglue_evaluate.py`` of microsoft/XGLUE):

1. groups the candidates by query;
2. skips a query with fewer than two candidates (sklearn rejects those);
3. scores each other query with ``sklearn.metrics.ndcg_score([grades], [scores])`` at its
   defaults: ``k=None`` (the whole list), ``ignore_ties=False`` (tied scores share the average
   gain of their positions), gain = the grade itself, discount = 1 / log2(position + 1);
4. returns the plain mean over the scored queries, in [0, 1] (the XGLUE paper's tables print
   it times 100; so do ours, the callers scale).

Two consequences of sklearn's definition, kept as the official scorer keeps them: a query whose
candidates are all graded 0 scores 0 whatever the ranking, and one whose candidates share one
positive grade scores 1; both count in the mean.

The official scorer numbers queries by runs of equal query text in the file; here the caller
gives ``query_ids`` (ints or strings), and a query is every candidate with that id.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from mtnb.core.errors import MtnbError

_DESCRIPTION = "Mean per-query nDCG (sklearn ndcg_score, k=None), as XGLUE's WPR scorer."
_CITATION = """\
@inproceedings{liang2020xglue, title={{XGLUE}: A New Benchmark Dataset for Cross-lingual
  Pre-training, Understanding and Generation}, author={Liang, Yaobo and others},
  booktitle={EMNLP}, year={2020}}
"""
_INPUTS = """
Args:
    predictions: a ranking score per candidate (float; higher ranks first).
    references: the candidate's relevance grade (non-negative; XGLUE WPR: 0 bad .. 4 perfect).
    query_ids: the candidate's query (int or str).
Returns:
    ndcg: mean nDCG over the queries with two or more candidates, in [0, 1];
    queries: the number of those queries; skipped: the number of one-candidate queries.
"""


def _features(query_id: str) -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value("float64"),
                              "references": datasets.Value("float64"),  # not int64: it truncates 2.5
                              "query_ids": datasets.Value(query_id)})


class Ndcg(evaluate.Metric):
    """Mean per-query nDCG (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
            features=[_features("string"), _features("int64")],
        )

    def _compute(self, predictions, references, query_ids) -> dict:
        if min(references, default=0) < 0:
            raise MtnbError("ndcg: a relevance grade is negative; give grades >= 0 (0 = not relevant)")
        groups = by_query(predictions, references, query_ids)
        scored = [query_ndcg(grades, scores) for scores, grades in groups.values() if len(grades) >= 2]
        if not scored:
            raise MtnbError("ndcg: no query has two or more candidates; nothing to rank")
        return {"ndcg": float(np.mean(scored)), "queries": len(scored),
                "skipped": len(groups) - len(scored)}


def by_query(predictions, references, query_ids) -> dict:
    """``{query id: (scores, grades)}``, candidates in input order, queries in order of appearance."""
    groups: dict = {}
    for score, grade, query in zip(predictions, references, query_ids):
        scores, grades = groups.setdefault(query, ([], []))
        scores.append(float(score))
        grades.append(float(grade))
    return groups


def query_ndcg(grades: list[float], scores: list[float]) -> float:
    """nDCG of one query's ranking by ``scores`` against its ``grades`` (sklearn, whole list).

    sklearn is imported here, not with the module: every fine-tuning and zero-shot notebook
    imports this module through ``mtnb.transfer.scoring``, and only ranking tasks use it
    (sklearn.metrics costs a kernel about 0.7 s of CPU to import).
    """
    from sklearn.metrics import ndcg_score

    return float(ndcg_score(np.asarray([grades]), np.asarray([scores])))
