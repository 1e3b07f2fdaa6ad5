"""The study's three metrics, as local ``evaluate`` modules that never touch the Hub.

Each metric is an ``evaluate.Metric`` script in a folder of this package (``<name>/<name>.py``):

- ``entity_f1``: entity-level micro F1 over BIO tags, as seqeval (XGLUE's NER scorer) counts it;
- ``accuracy``: the share of labels predicted right, over texts or over tokens (POS);
- ``ndcg``: nDCG per query, averaged over queries, as XGLUE's official WPR scorer computes it.

``load_metric(name)`` hands evaluate the script's own path (``.../ndcg/ndcg.py``): a path that
ends in its file name is read from disk, and a missing one raises FileNotFoundError; evaluate
never asks the Hub for it. evaluate imports a script from a copy it makes in a "dynamic modules"
folder, by default ``~/.cache/huggingface/modules``, and ``evaluate.load`` offers no argument to
move it; so ``load_metric`` runs the same three steps as ``evaluate.load`` (find the module,
import its class, build the metric) with that folder under ``cache_dir``, by default
``<project root>/.cache/evaluate``:

- ``<cache_dir>/modules/``: the copied scripts (evaluate keys each copy by the script's hash);
- ``<cache_dir>/metrics/``: the metric's own folder. The metric keeps predictions in memory
  (``keep_in_memory=True``), so evaluate writes no Arrow file there, only the empty folder.

``score(metric_name, predictions, references, **kw)`` is the one call the rest of mtnb makes:
it takes the task table's metric names (``f1_entity``, ``accuracy``, ``ndcg``) and returns the
main figure as a float in [0, 1]. Tables multiply by 100.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from evaluate.loading import evaluation_module_factory, import_main_class, init_dynamic_modules

from mtnb.core.errors import MtnbError
from mtnb.core.paths import project_root

if TYPE_CHECKING:
    import evaluate

METRIC_NAMES = ("entity_f1", "accuracy", "ndcg")
# task table's metric name -> (metric module, key of its main figure)
TASK_METRICS = {"f1_entity": ("entity_f1", "f1"), "accuracy": ("accuracy", "accuracy"),
                "ndcg": ("ndcg", "ndcg")}
HERE = Path(__file__).resolve().parent


def metric_script(name: str) -> Path:
    """The path of metric ``name``'s script in this package; MtnbError for an unknown name."""
    if name not in METRIC_NAMES:
        raise MtnbError(f"unknown metric {name!r}: use one of {', '.join(METRIC_NAMES)}")
    return HERE / name / f"{name}.py"


def default_cache_dir() -> Path:
    """``<project root>/.cache/evaluate``: where evaluate's copies and folders go by default."""
    return project_root() / ".cache" / "evaluate"


def load_metric(name: str, cache_dir: str | Path | None = None) -> evaluate.Metric:
    """Metric ``name`` (entity_f1, accuracy or ndcg) as a fresh ``evaluate.Metric``.

    Loaded from this package's script, never from the Hub; evaluate's copy of the script and
    the metric's folder go under ``cache_dir`` (default ``default_cache_dir()``).
    """
    script = metric_script(name)
    cache_dir = Path(cache_dir).expanduser().resolve() if cache_dir else default_cache_dir()
    module = evaluation_module_factory(str(script), dynamic_modules_path=_modules_folder(cache_dir))
    metric_class = import_main_class(module.module_path)
    return metric_class(hash=module.hash, keep_in_memory=True, cache_dir=str(cache_dir / "metrics"))


def _modules_folder(cache_dir: Path) -> str:
    """The dynamic-modules package under ``cache_dir/modules``, made importable.

    Its package name carries a hash of the folder, so that two cache folders used in one process
    are two packages: Python imports a package once, and a shared name would read the scripts
    of whichever folder came first.
    """
    parent = cache_dir / "modules"
    package = "mtnb_metric_modules_" + hashlib.sha1(str(parent).encode()).hexdigest()[:10]
    return init_dynamic_modules(name=package, hf_modules_cache=parent)


def score(metric_name: str, predictions, references, **kw) -> float:
    """The main figure of the task table's metric ``metric_name``, a float in [0, 1].

    ``f1_entity``: entity F1 (``predictions``, ``references``: lists of tag lists);
    ``accuracy``: accuracy (flat label lists, or lists of token-label lists);
    ``ndcg``: mean nDCG over queries (scores, relevance grades, and ``query_ids=`` a list).
    Other keyword arguments go to the metric's ``compute``.
    """
    if metric_name not in TASK_METRICS:
        raise MtnbError(f"unknown task metric {metric_name!r}: use one of {', '.join(TASK_METRICS)}")
    if len(predictions) != len(references):
        raise MtnbError(f"{metric_name}: {len(predictions)} predictions but {len(references)} references; "
                        "give one prediction per reference")
    if len(references) == 0:
        raise MtnbError(f"{metric_name}: no predictions to score; give at least one")
    if metric_name == "ndcg" and len(kw.get("query_ids", ())) != len(references):
        raise MtnbError(f"ndcg: give query_ids=, one query id per prediction ({len(references)})")
    name, key = TASK_METRICS[metric_name]
    # a fresh metric each call (a few ms): evaluate leaves a metric unusable after an input error
    try:
        result = load_metric(name).compute(predictions=predictions, references=references, **kw)
    except ValueError as err:  # evaluate could not store the inputs in its declared format
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MtnbError(f"{metric_name}: {problem} See the input description in "
                        f"{metric_script(name)}") from None
    return float(result[key])
