"""Pretraining speed: the masked-LM step, the smoke and mini zoo, and the e5 family.

(a) Masked-LM step. Tokens per second (non-padding input tokens) of one optimizer step of
    mini-mbert (BERT at ``mtnb.pretraining.members.SHAPE``, its WordPiece vocabulary of 8,000, batch 32) in
    four variants: batches of random paragraphs or length-grouped ones
    (``mtnb.pretraining.zoo.grouped_batches``), and the loss from the model's own ``.loss`` (vocabulary
    logits at every position) or from ``mtnb.pretraining.zoo.model_loss`` (logits only at the ~15% masked
    positions, the same value). The same 8 prepared batches per variant, variants run in turns,
    median over --repeats, on one thread; ratios against random/full-logits.
(b) The smoke zoo: wall time of the whole zoo at the smoke budget (the tests' budget), members in
    order, one process, median over --repeats. Goal: <= 60 s.
(c) With --mini: the whole zoo at the mini budget as the mini grid builds it, two processes of
    one thread each (``mtnb run --jobs 2``): lane 1 mini-mbart then its three continued models,
    lane 2 mini-mbert, mini-xlmr, mini-random, mini-nllb. Reports the wall time (goal: <= 12
    minutes on this 2-core machine), and each member's tokens per second, held-out loss and chrF
    from its pretrain.json.
(d) With --e5: the e5 family (me5-mlm, me5-m2o, me5-o2m, me5-m2m, me5-align) at the mini
    budget, both stages and the chrF tables, two lanes of one thread as the runner schedules them
    (lane 1 m2o, m2m; lane 2 mlm, align, o2m), with a warm-up cache of their own (a stage 1 that
    an earlier run left in runs/cache/e5-warmup would otherwise be loaded, not timed). Goal: <= 25 minutes. Prints each member's stages and, per trained
    direction, chrF against copying the source and the mismatched source.

    python benchmarks/bench_pretrain.py [--repeats 3] [--mini] [--e5] [--skip-zoo] [--corpus runs/data/mini]
                                        [--out runs/benchmarks/pretrain.json]
The machine may be shared: run it when nothing else is running.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANES = {
    "zoo": [["mini-mbart", "mini-mbart-m2o", "mini-mbart-o2m", "mini-mbart-m2m"],
            ["mini-mbert", "mini-xlmr", "mini-random", "mini-nllb"]],
    # as `mtnb run mini --jobs 2` schedules them (mtnb.pretraining.members.training_order: m2o, mlm, align,
    # o2m, m2m, each taking the first free slot): m2o warms the shared decoder up while mlm and
    # then align run beside it; o2m and m2m load the decoder
    "e5": [["me5-m2o", "me5-m2m"], ["me5-mlm", "me5-align", "me5-o2m"]],
}
LANE_SCRIPT = """
import sys
from mtnb.pretraining.e5_family import continue_member
from mtnb.pretraining.members import E5_MEMBERS
from mtnb.pretraining.zoo import pretrain_member
corpus, zoo, budget, *members = sys.argv[1:]
for m in members:
    if m in E5_MEMBERS:
        continue_member(m, corpus, f"{zoo}/{m}", budget=budget, progress=False, warmup_cache=f"{zoo}/e5-warmup")
    else:
        pretrain_member(m, corpus, zoo, budget=budget, progress=False)
"""


def mlm_step(corpus: Path, repeats: int) -> dict:
    """(a): tokens per second of the four masked-LM step variants."""
    import numpy as np
    import torch

    from mtnb.pretraining import zoo as pretrain
    from mtnb.pretraining.members import LANGS, VOCAB_SIZE
    from mtnb.data.mini.datasets import load_mini
    from mtnb.pretraining.vocab import train_tokenizer

    torch.set_num_threads(1)
    mono = {lang: load_mini("monolingual", lang, "train", root=corpus)["text"] for lang in LANGS}
    tokenizer = train_tokenizer("bert", [t for lang in LANGS for t in mono[lang][:3000]], VOCAB_SIZE)
    pool = [t for lang in LANGS for t in mono[lang]]
    rng = np.random.default_rng(0)
    grouped = pretrain.grouped_batches(np.array([len(t) for t in pool]), 32, rng)
    batches = {
        "random": [pretrain.mlm_batch(tokenizer, [pool[i] for i in rng.integers(0, len(pool), 32)], rng) for _ in range(8)],
        "grouped": [pretrain.mlm_batch(tokenizer, [pool[i] for i in next(grouped)], rng) for _ in range(8)],
    }
    torch.manual_seed(0)
    model = pretrain.build_model("bert", tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    variants = [(b, loss) for b in ("random", "grouped") for loss in ("full logits", "masked positions")]
    speeds = {f"{b}, {loss}": [] for b, loss in variants}
    for rep in range(repeats):
        for b, loss in (variants if rep % 2 == 0 else variants[::-1]):
            start, tokens = time.perf_counter(), 0
            for batch in batches[b]:
                value = model(**batch).loss if loss == "full logits" else pretrain.model_loss(model, batch)
                value.backward()
                optimizer.step()
                optimizer.zero_grad()
                tokens += int(batch["attention_mask"].sum())
            speeds[f"{b}, {loss}"].append(tokens / (time.perf_counter() - start))
    base = statistics.median(speeds["random, full logits"])
    return {name: {"tokens_per_second": statistics.median(v), "ratio": statistics.median(v) / base}
            for name, v in speeds.items()}


def lanes_run(corpus: Path, lanes: list[list[str]], budget: str, out: Path) -> float:
    """Train the members lane by lane, the lanes in parallel processes of one thread; seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", LANE_SCRIPT, str(corpus), str(out), budget, *lane],
                              cwd=ROOT, env=env) for lane in lanes]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a lane failed: exit codes {codes}")
    return time.perf_counter() - start


