"""Linear probes: the encoder frozen, a linear classifier on one layer's features, trained on English.

A probe measures what the representations themselves carry. The encoder is never updated; only
a linear map on the features of one layer (``layer``: 0 the embeddings, 1..n the Transformer
layers, -1 the last) is trained on the task's English train split, chosen on English dev, and
evaluated zero-shot in every language: ``mtnb.transfer.zeroshot`` evaluates a probe run folder exactly
like a fine-tuning run. The input of each head (the task table's) is the one fine-tuning reads:

- sequence, pair: the pooled feature of the input, a pair encoded jointly (as fine-tuning does),
  x ∈ R^h, mean over non-padding tokens (or the first token);
- token: the feature of each word's first sub-word, one example per word;
- ranking: query q and candidate p encoded separately and pooled, the pair described by
  [z(q) ⊙ z(p), |z(q) − z(p)|] ∈ R^2h. Encoding each side alone makes a candidate's features
  those of the paragraph itself, shared with topic classification and CKA of the same text.
  One class per relevance grade; a candidate's score is its expected grade Σ_g g·p(g), as for
  the fine-tuning head.

z(x) = (x − μ) / σ, with μ and σ per dimension over the English training features (for ranking,
over its queries and candidates), so that one range of weight decays suits every model and layer.

The probe is multinomial logistic regression: p(y | x) = softmax(W x + b), W of shape
(n_labels, d), minimising mean cross-entropy + (λ/2)·‖W‖² (no decay on b) full-batch with
L-BFGS (strong-Wolfe line search) from W = 0, b = 0. The loss is strictly convex, so the result
is its unique minimum, reached the same way on every run: no random draw is involved, and the
seed acts through the training and dev subsample it draws (the test examples are one draw for
all: ``mtnb.data.loading.eval_subset``). λ is chosen on English dev among ``weight_decays``,
strongest first, each fit warm-started from the previous, by the one-standard-error rule
(``selection="one_se"``, Hastie, Tibshirani and Friedman, *Elements of Statistical Learning*,
§7.10): the strongest decay whose dev score is within one standard error of the best one's.
The standard error of a dev score S = Σ num_i / Σ den_i over its units (examples, sentences or
queries: ``mtnb.transfer.scoring.metric_units``) is the delta method's
SE(S) = sqrt(Σ (num_i − S den_i)²) / Σ den_i (for accuracy, sqrt(S(1 − S)/n)). Decays within
one SE of each other are not told apart by the dev set; the rule takes the most regularised,
so that which of them a seed's dev draw happens to favour does not decide the probe.
``selection="best"`` takes the best dev score (a tie keeps the stronger decay).

Features come from ``mtnb.analysis.features.FeatureExtractor`` (cached on disk by weights,
precision and token ids; float32 at every precision): ``probe_run`` gathers every input a job
needs (train and dev for every seed, the test split of every language) and runs the encoder
once over those not yet stored.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from safetensors.numpy import load_file

from mtnb.analysis.features import POOLINGS, FeatureExtractor
from mtnb.core.errors import MtnbError
from mtnb.core.precision import default_device, recorded_precision
from mtnb.data.inputs import encode, input_prefixes, set_language
from mtnb.data.loading import aligned_eval_ids, eval_subset, load_task, subsample
from mtnb.data.tasks import get_task
from mtnb.models.registry import load_registry
from mtnb.transfer.run_folders import resolved, run_folders, save_run, unlabelled
from mtnb.transfer.scoring import metric_units, references

WEIGHT_DECAYS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)  # measured: me5-small, 1,000 mini-topic paragraphs: best 0.1-0.3
SELECTIONS = ("one_se", "best")
WEIGHTS_FILE = "probe.safetensors"
SMALL_FIT = 1_000_000_000  # examples x features x labels below which the fit runs on one thread


@dataclass
class ProbeConfig:
    """Settings of a probe run."""

    layer: int = -1                 # 0: embeddings, 1..n: layers, -1: the last
    pooling: str = "mean"           # mean | first (sequence, pair and ranking heads)
    max_length: int = 256           # tokens per input, as fine-tuning truncates
    weight_decays: tuple = WEIGHT_DECAYS
    max_iter: int = 100             # L-BFGS iterations per weight decay
    batch_size: int = 32            # inputs per forward pass of the encoder
    precision: str = "fp32"         # fp32 | bf16 | fp16 | auto: the encoder's dtype (mtnb.core.precision)
    selection: str = "one_se"       # one_se: the strongest decay within one SE of the best dev score | best


@dataclass
class ProbeCurve:
    """What training did: for each weight decay tried (in order), the loss at every function
    evaluation of L-BFGS, the English dev score and its standard error; the one chosen; and
    the seconds spent."""

    weight_decays: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    dev_score: list = field(default_factory=list)
    dev_se: list = field(default_factory=list)
    chosen: float | None = None
    seconds: float = 0.0
    feature_seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# Inputs and features of a task
# --------------------------------------------------------------------------------------------

@dataclass
class TaskInputs:
    """The model inputs of a list of records, in record order.

    ``examples``: ``mtnb.data.inputs.encode``'s (labels, references, controls); ``sequences``: the token
    id lists the features come from (one per record; ranking: the queries, then the candidates);
    ``positions``: for token heads, each sequence's first-sub-word positions of its labelled words.
    """

    examples: list
    sequences: list
    positions: list | None = None


def task_inputs(records, task, tokenizer, max_length: int, prefixes: tuple[str, str]) -> TaskInputs:
    """The ``TaskInputs`` of ``records`` (set the tokenizer's language first, see
    ``mtnb.data.inputs.set_language``)."""
    examples = encode(records, task, tokenizer, max_length, prefixes)
    if task.head == "token":
        positions = [[t for t, label in enumerate(e["labels"]) if label != -100] for e in examples]
        return TaskInputs(examples, [e["input_ids"] for e in examples], positions)
    if task.head == "ranking":
        segments = [task.segments(r) for r in records]
        queries = tokenizer([prefixes[0] + s[0] for s in segments], truncation=True, max_length=max_length)
        candidates = tokenizer([prefixes[1] + s[1] for s in segments], truncation=True, max_length=max_length)
        return TaskInputs(examples, queries["input_ids"] + candidates["input_ids"])
    return TaskInputs(examples, [e["input_ids"] for e in examples])


def raw_features(extractor: FeatureExtractor, inputs: TaskInputs, head: str, layer: int):
    """Features of ``inputs`` at ``layer``: ``(x, counts)`` where x is (n, h) for sequence and
    pair heads, (n_words, h) for token heads (counts: words per record), and (queries (n, h),
    candidates (n, h)) for ranking; counts is None but for token heads."""
    if head == "token":
        per_record = extractor.words(inputs.sequences, inputs.positions, layer)
        x = np.concatenate(per_record) if per_record else np.zeros((0, extractor.hidden_size), np.float32)
        return x, [len(a) for a in per_record]
    pooled = extractor.pooled(inputs.sequences, layer)
    if head == "ranking":
        n = len(inputs.examples)
        return (pooled[:n], pooled[n:]), None
    return pooled, None


def labels_of(inputs: TaskInputs, head: str) -> np.ndarray:
    """The training targets in the order of ``raw_features``' rows."""
    if head == "token":
        return np.array([label for e in inputs.examples for label in e["labels"] if label != -100], dtype=np.int64)
    return np.array([e["labels"] for e in inputs.examples], dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The probe
# --------------------------------------------------------------------------------------------

@dataclass
class LinearProbe:
    """softmax(W x + b) on standardised features: ``weight`` (n_labels, d), ``bias`` (n_labels,),
    ``mean`` and ``std`` (h,) of the English training features; ``head`` says how x is formed."""

    head: str
    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @staticmethod
    def scaler(raw) -> tuple[np.ndarray, np.ndarray]:
        """μ and σ (h,) of training features (ranking: of queries and candidates together)."""
        x = np.concatenate(raw) if isinstance(raw, tuple) else raw
        mean = x.mean(0, dtype=np.float64)
        std = x.std(0, dtype=np.float64)
        return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)

    def design(self, raw) -> np.ndarray:
        """The probe's input matrix (n, d) from ``raw_features``' x."""
        if self.head == "ranking":
            q, p = ((a - self.mean) / self.std for a in raw)
            return np.concatenate([q * p, np.abs(q - p)], axis=1).astype(np.float32)
        return ((raw - self.mean) / self.std).astype(np.float32)

    def predict(self, raw, counts=None) -> list:
        """Predictions in ``finetune.predict``'s form: per-record lists of label ids (token
        heads, split by ``counts``), an expected grade per candidate (ranking), a label id."""
        return predictions(self.head, self.design(raw) @ self.weight.T + self.bias, counts)

    def state(self) -> dict:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))) for k in ("weight", "bias", "mean", "std")}

    @classmethod
    def load(cls, path: Path, head: str) -> "LinearProbe":
        t = load_file(str(path))
        return cls(head, t["weight"], t["bias"], t["mean"], t["std"])


