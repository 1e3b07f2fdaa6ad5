"""Fine-tuning throughput of ``mtnb.transfer.finetune``: length-grouped batching, and the training loop's overhead.

Data: --examples (256) English train records of the ``mini-spans`` task (the NER analog, a
token head), drawn with a fixed seed from the mini corpus (--corpus, default runs/data/mini;
where that has no manifest.json, /tmp/corpus-a), encoded with ``mtnb.data.inputs.encode`` at
max_length 256. Model: a small but real encoder, a BERT with 4 layers, hidden 256, 4 heads,
feed-forward 1024 and the vocabulary of ``mtnb.models.random_checkpoints.character_tokenizer("bert")``
(random weights, seeded), saved in a temporary folder with ``save_pretrained`` and loaded through
``mtnb.models.loading.load_encoder``; the task head is ``mtnb.transfer.finetune.task_model``. The tokenizer is
character-level, so sequences are long (about one token per character): the batching gain
measured here is the one for long inputs. (--model takes a checkpoint folder instead, e.g. a
converted multilingual-e5-small at runs/models/me5-small, whose sub-word sequences are shorter.)
torch runs on the CPU, on --threads 2 threads (torch.set_num_threads), with OMP_WAIT_POLICY=PASSIVE
unless the environment sets it: with OpenMP's default (spinning) wait, while other jobs keep the
2 cores busy, 2-thread steps of this small model stalled for seconds (a thread spinning while the
partner it waits for is descheduled: a 32 x 16-token step took 5 s instead of 0.2 s, with
--threads 1 or the passive policy 0.2 s), which swamps the differences measured here and hits
the short length-grouped steps hardest. OMP_WAIT_POLICY=ACTIVE python ... measures the default.

(a) Batching. Examples per second of fine-tuning, counting forward, loss, backward, gradient
    clipping, optimizer and scheduler step (batches are collated beforehand, outside the timing)
    with our batching (``length_grouped_batches`` + ``collate``: each batch padded to its own
    longest sequence) against padding every example to 256 tokens (``collate(..., pad_to=256)``),
    as XGLUE's reference scripts do (pad to max_seq_length). Both modes see the same batches of
    the same examples (with fixed padding, which examples share a batch does not change the cost),
    from the same initial weights, for the same --steps optimizer steps at the task's learning
    rate with batch size 32. Each mode trains its own copy of the model, and the two are stepped
    in turns (step i of one, then step i of the other, the order alternating), so that both see
    the same load on a shared machine; a mode's time is the sum of its steps. Reports the median
    over --repeats, the ratio, and the mean padded length in each mode. Goal: >= 3x examples per
    second.

(b) Loop overhead. Time per optimizer step of ``mtnb.transfer.finetune.train`` (with a tiny dev set,
    --dev 16 examples, evaluated once, at the last step) against a bare PyTorch loop over
    identical batches: the batches come from ``length_grouped_batches`` with the same seeded
    ``random.Random(seed)`` as train uses, the same ``collate``, the same AdamW parameter groups,
    LambdaLR ``linear_schedule``, clipping at 1.0 and the same torch seed, so both loops compute
    the same losses (checked). Each loop is timed as a whole, optimizer construction included,
    batch collation included (train collates inside its loop, so the bare loop does too).
    train's evaluation (``predict`` + ``score``, which loads an ``evaluate`` metric; the first
    load in a process imports ``evaluate`` and takes seconds) is timed by wrapping the two
    functions, and the overhead is reported both with it (the whole call) and without it
    (the whole call minus the time inside predict and score). overhead = ours / bare - 1.
    Goal: <= 10%.

(c) The peer: Hugging Face's ``transformers.Trainer``, the tool a user would otherwise pick, on
    the same fine-tuning: the same model (reset to the same weights and torch seed), the same
    examples and batch size, the same --steps, length grouping (``TrainingArguments``'s
    ``train_sampling_strategy="group_by_length"``, transformers 5's name for ``group_by_length``:
    its ``LengthGroupedSampler``, whose groups differ from ``length_grouped_batches``'s, so the
    mean padded tokens per step of each is printed), mtnb's own ``collate`` as the data collator,
    and the same optimizer and schedule objects (``optimizer_and_schedule``: AdamW without decay on
    biases and norms, linear warmup and decay) handed to the Trainer (``optimizers=``), clipping
    at 1.0 (``max_grad_norm``), the loss cross-entropy on float32 logits as in ``ft.train``. The
    Trainer logs, saves and evaluates nothing (``report_to="none"``, strategies "no"), runs on the
    CPU (``use_cpu``) at --precision (bf16: ``bf16=True``); it needs the ``accelerate`` package
    (transformers' Trainer imports it; (c) is skipped without it). Timed: each loop's whole call divided
    by its steps, ``ft.train`` without the time inside its evaluation (as in (b)); the two are
    interleaved (the order alternating per repeat), after one untimed warm-up call of each.
    Reports the median s/step of each and the ratio mtnb / Trainer, and the same ratio per padded
    token (the two samplers group differently). Bar: <= 1 (mtnb's step no slower than Trainer's).

Repeats alternate which mode or loop runs first. The machine is shared (2 cores, other jobs may
run): figures are medians over repeats of wall time, and comparisons are ratios measured in the
same run. The same ratios in CPU time (``time.process_time``, all threads of this process), less
sensitive to other jobs taking the cores, are reported beside them.

    python benchmarks/bench_finetune.py [--repeats 3] [--steps 8] [--examples 256] [--dev 16]
                                        [--corpus runs/data/mini] [--model small-bert] [--threads 2]
                                        [--out runs/benchmarks/finetune.json]
                                        [--precision fp32] [--no-peer]
Goals: (a) >= 3x examples/s with length-grouped batches; (b) train's overhead <= 10%;
(c) mtnb's step / Trainer's step <= 1. Every figure is printed beside the machine's flags
(``mtnb.core.machine.machine_summary``), which the JSON records as ``machine_summary``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.util
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Threads that wait for each other sleep instead of spinning (read by OpenMP when torch loads;
# an OMP_WAIT_POLICY already set in the environment is kept). See the docstring.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import mtnb.transfer.finetune as ft  # noqa: E402
from mtnb.data.inputs import collate, encode, length_grouped_batches, set_language  # noqa: E402
from mtnb.data.loading import subsample  # noqa: E402
from mtnb.models.training import optimizer_and_schedule, seed_everything  # noqa: E402
from mtnb.data.mini.datasets import load_mini  # noqa: E402
from mtnb.models.loading import load_encoder  # noqa: E402
from mtnb.data.tasks import get_task  # noqa: E402
from mtnb.core.machine import machine_summary  # noqa: E402

DEFAULT_CORPUS = "/work/main/runs/data/mini"
FALLBACK_CORPUS = "/tmp/corpus-a"
ME5_SMALL = "/work/main/runs/models/me5-small"
SMALL_BERT = dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024)
PAD_TO = 256
GOAL_SPEEDUP, GOAL_OVERHEAD, GOAL_PEER = 3.0, 0.10, 1.0


def corpus_root(path: str) -> Path:
    """The corpus folder: ``path``, else /tmp/corpus-a; exits with the build command when neither has one."""
    for candidate in (Path(path), Path(FALLBACK_CORPUS)):
        if (candidate / "manifest.json").is_file():
            if candidate != Path(path):
                print(f"no mini corpus at {path}; using {candidate}")
            return candidate
    sys.exit(f"no mini corpus at {path} (nor at {FALLBACK_CORPUS}): build it with 'mtnb data mini'")


def build_small_bert(folder: Path, seed: int = 0) -> Path:
    """Save a random 4-layer, 256-wide BERT with the character tokenizer into ``folder``."""
    from transformers import BertConfig, BertModel

    from mtnb.models.random_checkpoints import character_tokenizer

    tokenizer = character_tokenizer("bert")
    config = BertConfig(vocab_size=len(tokenizer), max_position_embeddings=512, **SMALL_BERT)
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder



def step(model, batch, optimizer, scheduler) -> float:
    """One optimizer step on a collated batch (as ``ft.train`` does it); returns the loss."""
    model.train()
    logits = model(batch["input_ids"], batch["attention_mask"])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             batch["labels"].reshape(-1), ignore_index=-100)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def train_batches(lengths: list[int], config: ft.TrainConfig, total: int) -> list[list[int]]:
    """The first ``total`` batches ``ft.train`` draws (its rng, epoch after epoch)."""
    rng, batches = random.Random(config.seed), []
    while len(batches) < total:
        batches += length_grouped_batches(lengths, config.batch_size, rng)
    return batches[:total]


def reset(model, state: dict, seed: int) -> None:
    model.load_state_dict(state)
    seed_everything(seed)


# --------------------------------------------------------------------------------------------
# (a) length-grouped batches against padding to 256
# --------------------------------------------------------------------------------------------

def bench_batching(model, state, examples, pad_id, config, steps, repeats) -> dict:
    batches = train_batches([len(e["input_ids"]) for e in examples], config, steps)
    collated = {
        "length-grouped": [collate([examples[i] for i in rows], pad_id) for rows in batches],
        f"padded to {PAD_TO}": [collate([examples[i] for i in rows], pad_id, pad_to=PAD_TO) for rows in batches],
    }
    n_examples = sum(len(rows) for rows in batches)
    real_tokens = sum(len(examples[i]["input_ids"]) for rows in batches for i in rows)
    padded_length = {mode: sum(b["input_ids"].numel() for b in bs) / n_examples for mode, bs in collated.items()}
    # one copy of the model per mode, stepped in turns (step i of one mode, then step i of the
    # other, the order alternating), so that both modes run under the same load of the machine
    models = {mode: model if k == 0 else copy.deepcopy(model) for k, mode in enumerate(collated)}
    for mode, bs in collated.items():  # warm-up: one untimed step per mode (allocator, kernels)
        reset(models[mode], state, config.seed)
        opt, sch = optimizer_and_schedule(models[mode], config, steps)
        step(models[mode], bs[-1], opt, sch)
    times, cpu_times = {mode: [] for mode in collated}, {mode: [] for mode in collated}
    for r in range(repeats):
        optimizers = {}
        for mode in collated:
            reset(models[mode], state, config.seed)
            optimizers[mode] = optimizer_and_schedule(models[mode], config, steps)
        wall, cpu = dict.fromkeys(collated, 0.0), dict.fromkeys(collated, 0.0)
        for i in range(steps):
            for mode in (list(collated) if (r + i) % 2 == 0 else list(collated)[::-1]):
                start, start_cpu = time.perf_counter(), time.process_time()
                step(models[mode], collated[mode][i], *optimizers[mode])
                wall[mode] += time.perf_counter() - start
                cpu[mode] += time.process_time() - start_cpu
        for mode in collated:
            times[mode].append(wall[mode])
            cpu_times[mode].append(cpu[mode])
    del models
    median = {mode: statistics.median(t) for mode, t in times.items()}
    cpu_median = {mode: statistics.median(t) for mode, t in cpu_times.items()}
    eps = {mode: n_examples / t for mode, t in median.items()}
    grouped, padded = collated
    return {"steps": steps, "examples_per_run": n_examples, "batch_size": config.batch_size, "lr": config.lr,
            "times_s": times, "median_s": median, "examples_per_s": eps,
            "speedup": eps[grouped] / eps[padded], "goal": GOAL_SPEEDUP,
            "cpu_times_s": cpu_times, "speedup_cpu_time": cpu_median[padded] / cpu_median[grouped],
            "goal_met": eps[grouped] / eps[padded] >= GOAL_SPEEDUP,
            "mean_real_length": real_tokens / n_examples, "mean_padded_length": padded_length,
            "padding_efficiency": {mode: real_tokens / n_examples / length for mode, length in padded_length.items()},
            "timed": "forward + loss + backward + clip + optimizer and scheduler step; collation outside"}


# --------------------------------------------------------------------------------------------
# (b) ft.train against a bare loop over identical batches
# --------------------------------------------------------------------------------------------

def bare_loop(model, examples, pad_id, config, total) -> list[float]:
    optimizer, scheduler = optimizer_and_schedule(model, config, total)
    losses = []
    for rows in train_batches([len(e["input_ids"]) for e in examples], config, total):
        losses.append(step(model, collate([examples[i] for i in rows], pad_id), optimizer, scheduler))
    return losses


class EvalTimer:
    """Wraps ``ft.predict`` and ``ft.score`` (looked up by ``ft.train`` at call time) to add up
    the wall and CPU seconds spent in them."""

    def __init__(self):
        self.seconds, self.cpu_seconds = 0.0, 0.0
        self.split = {"predict": 0.0, "score": 0.0}
        self._predict, self._score = ft.predict, ft.score

    def _timed(self, name, fn):
        def wrapper(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.split[name] += time.perf_counter() - start
                self.cpu_seconds += time.process_time() - cpu
        return wrapper

    def __enter__(self):
        ft.predict, ft.score = self._timed("predict", self._predict), self._timed("score", self._score)
        return self

    def __exit__(self, *exc):
        ft.predict, ft.score = self._predict, self._score


def bench_loop(model, state, examples, dev, task, pad_id, config, repeats) -> dict:
    total = config.max_steps
    ours, ours_no_eval, bare, evals, n_evals = [], [], [], [], []
    cpu_ours_no_eval, cpu_bare, eval_split = [], [], []
    max_diff = 0.0
    for r in range(repeats):
        for which in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
            reset(model, state, config.seed)
            if which == "ours":
                with EvalTimer() as timer:
                    start, cpu = time.perf_counter(), time.process_time()
                    _, _, curve = ft.train(model, examples, dev, task, pad_id, config, progress=False)
                    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
                ours.append(seconds / total)
                ours_no_eval.append((seconds - timer.seconds) / total)
                cpu_ours_no_eval.append((cpu - timer.cpu_seconds) / total)
                evals.append(timer.seconds)
                eval_split.append(dict(timer.split))
                n_evals.append(len(curve.eval_steps))
                our_losses = curve.loss
            else:
                start, cpu = time.perf_counter(), time.process_time()
                bare_losses = bare_loop(model, examples, pad_id, config, total)
                bare.append((time.perf_counter() - start) / total)
                cpu_bare.append((time.process_time() - cpu) / total)
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(our_losses, bare_losses)))
    m_ours, m_no_eval, m_bare = (statistics.median(x) for x in (ours, ours_no_eval, bare))
    paired = [o / b - 1 for o, b in zip(ours_no_eval, bare)]  # each repeat's two loops ran back to back
    return {"steps": total, "dev_examples": len(dev), "evaluations_per_train_call": n_evals[0],
            "per_step_s": {"ours": ours, "ours_without_eval": ours_no_eval, "bare": bare},
            "median_per_step_s": {"ours": m_ours, "ours_without_eval": m_no_eval, "bare": m_bare},
            "eval_s_per_train_call": evals, "first_eval_s": evals[0],
            "eval_split_s": eval_split,
            "overhead_with_eval": m_ours / m_bare - 1, "overhead_without_eval": m_no_eval / m_bare - 1,
            "overhead_without_eval_per_repeat": paired,
            "median_paired_overhead_without_eval": statistics.median(paired),
            "goal": GOAL_OVERHEAD, "goal_met_with_eval": m_ours / m_bare - 1 <= GOAL_OVERHEAD,
            "goal_met_without_eval": m_no_eval / m_bare - 1 <= GOAL_OVERHEAD,
            "same_losses_max_abs_diff": max_diff,
            "cpu_per_step_s": {"ours_without_eval": cpu_ours_no_eval, "bare": cpu_bare},
            "overhead_without_eval_cpu_time": statistics.median(cpu_ours_no_eval) / statistics.median(cpu_bare) - 1,
            "timed": "whole loop incl. optimizer construction and collation, divided by the steps; "
                     "'without eval' subtracts the time inside predict + score"}


# --------------------------------------------------------------------------------------------
# (c) ft.train against Hugging Face's Trainer
# --------------------------------------------------------------------------------------------

class LossModel(torch.nn.Module):
    """The Trainer's view of a task model: forward(input_ids, attention_mask, labels) ->
    {"loss", "logits"}, the loss as ``ft.train`` takes it (cross-entropy over float32 logits,
    -100 ignored)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, labels):
        logits = self.model(input_ids, attention_mask)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                 ignore_index=-100)
        return {"loss": loss, "logits": logits}


