"""A job: one model, one task, several seeds, fine-tuned or probed (what notebooks/finetune.ipynb
calls).

``run_job`` checks everything that can fail (mode, seeds, layer, precision) before any weights
load, then runs ``mtnb.transfer.finetune.finetune_run`` per seed, or
``mtnb.transfer.probe.probe_run`` once for all seeds (the features are computed once).
``run_table`` and ``plot_run`` show a job's runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from mtnb.core.errors import MtnbError
from mtnb.core.precision import check_precision
from mtnb.transfer.finetune import Curve, TrainConfig, finetune_run, plot_curve
from mtnb.transfer.probe import ProbeConfig, ProbeCurve, plot_probe, probe_run
from mtnb.transfer.run_folders import run_folders

MODES = ("finetune", "probe")


def run_job(model: str, task: str, output_dir: str | Path, *, mode: str = "finetune", seeds=(0,),
            config: TrainConfig | None = None, probe_layer: int = -1, probe_selection: str = "one_se",
            pooling: str = "mean",
            max_train: int | None = None, max_dev: int | None = None, max_eval: int | None = None,
            registry_path: str | None = None, mini_root=None, xglue_dir=None, xglue_parquet=None,
            oracle: bool = False, progress: bool = True) -> list[dict]:
    """Train ``model`` on ``task`` once per seed, into ``<output_dir>/seed-<seed>/``; returns the
    run records in seed order.

    ``mode`` finetune: ``finetune_run`` per seed with ``config`` (its seed replaced). ``mode``
    probe: ``mtnb.transfer.probe.probe_run`` with ``probe_layer`` and ``probe_selection`` (how the
    weight decay is chosen on English dev; the features are computed once for
    all seeds; ``config`` gives max_length and the forward batch size; ``max_eval`` caps the
    test examples per language whose features are computed ahead for zero-shot evaluation).
    ``oracle`` (finetune): also score the other languages' dev and test (``max_dev``, ``max_eval``)
    at each evaluation, for the target-dev oracle (``mtnb.transfer.finetune.oracle_examples``).
    ``config.precision`` sets the forward passes' dtype in both modes (``mtnb.core.precision``). A
    bad mode, seed list, layer, precision or name fails before any weights load.
    """
    if mode not in MODES:
        raise MtnbError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    config = config or TrainConfig()
    check_precision(config.precision)
    folders = run_folders(output_dir, seeds)
    data = dict(registry_path=registry_path, mini_root=mini_root, xglue_dir=xglue_dir,
                xglue_parquet=xglue_parquet, progress=progress)
    if mode == "probe":
        probe_config = ProbeConfig(layer=probe_layer, pooling=pooling, max_length=config.max_length,
                                   batch_size=config.batch_size, precision=config.precision,
                                   selection=probe_selection)
        return probe_run(model, task, output_dir, seeds=list(folders), config=probe_config, max_train=max_train,
                         max_dev=max_dev, max_eval=max_eval, **data)
    if isinstance(probe_layer, bool) or not isinstance(probe_layer, int):
        raise MtnbError(f"probe_layer {probe_layer!r}: give an integer layer (-1: the last)")
    return [finetune_run(model, task, folder, config=replace(config, seed=seed), pooling=pooling,
                         max_train=max_train, max_dev=max_dev, oracle=oracle, max_eval=max_eval, **data)
            for seed, folder in folders.items()]


def run_table(records: list[dict]):
    """One row per seed of a job's run records: English examples, best English dev score
    (0-100) and, by mode, training speed (finetune) or the chosen weight decay (probe)."""
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
        return plot_probe(ProbeCurve(**curve), title)
    return plot_curve(Curve(**curve), title)
