"""Roofline: the machine's measured matmul peak at e5-small's shapes, and how close e5-small's loops come to it.

(1) The peak. ``torch.matmul`` of an (M, K) by a (K, N) matrix, both in the dtype (float32, or
    bfloat16 tensors: what autocast hands the matmul kernel), at e5-small's own shapes: the
    attention projections (2048 x 384 by 384 x 384), the feed-forward layer's two products
    (2048 x 384 by 384 x 1536, 2048 x 1536 by 1536 x 384), 2,048 rows being a batch of 32
    sequences of 64 tokens; and the pretraining heads' output layer (512 x 384 by 384 x 28,000:
    the ~28k kept pieces of ``mtnb.pretraining.heads.output_logits``). The 250k-row embedding
    matrix is never multiplied in these loops (its forward is a gather, its gradient a scatter),
    so it has no matmul shape here. Each product is timed --inner times per repeat, the median
    of --repeats repeats is kept; FLOP/s = 2 M K N / seconds. The peak of a dtype and thread
    count (1 and 2 threads, ``torch.set_num_threads``) is the best of its shapes.
(2) The loops, at --threads threads, at fp32 and bf16 (``mtnb.core.precision``'s autocast):
    - features: ``mtnb.analysis.features.FeatureExtractor.compute`` of --texts mini-topic
      paragraphs (pooled states of every layer, into an empty store; the encoder loaded and
      fingerprinted before the clock);
    - a fine-tuning step: ``task_model`` on e5-small (mini-topic head, every weight trained,
      the 250k-row embeddings included), forward at the dtype, float32 cross-entropy, backward,
      clipping, AdamW (fused at bf16, as ``ft.train`` takes it) and schedule (``optimizer_step``),
      batches of --train-batch paragraphs;
    - the e5 decoder's warm-up step (stage 1 of ``mtnb.pretraining.e5_family``: the head alone on
      cached encoder states): a ``heads.Decoder`` of the mini budget's ``decoder_layers`` over
      28,000 output pieces (e5's first 28,000 rows standing in for the corpus's kept pieces),
      ``warmup_batch_size`` (32) pairs of ``max_length`` (48) memory states and 48 target tokens,
      loss and AdamW as ``warm_up_head``;
    - a masked-LM step (stage 2 of me5-mlm): e5-small with a ``heads.MaskedLMHead`` (the word
      embeddings frozen, as ``continue_member`` does), 16 paragraphs of at most 48 tokens, 15%
      of the real positions chosen, labels drawn among the 28,000 pieces.
    The median of --repeats timed repeats (after one untimed warm-up) of each.

    Model FLOPs (what is counted). P = the non-embedding parameters the tokens pass through:
    for the encoder, the 12 layers' weights and biases (``encoder.layer.*``; not the embeddings,
    not the pooler); for the heads, their Transformer layers' and dense layers' weights. Per
    sequence of t real tokens (padding not counted), forward = 2 P t + attention, attention =
    2 x 2 x L x t^2 x d (Q K^T and the weighted sum of V, each 2 t^2 d per layer, d = 384; for
    the decoder, self-attention over its m targets and cross-attention to its n memory states:
    2 x 2 x m x (m + n) x d per layer); training = 3 x forward (6 P t + 3 x attention). The
    heads' output layer (d x 28,000, fixed rows) counts 2 x d x 28,000 per predicted position
    forward and 3 x that in training. The task head's linear layer (384 x labels) is left out.
    ``torch.utils.flop_counter.FlopCounterMode`` also counts the matmul FLOPs one step executes
    (padding included; a check on the formula, printed beside it). Achieved FLOP/s = model
    FLOPs / median seconds; its fraction of the peak at the same dtype and thread count.
(3) Where the rest goes: ``torch.profiler`` over one feature extraction and --profile-steps
    fine-tuning steps at the auto dtype (``resolve_precision('auto', 'cpu')``): the top
    operators' share of the profiled CPU time (self time); for the fine-tuning steps the share
    of wall time of each phase (forward, loss, backward, clipping, AdamW with zeroing the
    gradients, schedule; ``record_function`` labels) and of the 250k-row embedding's gradient
    (aten::embedding_dense_backward, inside backward); the padding (padded tokens / real tokens
    of the batches); and the Python and framework overhead (wall time minus the operators'
    self time).

    python benchmarks/bench_roofline.py [--repeats 5] [--inner 5] [--threads 2] [--texts 64]
                                        [--train-batch 16] [--profile-steps 3] [--no-profile]
                                        [--corpus runs/data/mini] [--out runs/benchmarks/roofline.json]
Bar (issue 30): e5-small's feature extraction at >= 50% of the measured matmul peak at its
dtype, or the profile says where the rest goes. Every figure is printed beside the machine's flags
(``mtnb.core.machine.machine_summary``), which the JSON records. OMP_WAIT_POLICY=PASSIVE unless
set (bench_finetune.py says why).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import mtnb.transfer.finetune as ft  # noqa: E402
from mtnb.analysis.features import FeatureExtractor  # noqa: E402
from mtnb.core.machine import machine_summary  # noqa: E402
from mtnb.core.precision import autocast, precision_name, resolve_precision  # noqa: E402
from mtnb.data.inputs import collate, encode, input_prefixes, length_grouped_batches  # noqa: E402
from mtnb.data.loading import load_task, subsample  # noqa: E402
from mtnb.data.tasks import get_task  # noqa: E402
from mtnb.models.loading import load_encoder  # noqa: E402
from mtnb.models.me5 import ensure_me5_small  # noqa: E402
from mtnb.models.training import linear_schedule, optimizer_and_schedule, optimizer_step  # noqa: E402
from mtnb.pretraining.heads import Continued, Decoder, MaskedLMHead  # noqa: E402
from mtnb.pretraining.members import E5_BUDGETS  # noqa: E402

MODEL = "me5-small"
TASK = "mini-topic"
DEFAULT_CORPUS = "runs/data/mini"
PIECES = 28_000                      # the pretraining heads' output pieces (V')
SHAPES = {"attention projection": (2048, 384, 384), "FFN up": (2048, 384, 1536), "FFN down": (2048, 1536, 384),
          "output layer (28k pieces)": (512, 384, PIECES)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GOAL_FEATURES_SHARE = 0.5


def median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    """fn() once untimed (warm-up), then ``repeats`` timed calls: (median, all) wall seconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


