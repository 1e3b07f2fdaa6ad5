"""Fine-tuning an encoder on an English task, and predicting with it in any language.

One task head on the encoder, by the task table's ``head``:

- token:    a linear layer on every token; the first sub-word of each word carries the word's
            label, the other sub-words (and special tokens) get -100 and are ignored;
- sequence: a linear layer on the pooled sequence (mean over non-padding tokens by default,
            or the first token);
- pair:     the same, on the two texts encoded together as one sequence;
- ranking:  the same, with one class per relevance grade; a candidate's score is its expected
            grade Σ_g g·p(g), which ranks the candidates of a query.

Training follows the paper: AdamW, a linear warmup then linear decay of the learning rate, on
the English train split, keeping the weights that score best on English dev. Batches hold
examples of similar length, each padded only to its own longest sequence.

A job (``run_job``, what notebooks/finetune.ipynb calls) trains one model on one task for
several seeds, each into its own run folder ``<output_dir>/seed-<k>/``, in one of two modes:
``finetune`` (the above, the paper's) or ``probe`` (the encoder frozen, a linear classifier on
one layer's features: ``mtnb.transfer.probe``). ``TrainConfig.precision`` (fp32, bf16, fp16 or auto:
``mtnb.core.precision``) sets the dtype the forward passes run in; the loss is taken in float32.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mtnb.core.errors import MtnbError
from mtnb.core.precision import default_device
from mtnb.data.languages import input_language_code

POOLINGS = ("mean", "first")
MODES = ("finetune", "probe")


# --------------------------------------------------------------------------------------------
# Records -> token ids
# --------------------------------------------------------------------------------------------

def set_language(tokenizer, spec_lang_codes: str, lang: str) -> str | None:
    """Tell an mBART-50 / NLLB tokenizer the source language (others need nothing). A language
    the model's codes lack (mBART-50: bg, el) is marked with English's code, the fine-tuning
    language's; the note saying so is returned (else None)."""
    if spec_lang_codes != "none" and hasattr(tokenizer, "src_lang"):
        tokenizer.src_lang, note = input_language_code(lang, spec_lang_codes)
        return note
    return None


def input_prefixes(inputs: str, head: str) -> tuple[str, str]:
    """The text put before a model's first and second input segment, by the registry's
    ``inputs`` convention.

    plain: nothing. e5 (multilingual-e5 was trained on "query: ..." and "passage: ..."):
    "query: " before a ranking query, "passage: " before everything else (a text, a sentence's
    words, both sides of a pair, a ranking candidate). One prefix on both sides of symmetric
    inputs, as e5's model card asks, and the prefix of the me5 family's continued pretraining
    (``mtnb.pretraining.e5_family``), so that the features of all its members compare.
    """
    if inputs == "e5":
        return ("query: " if head == "ranking" else "passage: "), "passage: "
    return "", ""


