"""Accuracy: the share of labels predicted right, over texts or over tokens.

Labels are ints or strings (predictions and references of one kind). Two input shapes:

- flat lists, one label per text (NC, XNLI, PAWS-X, QADSM, QAM): as
  ``sklearn.metrics.accuracy_score``;
- lists of lists, one label per token (POS): accuracy over all tokens of all sentences pooled,
  each sentence's predictions as long as its references.

Either way a position whose reference is ``-100`` (the ignore index of Hugging Face token
classification) or ``None`` is left out of both counts. evaluate reads the label type from the
first text or sentence, so with ``None`` marks that one must hold at least one real label
(``-100`` marks have no such limit).

Note: XGLUE's official scorer scores POS with ``seqeval.metrics.precision_score``, which reads
POS tags as entity tags (``NOUN`` as tag N of type OUN) and so counts mostly runs of equal tags,
not tokens; this metric is token accuracy, the figure the papers name.
"""

from __future__ import annotations

import datasets
import evaluate

from mtnb.core.errors import MtnbError

IGNORED = (-100, None)

_DESCRIPTION = "Accuracy over labels or over token labels, ignoring references -100 and None."
_CITATION = ""
_INPUTS = """
Args:
    predictions: list of labels (int or str), or list of sentences, each a list of labels.
    references: the same shape as predictions; -100 or None marks a position to ignore.
Returns:
    accuracy: float in [0, 1]; count: the number of positions scored.
"""


def _features(label: datasets.Value, nested: bool) -> datasets.Features:
    column = datasets.Sequence(label) if nested else label
    return datasets.Features({"predictions": column, "references": column})


class Accuracy(evaluate.Metric):
    """Accuracy over flat or token label lists (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        # evaluate keeps the first of these formats that the first example fits; "string" comes
        # before "int64" so that "3" stays a string (int64 would read it as 3).
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
            features=[_features(datasets.Value(dtype), nested)
                      for nested in (False, True) for dtype in ("string", "int64")],
        )

    def _compute(self, predictions, references) -> dict:
        pairs = [(p, r) for p, r in positions(predictions, references) if r not in IGNORED]
        if not pairs:
            raise MtnbError("accuracy: every reference is -100 or None; nothing to score")
        correct = sum(1 for p, r in pairs if p == r)
        return {"accuracy": correct / len(pairs), "count": len(pairs)}


def positions(predictions: list, references: list) -> list[tuple]:
    """(prediction, reference) per scored position: per item, or per token of nested lists."""
    if not references or not isinstance(references[0], (list, tuple)):
        return list(zip(predictions, references))
    pairs = []
    for i, (pred, ref) in enumerate(zip(predictions, references)):
        if len(pred) != len(ref):
            raise MtnbError(f"accuracy: sentence {i} has {len(pred)} predictions but {len(ref)} "
                            "references; give one prediction per token")
        pairs.extend(zip(pred, ref))
    return pairs