# --------------------------------------------------------------------------------------------
# (1) the matmul peak
# --------------------------------------------------------------------------------------------

def matmul_peak(repeats: int, inner: int, threads: list[int]) -> dict:
    """{dtype: {threads: {"shapes": {name: GFLOP/s}, "peak_gflops": best}}}."""
    out = {}
    gen = torch.Generator().manual_seed(0)
    for name, dtype in DTYPES.items():
        out[name] = {}
        for n in threads:
            torch.set_num_threads(n)
            shapes = {}
            for label, (m, k, cols) in SHAPES.items():
                a = torch.randn(m, k, generator=gen).to(dtype)
                b = torch.randn(k, cols, generator=gen).to(dtype)

                def run():
                    for _ in range(inner):
                        torch.matmul(a, b)
                seconds, _ = median_seconds(run, repeats)
                shapes[label] = 2 * m * k * cols * inner / seconds / 1e9
            out[name][str(n)] = {"shapes_gflops": shapes, "peak_gflops": max(shapes.values())}
    return out


# --------------------------------------------------------------------------------------------
# (2) the loops and their model FLOPs
# --------------------------------------------------------------------------------------------

def encoder_params(bert) -> int:
    """P of the encoder: its layers' weights and biases (no embeddings, no pooler)."""
    return sum(p.numel() for n, p in bert.named_parameters() if n.startswith("encoder.layer."))


