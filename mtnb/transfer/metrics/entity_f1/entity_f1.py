"""Entity-level micro F1 over BIO tag sequences, counted as seqeval's default mode counts it.

XGLUE's official scorer scores NER with ``seqeval.metrics.f1_score``; this metric gives the same
figures (tests/test_metrics.py compares them on random sequences) without seqeval.

Tags are ``O``, ``B-TYPE`` or ``I-TYPE``. An entity starts at ``B-TYPE``, or, conlleval's rule
for an ill-formed start, at an ``I-TYPE`` whose previous tag is ``O`` or of another type; it goes
on over the ``I-TYPE`` tags that follow. An entity is (sentence, type, first word, last word); a
predicted entity is correct when the references hold the same one. Over all types together:

    precision = correct / predicted,  recall = correct / reference,
    f1 = 2 * correct / (predicted + reference),

each 0 when its denominator is 0 (seqeval's default). The per-type figures are the same counts
restricted to one type, plus ``number``, the type's count of reference entities.
"""

from __future__ import annotations

import datasets
import evaluate

from mtnb.core.errors import MtnbError

_DESCRIPTION = "Entity-level micro F1 over BIO tags (seqeval default mode, conlleval-style)."
_CITATION = """\
@misc{seqeval, title={seqeval: A Python framework for sequence labeling evaluation},
  author={Hiroki Nakayama}, year={2018}, url={https://github.com/chakki-works/seqeval}}
"""
_INPUTS = """
Args:
    predictions: list of sentences, each a list of tag strings (O, B-TYPE, I-TYPE).
    references: list of sentences, each a list of tag strings, one per predicted tag.
Returns:
    f1, precision, recall: floats in [0, 1] over all entity types;
    per_type: {type: {"precision", "recall", "f1", "number"}}, number = reference entities.
"""


class EntityF1(evaluate.Metric):
    """Entity-level micro F1 over BIO tags (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        tags = datasets.Sequence(datasets.Value("string"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_INPUTS,
            features=datasets.Features({"predictions": tags, "references": tags}),
        )

    def _compute(self, predictions, references) -> dict:
        predicted, reference = set(), set()
        for i, (pred, ref) in enumerate(zip(predictions, references)):
            if len(pred) != len(ref):
                raise MtnbError(f"entity_f1: sentence {i} has {len(pred)} predicted tags but "
                                f"{len(ref)} reference tags; give one tag per word")
            predicted.update((i, *entity) for entity in entities(pred))
            reference.update((i, *entity) for entity in entities(ref))
        result = figures(predicted, reference)
        types = sorted({e[1] for e in predicted | reference})
        result["per_type"] = {
            t: {**figures({e for e in predicted if e[1] == t}, {e for e in reference if e[1] == t}),
                "number": sum(1 for e in reference if e[1] == t)}
            for t in types
        }
        return result


def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER"`` -> ``("B", "PER")``, ``"O"`` -> ``("O", None)``; MtnbError for a non-BIO tag."""
    if tag == "O":
        return "O", None
    if isinstance(tag, str) and tag[:2] in ("B-", "I-") and len(tag) > 2:
        return tag[0], tag[2:]
    raise MtnbError(f"entity_f1: tag {tag!r} is not O, B-TYPE or I-TYPE; "
                    "give BIO tags (score other tag sets, such as POS, with accuracy)")


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence's tags: ``(type, first, last)``, word positions, last included."""
    found = []
    kind, first = None, 0  # the open entity's type (None: none open) and first word
    for i, tag in enumerate(tags):
        prefix, tag_type = split_tag(tag)
        continues = prefix == "I" and tag_type == kind
        if kind is not None and not continues:
            found.append((kind, first, i - 1))
            kind = None
        if prefix != "O" and not continues:
            kind, first = tag_type, i
    if kind is not None:
        found.append((kind, first, len(tags) - 1))
    return found


def figures(predicted: set, reference: set) -> dict[str, float]:
    """Precision, recall and F1 of the ``predicted`` entities against the ``reference`` ones."""
    correct = len(predicted & reference)
    return {
        "precision": correct / len(predicted) if predicted else 0.0,
        "recall": correct / len(reference) if reference else 0.0,
        "f1": 2 * correct / (len(predicted) + len(reference)) if predicted or reference else 0.0,
    }
