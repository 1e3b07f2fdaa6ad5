"""Peak memory of loading a seq2seq model's encoder, against the checkpoint's size on disk.

Builds a random mBART-50-shaped checkpoint with the real vocabulary (250,054 pieces, 12+12
layers, d_model 1024: about 611M parameters, 2.4 GB in fp32), then, each in a fresh process,
loads (a) ``mtnb.models.loading.load_encoder`` and (b) the baseline, the full model with
``AutoModelForSeq2SeqLM.from_pretrained`` followed by ``get_encoder()``. Peak memory is the
process's peak resident set size, after every encoder weight has been read once (VmHWM in /proc/self/status: unlike ru_maxrss it is not
inherited from the parent) minus its resident size just before loading (after the imports). Prints the median over --repeats runs of each, and writes them as JSON.

    python benchmarks/bench_load_encoder.py [--repeats 3] [--out runs/benchmarks/load_encoder.json]
Goal (issue 2): (a) <= 1.3 x the checkpoint's size on disk.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys, json
import torch, transformers
from mtnb.models.registry import load_encoder
def status(field):  # kB figures of /proc/self/status; VmHWM is this process's peak RSS
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
before = status("VmRSS")
if sys.argv[2] == "mtnb":
    enc = load_encoder(sys.argv[1], with_tokenizer=False).model
else:
    from transformers import AutoModelForSeq2SeqLM
    enc = AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1], dtype=torch.float32).get_encoder()
# touch every weight once (as the first forward pass would): a memory-mapped checkpoint only
# becomes resident when read, so this makes the two ways comparable
with torch.no_grad():
    total = sum(float(p.float().sum()) for p in enc.parameters())
peak = status("VmHWM")
n = sum(p.numel() for p in enc.parameters())
print(json.dumps({"peak_bytes": peak - before, "encoder_params": n}))
"""


def build(folder: Path) -> None:
    import torch
    from transformers import MBartConfig, MBartForConditionalGeneration

    from mtnb.models.random_checkpoints import PAPER_SHAPES

    config = MBartConfig(vocab_size=250054, max_position_embeddings=1024, scale_embedding=True,
                         **PAPER_SHAPES["mbart"])
    torch.manual_seed(0)
    MBartForConditionalGeneration(config).save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/benchmarks/load_encoder.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "mbart-large-50-shaped"
        build(folder)
        disk = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        results = {"mtnb": [], "full-model": []}
        for _ in range(args.repeats):
            for way in results:
                out = subprocess.run([sys.executable, "-c", CHILD, str(folder), way],
                                     capture_output=True, text=True, check=True)
                results[way].append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {way: statistics.median(r["peak_bytes"] for r in runs) for way, runs in results.items()}
    report = {
        "checkpoint_bytes": disk,
        "encoder_params": results["mtnb"][0]["encoder_params"],
        "repeats": args.repeats,
        "median_peak_bytes": med,
        "ratio_to_disk": {way: m / disk for way, m in med.items()},
        "mtnb_vs_full_model": med["mtnb"] / med["full-model"],
    }
    print(f"checkpoint on disk: {disk / 2**30:.2f} GiB; encoder parameters: {report['encoder_params'] / 1e6:.0f}M")
    for way, m in med.items():
        print(f"{way:>11}: median peak {m / 2**30:.2f} GiB = {m / disk:.2f} x disk")
    print(f"mtnb / full model: {report['mtnb_vs_full_model']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