def encode(records, task, tokenizer, max_length: int, prefixes: tuple[str, str] = ("", "")) -> list[dict]:
    """Token ids and labels of every record: ``[{"input_ids": [...], "labels": ...}]``.

    ``labels`` is a list (one per token, -100 where ignored) for token heads and an int
    otherwise; ranking records also keep ``query_id``. Inputs longer than ``max_length``
    tokens are truncated (for pairs, the longer text first). ``prefixes`` (see
    ``input_prefixes``) go before the first and second segment; for token heads the first
    prefix's words go before the sentence's words, labelled -100.
    """
    examples = []
    label_field = task.label_field
    if task.head == "token":
        lead = prefixes[0].split()
        words = [lead + list(r[task.text_fields[0]]) for r in records]
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        for i, record in enumerate(records):
            tags, labels, previous = record[label_field], [], None
            for word in enc.word_ids(i):
                ignored = word is None or word == previous or word < len(lead)
                labels.append(-100 if ignored else int(tags[word - len(lead)]))
                previous = word
            examples.append({"input_ids": enc["input_ids"][i], "labels": labels})
        return examples
    first, second = prefixes
    segments = [task.segments(r) for r in records]
    if task.head == "sequence":
        enc = tokenizer([first + s[0] for s in segments], truncation=True, max_length=max_length)
    else:
        enc = tokenizer([first + s[0] for s in segments], [second + s[1] for s in segments],
                        truncation="longest_first", max_length=max_length)
    for i, record in enumerate(records):
        example = {"input_ids": enc["input_ids"][i], "labels": int(record[label_field])}
        if task.head == "ranking":
            example["query_id"] = record["query_id"]
        examples.append(example)
    return examples


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Indices in batches of similar length. With ``rng`` (training): shuffle, then sort within
    pools of 50 batches by length, cut into batches and shuffle the batches; without (evaluation):
    sorted by length."""
    order = list(range(len(lengths)))
    if rng is None:
        order.sort(key=lambda i: lengths[i])
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(order)
    pool = 50 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: list[dict], pad_id: int, pad_to: int | None = None) -> dict:
    """Pad a batch to its longest sequence (or to ``pad_to``): tensors input_ids, attention_mask
    (batch, seq) and labels ((batch,) or (batch, seq) for token heads, -100 on padding)."""
    import torch

    width = pad_to or max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    token_labels = isinstance(examples[0]["labels"], list)
    labels = torch.full((len(examples), width), -100, dtype=torch.long) if token_labels else \
        torch.tensor([e["labels"] for e in examples], dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        mask[row, :n] = 1
        if token_labels:
            labels[row, :n] = torch.tensor(e["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

def task_model(encoder_module, hidden_size: int, n_labels: int, head: str, pooling: str = "mean",
               dropout: float = 0.1):
    """The encoder with a linear task head; ``forward(input_ids, attention_mask)`` returns
    logits of shape (batch, seq, n_labels) for token heads and (batch, n_labels) otherwise."""
    import torch
    from torch import nn

    if pooling not in POOLINGS:
        raise MtnbError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")

    class TaskModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder_module
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(hidden_size, n_labels)
            self.head, self.pooling = head, pooling

        def forward(self, input_ids, attention_mask):
            h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.head == "token":
                return self.classifier(self.dropout(h))
            if self.pooling == "mean":
                m = attention_mask.unsqueeze(-1).to(h.dtype)          # (batch, seq, 1)
                pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            else:
                pooled = h[:, 0]
            return self.classifier(self.dropout(pooled))

    return TaskModel()


# --------------------------------------------------------------------------------------------
# Predictions and scores
# --------------------------------------------------------------------------------------------

def predict(model, examples: list[dict], task, pad_id: int, batch_size: int = 64,
            progress: bool = False, dtype=None) -> list:
    """Predictions in example order: per-word label ids (token heads; one per labelled first
    sub-word), a label id (sequence, pair) or a float score (ranking: the expected grade).
    ``dtype``: the forward passes' autocast dtype (``mtnb.core.precision.resolve_precision``; None:
    float32); the logits are read as float32 either way."""
    import torch
    from tqdm.auto import tqdm

    from mtnb.core.precision import autocast

    model.eval()
    out: list = [None] * len(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    device = next(model.parameters()).device
    with torch.no_grad():
        for rows in tqdm(length_grouped_batches(lengths, batch_size, None), disable=not progress,
                         desc="predicting", leave=False):
            batch = collate([examples[i] for i in rows], pad_id)
            with autocast(dtype, device):
                logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            logits = logits.float().cpu()
            for j, i in enumerate(rows):
                if task.head == "token":
                    keep = batch["labels"][j] != -100
                    out[i] = logits[j][keep].argmax(-1).tolist()
                elif task.head == "ranking":
                    p = logits[j].softmax(-1)
                    out[i] = float((p * torch.arange(len(p))).sum())
                else:
                    out[i] = int(logits[j].argmax())
    return out


def references(examples: list[dict], task) -> list:
    """The gold labels in the form ``predict`` returns predictions."""
    if task.head == "token":
        return [[label for label in e["labels"] if label != -100] for e in examples]
    return [e["labels"] for e in examples]


def score(task, predictions: list, gold: list, examples: list[dict]) -> float:
    """The task's metric (see the task table) in [0, 1]."""
    from mtnb.transfer.metrics import score as metric_score

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
    from mtnb.transfer.metrics.accuracy.accuracy import IGNORED
    from mtnb.transfer.metrics.entity_f1.entity_f1 import entities
    from mtnb.transfer.metrics.ndcg.ndcg import by_query, query_ndcg

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


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Hyperparameters of one fine-tuning run (the paper grid's defaults are the paper's)."""

    lr: float = 5e-6
    epochs: int = 10
    batch_size: int = 32
    max_length: int = 256
    warmup: float = 0.1          # share of the steps spent warming up the learning rate
    weight_decay: float = 0.01
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs)
    evals_per_epoch: int = 1
    precision: str = "fp32"      # fp32 | bf16 | fp16 | auto: the forward passes' dtype (mtnb.core.precision)


@dataclass
class Curve:
    """The training curve: loss per step and the dev score at every evaluation."""

    steps: list = field(default_factory=list)
    loss: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    eval_steps: list = field(default_factory=list)
    dev_score: list = field(default_factory=list)
    seconds: float = 0.0
    examples_seen: int = 0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU runs are then repeatable)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def linear_schedule(step: int, total: int, warmup: int) -> float:
    """Learning-rate factor: 0 -> 1 over ``warmup`` steps, then 1 -> 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "layernorm", "norm.weight")


