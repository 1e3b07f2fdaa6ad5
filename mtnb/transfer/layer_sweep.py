"""Which layer to probe: a linear probe per layer, scored in English and zero-shot.

A probe reads one hidden state. The paper fine-tunes the whole encoder and has no such choice;
a probe study must make it, and the best layer differs by task: sentence tasks read pooled
states, token tasks (mini-spans) read each word's own vector, which the top layers of a
contrastively trained encoder such as multilingual-e5 may have traded for sentence-level
geometry. ``layer_sweep`` answers it from data. For each layer it runs the probe job
(``mtnb.transfer.probe.probe_run``: the same subsamples, weight-decay grid and model selection
on English dev) and its zero-shot evaluation (``mtnb.transfer.zeroshot.evaluate_runs``), into
``<output_dir>/layer-<k>/``, and returns one row per layer and seed:

    layer, seed, english_dev (the chosen probe's English dev score, 0-100),
    english_test, non_english_test (the mean over the other languages, 0-100)

Features come from the shared store: a sentence task's pooled states of every layer come from
one forward pass, a token task needs one pass per layer (its word vectors are stored per
layer). Choose the layer by ``english_dev``, never by the zero-shot scores, which are what the
study then compares.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mtnb.core.errors import MtnbError
from mtnb.transfer.probe import ProbeConfig, probe_run
from mtnb.transfer.zeroshot import evaluate_runs

COLUMNS = ["layer", "seed", "english_dev", "english_test", "non_english_test"]


def layer_sweep(model: str, task: str, output_dir: str | Path, layers: list[int], *, seeds=(0,),
                config: ProbeConfig | None = None, max_train: int | None = None, max_dev: int | None = None,
                max_eval: int | None = None, mini_root=None, xglue_dir=None, registry_path: str | None = None,
                cache_dir=None, progress: bool = True) -> pd.DataFrame:
    """Probe ``model`` on ``task`` at each of ``layers`` (0 = embeddings, -1 = the last) and score
    each probe zero-shot; returns the table of the module docstring. MtnbError, before any work,
    for an empty or repeated layer list."""
    if not layers or len(set(layers)) != len(layers):
        raise MtnbError(f"layers {layers!r}: give distinct layers, e.g. [0, 4, 8, 12]")
    config = config or ProbeConfig()
    output_dir = Path(output_dir)
    rows = []
    for layer in layers:
        folder = output_dir / f"layer-{layer}"
        records = probe_run(model, task, folder, seeds=list(seeds), config=replace(config, layer=layer),
                            max_train=max_train, max_dev=max_dev, max_eval=max_eval, mini_root=mini_root,
                            xglue_dir=xglue_dir, registry_path=registry_path, cache_dir=cache_dir, progress=progress)
        results, _, _, _ = evaluate_runs(folder, max_eval=max_eval, controls=False, progress=progress)
        scores = results[results["system"] == "model"]
        for record in records:
            seed = record["train"]["seed"]
            mine = scores[scores["seed"] == seed]
            rows.append(dict(layer=record["layer_index"], seed=seed, english_dev=100 * record["best_dev_score"],
                             english_test=float(mine.loc[mine["language"] == "en", "value"].mean()),
                             non_english_test=float(mine.loc[mine["language"] != "en", "value"].mean())))
    return pd.DataFrame(rows, columns=COLUMNS)


def layer_means(sweep: pd.DataFrame) -> pd.DataFrame:
    """One task's sweep averaged over seeds: rows the layers, columns english_dev,
    english_test, non_english_test (0-100)."""
    return sweep.groupby("layer")[["english_dev", "english_test", "non_english_test"]].mean()


def best_layer(sweep: pd.DataFrame) -> int:
    """The layer whose mean English dev score over seeds is highest (the lowest such layer on a
    tie), for one task's sweep."""
    means = layer_means(sweep)["english_dev"]
    return int(means.index[means.to_numpy().argmax()])


def plot_layer_sweep(table: pd.DataFrame, title: str = ""):
    """English dev, English test and the non-English test mean against the layer (means over
    seeds), a panel per task (``table``: sweeps with a ``task`` column, or one task's sweep);
    a dashed line marks the layer English dev picks."""
    groups = list(table.groupby("task", sort=False)) if "task" in table else [("", table)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.0 * len(groups), 3.0), squeeze=False)
    for ax, (task, sweep) in zip(axes[0], groups):
        means = layer_means(sweep)
        for column, label in (("english_dev", "English dev (selects)"), ("english_test", "English test"),
                              ("non_english_test", "other languages, test")):
            ax.plot(means.index, means[column], marker="o", ms=3, label=label)
        ax.axvline(best_layer(sweep), color="grey", lw=0.8, ls="--")
        ax.set_xlabel("layer probed (0 = embeddings)")
        ax.set_ylabel("score (0-100)")
        ax.set_title(" ".join(part for part in (title, task) if part), fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
