"""The contract between the notebooks, the tables they write and the book's pages.

Every file a job's notebook writes into its ``out/`` folder for others to read is named here,
once: its job kind, its file name, what it holds and, for a table, the columns it must have.
The notebooks write through ``write_table`` and ``save_figure``; the book reads through
``read_table``, ``read_tables`` and ``figure_path``. Either side refuses a table that lacks a
column of the contract, in one line naming the file and the columns. A new output (a table
or figure a new analysis writes, a page reads) is added to ``OUTPUTS`` first.

    notebook      file                       columns (at least)
    zeroshot      results.csv                model task seed mode system language split metric value n
                  predicted_counts.csv       seed language split label count
                  units.csv.gz               model task seed mode system language split unit num den
                                             (+ cluster: older files lack it)
                  oracle.csv                 model task seed language selection step dev test
                                             (fine-tuning runs trained with oracle only)
    layer_sweep   layer_sweep.csv            task layer seed english_dev english_test non_english_test
    cka           cka_model_pairs.csv        model_a model_b lang layer cka (+ interval columns)
                  cka_language_pairs.csv     model lang_a lang_b layer cka (+ interval columns)
                  separability.csv           model layer measure value low high
                  separability_samples.csv   model layer measure sample score
                  mutual_knn.csv             model_a model_b lang layer k value low high
    svd           svd.csv                    layer model matrix sigma_norm distance
    verdict       verdict.csv                protocol task a b comparison a_score b_score difference low high
                                             p p_holm at_floor floor n_boot n_clusters runs_a runs_b
                  verdict_filter.csv         protocol task base_dev bag_of_subwords_dev margin bar enters
                  verdict_oracle.csv         task model runs english_dev target_dev gain

Each table and figure above is written into the job's ``out/`` folder; the pretraining jobs'
records (``pretrain.json``, ``continued.json``) are written beside their checkpoints by
``mtnb.pretraining``, and read by the book through ``PRETRAINING_RECORDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mtnb.core.errors import MtnbError
from mtnb.core.files import atomic_file
from mtnb.transfer.layer_sweep import COLUMNS as SWEEP_COLUMNS
from mtnb.transfer.zeroshot import COLUMNS, COUNT_COLUMNS, ORACLE_COLUMNS, UNIT_COLUMNS

VERDICT_COLUMNS = ("protocol", "task", "a", "b", "comparison", "a_score", "b_score", "difference", "low", "high",
                   "p", "p_holm", "at_floor", "floor", "n_boot", "n_clusters", "runs_a", "runs_b")
FILTER_COLUMNS = ("protocol", "task", "base_dev", "bag_of_subwords_dev", "margin", "bar", "enters")
ORACLE_SUMMARY_COLUMNS = ("task", "model", "runs", "english_dev", "target_dev", "gain")
OPTIONAL_UNIT_COLUMNS = ("cluster",)  # units files from before clusters lack it: each unit is its own cluster
INTERVAL_COLUMNS = ("debiased", "biased", "low", "high", "null_debiased", "null_biased")  # with uncertainty


@dataclass(frozen=True)
class Output:
    """One file a job writes: the job ``kind`` that writes it, its ``file`` name in the job's
    ``out/`` folder, what it holds, for a table the ``columns`` it must have (None: a figure) and
    the ``dtypes`` of columns that must not be read as numbers."""

    kind: str
    file: str
    what: str
    columns: tuple[str, ...] | None = None
    dtypes: dict[str, type] | None = None


OUTPUTS = {
    "results": Output("zeroshot", "results.csv", "one score per seed, system, language and split", tuple(COLUMNS)),
    "predicted_counts": Output("zeroshot", "predicted_counts.csv", "how often each label was predicted",
                               tuple(COUNT_COLUMNS)),
    "units": Output("zeroshot", "units.csv.gz", "the metric's numerator and denominator per test example (or "
                    "query) and its cluster (help page, UD sentence): what paired bootstraps resample",
                    tuple(c for c in UNIT_COLUMNS if c not in OPTIONAL_UNIT_COLUMNS), {"unit": str, "cluster": str}),
    "oracle": Output("zeroshot", "oracle.csv", "fine-tuning: the test score per target language of the checkpoint "
                     "English dev chose and of the one that language's dev would choose (an upper bound)",
                     tuple(ORACLE_COLUMNS)),
    "results_figure": Output("zeroshot", "results.png", "scores per language"),
    "predicted_counts_figure": Output("zeroshot", "predicted_counts.png", "predicted labels per language"),
    "layer_sweep": Output("layer_sweep", "layer_sweep.csv", "a probe's English dev and zero-shot test scores "
                          "per task, layer and seed", ("task", *SWEEP_COLUMNS)),
    "layer_sweep_figure": Output("layer_sweep", "layer_sweep.png", "scores against the layer probed, per task"),
    "cka_model_pairs": Output("cka", "cka_model_pairs.csv", "CKA of each model pair per language and layer",
                              ("model_a", "model_b", "lang", "layer", "cka")),
    "cka_language_pairs": Output("cka", "cka_language_pairs.csv", "CKA of each language pair per model and layer",
                                 ("model", "lang_a", "lang_b", "layer", "cka")),
    "separability": Output("cka", "separability.csv", "language ID and translation retrieval per model and layer, "
                           "with 95% intervals", ("model", "layer", "measure", "value", "low", "high")),
    "separability_samples": Output("cka", "separability_samples.csv", "the same measures per sample",
                                   ("model", "layer", "measure", "sample", "score")),
    "mutual_knn": Output("cka", "mutual_knn.csv", "mutual k-nearest-neighbour alignment to the reference model",
                         ("model_a", "model_b", "lang", "layer", "k", "value", "low", "high")),
    "cka_model_pairs_figure": Output("cka", "cka_model_pairs.png", "CKA heatmaps per model pair"),
    "cka_language_pairs_figure": Output("cka", "cka_language_pairs.png", "CKA heatmaps per language pair"),
    "cka_intervals_figure": Output("cka", "cka_intervals.png", "CKA to the reference with intervals and chance"),
    "separability_figure": Output("cka", "separability.png", "separability across layers"),
    "svd": Output("svd", "svd.csv", "‖σ‖ and its distance to the base per layer, model and matrix",
                  ("layer", "model", "matrix", "sigma_norm", "distance")),
    "svd_figure": Output("svd", "svd.png", "singular-value norms and distances per layer"),
    "verdict": Output("verdict", "verdict.csv", "the plan's paired comparisons per protocol and task, with the "
                      "cluster bootstrap's intervals and Holm's p", VERDICT_COLUMNS),
    "verdict_filter": Output("verdict", "verdict_filter.csv", "which tasks entered the verdict, read on English dev",
                             FILTER_COLUMNS),
    "verdict_oracle": Output("verdict", "verdict_oracle.csv", "fine-tuning: non-English mean test score per model "
                             "with English-dev selection and with the target-dev oracle", ORACLE_SUMMARY_COLUMNS),
    "verdict_figure": Output("verdict", "verdict.png", "the verdict's forest plot"),
}

# what a pretraining job leaves beside its checkpoint: the zoo's record, the e5 family's record
PRETRAINING_RECORDS = ("pretrain.json", "continued.json")


def output(name: str) -> Output:
    """The contract's entry ``name``; MtnbError for a name it does not have."""
    if name not in OUTPUTS:
        raise MtnbError(f"no output {name!r} in the contract (mtnb.study.outputs.OUTPUTS): add it there first")
    return OUTPUTS[name]