def predictions(head: str, logits: np.ndarray, counts=None) -> list:
    """Logits (n, n_labels) -> predictions in ``finetune.predict``'s form."""
    if head == "ranking":
        z = logits - logits.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return [float(v) for v in p @ np.arange(logits.shape[1])]
    labels = logits.argmax(1).tolist()
    if head != "token":
        return labels
    out, start = [], 0
    for n in counts:
        out.append(labels[start:start + n])
        start += n
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, n_labels: int, weight_decay: float, max_iter: int = 100,
                 init: tuple | None = None):
    """Multinomial logistic regression by full-batch L-BFGS: minimises mean cross-entropy of
    softmax(x Wᵀ + b) + (weight_decay / 2)·‖W‖². ``x`` (n, d) float32, ``y`` (n,) label ids;
    ``init`` (W, b) to start from (default zeros). Returns (W (n_labels, d), b (n_labels,),
    the loss at each function evaluation)."""
    with _threads_for(x.shape[0] * x.shape[1] * n_labels):
        return _fit_logistic(x, y, n_labels, weight_decay, max_iter, init)


@contextlib.contextmanager
def _threads_for(size: int):
    """One torch thread for a small fit: its matrix products last microseconds, and OpenMP's
    threads waiting on each other on a busy 2-core machine made such fits 10-30x slower (measured:
    3,000 x 384 features, 8 labels: 0.05 s on one thread, 1.5 s on two while other jobs ran)."""
    before = torch.get_num_threads()
    if size < SMALL_FIT:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _fit_logistic(x, y, n_labels, weight_decay, max_iter, init):
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y)
    w0, b0 = init if init is not None else (np.zeros((n_labels, x.shape[1]), np.float32), np.zeros(n_labels, np.float32))
    w = torch.tensor(w0, requires_grad=True)
    b = torch.tensor(b0, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w.T + b, yt) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        losses.append(loss.item())
        if not math.isfinite(losses[-1]):
            raise MtnbError(f"the probe's loss became {losses[-1]} (weight decay {weight_decay:g}); check the features")
        return loss

    optimizer.step(closure)
    return w.detach().numpy().copy(), b.detach().numpy().copy(), losses