def member_records(out: Path, members: list[str]) -> dict:
    """Each member's speed and evidence of learning, from its pretrain.json / continued.json."""
    rows = {}
    for m in members:
        path = next(p for p in (out / m / "pretrain.json", out / m / "continued.json") if p.is_file())
        r = json.loads(path.read_text())
        rows[m] = {"objective": r["objective"], "steps": r["trained"]["steps"], "tokens": r["trained"]["tokens"],
                   "seconds": round(r["trained"]["seconds"], 1), "tokens_per_second": r["tokens_per_second"],
                   "heldout_loss_before": r["heldout_loss_before"], "heldout_loss_after": r["heldout_loss_after"],
                   "chrf": r["chrf"], "chrf_copy_source": r.get("chrf_copy_source"),
                   "chrf_mismatched_source": r.get("chrf_mismatched_source"), "directions": r.get("directions"),
                   "stages": r.get("stages"), "retrieval_before": r.get("retrieval_before"),
                   "retrieval_after": r.get("retrieval_after")}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mini", action="store_true", help="also build the zoo at the mini budget (minutes)")
    parser.add_argument("--e5", action="store_true", help="also train the e5 family at the mini budget (minutes)")
    parser.add_argument("--skip-zoo", action="store_true", help="skip (a) and (b)")
    parser.add_argument("--corpus", type=Path, default=ROOT / "runs" / "data" / "mini")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "pretrain.json")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    report = json.loads(args.out.read_text()) if args.out.is_file() else {}

    if not args.skip_zoo:
        report["mlm_step"] = mlm_step(args.corpus, max(args.repeats, 5))
        for name, row in report["mlm_step"].items():
            print(f"(a) masked-LM step, {name:<28} {row['tokens_per_second']:8.0f} tokens/s  x{row['ratio']:.2f}")

        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                times.append(lanes_run(args.corpus, [sum(LANES["zoo"], [])], "smoke", Path(tmp)))
        report["smoke_zoo"] = {"seconds": statistics.median(times), "runs": times, "goal_seconds": 60,
                               "goal_met": statistics.median(times) <= 60}
        print(f"(b) smoke zoo: {statistics.median(times):.0f} s (median of {len(times)}; goal <= 60 s)")

    for flag, key, goal in ((args.mini, "zoo", 12 * 60), (args.e5, "e5", 25 * 60)):
        if not flag:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            seconds = lanes_run(args.corpus, LANES[key], "mini", Path(tmp))
            members = member_records(Path(tmp), sum(LANES[key], []))
        report[f"{key}_mini"] = {"seconds": seconds, "goal_seconds": goal, "goal_met": seconds <= goal,
                                 "lanes": LANES[key], "members": members}
        print(f"({'c' if key == 'zoo' else 'd'}) {key} at the mini budget: {seconds / 60:.1f} min (goal <= {goal // 60} min)")
        for m, row in members.items():
            chrf = ""
            if row["chrf"]:
                blind = row.get("chrf_mismatched_source") or {}
                chrf = " chrF (copy, mismatched) " + " ".join(
                    f"{d} {v:.1f} ({row['chrf_copy_source'][d]:.1f}, {blind.get(d, float('nan')):.1f})"
                    for d, v in row["chrf"].items())
            print(f"    {m:<16} {row['tokens_per_second'] or 0:7.0f} tokens/s  loss {row['heldout_loss_before']:.2f} -> "
                  f"{row['heldout_loss_after']:.2f}{chrf}")
            for name, stage in (row.get("stages") or {}).items():
                print(f"        {name}: {stage['steps']} steps {stage['seconds']:.0f} s, held-out loss "
                      f"{stage['heldout_loss_before']:.2f} -> {stage['heldout_loss_after']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