def optimizer_and_schedule(model, config: TrainConfig, total: int):
    """AdamW (no weight decay on biases and layer norms) and a LambdaLR with a linear warmup
    over ``config.warmup`` of ``total`` steps, then linear decay to 0."""
    import torch

    warmup = max(1, int(config.warmup * total))
    named = list(model.named_parameters())
    groups = [
        {"params": [p for n, p in named if not any(k in n for k in NO_DECAY)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if any(k in n for k in NO_DECAY)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, total, warmup))
    return optimizer, scheduler


def optimizer_step(model, optimizer, scheduler, loss, scaler=None) -> None:
    """Backpropagate ``loss``, clip the gradient norm to 1, step the optimizer and schedule.
    ``scaler`` (fp16: ``mtnb.core.precision.grad_scaler``) scales the loss before backpropagating
    and unscales the gradients before clipping; it skips a step whose gradients overflowed."""
    import torch

    if scaler is None:
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def train(model, train_examples: list[dict], dev_examples: list[dict], task, pad_id: int,
          config: TrainConfig, progress: bool = True):
    """Fine-tune ``model`` in place; returns (best state dict, best dev score, Curve).

    Forward passes (training and dev scoring) run at ``config.precision`` on the model's
    device; the loss is cross-entropy on float32 logits, the weights stay float32. Raises
    MtnbError, naming the step, if the loss becomes NaN or infinite.
    """
    import torch
    from tqdm.auto import tqdm

    from mtnb.core.precision import autocast, grad_scaler, resolve_precision

    rng = random.Random(config.seed)
    lengths = [len(e["input_ids"]) for e in train_examples]
    per_epoch = math.ceil(len(train_examples) / config.batch_size)
    total = per_epoch * config.epochs if config.max_steps is None else min(per_epoch * config.epochs, config.max_steps)
    optimizer, scheduler = optimizer_and_schedule(model, config, total)
    device = next(model.parameters()).device
    dtype = resolve_precision(config.precision, device)
    scaler = grad_scaler(dtype, device)
    eval_every = max(1, per_epoch // max(1, config.evals_per_epoch))
    gold = references(dev_examples, task)
    curve, best_state, best = Curve(), None, -math.inf
    step, start = 0, time.perf_counter()
    bar = tqdm(total=total, desc="training", disable=not progress)
    while step < total:
        for rows in length_grouped_batches(lengths, config.batch_size, rng):
            model.train()
            batch = collate([train_examples[i] for i in rows], pad_id)
            with autocast(dtype, device):
                logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            labels = batch["labels"].to(device)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                     labels.reshape(-1), ignore_index=-100)
            if not torch.isfinite(loss):
                raise MtnbError(f"the training loss became {loss.item()} at step {step + 1}: lower the "
                                f"learning rate (now {config.lr:g}) or check the data")
            optimizer_step(model, optimizer, scheduler, loss, scaler)
            step += 1
            curve.steps.append(step)
            curve.loss.append(loss.item())
            curve.lr.append(scheduler.get_last_lr()[0])
            curve.examples_seen += len(rows)
            bar.update(1)
            bar.set_postfix(loss=f"{curve.loss[-1]:.3f}")
            if step % eval_every == 0 or step == total:
                dev = score(task, predict(model, dev_examples, task, pad_id, dtype=dtype), gold, dev_examples)
                curve.eval_steps.append(step)
                curve.dev_score.append(dev)
                if dev > best:
                    best = dev
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if step >= total:
                break
    bar.close()
    curve.seconds = time.perf_counter() - start
    return best_state, best, curve


def save_run(folder: Path, state: dict, run_config: dict, curve, weights_file: str = "model.safetensors",
             figure=None) -> None:
    """Write a finished run: ``weights_file`` (fine-tuning: encoder and head in
    model.safetensors), ``run.json`` (what was run), ``curve.json`` (the dataclass ``curve``),
    ``curve.png`` (when ``figure``, a function returning a matplotlib figure, is given);
    ``done.json`` last, so a folder without it is never taken as finished."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done.json").unlink(missing_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / weights_file))
    (folder / "run.json").write_text(json.dumps(run_config, indent=1))
    (folder / "curve.json").write_text(json.dumps(asdict(curve)))
    if figure is not None:
        import matplotlib.pyplot as plt

        fig = figure()
        fig.savefig(folder / "curve.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    (folder / "done.json").write_text(json.dumps({"finished": True}))


def plot_curve(curve: Curve, title: str = ""):
    """Training loss per step (left axis) and dev score per evaluation (right axis)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(curve.steps, curve.loss, lw=0.8, color="tab:blue", label="training loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss", color="tab:blue")
    twin = ax.twinx()
    twin.plot(curve.eval_steps, [100 * s for s in curve.dev_score], marker="o", color="tab:red", label="dev score")
    twin.set_ylabel("English dev score (0-100)", color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# One run, end to end (what notebooks/finetune.ipynb calls)
# --------------------------------------------------------------------------------------------

def subsample(records, n: int | None, seed: int):
    """At most ``n`` records, drawn with ``seed`` (all of them when ``n`` is None)."""
    if n is None or n >= len(records):
        return records
    return records.shuffle(seed=seed).select(range(n))


def finetune_run(model: str, task: str, output_dir: str | Path, *, config: TrainConfig,
                 pooling: str = "mean", max_train: int | None = None, max_dev: int | None = None,
                 registry_path: str | None = None, mini_root=None, xglue_dir=None, xglue_parquet=None,
                 progress: bool = True) -> dict:
    """Fine-tune ``model`` on ``task``'s English train split, select on English dev, save the
    run to ``output_dir`` (see ``save_run``); returns the run record (also in run.json).

    Every name, the precision, the data and the output folder are checked before any weights
    are loaded.
    """
    from mtnb.data.loading import load_task
    from mtnb.models.registry import checkpoint_folder, load_encoder, load_registry, resolve
    from mtnb.core.precision import precision_name, resolve_precision
    from mtnb.data.tasks import get_task

    device = default_device()
    dtype = resolve_precision(config.precision, device)
    registry = load_registry(registry_path) if registry_path else None
    spec = resolve(model, registry)
    task_spec = get_task(task)
    if pooling not in POOLINGS:
        raise MtnbError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    if config.epochs < 1 or config.lr <= 0 or config.batch_size < 1:
        raise MtnbError("epochs and batch size must be at least 1 and the learning rate positive")
    output_dir = Path(output_dir)
    if (output_dir / "done.json").is_file():
        raise MtnbError(f"{output_dir} already holds a finished run; choose another output folder")
    kw = dict(mini_root=mini_root, xglue_dir=xglue_dir, xglue_parquet=xglue_parquet)
    train_records = subsample(load_task(task_spec, "en", "train", **kw), max_train, config.seed)
    dev_records = subsample(load_task(task_spec, "en", "dev", **kw), max_dev, config.seed)
    folder = checkpoint_folder(spec)

    seed_everything(config.seed)
    encoder = load_encoder(model, registry)
    set_language(encoder.tokenizer, encoder.spec.lang_codes, "en")
    prefixes = input_prefixes(encoder.spec.inputs, task_spec.head)
    train_examples = encode(train_records, task_spec, encoder.tokenizer, config.max_length, prefixes)
    dev_examples = encode(dev_records, task_spec, encoder.tokenizer, config.max_length, prefixes)
    net = task_model(encoder.model, encoder.shape.hidden_size, len(task_spec.labels), task_spec.head, pooling)
    net.to(device)
    pad_id = encoder.tokenizer.pad_token_id
    state, best, curve = train(net, train_examples, dev_examples, task_spec, pad_id, config, progress)
    record = {
        "mode": "finetune", "model": model, "model_folder": str(folder), "family": encoder.spec.family,
        "lang_codes": encoder.spec.lang_codes, "inputs": encoder.spec.inputs, "prefixes": list(prefixes),
        "task": task_spec.name, "head": task_spec.head,
        "labels": list(task_spec.labels), "metric": task_spec.metric, "pooling": pooling,
        "registry": registry_path, "train": asdict(config), "precision": precision_name(dtype),
        "max_train": max_train, "max_dev": max_dev,
        "data": {"mini_root": _str(mini_root), "xglue_dir": _str(xglue_dir), "xglue_parquet": _str(xglue_parquet)},
        "n_train": len(train_examples),
        "n_dev": len(dev_examples), "best_dev_score": best,
        "examples_per_second": curve.examples_seen / max(curve.seconds, 1e-9),
    }
    save_run(output_dir, state, record, curve,
             figure=lambda: plot_curve(curve, f"{model} on {task_spec.name} (seed {config.seed})"))
    return record


def _str(path) -> str | None:
    return None if path is None else str(Path(path).resolve())


def load_finetuned(folder: str | Path):
    """A finished run's (TaskModel in eval mode, tokenizer, task spec, run record).

    Raises MtnbError when the folder holds no finished run.
    """
    from safetensors.torch import load_file

    from mtnb.models.registry import load_encoder, load_registry
    from mtnb.data.tasks import get_task

    folder = Path(folder)
    if not (folder / "done.json").is_file() or not (folder / "model.safetensors").is_file():
        raise MtnbError(f"{folder} holds no finished fine-tuning run (no done.json/model.safetensors); "
                        "run notebooks/finetune.ipynb into it first")
    record = json.loads((folder / "run.json").read_text())
    if record.get("mode", "finetune") != "finetune":
        raise MtnbError(f"{folder} holds a {record['mode']} run, not a fine-tuned model; load it with "
                        "mtnb.transfer.probe.load_probe")
    registry = load_registry(record["registry"]) if record.get("registry") else None
    encoder = load_encoder(record["model"], registry)
    task_spec = get_task(record["task"])
    net = task_model(encoder.model, encoder.shape.hidden_size, len(record["labels"]), record["head"],
                     record["pooling"])
    net.load_state_dict(load_file(str(folder / "model.safetensors")))
    net.to(default_device()).eval()
    return net, encoder.tokenizer, task_spec, record


# --------------------------------------------------------------------------------------------
# A job: one model, one task, several seeds, fine-tuned or probed
# --------------------------------------------------------------------------------------------

def check_seeds(seeds) -> list[int]:
    """``seeds`` as a list of distinct ints (at least one); MtnbError otherwise."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, (list, tuple)) or not seeds or \
            any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise MtnbError(f"seeds {seeds!r}: give a list of integers, e.g. [0, 1, 2]")
    if len(set(seeds)) != len(seeds):
        raise MtnbError(f"seeds {seeds!r}: a seed is listed twice")
    return list(seeds)


def run_folders(output_dir: str | Path, seeds) -> dict[int, Path]:
    """``{seed: <output_dir>/seed-<seed>}``; MtnbError when one of them already holds a finished
    run (nothing computed is overwritten)."""
    output_dir = Path(output_dir)
    folders = {seed: output_dir / f"seed-{seed}" for seed in check_seeds(seeds)}
    for folder in [output_dir, *folders.values()]:
        if (folder / "done.json").is_file():
            raise MtnbError(f"{folder} already holds a finished run; choose another output folder")
    return folders


def run_job(model: str, task: str, output_dir: str | Path, *, mode: str = "finetune", seeds=(0,),
            config: TrainConfig | None = None, probe_layer: int = -1, pooling: str = "mean",
            max_train: int | None = None, max_dev: int | None = None, max_eval: int | None = None,
            registry_path: str | None = None, mini_root=None, xglue_dir=None, xglue_parquet=None,
            progress: bool = True) -> list[dict]:
    """Train ``model`` on ``task`` once per seed, into ``<output_dir>/seed-<seed>/``; returns the
    run records in seed order.

    ``mode`` finetune: ``finetune_run`` per seed with ``config`` (its seed replaced). ``mode``
    probe: ``mtnb.transfer.probe.probe_run`` with ``probe_layer`` (the features are computed once for
    all seeds; ``config`` gives max_length and the forward batch size; ``max_eval`` caps the
    test examples per language whose features are computed ahead for zero-shot evaluation).
    ``config.precision`` sets the forward passes' dtype in both modes (``mtnb.core.precision``). A
    bad mode, seed list, layer, precision or name fails before any weights load.
    """
    from dataclasses import replace

    from mtnb.core.precision import check_precision

    if mode not in MODES:
        raise MtnbError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    config = config or TrainConfig()
    check_precision(config.precision)
    folders = run_folders(output_dir, seeds)
    data = dict(registry_path=registry_path, mini_root=mini_root, xglue_dir=xglue_dir,
                xglue_parquet=xglue_parquet, progress=progress)
    if mode == "probe":
        from mtnb.transfer.probe import ProbeConfig, probe_run

        probe_config = ProbeConfig(layer=probe_layer, pooling=pooling, max_length=config.max_length,
                                   batch_size=config.batch_size, precision=config.precision)
        return probe_run(model, task, output_dir, seeds=list(folders), config=probe_config, max_train=max_train,
                         max_dev=max_dev, max_eval=max_eval, **data)
    if isinstance(probe_layer, bool) or not isinstance(probe_layer, int):
        raise MtnbError(f"probe_layer {probe_layer!r}: give an integer layer (-1: the last)")
    return [finetune_run(model, task, folder, config=replace(config, seed=seed), pooling=pooling,
                         max_train=max_train, max_dev=max_dev, **data)
            for seed, folder in folders.items()]


def run_table(records: list[dict]):
    """One row per seed of a job's run records: English examples, best English dev score
    (0-100) and, by mode, training speed (finetune) or the chosen weight decay (probe)."""
    import pandas as pd

    rows = []
    for r in records:
        row = {"seed": r["train"]["seed"], "mode": r.get("mode", "finetune"), "English examples": r["n_train"],
               f"English dev {r['metric']}": round(100 * r["best_dev_score"], 1)}
        if row["mode"] == "probe":
            row.update({"layer": r["layer_index"], "weight decay": r["weight_decay"]})
        else:
            row["examples/s"] = round(r["examples_per_second"], 1)
        rows.append(row)
    return pd.DataFrame(rows)


def plot_run(folder: str | Path):
    """The figure of a finished run folder: the training curve (fine-tuning) or the probe's
    losses and dev scores per weight decay (probe)."""
    folder = Path(folder)
    record = json.loads((folder / "run.json").read_text())
    curve = json.loads((folder / "curve.json").read_text())
    title = f"{record['model']} on {record['task']} (seed {record['train']['seed']})"
    if record.get("mode", "finetune") == "probe":
        from mtnb.transfer.probe import ProbeCurve, plot_probe

        return plot_probe(ProbeCurve(**curve), title)
    return plot_curve(Curve(**curve), title)
