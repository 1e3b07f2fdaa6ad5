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

import matplotlib.pyplot as plt
import torch
from safetensors.torch import load_file
from torch import nn
from tqdm.auto import tqdm

from mtnb.analysis.features import POOLINGS
from mtnb.core.errors import MtnbError
from mtnb.core.precision import autocast, default_device, grad_scaler, precision_name, resolve_precision
from mtnb.data.inputs import collate, encode, input_prefixes, length_grouped_batches, set_language
from mtnb.data.loading import aligned_eval_ids, eval_subset, load_task, subsample
from mtnb.data.tasks import get_task
from mtnb.models.loading import load_encoder
from mtnb.models.registry import checkpoint_folder, load_registry, resolve
from mtnb.models.training import optimizer_and_schedule, optimizer_step, seed_everything
from mtnb.transfer.run_folders import resolved, save_run
from mtnb.transfer.scoring import references, score


# --------------------------------------------------------------------------------------------
# Records -> token ids
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

class TaskModel(nn.Module):
    """The encoder with a linear task head. ``forward(input_ids, attention_mask)`` (batch, seq)
    returns logits (batch, seq, n_labels) for token heads; otherwise the hidden states are pooled,
    mean over non-padding tokens or the first token, m = Σ_t h_t·mask_t / max(1, Σ_t mask_t), and
    the logits are (batch, n_labels)."""

    def __init__(self, encoder_module, hidden_size: int, n_labels: int, head: str, pooling: str = "mean",
                 dropout: float = 0.1):
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


def task_model(encoder_module, hidden_size: int, n_labels: int, head: str, pooling: str = "mean",
               dropout: float = 0.1) -> TaskModel:
    """A ``TaskModel`` on ``encoder_module``; MtnbError for an unknown pooling."""
    if pooling not in POOLINGS:
        raise MtnbError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    return TaskModel(encoder_module, hidden_size, n_labels, head, pooling, dropout)


# --------------------------------------------------------------------------------------------
# Predictions and scores
# --------------------------------------------------------------------------------------------

def predict(model, examples: list[dict], task, pad_id: int, batch_size: int = 64,
            progress: bool = False, dtype=None) -> list:
    """Predictions in example order: per-word label ids (token heads; one per labelled first
    sub-word), a label id (sequence, pair) or a float score (ranking: the expected grade).
    ``dtype``: the forward passes' autocast dtype (``mtnb.core.precision.resolve_precision``; None:
    float32); the logits are read as float32 either way."""
    model.eval()
    out: list = [None] * len(examples)
    lengths = [len(e["input_ids"]) for e in examples]
    device = next(model.parameters()).device
    # one autocast context for all batches: it casts each weight to ``dtype`` once, not per batch
    # (its cache, kept under no_grad until the context ends; the weights do not change meanwhile)
    with torch.no_grad(), autocast(dtype, device):
        for rows in tqdm(length_grouped_batches(lengths, batch_size, None), disable=not progress,
                         desc="predicting", leave=False):
            batch = collate([examples[i] for i in rows], pad_id)
            logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            logits = logits.float().cpu()             # the rest reads float32 logits
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
    target: dict = field(default_factory=dict)   # the oracle's: {language: {"dev": [...], "test": [...]}}, per evaluation