def output_path(folder: str | Path, name: str) -> Path:
    """Where output ``name`` lies in a job's ``out/`` folder."""
    return Path(folder) / output(name).file


def check_columns(table: pd.DataFrame, name: str, where: Path) -> None:
    """MtnbError unless ``table`` has every column the contract gives output ``name``."""
    missing = [c for c in output(name).columns or () if c not in table.columns]
    if missing:
        raise MtnbError(f"{where}: lacks the column(s) {', '.join(missing)} that {output(name).file} must have "
                        "(mtnb.study.outputs); rerun its job with the current notebook")


def write_table(folder: str | Path, name: str, table: pd.DataFrame) -> Path:
    """Write table ``name`` into a job's ``out/`` folder (atomically, CSV without the index) after
    checking its columns; returns its path."""
    path = output_path(folder, name)
    check_columns(table, name, path)
    with atomic_file(path) as tmp:
        table.to_csv(tmp, index=False, compression="gzip" if path.name.endswith(".gz") else None)
    return path


def save_figure(folder: str | Path, name: str, fig) -> Path:
    """Save matplotlib figure ``fig`` as output ``name`` (PNG, 120 dpi); returns its path."""
    path = output_path(folder, name)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return path


def read_table(folder: Path | None, name: str) -> pd.DataFrame | None:
    """Table ``name`` of a job's ``out/`` folder, checked against the contract; None when the
    folder is None or the job did not write it (an optional analysis)."""
    if folder is None or not output_path(folder, name).is_file():
        return None
    path = output_path(folder, name)
    table = pd.read_csv(path, dtype=output(name).dtypes)
    check_columns(table, name, path)
    return table


def read_tables(folder: Path, name: str) -> list[tuple[Path, pd.DataFrame]]:
    """Every table ``name`` anywhere under ``folder`` (a job folder), with its path, in path order."""
    found = []
    for path in sorted(Path(folder).rglob(output(name).file)):
        found.append((path, read_table(path.parent, name)))
    return found


def figure_path(folder: Path | None, name: str) -> Path | None:
    """Figure ``name`` of a job's ``out/`` folder, or None when it was not written."""
    if folder is None or not output_path(folder, name).is_file():
        return None
    return output_path(folder, name)
