"""Peak memory of extracting CKA features for several models, against the largest encoder.

Builds random checkpoints at the four paper shapes (``mtnb.models.random_checkpoints``: BERT-base,
XLM-R-base, mBART-large and NLLB-600M layer shapes, character vocabularies), then, in a fresh
process, extracts the pooled hidden states of every layer for the mini corpus's ``cka-samples``
(80 paragraphs in each of 5 languages, max_length 128) for all four models with
``mtnb.analysis.features.extract_features`` into an empty cache. Peak memory is the process's
peak resident set size (VmHWM in /proc/self/status) minus its resident size just before the
extraction, once every module the extraction uses is imported (the four model classes,
``mtnb.transfer.finetune``, tqdm: about 120 MiB of code and tables that a process pays once, whatever
the models); the reference is the largest encoder's weights in float32 (parameters x 4 bytes).
Median over --repeats fresh processes.

    python benchmarks/bench_features_memory.py [--repeats 3] [--corpus runs/data/mini]
                                               [--out runs/benchmarks/features_memory.json]
Goal (issue 4): features are extracted model by model; peak <= 1.3 x the largest encoder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("bert", "xlm-roberta", "mbart", "m2m100")
CHILD = r"""
import json, sys, tempfile
import torch, transformers
import mtnb.transfer.finetune, tqdm.auto
from mtnb.data.mini.datasets import load_mini
from mtnb.models.registry import encoder_class, load_encoder
from mtnb.analysis.features import extract_features
for family in ("bert", "xlm-roberta", "mbart", "m2m100"):
    encoder_class(family)  # imports the model class's module
def status(field):  # bytes, from /proc/self/status; VmHWM is this process's peak RSS
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
folders, corpus = sys.argv[1:-1], sys.argv[-1]
rows = load_mini("cka-samples", split="test", root=corpus).to_pandas()
texts = {lang: rows[lang].tolist() for lang in ("de", "en", "es", "fr", "ru")}
before = status("VmRSS")
with tempfile.TemporaryDirectory() as cache:
    features = extract_features(folders, texts, cache_dir=cache, max_length=128, progress=False)
peak = status("VmHWM") - before
sizes = {}
for folder in folders:
    model = load_encoder(folder, with_tokenizer=False).model
    sizes[folder] = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
print(json.dumps({"peak_bytes": peak, "encoder_bytes": sizes, "n_features": len(features)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "data" / "mini")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "features_memory.json")
    args = parser.parse_args()
    from mtnb.models.random_checkpoints import build_random_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        folders = [str(build_random_checkpoint(f, Path(tmp) / f, seed=0)) for f in FAMILIES]
        runs = []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, "-c", CHILD, *folders, str(args.corpus)], cwd=ROOT,
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    largest = max(runs[0]["encoder_bytes"].values())
    peak = statistics.median(r["peak_bytes"] for r in runs)
    report = {"models": list(FAMILIES), "largest_encoder_bytes": largest, "peak_bytes": peak,
              "runs": [r["peak_bytes"] for r in runs], "ratio": peak / largest, "goal": 1.3,
              "goal_met": peak / largest <= 1.3,
              "encoder_bytes": {f: b for f, b in zip(FAMILIES, runs[0]["encoder_bytes"].values())}}
    for family, size in report["encoder_bytes"].items():
        print(f"{family:<12} encoder {size / 2**20:8.0f} MiB")
    print(f"peak while extracting all four: {peak / 2**20:.0f} MiB = {report['ratio']:.2f} x the largest encoder "
          f"(median of {len(runs)}; goal <= 1.3)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
