"""Zero-shot evaluation of a fine-tuning run in every language of its task, with controls.

``evaluate_run(run_dir)`` loads the run's fine-tuned model, scores it on each language's test
(or dev) split, and scores the controls of ``mtnb.controls`` (majority class, bag of sub-words
trained on the same English examples) on the same examples. It returns a tidy results table,
one row per (system, language, split):

    model, task, seed, system, language, split, metric, value (0-100), n

where ``system`` is ``model`` or a control's name; and, for classification tasks, the count of
each predicted class per language, so that a model sending one language to one class shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import MtnbError

SYSTEMS = ("model", "majority", "bag-of-subwords")


def evaluate_run(run_dir: str | Path, languages: list[str] | None = None, splits: tuple[str, ...] = ("test",),
                 max_eval: int | None = None, controls: bool = True, progress: bool = True):
    """Score the run in ``run_dir`` per language and split; returns (results, predicted counts,
    notes). ``notes`` lists languages skipped for lack of data. ``max_eval`` caps the
    examples per language (drawn with the run's seed)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from .controls import BagOfSubwords, majority
    from .data import load_task
    from .finetune import encode, load_finetuned, predict, references, score, set_language, subsample

    run_dir = Path(run_dir)
    record = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else None
    if record is None or not (run_dir / "done.json").is_file():
        raise MtnbError(f"{run_dir} holds no finished fine-tuning run (no run.json/done.json); "
                        "run notebooks/finetune.ipynb into it first")
    from .tasks import get_task
    task = get_task(record["task"])
    languages = list(task.languages) if languages is None else languages
    unknown = [lang for lang in languages if lang not in task.languages]
    if unknown:
        raise MtnbError(f"task {task.name} has no language {unknown[0]!r}: it has {', '.join(task.languages)}")
    for split in splits:
        if split not in ("dev", "test"):
            raise MtnbError(f"split {split!r}: zero-shot evaluation uses dev or test")
    data = record.get("data", {})
    seed, max_length = record["train"]["seed"], record["train"]["max_length"]

    net, tokenizer, task, record = load_finetuned(run_dir)
    pad_id = tokenizer.pad_token_id
    baselines = {}
    if controls:
        set_language(tokenizer, record["lang_codes"], "en")
        train_records = subsample(load_task(task, "en", "train", **data), record.get("max_train"), seed)
        train_examples = encode(train_records, task, tokenizer, max_length)
        bag = BagOfSubwords(task, len(tokenizer), seed).fit(train_examples)
        baselines = {"majority": lambda ex: majority(task, train_examples, ex), "bag-of-subwords": bag.predict}

    rows, counts, notes = [], [], []
    for split in splits:
        for lang in tqdm(languages, desc=f"zero-shot {split}", disable=not progress):
            try:
                records = load_task(task, lang, split, **data)
            except MtnbError as err:
                notes.append(f"{lang} {split}: skipped ({err})")
                continue
            if len(records) == 0 or (task.label_field in records.column_names and
                                     _unlabelled(records[task.label_field])):
                notes.append(f"{lang} {split}: skipped (no labelled examples)")
                continue
            records = subsample(records, max_eval, seed)
            set_language(tokenizer, record["lang_codes"], lang)
            examples = encode(records, task, tokenizer, max_length)
            gold = references(examples, task)
            systems = {"model": predict(net, examples, task, pad_id)}
            systems.update({name: fn(examples) for name, fn in baselines.items()})
            for system, predictions in systems.items():
                rows.append(dict(model=record["model"], task=task.name, seed=seed, system=system,
                                 language=lang, split=split, metric=task.metric,
                                 value=100 * score(task, predictions, gold, examples), n=len(examples)))
                if task.head in ("sequence", "pair") and system == "model":
                    tally = pd.Series(predictions).value_counts()
                    counts += [dict(language=lang, split=split, label=task.labels[k], count=int(v))
                               for k, v in tally.items()]
    return pd.DataFrame(rows), pd.DataFrame(counts, columns=["language", "split", "label", "count"]), notes


def _unlabelled(labels) -> bool:
    """True when every label is -1 (XGLUE test files released without labels)."""
    flat = [x for row in labels for x in (row if isinstance(row, list) else [row])]
    return all(x == -1 for x in flat)


def plot_results(results, title: str = ""):
    """Bars per language: the model and each control, for each split."""
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(results["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(7 * len(splits), 3.4), squeeze=False)
    for ax, split in zip(axes[0], splits):
        table = results[results.split == split].pivot_table(index="language", columns="system", values="value",
                                                           sort=False)
        table = table[[s for s in SYSTEMS if s in table.columns]]
        table.plot.bar(ax=ax, rot=0, width=0.8, color=["tab:blue", "tab:gray", "tab:orange"][: table.shape[1]])
        ax.set_ylabel(f"{results.metric.iloc[0]} (0-100)")
        ax.set_title(f"{title} ({split})" if title else split)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_predicted_counts(counts, labels: list[str]):
    """Heatmap of the share of each predicted class per language (rows sum to 1)."""
    import matplotlib.pyplot as plt

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