def encoder_flops(lengths: list[int], params: int, layers: int, d: int, training: bool) -> float:
    """sum over sequences of 2 P t + 2*2*L*t^2*d (forward); x3 for training."""
    forward = sum(2 * params * t + 4 * layers * t * t * d for t in lengths)
    return 3 * forward if training else forward


def counted_flops(fn) -> int:
    """The matmul FLOPs one call of fn executes (FlopCounterMode; forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_features(ids, dtype_name: str, repeats: int, root: Path, encoders: dict, shape) -> dict:
    counter = iter(range(10**6))

    def run():
        extractor = FeatureExtractor(MODEL, cache_dir=root / f"features-{dtype_name}-{next(counter)}",
                                     progress=False, precision=dtype_name, device="cpu",
                                     encoder=encoders.get(dtype_name))
        encoders[dtype_name] = extractor.encoder()
        extractor.pooled_store()
        start = time.perf_counter()
        extractor.compute(pooled=ids)
        return time.perf_counter() - start

    run()
    times = [run() for _ in range(repeats)]
    lengths = [len(s) for s in ids]
    flops = encoder_flops(lengths, shape["params"], shape["layers"], shape["d"], training=False)
    return {"median_s": statistics.median(times), "times_s": times, "model_flops": flops,
            "tokens": sum(lengths), "sequences": len(ids)}


def finetune_setup(texts, train_batch: int):
    task = get_task(TASK)
    encoder = load_encoder(MODEL, device="cpu")
    records = [{"text": t, "label": k % len(task.labels)} for k, t in enumerate(texts)]
    examples = encode(records, task, encoder.tokenizer, 128, input_prefixes("e5", task.head))
    order = length_grouped_batches([len(e["input_ids"]) for e in examples], train_batch, random.Random(0))
    batches = [collate([examples[i] for i in rows], encoder.tokenizer.pad_token_id) for rows in order]
    torch.manual_seed(0)
    net = ft.task_model(encoder.model, encoder.shape.hidden_size, len(task.labels), task.head)
    return task, encoder, net, batches


def finetune_step(net, batch, optimizer, scheduler, dtype) -> float:
    """One step as ``ft.train`` takes it."""
    net.train()
    with autocast(dtype, "cpu"):
        logits = net(batch["input_ids"], batch["attention_mask"])
    loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
    optimizer_step(net, optimizer, scheduler, loss)
    return loss.item()


def bench_finetune(net, task, batches, dtype, repeats: int, shape) -> dict:
    config = ft.TrainConfig(lr=task.lr)
    optimizer, scheduler = optimizer_and_schedule(net, config, 10**6, fused=dtype is not None)  # as ft.train
    batch = batches[0]
    seconds, times = median_seconds(lambda: finetune_step(net, batch, optimizer, scheduler, dtype), repeats)
    lengths = batch["attention_mask"].sum(1).tolist()
    flops = encoder_flops(lengths, shape["params"], shape["layers"], shape["d"], training=True)
    executed = counted_flops(lambda: finetune_step(net, batch, optimizer, scheduler, dtype))
    return {"median_s": seconds, "times_s": times, "model_flops": flops, "executed_matmul_flops": executed,
            "tokens": sum(lengths), "padded_tokens": batch["input_ids"].numel(), "sequences": len(lengths)}


def head_step(model, params, batch, dtype, optimizer, scheduler) -> float:
    with autocast(dtype, "cpu"):
        loss = model(batch).float() if "memory" not in batch else model.head_loss(batch["memory"], batch).float()
    optimizer_step(params, optimizer, scheduler, loss)
    return loss.item()


def bench_decoder_warmup(words, dtype, repeats: int, d: int, heads: int) -> dict:
    budget = E5_BUDGETS["mini"]
    layers, pairs, n, m = budget.decoder_layers, budget.warmup_batch_size, budget.max_length, budget.max_length
    torch.manual_seed(0)
    decoder = Decoder(words, 4, layers, heads, budget.max_length)
    model = Continued(None, decoder, "m2m")
    gen = torch.Generator().manual_seed(0)
    batch = {"memory": torch.randn(pairs, n, d, generator=gen), "attention_mask": torch.ones(pairs, n, dtype=torch.long),
             "decoder_input_ids": torch.randint(0, PIECES, (pairs, m), generator=gen),
             "labels": torch.randint(0, PIECES, (pairs, m), generator=gen)}
    decoder.standardize(batch["memory"].reshape(-1, d))
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=budget.head_lr, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, 10**6, 1))
    decoder.train()
    seconds, times = median_seconds(lambda: head_step(model, decoder, batch, dtype, optimizer, scheduler), repeats)
    layer_params = sum(p.numel() for name, p in decoder.named_parameters() if name.startswith("layers."))
    forward = pairs * (2 * layer_params * m + 4 * layers * m * (m + n) * d + 2 * d * PIECES * m)
    executed = counted_flops(lambda: head_step(model, decoder, batch, dtype, optimizer, scheduler))
    return {"median_s": seconds, "times_s": times, "model_flops": 3 * forward, "executed_matmul_flops": executed,
            "tokens": pairs * m, "layers": layers,
            "note": "P = the decoder layers' weights (cross-attention's K, V projections counted per target token)"}


def bench_mlm(encoder, texts, words, dtype, repeats: int, shape) -> dict:
    bert, tokenizer = encoder.model, encoder.tokenizer
    bert.embeddings.word_embeddings.weight.requires_grad_(False)
    torch.manual_seed(0)
    head = MaskedLMHead(words, bert.config.num_attention_heads)
    model = Continued(bert, head, "mlm")
    enc = tokenizer(["passage: " + t for t in texts[:16]], truncation=True, max_length=48, padding=True,
                    return_tensors="pt")
    rng = np.random.default_rng(0)
    real = enc["attention_mask"].bool().numpy()
    chosen = torch.from_numpy(real & (rng.random(real.shape) < 0.15))
    labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
    labels[chosen] = torch.from_numpy(rng.integers(0, PIECES, int(chosen.sum())))
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-4, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, 10**6, 1))
    model.train()
    seconds, times = median_seconds(lambda: head_step(model, model, batch, dtype, optimizer, scheduler), repeats)
    lengths = enc["attention_mask"].sum(1).tolist()
    head_params = sum(p.numel() for name, p in head.named_parameters() if name.startswith("block."))
    dense = sum(p.numel() for p in head.dense.parameters())
    picked = int(chosen.sum())
    forward = (encoder_flops(lengths, shape["params"] + head_params, shape["layers"] + 1, shape["d"], training=False)
               + picked * (2 * dense + 2 * shape["d"] * PIECES))
    executed = counted_flops(lambda: head_step(model, model, batch, dtype, optimizer, scheduler))
    bert.embeddings.word_embeddings.weight.requires_grad_(True)
    return {"median_s": seconds, "times_s": times, "model_flops": 3 * forward, "executed_matmul_flops": executed,
            "tokens": sum(lengths), "predicted_positions": picked}


# --------------------------------------------------------------------------------------------
# (3) the profile
# --------------------------------------------------------------------------------------------

PHASES = ("forward", "loss", "backward", "clip", "optimizer", "schedule")


def labelled_step(net, batch, optimizer, scheduler, dtype) -> None:
    """``finetune_step``'s operations (``optimizer_step`` without a scaler), each phase inside a
    ``torch.profiler.record_function`` of its name (PHASES), for the profile."""
    from torch.profiler import record_function

    net.train()
    with record_function("forward"), autocast(dtype, "cpu"):
        logits = net(batch["input_ids"], batch["attention_mask"])
    with record_function("loss"):
        loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
    with record_function("backward"):
        loss.backward()
    with record_function("clip"):
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    with record_function("optimizer"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    with record_function("schedule"):
        scheduler.step()


def profile(fn, label: str, top: int = 12) -> dict:
    """Run fn under torch.profiler: the operators' self CPU time by operator (top ``top``), the
    inclusive time of the phases (PHASES, where fn labels them) and of the embedding's gradient
    (aten::embedding_dense_backward, with the zeroing of its 250k x 384 buffer), as shares of
    the wall time; and the wall time outside every operator (Python, framework)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    start = time.perf_counter()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    wall = time.perf_counter() - start
    averages = prof.key_averages()
    events = [e for e in averages if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)
    inclusive = {e.key: e.cpu_time_total / 1e6 for e in averages}
    phases = {name: inclusive[name] / wall for name in PHASES if name in inclusive}
    embedding = inclusive.get("aten::embedding_dense_backward", 0.0) / wall
    return {"label": label, "wall_s": wall, "operators_self_s": total,
            "outside_operators_share": max(0.0, 1 - total / wall),
            "top": [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "share": e.self_cpu_time_total / 1e6 / total,
                     "calls": e.count} for e in ranked[:top]],
            "phases_share_of_wall": phases, "embedding_gradient_share_of_wall": embedding}


