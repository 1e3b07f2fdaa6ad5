"""Mixed precision: fp32 against bf16 autocast, same batches, one run (e5-small features, a fine-tuning step, scores).

Model: multilingual-e5-small (registry name ``me5-small``, converted to runs/models/me5-small
by ``mtnb.models.me5.ensure_me5_small``). Data: the mini corpus's ``mini-topic`` English training
paragraphs (--corpus, default runs/data/mini), drawn with seed 0, with e5's "passage: " prefix,
at most --max-length 128 tokens. Precisions through ``mtnb.core.precision`` (``resolve_precision``,
``autocast``), as the library runs them.

(1) Feature extraction: ``mtnb.analysis.features.FeatureExtractor.compute`` over --texts
    paragraphs in batches of --batch-size (the pooled features of all 13 hidden states, written
    to the feature store), into an empty store each time; the encoder is loaded and the weights
    fingerprinted before the clock starts. Beside the time, the relative difference
    ||bf16 - fp32|| / ||fp32|| of the last layer's pooled features. Bar (issue 16): >= 1.8x.
(2) A fine-tuning step: forward at the precision, cross-entropy on float32 logits, backward,
    gradient clipping, AdamW and schedule step (``mtnb.models.training.optimizer_step``), the whole
    model trained (the 250k-row embedding matrix included) with the mini-topic head
    (``task_model``), batches of --train-batch paragraphs; each precision trains its own copy
    from the same weights over the same --steps batches, the two stepped in turns (step i of
    one, then of the other, the order alternating) so both see the same load; a precision's
    time is the sum of its steps. Bar: >= 1.3x.
(3) Zero-shot scores: a linear probe of me5-small's last layer on mini-topic
    (``mtnb.transfer.probe.probe_run``: --max-train English training and --max-dev dev paragraphs drawn
    per seed, --seeds seeds), evaluated zero-shot (``mtnb.transfer.zeroshot.evaluate_runs``) on
    --max-eval test paragraphs in each of the five languages, once with fp32 features and once
    with bf16 features. Reports each seed's mean accuracy over the four languages other than
    English (and English), the same-seed differences bf16 - fp32, and the fp32 seeds' spread
    (max - min over the seeds). The bar (issue 30): the largest same-seed |bf16 - fp32| is at
    most a tenth of that spread (the ratio is printed): a precision's effect must be small
    beside the seed's. Whether a bf16 score falls inside the fp32 range is no test: a 0.4-point
    difference for a seed at the edge of the range fails it.

(1) and (2) are repeated --repeats times (the order of the precisions alternating); figures are
medians of wall time, and speed-ups are same-run ratios fp32 time / bf16 time. They are measured
on the CPU and, where ``torch.cuda.is_available()``, on the GPU too (the GPU's autocast dtype
is bf16 where ``torch.cuda.is_bf16_supported()``, else fp16 with loss scaling). (3) runs where
the library puts the features (the GPU where there is one). torch runs on --threads 2 threads
(``torch.set_num_threads``) with OMP_WAIT_POLICY=PASSIVE unless set, as the other benchmarks
(bench_finetune.py says why). Every figure is printed beside the machine's flags
(``mtnb.core.machine.machine_summary``: CPU, cores, avx2 / avx512f / avx512_bf16 / amx_bf16 /
amx_tile), and the JSON records them (``machine_summary``) with torch's CPU capability: on a CPU without
native bf16, bf16 is emulated and slow, so a speed-up means nothing without them.

    python benchmarks/bench_precision.py [--repeats 5] [--texts 64] [--steps 3] [--seeds 0 1 2]
                                         [--max-train 128] [--max-dev 64] [--max-eval 64]
                                         [--corpus runs/data/mini] [--threads 2] [--no-scores]
                                         [--out runs/benchmarks/precision.json]
Bars (issues 16 and 30): feature extraction >= 1.8x, fine-tuning step >= 1.3x, bf16's same-seed
zero-shot differences at most a tenth of the fp32 seeds' spread.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import mtnb.transfer.finetune as ft  # noqa: E402
from mtnb.data.inputs import collate, encode, input_prefixes, length_grouped_batches  # noqa: E402
from mtnb.data.loading import subsample  # noqa: E402
from mtnb.models.training import optimizer_and_schedule, optimizer_step  # noqa: E402
from mtnb.data.loading import load_task  # noqa: E402
from mtnb.models.me5 import ensure_me5_small  # noqa: E402
from mtnb.models.loading import load_encoder  # noqa: E402
from mtnb.core.machine import cpu_has_native_bf16, machine_summary  # noqa: E402
from mtnb.core.precision import autocast, grad_scaler, precision_name, resolve_precision  # noqa: E402
from mtnb.analysis.features import FeatureExtractor  # noqa: E402
from mtnb.data.tasks import get_task  # noqa: E402

DEFAULT_CORPUS = "runs/data/mini"
MODEL = "me5-small"
TASK = "mini-topic"
GOAL_FEATURES, GOAL_STEP = 1.8, 1.3
GOAL_SCORE_SHARE = 0.1     # max same-seed |bf16 - fp32| <= this share of the fp32 seeds' spread


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def paragraphs(corpus: Path, n: int) -> list[str]:
    """``n`` English mini-topic training paragraphs, drawn with seed 0."""
    records = subsample(load_task(get_task(TASK), "en", "train", mini_root=corpus), n, 0)
    return list(records["text"])


def precisions(device: str) -> dict[str, object]:
    """{name: autocast dtype}: fp32, and the low precision the device runs (bf16, or fp16 on a
    GPU without bf16)."""
    low = "bf16" if device == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    return {"fp32": resolve_precision("fp32", device), low: resolve_precision(low, device)}


def summary(times: dict[str, list[float]], goal: float) -> dict:
    median = {name: statistics.median(t) for name, t in times.items()}
    fp32, low = median
    speedup = median[fp32] / median[low]
    return {"speedup": speedup, "goal": goal, "goal_met": speedup >= goal, "median_s": median, "times_s": times}


# --------------------------------------------------------------------------------------------
# (1) feature extraction
# --------------------------------------------------------------------------------------------

def bench_features(texts: list[str], device: str, args, root: Path) -> dict:
    names = precisions(device)
    counter = iter(range(10**6))
    first = FeatureExtractor(MODEL, device=device, progress=False)
    ids = first.encode_texts(texts, None, args.max_length)
    encoders = {}

    def run(name: str) -> tuple[float, np.ndarray]:
        extractor = FeatureExtractor(MODEL, cache_dir=root / f"features-{next(counter)}", batch_size=args.batch_size,
                                     progress=False, precision=name, device=device, encoder=encoders.get(name))
        # each repeat writes into an empty store; the encoder is loaded once per precision and
        # handed to the later repeats' extractors, so that no load is timed
        encoders[name] = extractor.encoder()
        extractor.pooled_store()                          # fingerprints the weights (untimed)
        sync(device)
        start = time.perf_counter()
        extractor.compute(pooled=ids)
        sync(device)
        seconds = time.perf_counter() - start
        return seconds, extractor.pooled(ids, layer=-1)

    features = {name: run(name)[1] for name in names}     # warm-up, untimed
    times = {name: [] for name in names}
    for r in range(args.repeats):
        for name in (list(names) if r % 2 == 0 else list(names)[::-1]):
            times[name].append(run(name)[0])
    fp32, low = (features[name] for name in names)
    tokens = sum(len(s) for s in ids)
    out = summary(times, GOAL_FEATURES)
    out.update({"texts": len(ids), "tokens": tokens, "batch_size": args.batch_size,
                "tokens_per_s": {name: tokens / m for name, m in out["median_s"].items()},
                "relative_difference_last_layer": float(np.linalg.norm(low - fp32) / np.linalg.norm(fp32)),
                "features_dtype": str(low.dtype),
                "timed": "FeatureExtractor.compute into an empty store (encoder loaded, weights fingerprinted)"})
    return out


# --------------------------------------------------------------------------------------------
# (2) a fine-tuning step
# --------------------------------------------------------------------------------------------

def train_step(model, batch, optimizer, scheduler, dtype, scaler, device: str) -> float:
    """One step as ``mtnb.transfer.finetune.train`` takes it; returns the loss."""
    model.train()
    with autocast(dtype, device):
        logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
    loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"].to(device))
    optimizer_step(model, optimizer, scheduler, loss, scaler)
    return loss.item()


def bench_finetune_step(texts: list[str], device: str, args) -> dict:
    names = precisions(device)
    task = get_task(TASK)
    encoder = load_encoder(MODEL, device=device)
    records = [{"text": t, "label": k % len(task.labels)} for k, t in enumerate(texts)]
    examples = encode(records, task, encoder.tokenizer, args.max_length, input_prefixes("e5", task.head))
    order = length_grouped_batches([len(e["input_ids"]) for e in examples], args.train_batch, random.Random(0))
    batches = [collate([examples[i] for i in rows], encoder.tokenizer.pad_token_id) for rows in order]
    batches = (batches * args.steps)[:args.steps]
    torch.manual_seed(0)
    net = ft.task_model(encoder.model, encoder.shape.hidden_size, len(task.labels), task.head).to(device)
    state = copy.deepcopy(net.state_dict())
    copies = {name: net if k == 0 else copy.deepcopy(net) for k, name in enumerate(names)}
    config = ft.TrainConfig(lr=task.lr, batch_size=args.train_batch, max_length=args.max_length)

    def fresh(name):
        copies[name].load_state_dict(state)
        torch.manual_seed(0)
        # AdamW as ft.train runs it: fused at low precision, foreach at fp32 (adamw_loop)
        return (*optimizer_and_schedule(copies[name], config, args.steps, fused=names[name] is not None),
                grad_scaler(names[name], device))

    for name in names:                                    # warm-up, untimed (allocator, kernels, AdamW state)
        optimizer, scheduler, scaler = fresh(name)
        train_step(copies[name], batches[0], optimizer, scheduler, names[name], scaler, device)
    times, losses = {name: [] for name in names}, {name: [] for name in names}
    for r in range(args.repeats):
        state_of = {name: fresh(name) for name in names}
        wall = dict.fromkeys(names, 0.0)
        for i in range(args.steps):
            for name in (list(names) if (r + i) % 2 == 0 else list(names)[::-1]):
                optimizer, scheduler, scaler = state_of[name]
                sync(device)
                start = time.perf_counter()
                loss = train_step(copies[name], batches[i], optimizer, scheduler, names[name], scaler, device)
                sync(device)
                wall[name] += time.perf_counter() - start
                if r == 0:
                    losses[name].append(loss)
        for name in names:
            times[name].append(wall[name])
    out = summary(times, GOAL_STEP)
    fp32, low = names
    out.update({"steps": args.steps, "batch_size": args.train_batch,
                "mean_tokens_per_batch": float(np.mean([b["attention_mask"].sum().item() for b in batches])),
                "losses_first_repeat": losses,
                "max_relative_loss_difference": max(abs(a - b) / abs(b) for a, b in zip(losses[low], losses[fp32])),
                "trained": "all parameters, embeddings included (AdamW, clipping at 1.0)",
                "timed": "forward + float32 loss + backward + clip + AdamW + schedule, per step, summed"})
    copies.clear()                                        # free the copies before the next part
    del net
    return out


# --------------------------------------------------------------------------------------------
# (3) zero-shot scores of a probe
# --------------------------------------------------------------------------------------------

def bench_scores(corpus: Path, args, root: Path) -> dict:
    from mtnb.transfer.probe import ProbeConfig, probe_run
    from mtnb.transfer.zeroshot import evaluate_runs

    scores, seconds = {}, {}
    for name in ("fp32", "bf16"):
        config = ProbeConfig(max_length=args.max_length, batch_size=args.batch_size, precision=name)
        start = time.perf_counter()
        records = probe_run(MODEL, TASK, root / f"probe-{name}", seeds=args.seeds, config=config,
                            max_train=args.max_train, max_dev=args.max_dev, max_eval=args.max_eval, mini_root=corpus,
                            cache_dir=root / "probe-features", progress=False)
        results, _, _, _ = evaluate_runs(root / f"probe-{name}", max_eval=args.max_eval, controls=False,
                                         progress=False)
        seconds[name] = time.perf_counter() - start
        outside = results[results.language != "en"].groupby("seed")["value"].mean()
        english = results[results.language == "en"].groupby("seed")["value"].mean()
        scores[name] = {"outside_english": {str(s): float(v) for s, v in outside.items()},
                        "english": {str(s): float(v) for s, v in english.items()},
                        "precision_recorded": records[0]["precision"]}
    fp32 = list(scores["fp32"]["outside_english"].values())
    bf16 = list(scores["bf16"]["outside_english"].values())
    low, high = min(fp32), max(fp32)
    differences = [b - a for a, b in zip(fp32, bf16)]
    # the bar: max_seed |bf16 - fp32| <= GOAL_SCORE_SHARE * (max fp32 - min fp32); a single
    # seed has no spread, so the ratio is undefined (None) and the bar unmet
    spread = high - low
    largest = max(abs(d) for d in differences)
    ratio = largest / spread if spread > 0 else None
    return {
        "same_seed_difference_over_spread": ratio, "goal_share_of_spread": GOAL_SCORE_SHARE,
        "goal_met": ratio is not None and ratio <= GOAL_SCORE_SHARE,
        "max_abs_same_seed_difference": largest, "fp32_seed_spread": spread,
        "within_fp32_seed_range": all(low <= v <= high for v in bf16),
        "mean_outside_english": {"fp32": float(np.mean(fp32)), "bf16": float(np.mean(bf16))},
        "fp32_seed_range": [low, high],
        "bf16_minus_fp32_same_seed": differences,
        "per_seed": scores, "seconds": seconds,
        "setup": f"linear probe of {MODEL}'s last layer on {TASK}: {args.max_train} train and {args.max_dev} dev "
                 f"paragraphs per seed (seeds {args.seeds}), {args.max_eval} test paragraphs per language; accuracy",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--texts", type=int, default=64, help="paragraphs whose features are extracted")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per forward pass (features, probe)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="fine-tuning steps per repeat and precision")
    parser.add_argument("--train-batch", type=int, default=16, help="paragraphs per fine-tuning step")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-train", type=int, default=128)
    parser.add_argument("--max-dev", type=int, default=64)
    parser.add_argument("--max-eval", type=int, default=64)
    parser.add_argument("--no-scores", action="store_true", help="skip (3), the zero-shot scores")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/benchmarks/precision.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    if not (corpus / "manifest.json").is_file():
        sys.exit(f"no mini corpus at {corpus}: build it with 'mtnb data mini'")
    ensure_me5_small()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    machine = machine_summary()
    cpu = {"native_bf16": cpu_has_native_bf16(), "torch_capability": torch.backends.cpu.get_cpu_capability(),
           "auto_means": precision_name(resolve_precision("auto", "cpu")),
           "processor": cpu_name()}
    flags = f"[{machine['text']}]"
    print(f"{MODEL} on {', '.join(devices)}; torch {torch.__version__}, {torch.get_num_threads()} threads, load "
          f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU native bf16: {cpu['native_bf16']} "
          f"(torch's CPU capability {cpu['torch_capability']}); auto on this CPU: {cpu['auto_means']}")
    texts = paragraphs(corpus, max(args.texts, args.steps * args.train_batch))
    tmp = tempfile.TemporaryDirectory(prefix="bench-precision-")
    root = Path(tmp.name)
    headline, result = {}, {}
    for device in devices:
        where = torch.cuda.get_device_name() if device == "cuda" else cpu_name()
        features = bench_features(texts[:args.texts], device, args, root)
        step = bench_finetune_step(texts[:args.steps * args.train_batch], device, args)
        low = [n for n in features["median_s"] if n != "fp32"][0]
        headline.update({f"{device}_feature_extraction_speedup": features["speedup"],
                         f"{device}_finetune_step_speedup": step["speedup"], f"{device}_low_precision": low})
        result[device] = {"device": where, "low_precision": low, "feature_extraction": features, "finetune_step": step}
        print(f"{device} ({where}), medians of {args.repeats}, fp32 against {low}:")
        print(f"  (1) features of {features['texts']} paragraphs ({features['tokens']} tokens): "
              f"fp32 {features['median_s']['fp32']:.2f} s, {low} {features['median_s'][low]:.2f} s: "
              f"{features['speedup']:.2f}x (bar {GOAL_FEATURES}x: {'met' if features['goal_met'] else 'not met'}); "
              f"last layer's relative difference {features['relative_difference_last_layer']:.4f} {flags}")
        print(f"  (2) {args.steps} fine-tuning steps of {args.train_batch} paragraphs: fp32 "
              f"{step['median_s']['fp32']:.2f} s, {low} {step['median_s'][low]:.2f} s: {step['speedup']:.2f}x "
              f"(bar {GOAL_STEP}x: {'met' if step['goal_met'] else 'not met'}); losses differ by at most "
              f"{100 * step['max_relative_loss_difference']:.2f}% {flags}")
    if not args.no_scores:
        scores = bench_scores(corpus, args, root)
        result["zero_shot"] = scores
        headline.update({"zero_shot_same_seed_difference_over_spread": scores["same_seed_difference_over_spread"],
                         "zero_shot_goal_met": scores["goal_met"],
                         "zero_shot_fp32_outside_english": scores["mean_outside_english"]["fp32"],
                         "zero_shot_bf16_outside_english": scores["mean_outside_english"]["bf16"]})
        per = scores["per_seed"]
        share = scores["same_seed_difference_over_spread"]
        ratio = "undefined (one seed)" if share is None else f"{share:.3f}"
        print(f"  (3) zero-shot {TASK} accuracy outside English, seeds {args.seeds}: fp32 "
              f"{[round(v, 1) for v in per['fp32']['outside_english'].values()]}, bf16 "
              f"{[round(v, 1) for v in per['bf16']['outside_english'].values()]}; same-seed differences "
              f"{[round(d, 2) for d in scores['bf16_minus_fp32_same_seed']]}, largest "
              f"{scores['max_abs_same_seed_difference']:.2f} against the fp32 seeds' spread "
              f"{scores['fp32_seed_spread']:.2f}: ratio {ratio} (bar <= {GOAL_SCORE_SHARE}: "
              f"{'met' if scores['goal_met'] else 'not met'}) ({scores['seconds']['fp32']:.0f} s fp32, "
              f"{scores['seconds']['bf16']:.0f} s bf16, on {per['bf16']['precision_recorded']} features) {flags}")
    headline.update({"cpu_native_bf16": cpu["native_bf16"], "cpu_auto_means": cpu["auto_means"]})
    result = {"headline": headline, **result}
    result.update({"machine_summary": machine, "cpu_bf16": cpu, "model": MODEL, "task": TASK, "max_length": args.max_length,
                   "repeats": args.repeats,
                   "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "cpu_count": os.cpu_count(),
                   "load_average_at_end": list(os.getloadavg())})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
