"""Zero-shot evaluation of a fine-tuning or probe run in every language of its task, with controls.

``evaluate_run(run_dir)`` loads a run (a fine-tuned model, or a linear probe on a frozen
encoder: ``mtnb.transfer.probe``) at the precision it was trained at (``mtnb.core.precision``; fp32 where
this machine cannot run that, and for runs from before the setting), scores it on each
language's test (or dev) split, and scores the controls of ``mtnb.transfer.controls`` (majority class,
bag of sub-words trained on the same English examples) on the same examples. It returns a
tidy results table, one row per (system, language, split):

    model, task, seed, mode, system, language, split, metric, value (0-100), n

where ``mode`` is the run's (finetune or probe) and ``system`` is ``model`` or a control's name;
and, for classification tasks, the count of each predicted class per language, so that a model
sending one language to one class shows; and the metric per unit (example, or ranking query),
as ``mtnb.transfer.scoring.metric_units`` splits it:

    model, task, seed, mode, system, language, split, unit, cluster, num, den

so that two systems scored on the same examples compare example for example (a paired
bootstrap, ``mtnb.analysis.paired_bootstrap``). For a task whose examples are the same in every
language (the mini tasks, ``ud-pos``: ``mtnb.data.loading.aligned``) every language is scored on
the same drawn examples (``aligned_eval_ids``), a unit is named by its example's id (a query by
its query id), the same in every language, and ``cluster`` is its help page (a query's page; for
``ud-pos`` the sentence itself): a cluster bootstrap draws a page once for every language. For
other tasks (XGLUE) each language draws its own examples, a unit is the example's position and
its own cluster (``mtnb.transfer.scoring.unit_clusters``).

``evaluate_runs(run_dir)`` takes a run folder or a job's folder of ``seed-<k>`` run folders and
stacks their tables. ``oracle_table(run_dir)`` collects, for fine-tuning runs trained with
``oracle``, the test scores of the checkpoint English dev chose and of the one each target
language's own dev would choose (``mtnb.transfer.finetune.oracle_rows``: an upper bound):

    model, task, seed, language, selection (English dev | target dev), step, dev, test
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mtnb.core.errors import MtnbError
from mtnb.core.precision import recorded_precision, resolve_precision
from mtnb.data.inputs import encode, set_language
from mtnb.data.loading import aligned_eval_ids, eval_subset, load_task, subsample
from mtnb.data.tasks import get_task
from mtnb.transfer.controls import BagOfSubwords, majority
from mtnb.transfer.finetune import load_finetuned, oracle_rows, predict
from mtnb.transfer.probe import load_probe
from mtnb.transfer.run_folders import run_folders_in, unlabelled
from mtnb.transfer.scoring import metric_units, references, score, unit_clusters

SYSTEMS = ("model", "majority", "bag-of-subwords")
COLUMNS = ["model", "task", "seed", "mode", "system", "language", "split", "metric", "value", "n"]
COUNT_COLUMNS = ["seed", "language", "split", "label", "count"]
UNIT_COLUMNS = ["model", "task", "seed", "mode", "system", "language", "split", "unit", "cluster", "num", "den"]
ORACLE_COLUMNS = ["model", "task", "seed", "language", "selection", "step", "dev", "test"]


def evaluate_runs(run_dir: str | Path, languages: list[str] | None = None, splits: tuple[str, ...] = ("test",),
                  max_eval: int | None = None, controls: bool = True, progress: bool = True,
                  dev_languages: list[str] | None = None):
    """``evaluate_run`` on every run folder of ``run_dir`` (see ``run_folders_in``); returns the
    stacked (results, predicted counts, units, notes). Probe runs of one job share one feature
    extractor, so their encoder loads at most once."""
    folders = run_folders_in(run_dir)
    tables, counts, units, notes, shared = [], [], [], [], {}
    for folder in folders:
        results, tally, per_unit, more = evaluate_run(folder, languages, splits, max_eval, controls, progress,
                                                      shared=shared, dev_languages=dev_languages)
        tables.append(results)
        counts.append(tally)
        units.append(per_unit)
        notes += [f"{folder.name}: {note}" for note in more] if len(folders) > 1 else more
    if "extractor" in shared:
        shared["extractor"].close()
    return (pd.concat(tables, ignore_index=True), pd.concat(counts, ignore_index=True),
            pd.concat(units, ignore_index=True), notes)


def oracle_table(run_dir: str | Path) -> pd.DataFrame:
    """``ORACLE_COLUMNS`` rows for every fine-tuning run of ``run_dir`` (a run folder or a job's
    folder of them) trained with ``oracle`` (scores 0-100); no rows for other runs."""
    rows = []
    for folder in run_folders_in(run_dir):
        record = json.loads((folder / "run.json").read_text())
        if record.get("mode", "finetune") == "finetune" and (folder / "curve.json").is_file():
            rows += oracle_rows(json.loads((folder / "curve.json").read_text()), record)
    return pd.DataFrame(rows, columns=ORACLE_COLUMNS)


def evaluate_run(run_dir: str | Path, languages: list[str] | None = None, splits: tuple[str, ...] = ("test",),
                 max_eval: int | None = None, controls: bool = True, progress: bool = True,
                 shared: dict | None = None, dev_languages: list[str] | None = None):
    """Score the run in ``run_dir`` per language and split; returns (results, predicted counts,
    units, notes). ``notes`` lists languages skipped for lack of data. ``max_eval`` caps the
    examples per language (``eval_subset``: the same examples for every model and seed; for an
    aligned task, the same examples in every language too, drawn over all of the task's
    languages whichever ``languages`` are evaluated: ``aligned_eval_ids``).
    ``shared``: a dict that carries a probe run's feature extractor (key ``extractor``) to the
    next call, so that the runs of one job load their encoder once (``evaluate_runs`` passes
    one and closes the extractor at the end). ``dev_languages``: the languages the dev split is
    scored in, when not ``languages`` (``["en"]``: English dev alone, what a task filter read on
    English dev needs, at a fifth of the cost)."""
    run_dir = Path(run_dir)
    record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else None
    if record is None or not (run_dir / "done.json").is_file():
        raise MtnbError(f"{run_dir} holds no finished fine-tuning run (no run.json/done.json); "
                        "run notebooks/finetune.ipynb into it first")
    task = get_task(record["task"])
    languages = list(task.languages) if languages is None else languages
    unknown = [lang for lang in [*languages, *(dev_languages or [])] if lang not in task.languages]
    if unknown:
        raise MtnbError(f"task {task.name} has no language {unknown[0]!r}: it has {', '.join(task.languages)}")
    for split in splits:
        if split not in ("dev", "test"):
            raise MtnbError(f"split {split!r}: zero-shot evaluation uses dev or test")
    data = record.get("data", {})
    seed, max_length = record["train"]["seed"], record["train"]["max_length"]
    mode = record.get("mode", "finetune")
    prefixes = tuple(record.get("prefixes", ("", "")))

    if mode == "probe":
        shared = {} if shared is None else shared
        run = load_probe(run_dir, shared.get("extractor"))
        shared["extractor"] = run.extractor
        tokenizer = run.tokenizer
    else:
        net, tokenizer, task, record = load_finetuned(run_dir)
        device = next(net.parameters()).device
        dtype = resolve_precision(recorded_precision(record.get("precision", "fp32"), device), device)
    pad_id = tokenizer.pad_token_id
    baselines = {}
    if controls:
        set_language(tokenizer, record["lang_codes"], "en")
        train_records = subsample(load_task(task, "en", "train", **data), record.get("max_train"), seed)
        train_examples = encode(train_records, task, tokenizer, max_length, prefixes)
        bag = BagOfSubwords(task, len(tokenizer), seed).fit(train_examples)
        baselines = {"majority": lambda ex: majority(task, train_examples, ex), "bag-of-subwords": bag.predict}

    groups, notes = [], []
    for split in splits:
        drawn = aligned_eval_ids(task, task.languages, split, max_eval, **data)   # None: per language
        for lang in (dev_languages if split == "dev" and dev_languages is not None else languages):
            try:
                records = load_task(task, lang, split, **data)
            except MtnbError as err:
                notes.append(f"{lang} {split}: skipped ({err})")
                continue
            if len(records) == 0 or (task.label_field in records.column_names and
                                     unlabelled(records[task.label_field])):
                notes.append(f"{lang} {split}: skipped (no labelled examples)")
                continue
            groups.append((split, lang, eval_subset(records, max_eval, drawn)))
    if mode == "probe":
        run.prepare([(records, lang) for _, lang, records in groups])  # one forward pass for what is not stored

    rows, counts, units = [], [], []
    for split, lang, records in tqdm(groups, desc="zero-shot", disable=not progress):
        code_note = set_language(tokenizer, record["lang_codes"], lang)
        if code_note and code_note not in notes:
            notes.append(code_note)
        examples = encode(records, task, tokenizer, max_length, prefixes)
        gold = references(examples, task)
        systems = {"model": run.predict(records, lang) if mode == "probe" else
                   predict(net, examples, task, pad_id, dtype=dtype)}
        systems.update({name: fn(examples) for name, fn in baselines.items()})
        for system, predictions in systems.items():
            rows.append(dict(model=record["model"], task=task.name, seed=seed, mode=mode, system=system,
                             language=lang, split=split, metric=task.metric,
                             value=100 * score(task, predictions, gold, examples), n=len(examples)))
            ids, num, den = metric_units(task, predictions, gold, examples)
            names, clusters = unit_clusters(task, records, ids)
            units.append(pd.DataFrame(dict(model=record["model"], task=task.name, seed=seed, mode=mode, system=system,
                                           language=lang, split=split, unit=names, cluster=clusters, num=num,
                                           den=den),
                                      columns=UNIT_COLUMNS))
            if task.head in ("sequence", "pair") and system == "model":
                tally = pd.Series(predictions).value_counts()
                counts += [dict(seed=seed, language=lang, split=split, label=task.labels[k], count=int(v))
                           for k, v in tally.items()]
    per_unit = pd.concat(units, ignore_index=True) if units else pd.DataFrame(columns=UNIT_COLUMNS)
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(counts, columns=COUNT_COLUMNS), per_unit, notes


def plot_results(results, title: str = ""):
    """Bars per language: the model and each control, for each split (with several seeds, the
    mean over seeds and, as error bars, the standard deviation)."""
    splits = list(dict.fromkeys(results["split"]))
    n_seeds = results["seed"].nunique()
    fig, axes = plt.subplots(1, len(splits), figsize=(7 * len(splits), 3.4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        part = results[results.split == split]
        table = part.pivot_table(index="language", columns="system", values="value", sort=False)
        table = table[[s for s in SYSTEMS if s in table.columns]]
        spread = None
        if n_seeds > 1:
            spread = part.pivot_table(index="language", columns="system", values="value", aggfunc="std",
                                      sort=False).reindex_like(table)
        table.plot.bar(ax=ax, rot=0, width=0.8, yerr=spread, capsize=2,
                       color=["tab:blue", "tab:gray", "tab:orange"][: table.shape[1]])
        ax.set_ylabel(f"{results.metric.iloc[0]} (0-100)" + (f", mean of {n_seeds} seeds" if n_seeds > 1 else ""))
        ax.set_title(f"{title} ({split})" if title else split)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_predicted_counts(counts, labels: list[str]):
    """Heatmap of the share of each predicted class per language (rows sum to 1)."""
    table = counts.pivot_table(index="language", columns="label", values="count", aggfunc="sum",
                               fill_value=0, sort=False)
    table = table.reindex(columns=[label for label in labels if label in table.columns])
    share = table.div(table.sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(1 + 0.7 * share.shape[1], 0.5 + 0.45 * share.shape[0]))
    image = ax.imshow(share.values, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(share.shape[1]), share.columns, rotation=45, ha="right")
    ax.set_yticks(range(share.shape[0]), share.index)
    for (i, j), v in np.ndenumerate(share.values):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    fig.colorbar(image, ax=ax, label="share of predictions")
    ax.set_title("predicted classes per language")
    fig.tight_layout()
    return fig