def print_profile(p: dict, flags: str) -> None:
    print(f"  profile of {p['label']}: wall {p['wall_s']:.2f} s, operators' self time {p['operators_self_s']:.2f} s "
          f"(outside them, Python and framework: {100 * p['outside_operators_share']:.0f}%) {flags}")
    if p["phases_share_of_wall"]:
        print("    phases (share of wall time): " + ", ".join(f"{k} {100 * v:.0f}%"
                                                        for k, v in p["phases_share_of_wall"].items())
              + f"; inside backward, the embedding's gradient {100 * p['embedding_gradient_share_of_wall']:.0f}%")
    print("    top operators by self time (share of all operators' self time):")
    for row in p["top"][:8]:
        print(f"    {100 * row['share']:5.1f}%  {row['op']} ({row['calls']} calls)")


# --------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inner", type=int, default=5, help="products per timed repeat of the peak")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the loops (the peak: 1 and 2)")
    parser.add_argument("--texts", type=int, default=64, help="paragraphs whose features are extracted")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--out", default="runs/benchmarks/roofline.json")
    args = parser.parse_args()
    corpus = Path(args.corpus)
    if not (corpus / "manifest.json").is_file():
        sys.exit(f"no mini corpus at {corpus}: build it with 'mtnb data mini'")
    ensure_me5_small()
    machine = machine_summary()
    flags = f"[{machine['text']}]"
    print(f"{MODEL}; torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores {flags}")

    threads = sorted({1, 2, args.threads})
    peak = matmul_peak(args.repeats, args.inner, threads)
    print(f"(1) matmul at e5-small's shapes, median of {args.repeats} x {args.inner} products (GFLOP/s):")
    for name, per in peak.items():
        for n, row in per.items():
            shapes = ", ".join(f"{k} {v:.0f}" for k, v in row["shapes_gflops"].items())
            print(f"  {name}, {n} thread(s): peak {row['peak_gflops']:.0f} ({shapes}) {flags}")

    torch.set_num_threads(args.threads)
    records = subsample(load_task(get_task(TASK), "en", "train", mini_root=corpus), max(args.texts, args.train_batch), 0)
    texts = list(records["text"])
    first = FeatureExtractor(MODEL, device="cpu", progress=False)
    ids = first.encode_texts(texts[:args.texts], None, 128)
    task, encoder, net, batches = finetune_setup(texts[:args.train_batch], args.train_batch)
    bert = encoder.model
    shape = {"params": encoder_params(bert), "layers": bert.config.num_hidden_layers, "d": bert.config.hidden_size}
    words = bert.embeddings.word_embeddings.weight.detach()[:PIECES].clone()
    tmp = tempfile.TemporaryDirectory(prefix="bench-roofline-")
    root, encoders = Path(tmp.name), {}
    loops = {}
    for name in DTYPES:
        dtype = resolve_precision(name, "cpu")
        state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        loops[name] = {
            "features": bench_features(ids, name, args.repeats, root, encoders, shape),
            "finetune_step": bench_finetune(net, task, batches, dtype, args.repeats, shape),
            "decoder_warmup_step": bench_decoder_warmup(words, dtype, args.repeats, shape["d"],
                                                        bert.config.num_attention_heads),
            "mlm_step": bench_mlm(encoder, texts, words, dtype, args.repeats, shape),
        }
        net.load_state_dict(state)
        for loop in loops[name].values():
            loop["achieved_gflops"] = loop["model_flops"] / loop["median_s"] / 1e9
            loop["share_of_peak"] = loop["achieved_gflops"] / peak[name][str(args.threads)]["peak_gflops"]
    print(f"(2) e5-small's loops at {args.threads} threads, median of {args.repeats}; model FLOPs "
          f"(P = {shape['params'] / 1e6:.1f}M non-embedding parameters, attention included) over the peak at the dtype:")
    for name, per in loops.items():
        for label, loop in per.items():
            executed = loop.get("executed_matmul_flops")
            check = f", executed matmul FLOPs {executed / 1e9:.2f} G" if executed else ""
            print(f"  {name} {label}: {loop['median_s']:.3f} s, {loop['model_flops'] / 1e9:.2f} GFLOP{check}: "
                  f"{loop['achieved_gflops']:.0f} GFLOP/s = {100 * loop['share_of_peak']:.0f}% of the {name} peak {flags}")
    auto = precision_name(resolve_precision("auto", "cpu"))
    features_share = loops[auto]["features"]["share_of_peak"]
    print(f"  bar: feature extraction at auto's dtype ({auto}) >= {100 * GOAL_FEATURES_SHARE:.0f}% of the peak: "
          f"{'met' if features_share >= GOAL_FEATURES_SHARE else 'not met'} ({100 * features_share:.0f}%) {flags}")

    profiles = {}
    if not args.no_profile:
        dtype = resolve_precision(auto, "cpu")
        counter = iter(range(10**6))

        def features():
            FeatureExtractor(MODEL, cache_dir=root / f"profile-{next(counter)}", progress=False, precision=auto,
                             device="cpu", encoder=encoders.get(auto)).compute(pooled=ids)
        config = ft.TrainConfig(lr=task.lr)
        optimizer, scheduler = optimizer_and_schedule(net, config, 10**6, fused=dtype is not None)
        finetune_step(net, batches[0], optimizer, scheduler, dtype)

        def steps():
            for i in range(args.profile_steps):
                labelled_step(net, batches[i % len(batches)], optimizer, scheduler, dtype)
        print(f"(3) where the rest goes, at {auto}:")
        for label, fn in (("feature extraction", features), (f"{args.profile_steps} fine-tuning steps", steps)):
            profiles[label] = profile(fn, label)
            print_profile(profiles[label], flags)
        padded = sum(b["input_ids"].numel() for b in batches)
        real = sum(int(b["attention_mask"].sum()) for b in batches)
        profiles["fine-tuning padding"] = {"padded_tokens": padded, "real_tokens": real, "padded_over_real": padded / real}
        print(f"  fine-tuning batches: {padded} padded tokens for {real} real ones ({padded / real:.2f}x) {flags}")

    result = {"headline": {"features_share_of_peak": features_share, "auto_dtype": auto,
                           "peak_gflops": {n: peak[n][str(args.threads)]["peak_gflops"] for n in DTYPES},
                           "share_of_peak": {n: {k: v["share_of_peak"] for k, v in per.items()}
                                             for n, per in loops.items()}},
              "machine_summary": machine, "peak": peak, "loops": loops, "profile": profiles,
              "encoder_shape": shape, "repeats": args.repeats, "inner": args.inner, "threads": args.threads,
              "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "load_average_at_end": list(os.getloadavg())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