def train_probe(task, train_raw, train_y: np.ndarray, dev_raw, dev_counts, dev_examples: list,
                config: ProbeConfig) -> tuple[LinearProbe, ProbeCurve]:
    """Fit a probe per weight decay (strongest first, warm-started) and keep the one
    ``config.selection`` picks on English dev (the task's metric; see the module docstring);
    returns it and the ProbeCurve."""
    if config.selection not in SELECTIONS:
        raise MtnbError(f"probe selection {config.selection!r}: use one of {', '.join(SELECTIONS)}")
    start = time.perf_counter()
    mean, std = LinearProbe.scaler(train_raw)
    probe = LinearProbe(task.head, None, None, mean, std)
    x, n_labels = probe.design(train_raw), len(task.labels)
    gold = references(dev_examples, task)
    dev_x = probe.design(dev_raw)
    curve, fits, init = ProbeCurve(), [], None
    for decay in sorted(config.weight_decays, reverse=True):
        w, b, losses = fit_logistic(x, train_y, n_labels, decay, config.max_iter, init)
        init = (w, b)
        predicted = predictions(task.head, dev_x @ w.T + b, dev_counts)
        curve.weight_decays.append(decay)
        curve.losses.append(losses)
        _, num, den = metric_units(task, predicted, gold, dev_examples)   # the metric is Σ num / Σ den
        curve.dev_score.append(float(num.sum() / den.sum()) if den.sum() > 0 else 0.0)
        curve.dev_se.append(score_se(num, den))
        fits.append((w, b))
    k = chosen_decay(curve.dev_score, curve.dev_se, config.selection)
    curve.chosen = curve.weight_decays[k]
    probe.weight, probe.bias = fits[k]
    curve.seconds = time.perf_counter() - start
    return probe, curve


