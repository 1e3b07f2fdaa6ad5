"""A linear-probe job against a fine-tuning job: the same model, task and examples.

Model: a random checkpoint at the mini zoo's shape (``mtnb.pretraining.members.SHAPE``: XLM-RoBERTa, 4
layers, hidden 128, 4 heads, feed-forward 512), built by ``mtnb.pretraining.zoo.build_model`` around a
unigram vocabulary of 8,000 pieces trained (``mtnb.pretraining.vocab.train_tokenizer``) on the mini corpus's
first --vocab-texts monolingual training paragraphs per language: mini-xlmr's architecture and
kind of tokenizer, untrained (mini-random's). Task: ``mini-topic``, --max-train English training
and --max-dev dev paragraphs, inputs of at most 128 tokens (the zoo's position limit), batch 32.
Both jobs go through ``mtnb.transfer.jobs.run_job``, as the notebook calls it, for one seed:

- finetune: --epochs epochs of AdamW at the task's learning rate, dev scored after each epoch;
- probe, cold: the feature cache empty (a fresh folder per repeat): one forward pass over the
  train and dev paragraphs and, for the zero-shot evaluation to come, --max-eval test paragraphs
  in each of the five languages; then four L-BFGS fits (one per weight decay) and four dev scores;
- probe, cold, train + dev only: the same without the test paragraphs (``probe_run`` with no
  evaluation splits): the work that matches the fine-tuning job's;
- probe, warm: the features already stored (what each further seed, and the same model's other
  uses of the same paragraphs, cost): the fits alone.

Each job writes its run folder into a temporary folder. Times are wall seconds of the call, in
one process after an untimed warm-up of every mode (imports, the first evaluate metric), so
notebook start-up is not in them. Repeats alternate the order of the modes. Figures are the
medians over --repeats, and ratios against the fine-tuning job measured in the same run; CPU
seconds (``time.process_time``) beside them. torch runs on --threads threads with
OMP_WAIT_POLICY=PASSIVE unless set (see bench_finetune.py on why).

    python benchmarks/bench_probe.py [--repeats 3] [--max-train 1000] [--max-dev 200] [--max-eval 200]
                                     [--epochs 3] [--corpus runs/data/mini] [--out runs/benchmarks/probe.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from mtnb.transfer.finetune import TrainConfig  # noqa: E402
from mtnb.transfer.jobs import run_job  # noqa: E402
from mtnb.data.mini.datasets import load_mini  # noqa: E402
from mtnb.transfer.probe import ProbeConfig, probe_run  # noqa: E402
from mtnb.data.tasks import get_task  # noqa: E402

DEFAULT_CORPUS = "runs/data/mini"
MAX_LENGTH, BATCH = 128, 32


def build_checkpoint(folder: Path, corpus: Path, vocab_texts: int, seed: int = 0) -> Path:
    """A random mini-xlmr-shaped checkpoint with a unigram vocabulary trained on the corpus."""
    from mtnb.pretraining.members import SHAPE
    from mtnb.pretraining.zoo import build_model
    from mtnb.pretraining.vocab import train_tokenizer

    texts = [t for lang in ("en", "de", "es", "fr", "ru")
             for t in load_mini("monolingual", lang, "train", root=corpus)["text"][:vocab_texts]]
    tokenizer = train_tokenizer("xlm-roberta", texts, 8000)
    torch.manual_seed(seed)
    model = build_model("xlm-roberta", tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"checkpoint: XLM-RoBERTa {SHAPE['layers']} layers x {SHAPE['hidden']}, vocabulary {len(tokenizer)}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")
    return folder


def timed(fn) -> tuple[float, float, object]:
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - start, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--max-dev", type=int, default=200)
    parser.add_argument("--max-eval", type=int, default=200, help="test paragraphs per language (probe, cold)")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    parser.add_argument("--vocab-texts", type=int, default=2000, help="paragraphs per language for the vocabulary")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/benchmarks/probe.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    if not (corpus / "manifest.json").is_file():
        sys.exit(f"no mini corpus at {corpus}: build it with 'mtnb data mini'")
    task = get_task("mini-topic")
    tmp = tempfile.TemporaryDirectory(prefix="bench-probe-")
    root = Path(tmp.name)
    model = str(build_checkpoint(root / "mini-xlmr-random", corpus, args.vocab_texts))
    common = dict(max_train=args.max_train, max_dev=args.max_dev, mini_root=corpus, progress=False)
    config = TrainConfig(lr=task.lr, epochs=args.epochs, batch_size=BATCH, max_length=MAX_LENGTH)
    probe_config = ProbeConfig(max_length=MAX_LENGTH, batch_size=BATCH)
    warm_cache = root / "features-warm"
    counter = iter(range(10**6))

    def finetune():
        return run_job(model, "mini-topic", root / f"ft-{next(counter)}", mode="finetune", config=config, **common)

    def probe_cold():
        k = next(counter)
        return probe_run(model, "mini-topic", root / f"probe-{k}", config=probe_config, max_eval=args.max_eval,
                         cache_dir=root / f"features-{k}", **common)

    def probe_cold_train_dev():
        k = next(counter)
        return probe_run(model, "mini-topic", root / f"probe-{k}", config=probe_config, eval_splits=(),
                         cache_dir=root / f"features-{k}", **common)

    def probe_warm():
        return probe_run(model, "mini-topic", root / f"probe-{next(counter)}", config=probe_config,
                         max_eval=args.max_eval, cache_dir=warm_cache, **common)

    modes = {"finetune": finetune, "probe, cold": probe_cold, "probe, cold, train + dev only": probe_cold_train_dev,
             "probe, warm": probe_warm}
    print(f"mini-topic: {args.max_train} train, {args.max_dev} dev, {args.max_eval} test per language (probe); "
          f"fine-tuning {args.epochs} epoch(s); torch threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for name, fn in modes.items():  # warm-up, untimed (and fills the warm cache)
        fn()
    wall = {name: [] for name in modes}
    cpu = {name: [] for name in modes}
    records = {}
    for r in range(args.repeats):
        for name in (list(modes) if r % 2 == 0 else list(modes)[::-1]):
            seconds, cpu_seconds, out = timed(modes[name])
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
            records[name] = out[0]
    median = {name: statistics.median(t) for name, t in wall.items()}
    cpu_median = {name: statistics.median(t) for name, t in cpu.items()}
    base = median["finetune"]
    ratio = {name: m / base for name, m in median.items()}
    result = {
        "task": "mini-topic", "model": "random, mini-xlmr's shape (mtnb.pretraining.members.SHAPE) and unigram vocabulary",
        "max_train": args.max_train, "max_dev": args.max_dev, "max_eval": args.max_eval, "epochs": args.epochs,
        "max_length": MAX_LENGTH, "batch_size": BATCH, "repeats": args.repeats, "times_s": wall,
        "median_s": median, "cpu_times_s": cpu, "median_cpu_s": cpu_median, "ratio_to_finetune": ratio,
        "ratio_to_finetune_cpu": {n: m / cpu_median["finetune"] for n, m in cpu_median.items()},
        "finetune_seconds_per_epoch": base / args.epochs,
        "dev_score": {name: rec["best_dev_score"] for name, rec in records.items()},
        "probe_sequences_encoded_cold": records["probe, cold"]["sequences_encoded"],
        "probe_feature_seconds_cold": records["probe, cold"]["feature_seconds"],
        "probe_train_seconds": records["probe, warm"]["train_seconds"],
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(), "load_average_at_end": list(os.getloadavg()),
        "timed": "run_job / probe_run wall time in one process after warm-up (no notebook start-up)",
    }
    print(f"median of {args.repeats} (wall s, ratio to fine-tuning; CPU s):")
    for name in modes:
        print(f"  {name:<30} {median[name]:7.2f} s  {ratio[name]:5.2f}x  ({cpu_median[name]:.2f} CPU s)  "
              f"English dev {100 * result['dev_score'][name]:.1f}")
    print(f"  fine-tuning per epoch {base / args.epochs:.2f} s; the cold probe encoded "
          f"{result['probe_sequences_encoded_cold']} paragraphs in {result['probe_feature_seconds_cold']:.2f} s, "
          f"its fits took {result['probe_train_seconds']:.2f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