def hf_trainer(model, examples, pad_id, config, folder: Path):
    """A ``transformers.Trainer`` set up to run ``config``'s fine-tuning as ``ft.train`` does
    (see (c) in the docstring); ``config.max_steps`` steps."""
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(folder), per_device_train_batch_size=config.batch_size, max_steps=config.max_steps,
        train_sampling_strategy="group_by_length", max_grad_norm=1.0, seed=config.seed, use_cpu=True,
        bf16=config.precision == "bf16", report_to="none", save_strategy="no", eval_strategy="no",
        logging_strategy="no", disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0)
    wrapped = LossModel(model)
    optimizer, scheduler = optimizer_and_schedule(model, config, config.max_steps)
    return Trainer(model=wrapped, args=args, train_dataset=examples, data_collator=lambda rows: collate(rows, pad_id),
                   optimizers=(optimizer, scheduler))


def padded_tokens_per_step(batches) -> float:
    return statistics.mean(b["input_ids"].numel() for b in batches)


def bench_peer(model, state, examples, dev, task, pad_id, config, repeats, folder: Path) -> dict:
    total = config.max_steps
    times = {"mtnb": [], "trainer": []}
    losses = {}

    def run(which: str) -> float:
        reset(model, state, config.seed)
        if which == "mtnb":
            with EvalTimer() as timer:
                start = time.perf_counter()
                _, _, curve = ft.train(model, examples, dev, task, pad_id, config, progress=False)
                seconds = time.perf_counter() - start - timer.seconds
            losses["mtnb"] = curve.loss
            return seconds / total
        trainer = hf_trainer(model, examples, pad_id, config, folder)
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        losses["trainer"] = result.training_loss
        return seconds / total

    run("mtnb"), run("trainer")                       # warm-up, untimed (imports, allocator, kernels)
    for r in range(repeats):
        for which in (("mtnb", "trainer") if r % 2 == 0 else ("trainer", "mtnb")):
            times[which].append(run(which))
    # the batches each loop saw: mtnb's (train_batches, as ft.train draws them) and the Trainer's
    # sampler's, seeded as in its run
    ours = [collate([examples[i] for i in rows], pad_id)
            for rows in train_batches([len(e["input_ids"]) for e in examples], config, total)]
    reset(model, state, config.seed)
    trainer = hf_trainer(model, examples, pad_id, config, folder)
    theirs = []
    for batch in trainer.get_train_dataloader():
        theirs.append(batch)
        if len(theirs) == total:
            break
    median = {which: statistics.median(t) for which, t in times.items()}
    ratio = median["mtnb"] / median["trainer"]
    tokens = {"mtnb": padded_tokens_per_step(ours), "trainer": padded_tokens_per_step(theirs)}
    # the samplers group differently (the Trainer's first batch is its longest), so the same
    # ratio per padded token, the work each step actually did, is given too
    per_token = (median["mtnb"] / tokens["mtnb"]) / (median["trainer"] / tokens["trainer"])
    return {"steps": total, "batch_size": config.batch_size, "precision": config.precision, "per_step_s": times,
            "median_per_step_s": median, "mtnb_over_trainer": ratio, "goal": GOAL_PEER, "goal_met": ratio <= GOAL_PEER,
            "padded_tokens_per_step": tokens, "mtnb_over_trainer_per_padded_token": per_token,
            "mean_loss": {"mtnb": statistics.mean(losses["mtnb"]), "trainer": losses["trainer"]},
            "trainer": "transformers.Trainer, train_sampling_strategy=group_by_length, mtnb's collate, optimizer "
                       "and schedule; no logging, saving or evaluation",
            "timed": "each loop's whole call / steps; ft.train without the time inside its evaluation"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per timed run (both parts)")
    parser.add_argument("--examples", type=int, default=256, help="English train records used")
    parser.add_argument("--dev", type=int, default=16, help="dev records for train's evaluation (part b)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--model", default="small-bert",
                        help="small-bert (built here, random) or a checkpoint folder for load_encoder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (torch.set_num_threads)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="(c): both loops' precision")
    parser.add_argument("--no-peer", action="store_true", help="skip (c), the Trainer")
    parser.add_argument("--out", default="runs/benchmarks/finetune.json")
    args = parser.parse_args()
    machine = machine_summary()
    flags = f"[{machine['text']}]"
    torch.set_num_threads(args.threads)
    root = corpus_root(args.corpus)
    task = get_task("mini-spans")
    train_records = subsample(load_mini("mini-spans", "en", "train", root=root), args.examples, args.seed)
    dev_records = subsample(load_mini("mini-spans", "en", "dev", root=root), args.dev, args.seed)

    tmp = tempfile.TemporaryDirectory(prefix="bench-finetune-")  # kept until the end
    folder = build_small_bert(Path(tmp.name) / "small-bert", args.seed) if args.model == "small-bert" else args.model
    encoder = load_encoder(str(folder))
    set_language(encoder.tokenizer, encoder.spec.lang_codes, "en")
    examples = encode(train_records, task, encoder.tokenizer, PAD_TO)
    dev = encode(dev_records, task, encoder.tokenizer, PAD_TO)
    torch.manual_seed(args.seed)
    model = ft.task_model(encoder.model, encoder.shape.hidden_size, len(task.labels), task.head)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    pad_id = encoder.tokenizer.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    lengths = [len(e["input_ids"]) for e in examples]
    per_epoch = math.ceil(len(examples) / args.batch_size)
    config = ft.TrainConfig(lr=task.lr, epochs=max(1, math.ceil(args.steps / per_epoch)), batch_size=args.batch_size,
                            max_length=PAD_TO, seed=args.seed, max_steps=args.steps, evals_per_epoch=1)
    print(f"model {args.model} ({n_params / 1e6:.1f}M parameters, {encoder.shape.n_layers} layers, "
          f"hidden {encoder.shape.hidden_size}); {len(examples)} mini-spans train examples from {root}: "
          f"{statistics.mean(lengths):.0f} tokens on average, {sum(n >= PAD_TO for n in lengths)} truncated at "
          f"{PAD_TO}; torch threads {torch.get_num_threads()} (OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
          f"load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    if args.model == "small-bert" and os.path.exists(ME5_SMALL):
        print(f"(a converted multilingual-e5-small exists at {ME5_SMALL}: pass --model {ME5_SMALL} to "
              "measure with sub-word inputs)")

    record = {"model": args.model, "model_shape": SMALL_BERT if args.model == "small-bert" else None,
              "parameters": n_params, "task": "mini-spans", "corpus": str(root), "examples": len(examples),
              "mean_length": statistics.mean(lengths), "truncated_at_256": sum(n >= PAD_TO for n in lengths),
              "repeats": args.repeats, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "me5_small_available": os.path.exists(ME5_SMALL),
              "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "machine_summary": machine,
              "load_average_at_start": list(os.getloadavg())}

    a = bench_batching(model, state, examples, pad_id, config, args.steps, args.repeats)
    record["batching"] = a
    grouped, padded = a["examples_per_s"]
    print(f"(a) {a['steps']} steps of {args.batch_size}, lr {config.lr:g}, median of {args.repeats}:")
    for mode in a["examples_per_s"]:
        print(f"    {mode:>15}: {a['examples_per_s'][mode]:6.1f} examples/s, mean padded length "
              f"{a['mean_padded_length'][mode]:.0f} (real {a['mean_real_length']:.0f})")
    print(f"    length-grouped / padded: {a['speedup']:.2f}x in wall time ({a['speedup_cpu_time']:.2f}x in CPU time) "
          f"(goal >= {GOAL_SPEEDUP:.0f}x: "
          f"{'met' if a['goal_met'] else 'NOT met'}) {flags}")

    b = bench_loop(model, state, examples, dev, task, pad_id, config, args.repeats)
    record["loop"] = b
    m = b["median_per_step_s"]
    print(f"(b) {b['steps']} steps, {b['dev_examples']} dev examples evaluated {b['evaluations_per_train_call']}x "
          f"per train call, median of {args.repeats}:")
    print(f"    bare loop {m['bare']:.3f} s/step; train {m['ours']:.3f} s/step (overhead "
          f"{100 * b['overhead_with_eval']:+.1f}%), without its evaluation {m['ours_without_eval']:.3f} s/step "
          f"(overhead {100 * b['overhead_without_eval']:+.1f}%); goal <= {100 * GOAL_OVERHEAD:.0f}%: "
          f"{'met' if b['goal_met_with_eval'] else 'NOT met'} with, "
          f"{'met' if b['goal_met_without_eval'] else 'NOT met'} without evaluation {flags}")
    print(f"    without evaluation, per repeat (the two loops back to back): "
          f"{', '.join(f'{100 * x:+.1f}%' for x in b['overhead_without_eval_per_repeat'])}; "
          f"in CPU time (process_time, all threads): {100 * b['overhead_without_eval_cpu_time']:+.1f}%")
    in_score = ", ".join(f"{e['score']:.2f}" for e in b["eval_split_s"])
    print(f"    evaluation inside train: {', '.join(f'{s:.2f}' for s in b['eval_s_per_train_call'])} s per call "
          f"(the first imports evaluate), of which in score (loading an evaluate metric, computing it): "
          f"{in_score} s; same losses in both loops: max |diff| {b['same_losses_max_abs_diff']:.1e}")
    if not args.no_peer and importlib.util.find_spec("accelerate") is None:
        print("(c) skipped: transformers.Trainer needs accelerate (pip install 'accelerate>=1.1.0'; or --no-peer)")
    elif not args.no_peer:
        peer_config = dataclasses.replace(config, precision=args.precision)
        c = bench_peer(model, state, examples, dev, task, pad_id, peer_config, args.repeats, Path(tmp.name) / "hf")
        record["peer"] = c
        m, tokens = c["median_per_step_s"], c["padded_tokens_per_step"]
        print(f"(c) {c['steps']} steps of {args.batch_size} at {args.precision}, median of {args.repeats}: mtnb "
              f"{m['mtnb']:.3f} s/step ({tokens['mtnb']:.0f} padded tokens/step), transformers.Trainer "
              f"{m['trainer']:.3f} s/step ({tokens['trainer']:.0f} padded tokens/step): mtnb / Trainer "
              f"{c['mtnb_over_trainer']:.2f} (bar <= {GOAL_PEER:g}: {'met' if c['goal_met'] else 'NOT met'}); per padded "
              f"token {c['mtnb_over_trainer_per_padded_token']:.2f} {flags}")
    record["load_average_at_end"] = list(os.getloadavg())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