def train(model, train_examples: list[dict], dev_examples: list[dict], task, pad_id: int,
          config: TrainConfig, progress: bool = True, watch: dict | None = None):
    """Fine-tune ``model`` in place; returns (best state dict, best dev score, Curve).

    Forward passes (training and dev scoring) run at ``config.precision`` on the model's
    device; the loss is cross-entropy on float32 logits, the weights stay float32. Raises
    MtnbError, naming the step, if the loss becomes NaN or infinite.

    ``watch``: {language: (dev examples, test examples)} scored at every evaluation besides
    English dev, into ``curve.target`` (``oracle_examples``); they choose nothing here.
    """
    rng = random.Random(config.seed)
    lengths = [len(e["input_ids"]) for e in train_examples]
    per_epoch = math.ceil(len(train_examples) / config.batch_size)
    total = per_epoch * config.epochs if config.max_steps is None else min(per_epoch * config.epochs, config.max_steps)
    device = next(model.parameters()).device
    dtype = resolve_precision(config.precision, device)
    # the fused AdamW kernel at bf16/fp16, the bit-identical foreach at fp32 (optimizer_and_schedule)
    optimizer, scheduler = optimizer_and_schedule(model, config, total, fused=dtype is not None)
    scaler = grad_scaler(dtype, device)
    eval_every = max(1, per_epoch // max(1, config.evals_per_epoch))
    gold = references(dev_examples, task)
    watched = [(lang, split, examples, references(examples, task))
               for lang, splits in (watch or {}).items() for split, examples in zip(("dev", "test"), splits)]
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
                for lang, split, examples, truth in watched:
                    scored = score(task, predict(model, examples, task, pad_id, dtype=dtype), truth, examples)
                    curve.target.setdefault(lang, {"dev": [], "test": []})[split].append(scored)
                if dev > best:
                    best = dev
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if step >= total:
                break
    bar.close()
    curve.seconds = time.perf_counter() - start
    return best_state, best, curve


# --------------------------------------------------------------------------------------------
# The target-language-dev oracle: an upper bound beside English-dev selection, never a verdict
# --------------------------------------------------------------------------------------------

def oracle_examples(task_spec, tokenizer, lang_codes, max_length: int, prefixes, max_dev: int | None,
                    max_eval: int | None, **data) -> dict:
    """{language: (dev examples, test examples)} for every language of the task but English, for
    ``train(watch=...)``: scored at each evaluation, they let a checkpoint be chosen on each
    target language's own dev split instead of English dev. That choice sees target-language
    labels, which zero-shot transfer by definition does not, so it is an upper bound on what
    model selection could add (Keung et al. 2020, EMNLP), never the verdict. Both splits are
    drawn as zero-shot evaluation draws them (``aligned_eval_ids`` then ``eval_subset``: the same
    examples in every language of an aligned task; at most ``max_dev`` dev and ``max_eval`` test
    examples), so a test score here is the zero-shot job's for the same weights. Every
    language's data is checked before training; a language without a dev split gives MtnbError.
    Leaves ``tokenizer`` set to English."""
    watch = {}
    dev_ids = aligned_eval_ids(task_spec, task_spec.languages, "dev", max_dev, **data)
    test_ids = aligned_eval_ids(task_spec, task_spec.languages, "test", max_eval, **data)
    for lang in task_spec.languages:
        if lang == "en":
            continue
        set_language(tokenizer, lang_codes, lang)
        try:
            dev = eval_subset(load_task(task_spec, lang, "dev", **data), max_dev, dev_ids)
        except MtnbError as err:
            raise MtnbError(f"the target-dev oracle needs a dev split in every language: {err}; "
                            "run without oracle") from None
        test = eval_subset(load_task(task_spec, lang, "test", **data), max_eval, test_ids)
        watch[lang] = tuple(encode(records, task_spec, tokenizer, max_length, prefixes) for records in (dev, test))
    set_language(tokenizer, lang_codes, "en")
    return watch


def oracle_rows(curve: dict, record: dict) -> list[dict]:
    """The oracle beside English-dev selection, from a run's ``curve.json`` (as a dict) and
    ``run.json``: per target language, the test score (0-100) of the checkpoint English dev chose
    (the saved model) and of the checkpoint that language's own dev scores best (the first best of
    each, as ``train`` keeps the first). Empty for a run trained without ``watch``.

        k_en = argmax_k dev_en[k],   k_l = argmax_k dev_l[k],   oracle_l - chosen_l = test_l[k_l] - test_l[k_en]
    """
    rows = []
    for lang, scores in curve.get("target", {}).items():
        k_en, k_own = (dev.index(max(dev)) for dev in (curve["dev_score"], scores["dev"]))   # first best
        for selection, k in (("English dev", k_en), ("target dev", k_own)):
            rows.append(dict(model=record["model"], task=record["task"], seed=record["train"]["seed"], language=lang,
                             selection=selection, step=curve["eval_steps"][k], dev=100 * scores["dev"][k],
                             test=100 * scores["test"][k]))
    return rows


def plot_curve(curve: Curve, title: str = ""):
    """Training loss per step (left axis) and dev score per evaluation (right axis)."""
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


def finetune_run(model: str, task: str, output_dir: str | Path, *, config: TrainConfig,
                 pooling: str = "mean", max_train: int | None = None, max_dev: int | None = None,
                 registry_path: str | None = None, mini_root=None, xglue_dir=None, xglue_parquet=None,
                 oracle: bool = False, max_eval: int | None = None, progress: bool = True) -> dict:
    """Fine-tune ``model`` on ``task``'s English train split, select on English dev, save the
    run to ``output_dir`` (see ``save_run``); returns the run record (also in run.json).
    ``oracle``: also score every other language's dev and test (at most ``max_dev`` and
    ``max_eval`` examples) at each evaluation, into the curve, for the target-dev oracle
    (``oracle_examples``, ``oracle_rows``); the model is still chosen on English dev.

    Every name, the precision, the data and the output folder are checked before any weights
    are loaded.
    """
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
    watch = (oracle_examples(task_spec, encoder.tokenizer, encoder.spec.lang_codes, config.max_length, prefixes,
                             max_dev, max_eval, **kw) if oracle else None)
    net = task_model(encoder.model, encoder.shape.hidden_size, len(task_spec.labels), task_spec.head, pooling)
    net.to(device)
    pad_id = encoder.tokenizer.pad_token_id
    state, best, curve = train(net, train_examples, dev_examples, task_spec, pad_id, config, progress, watch)
    record = {
        "mode": "finetune", "model": model, "model_folder": str(folder), "family": encoder.spec.family,
        "lang_codes": encoder.spec.lang_codes, "inputs": encoder.spec.inputs, "prefixes": list(prefixes),
        "task": task_spec.name, "head": task_spec.head,
        "labels": list(task_spec.labels), "metric": task_spec.metric, "pooling": pooling,
        "registry": registry_path, "train": asdict(config), "precision": precision_name(dtype),
        "max_train": max_train, "max_dev": max_dev, "oracle": bool(oracle), "max_eval": max_eval,
        "data": {"mini_root": resolved(mini_root), "xglue_dir": resolved(xglue_dir), "xglue_parquet": resolved(xglue_parquet)},
        "n_train": len(train_examples),
        "n_dev": len(dev_examples), "best_dev_score": best,
        "examples_per_second": curve.examples_seen / max(curve.seconds, 1e-9),
    }
    save_run(output_dir, state, record, curve,
             figure=lambda: plot_curve(curve, f"{model} on {task_spec.name} (seed {config.seed})"))
    return record


def load_finetuned(folder: str | Path):
    """A finished run's (TaskModel in eval mode, tokenizer, task spec, run record).

    Raises MtnbError when the folder holds no finished run.
    """
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


