"""Controls beside every zero-shot score: what a model gets without understanding anything.

Zero-shot "above chance" is no bar on these tasks: words that every language shares with
English (function names, product names, numbers, key names) already carry a lot. So each
results table also shows

- ``majority``: the most frequent English training label, predicted everywhere (for ranking,
  one constant score: no ranking at all);
- ``bag-of-subwords``: a logistic regression on counts of the model's own sub-word ids, trained
  on the same English training examples (for token tasks: the sub-words of the word itself; for
  ranking: the share of the query's sub-words that the candidate contains, untrained).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression


def bag_matrix(rows: list[list[int]], vocab_size: int, columns: np.ndarray | None = None):
    """Sparse count matrix of sub-word ids: (n, vocab_size), or (n, len(columns)) over the
    sorted ids ``columns`` only (ids outside them are left out)."""
    lookup = None
    if columns is not None:
        lookup = np.full(vocab_size, -1, dtype=np.int64)
        lookup[columns] = np.arange(len(columns))
    data, indices, indptr = [], [], [0]
    for ids in rows:
        counts = Counter(ids)
        if lookup is not None:
            counts = {int(lookup[i]): c for i, c in counts.items() if lookup[i] >= 0}
        indices += list(counts)
        data += list(counts.values())
        indptr.append(len(indices))
    width = vocab_size if columns is None else len(columns)
    return csr_matrix((np.array(data, dtype=np.float32), indices, indptr), shape=(len(rows), width))


def _word_pieces(example: dict) -> list[list[int]]:
    """For a token-task example, the sub-word ids of each labelled word (first sub-word onward)."""
    words, current = [], None
    for token, label in zip(example["input_ids"], example["labels"]):
        if label != -100:
            current = [token]
            words.append(current)
        elif current is not None:
            current.append(token)
    return words


def majority(task, train_examples: list[dict], examples: list[dict]) -> list:
    """Predictions of the majority control (same form as ``finetune.predict``)."""
    if task.head == "token":
        counts = Counter(label for e in train_examples for label in e["labels"] if label != -100)
        top = counts.most_common(1)[0][0]
        return [[top] * sum(label != -100 for label in e["labels"]) for e in examples]
    if task.head == "ranking":
        return [0.0] * len(examples)
    top = Counter(e["labels"] for e in train_examples).most_common(1)[0][0]
    return [top] * len(examples)


class BagOfSubwords:
    """Logistic regression on sub-word counts, trained on English (see the module docstring).

    Only the sub-words that occur in the training examples are columns: a sub-word never seen
    in training has a zero column, so its gradient is only the L2 penalty's and its weight stays
    0 from the zero start to the optimum; dropping it leaves the same solution and predictions,
    while L-BFGS's cost per iteration falls with the width (250k -> a few thousand for e5's
    vocabulary: 50 of a 66-s zero-shot job went to this fit)."""

    def __init__(self, task, vocab_size: int, seed: int = 0):
        self.task, self.vocab_size, self.seed = task, vocab_size, seed
        self.model = None

    def fit(self, train_examples: list[dict]) -> "BagOfSubwords":
        if self.task.head == "ranking":
            return self
        if self.task.head == "token":
            rows = [w for e in train_examples for w in _word_pieces(e)]
            y = [label for e in train_examples for label in e["labels"] if label != -100]
        else:
            rows = [e["input_ids"] for e in train_examples]
            y = [e["labels"] for e in train_examples]
        if len(set(y)) < 2:
            self.constant = y[0]
            return self
        self.columns = np.unique(np.fromiter((i for r in rows for i in r), dtype=np.int64))
        self.model = LogisticRegression(max_iter=300, C=1.0, random_state=self.seed)
        self.model.fit(bag_matrix(rows, self.vocab_size, self.columns), y)
        return self

    def predict(self, examples: list[dict]) -> list:
        if self.task.head == "ranking":
            return [_overlap(e["input_ids"]) for e in examples]
        if self.task.head == "token":
            words = [_word_pieces(e) for e in examples]
            flat = [w for ws in words for w in ws]
            labels = self._labels(flat)
            out, i = [], 0
            for ws in words:
                out.append(labels[i:i + len(ws)])
                i += len(ws)
            return out
        return self._labels([e["input_ids"] for e in examples])

    def _labels(self, rows: list[list[int]]) -> list[int]:
        if self.model is None:
            return [self.constant] * len(rows)
        if not rows:
            return []
        return [int(v) for v in self.model.predict(bag_matrix(rows, self.vocab_size, self.columns))]


def _overlap(input_ids: list[int]) -> float:
    """Ranking control: share of the query's sub-words found in the candidate. A pair is
    encoded ``<cls> query <sep> [<sep>] candidate <sep>``; the first separator id after the
    first token ends the query."""
    sep = input_ids[-1]
    cut = input_ids.index(sep, 1) if sep in input_ids[1:-1] else len(input_ids) // 2
    query, candidate = set(input_ids[1:cut]), set(input_ids[cut + 1:-1])
    return len(query & candidate) / max(1, len(query))