def score_se(num: np.ndarray, den: np.ndarray) -> float:
    """The delta method's standard error of S = Σ num / Σ den over units (module docstring):
    sqrt(Σ (num_i − S den_i)²) / Σ den_i, on S's [0, 1] scale; 0 without units."""
    total = float(np.sum(den))
    if total <= 0:
        return 0.0
    ratio = float(np.sum(num)) / total
    return float(np.sqrt(np.sum((num - ratio * den) ** 2)) / total)


def chosen_decay(dev_score: list[float], dev_se: list[float], selection: str) -> int:
    """Index of the decay ``selection`` picks among decays ordered strongest first: "best", the
    first best dev score; "one_se", the first whose score is at least best − SE(best)."""
    best = int(np.argmax(dev_score))
    if selection == "best":
        return best
    floor = dev_score[best] - dev_se[best]
    return next(k for k, value in enumerate(dev_score) if value >= floor)


def plot_probe(curve: ProbeCurve, title: str = ""):
    """Left: the training loss over L-BFGS evaluations per weight decay; right: English dev
    score per weight decay, ± its standard error (the chosen one marked)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    for decay, losses in zip(curve.weight_decays, curve.losses):
        left.plot(range(1, len(losses) + 1), losses, lw=1, label=f"λ = {decay:g}")
    left.set_xlabel("L-BFGS function evaluation")
    left.set_ylabel("training loss")
    left.set_yscale("log")
    left.legend(fontsize=7)
    right.errorbar(curve.weight_decays, [100 * s for s in curve.dev_score],
                   yerr=[100 * e for e in curve.dev_se] if len(curve.dev_se) == len(curve.dev_score) else None,
                   marker="o", color="tab:red", capsize=2)
    if curve.chosen is not None:
        k = curve.weight_decays.index(curve.chosen)
        right.plot([curve.chosen], [100 * curve.dev_score[k]], marker="*", ms=14, color="tab:red", ls="none")
    right.set_xscale("log")
    right.set_xlabel("weight decay λ")
    right.set_ylabel("English dev score (0-100)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# A probe job, and a finished probe run
# --------------------------------------------------------------------------------------------

def probe_run(model: str, task: str, output_dir: str | Path, *, seeds=(0,), config: ProbeConfig | None = None,
              max_train: int | None = None, max_dev: int | None = None, max_eval: int | None = None,
              eval_splits: tuple[str, ...] = ("test",), registry_path: str | None = None, mini_root=None,
              xglue_dir=None, xglue_parquet=None, cache_dir=None, progress: bool = True) -> list[dict]:
    """Train a probe of ``model`` on ``task`` per seed, into ``<output_dir>/seed-<seed>/``
    (``probe.safetensors``, ``run.json``, ``curve.json``, ``curve.png``, ``done.json`` last);
    returns the run records in seed order.

    One forward pass covers every input the job needs: each seed's English train and dev
    subsample and, for the zero-shot evaluation to come, each language's ``eval_splits``
    (at most ``max_eval`` examples each, drawn as ``mtnb.transfer.zeroshot`` draws them:
    ``mtnb.data.loading.eval_subset``, ``aligned_eval_ids``). Names, the
    layer, the pooling and the output folders are checked before any weights load.
    """
    config = config or ProbeConfig()
    registry = load_registry(registry_path) if registry_path else None
    task_spec = get_task(task)
    if config.pooling not in POOLINGS:
        raise MtnbError(f"unknown pooling {config.pooling!r}: use one of {', '.join(POOLINGS)}")
    if not config.weight_decays or any(not d > 0 for d in config.weight_decays):
        raise MtnbError(f"weight decays {config.weight_decays!r}: give positive numbers")
    folders = run_folders(output_dir, seeds)
    extractor = FeatureExtractor(model, registry, pooling=config.pooling, cache_dir=cache_dir,
                                 batch_size=config.batch_size, progress=progress, precision=config.precision)
    layer = extractor.layer_index(config.layer)
    kw = dict(mini_root=mini_root, xglue_dir=xglue_dir, xglue_parquet=xglue_parquet)
    train_records = load_task(task_spec, "en", "train", **kw)
    dev_records = load_task(task_spec, "en", "dev", **kw)
    evaluation = []
    for split in eval_splits:
        drawn = aligned_eval_ids(task_spec, task_spec.languages, split, max_eval, **kw)  # as zeroshot draws
        for lang in task_spec.languages:
            try:
                records = load_task(task_spec, lang, split, **kw)
            except MtnbError:
                continue  # zeroshot notes the language as skipped
            if len(records) and not (task_spec.label_field in records.column_names
                                     and unlabelled(records[task_spec.label_field])):
                evaluation.append((lang, eval_subset(records, max_eval, drawn)))

    tokenizer, head = extractor.tokenizer, task_spec.head
    prefixes = input_prefixes(extractor.spec.inputs, head)

    def inputs(records, lang):
        set_language(tokenizer, extractor.spec.lang_codes, lang)
        return task_inputs(records, task_spec, tokenizer, config.max_length, prefixes)

    train_in = {seed: inputs(subsample(train_records, max_train, seed), "en") for seed in folders}
    dev_in = {seed: inputs(subsample(dev_records, max_dev, seed), "en") for seed in folders}
    eval_in = [inputs(records, lang) for lang, records in evaluation]
    start = time.perf_counter()
    everything = [*train_in.values(), *dev_in.values(), *eval_in]
    if head == "token":
        extractor.compute(words=[(s, p) for i in everything for s, p in zip(i.sequences, i.positions)], layer=layer)
    else:
        extractor.compute(pooled=[s for i in everything for s in i.sequences])
    extractor.close()
    feature_seconds = time.perf_counter() - start
    n_forward = extractor.sequences_computed

    records = []
    for seed, folder in folders.items():
        train_raw, _ = raw_features(extractor, train_in[seed], head, layer)
        dev_raw, dev_counts = raw_features(extractor, dev_in[seed], head, layer)
        train_y = labels_of(train_in[seed], head)
        probe, curve = train_probe(task_spec, train_raw, train_y, dev_raw, dev_counts, dev_in[seed].examples, config)
        curve.feature_seconds = feature_seconds
        record = {
            "mode": "probe", "model": model, "model_folder": str(extractor.folder),
            "weights_sha256": extractor.fingerprint(), "family": extractor.spec.family,
            "lang_codes": extractor.spec.lang_codes, "inputs": extractor.spec.inputs, "prefixes": list(prefixes),
            "task": task_spec.name, "head": head, "labels": list(task_spec.labels), "metric": task_spec.metric,
            "pooling": config.pooling, "layer": config.layer, "layer_index": layer, "n_layers": extractor.n_layers,
            "registry": registry_path, "precision": extractor.precision,
            "train": {**asdict(config), "weight_decays": list(config.weight_decays), "seed": seed,
                      "optimizer": "L-BFGS (strong Wolfe), full batch, from zeros"},
            "max_train": max_train, "max_dev": max_dev, "max_eval": max_eval,
            "data": {"mini_root": resolved(mini_root), "xglue_dir": resolved(xglue_dir), "xglue_parquet": resolved(xglue_parquet)},
            "n_train": len(train_in[seed].examples), "n_train_rows": int(len(train_y)),
            "n_dev": len(dev_in[seed].examples), "best_dev_score": curve.dev_score[curve.weight_decays.index(curve.chosen)],
            "selection": config.selection,
            "weight_decay": curve.chosen, "sequences_encoded": n_forward, "feature_cache": resolved(cache_dir),
            "feature_seconds": feature_seconds, "train_seconds": curve.seconds,
        }
        title = f"{model} probe, layer {layer}, on {task_spec.name} (seed {seed})"
        save_run(folder, probe.state(), record, curve, weights_file=WEIGHTS_FILE,
                 figure=lambda: plot_probe(curve, title))
        records.append(record)
    return records


class ProbeRun:
    """A finished probe run folder, ready to predict in any language.

    ``predict(records, lang)`` gives predictions in ``finetune.predict``'s form; features come
    from the store (computed by the probe job for the test splits it foresaw, at the run's
    precision) and are computed only for inputs not stored. ``prepare`` computes those of many
    record sets in one pass.
    """

    def __init__(self, folder: str | Path, extractor: FeatureExtractor | None = None):
        folder = Path(folder)
        if not (folder / "done.json").is_file() or not (folder / WEIGHTS_FILE).is_file():
            raise MtnbError(f"{folder} holds no finished probe run (no done.json/{WEIGHTS_FILE}); "
                            "run notebooks/finetune.ipynb with mode='probe' into it first")
        self.folder = folder
        self.record = record = json.loads((folder / "run.json").read_text())
        self.task = get_task(record["task"])
        if extractor is None:
            registry = load_registry(record["registry"]) if record.get("registry") else None
            device = default_device()
            extractor = FeatureExtractor(record["model"], registry, pooling=record["pooling"],
                                         batch_size=record["train"]["batch_size"],
                                         cache_dir=record.get("feature_cache"),
                                         precision=recorded_precision(record.get("precision", "fp32"), device))
        if extractor.fingerprint() != record["weights_sha256"]:
            raise MtnbError(f"model {record['model']}: its weights changed since this probe was trained "
                            f"({folder}); train the probe again")
        self.extractor = extractor
        self.probe = LinearProbe.load(folder / WEIGHTS_FILE, record["head"])
        self.layer = record["layer_index"]

    @property
    def tokenizer(self):
        return self.extractor.tokenizer

    def inputs(self, records, lang: str) -> TaskInputs:
        set_language(self.tokenizer, self.record["lang_codes"], lang)
        return task_inputs(records, self.task, self.tokenizer, self.record["train"]["max_length"],
                           tuple(self.record["prefixes"]))

    def prepare(self, groups) -> None:
        """Compute, in one forward pass, the features of every ``(records, lang)`` in ``groups``
        that the store lacks."""
        ins = [self.inputs(records, lang) for records, lang in groups]
        if self.task.head == "token":
            self.extractor.compute(words=[(s, p) for i in ins for s, p in zip(i.sequences, i.positions)],
                                   layer=self.layer)
        else:
            self.extractor.compute(pooled=[s for i in ins for s in i.sequences])

    def predict(self, records, lang: str) -> list:
        inputs = self.inputs(records, lang)
        raw, counts = raw_features(self.extractor, inputs, self.task.head, self.layer)
        return self.probe.predict(raw, counts)


def load_probe(folder: str | Path, extractor: FeatureExtractor | None = None) -> ProbeRun:
    """The finished probe run in ``folder`` (see ``ProbeRun``); MtnbError when there is none."""
    return ProbeRun(folder, extractor)
