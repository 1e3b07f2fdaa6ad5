"""The task table: which tasks the study fine-tunes on, and how each one is read and scored.

``params/tasks.yaml`` holds a top-level ``tasks:`` mapping, one entry per task keyed by its
name (the comment at the top of the file explains every key). ``load_tasks`` reads and checks
the whole file and returns ``{name: TaskSpec}``; ``get_task(name)`` returns one entry.

Three sources exist: ``xglue`` (the eight XGLUE understanding tasks, read by ``mtnb.data.xglue``;
an entry must agree with XGLUE's own fields, labels and languages), ``mini`` (a local offline
corpus; ``dataset`` names its folder, by default the task name) and ``ud`` (XGLUE's POS task
rebuilt from real UD treebanks by ``mtnb data ud``, ``mtnb.data.ud``; read by XGLUE's POS loader,
so an entry must agree with XGLUE's POS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mtnb.core.errors import MtnbError
from mtnb.core.paths import params_dir
from mtnb.core.yamlfile import read_yaml
from mtnb.data.ud import POS
from mtnb.data.xglue import XGLUE

SOURCES = ("xglue", "mini", "ud")
METRICS = ("accuracy", "f1_entity", "ndcg")
HEADS = ("token", "sequence", "pair", "ranking")
FIELDS = ("source", "languages", "metric", "head", "lr", "text_fields", "label_field", "labels", "dataset")
REQUIRED = ("source", "languages", "metric", "head", "lr", "text_fields", "label_field", "labels")
# how many text fields each head reads: (at least, at most)
TEXT_FIELD_COUNTS = {"token": (1, 1), "sequence": (1, None), "pair": (2, None), "ranking": (2, None)}
LANGUAGE_CODE = re.compile(r"^[a-z]{2,3}$")


@dataclass(frozen=True)
class TaskSpec:
    """One task of the study.

    ``languages``: the evaluation languages (ISO 639-1), English, the training language, among
    them; ``metric``: accuracy, f1_entity (seqeval entity-level F1) or ndcg; ``head``: token
    (one label per word), sequence (one label per text), pair (one label per two-segment text)
    or ranking (a relevance grade per text, ranked per query); ``lr``: the fine-tuning learning
    rate; ``text_fields``: the record fields holding the input text(s); ``label_field``: the
    field holding the label id(s); ``labels``: the label names, index = id; ``dataset``: for
    source mini, the corpus folder name.
    """

    name: str
    source: str
    languages: tuple[str, ...]
    metric: str
    head: str
    lr: float
    text_fields: tuple[str, ...]
    label_field: str
    labels: tuple[str, ...]
    dataset: str | None = None

    def segments(self, record: dict) -> tuple:
        """The model's input for ``record``: ``(words,)`` for a token head; ``(text,)`` for a
        sequence head, the text fields joined by a space; ``(first, rest)`` for pair and ranking
        heads, the first text field against the others joined by a space (QADSM: the query
        against ad title + description; WPR: the query against page title + snippet). Empty
        fields are left out of a join."""
        values = [record[name] for name in self.text_fields]
        if self.head == "token":
            return (values[0],)
        if self.head == "sequence":
            return (" ".join(v for v in values if v),)
        return (values[0], " ".join(v for v in values[1:] if v))


def tasks_path() -> Path:
    """``params/tasks.yaml`` of the current project."""
    return params_dir() / "tasks.yaml"


def load_tasks(path: str | Path | None = None) -> dict[str, TaskSpec]:
    """Read and validate the task table; returns ``{name: TaskSpec}`` in file order.

    Raises MtnbError naming the file, the task and the key when the YAML does not parse, the
    top level is not a ``tasks:`` mapping, a key is unknown or missing, a source, metric or head
    is not an allowed one, languages are malformed, or an xglue entry disagrees with XGLUE.
    """
    path = Path(path) if path is not None else tasks_path()
    if not path.is_file():
        raise MtnbError(f"{path}: task table not found; run from the project folder or set MTNB_ROOT")
    doc = read_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("tasks"), dict) or set(doc) != {"tasks"}:
        raise MtnbError(f"{path}: expected only a top-level 'tasks:' mapping of name -> fields")
    return {str(name): _task_spec(path, str(name), fields) for name, fields in doc["tasks"].items()}


def get_task(name: str, tasks: dict[str, TaskSpec] | None = None) -> TaskSpec:
    """The TaskSpec of task ``name`` (from ``tasks``, else from params/tasks.yaml)."""
    tasks = load_tasks() if tasks is None else tasks
    if name not in tasks:
        raise MtnbError(f"unknown task {name!r}: known tasks are {', '.join(tasks)}; "
                        "add it to params/tasks.yaml")
    return tasks[name]


def _task_spec(path: Path, name: str, fields) -> TaskSpec:
    """Check one entry of the table and build its TaskSpec (errors name file, task and key)."""
    where = f"{path}: task {name!r}"
    if not isinstance(fields, dict):
        raise MtnbError(f"{where}: expected a mapping of keys, got {type(fields).__name__}")
    unknown = sorted(str(key) for key in set(fields) - set(FIELDS))
    if unknown:
        raise MtnbError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(FIELDS)}")
    for key in REQUIRED:
        if fields.get(key) is None:
            raise MtnbError(f"{where}: missing key {key!r}")
    for key, allowed in (("source", SOURCES), ("metric", METRICS), ("head", HEADS)):
        if fields[key] not in allowed:
            raise MtnbError(f"{where}: {key} {fields[key]!r} is not one of {', '.join(allowed)}")
    spec = TaskSpec(
        name=name, source=fields["source"], metric=fields["metric"], head=fields["head"],
        languages=_languages(where, fields["languages"]),
        lr=_learning_rate(where, fields["lr"]),
        text_fields=_names(where, "text_fields", fields["text_fields"]),
        label_field=_names(where, "label_field", [fields["label_field"]])[0],
        labels=_names(where, "labels", fields["labels"]),
        dataset=_dataset(where, fields),
    )
    low, high = TEXT_FIELD_COUNTS[spec.head]
    if len(spec.text_fields) < low or (high is not None and len(spec.text_fields) > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        raise MtnbError(f"{where}: text_fields: a {spec.head} head reads {wanted} text field(s), "
                        f"got {len(spec.text_fields)}")
    if spec.source == "xglue":
        _check_against_xglue(where, spec, XGLUE.get(spec.name))
    elif spec.source == "ud":
        _check_against_xglue(where, spec, POS)
    return spec


def _languages(where: str, value) -> tuple[str, ...]:
    """A non-empty list of distinct lowercase ISO 639 codes, English among them."""
    if not isinstance(value, list) or not value:
        raise MtnbError(f"{where}: languages must be a non-empty list of language codes, e.g. [en, de]")
    for code in value:
        if not isinstance(code, str) or not LANGUAGE_CODE.match(code):
            raise MtnbError(f"{where}: languages: {code!r} is not a lowercase ISO 639 code such as 'de'")
    if len(set(value)) != len(value):
        duplicate = next(code for code in value if value.count(code) > 1)
        raise MtnbError(f"{where}: languages: {duplicate!r} is listed twice")
    if "en" not in value:
        raise MtnbError(f"{where}: languages must include 'en', the training language")
    return tuple(value)


def _learning_rate(where: str, value) -> float:
    """A positive number (a string such as '2e-5', which YAML does not take for a float, too)."""
    try:
        lr = float(value) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        lr = None
    if lr is None or not lr > 0:
        raise MtnbError(f"{where}: lr {value!r} is not a positive number such as 5.0e-6")
    return lr


def _names(where: str, key: str, value) -> tuple[str, ...]:
    """A non-empty list of distinct non-empty strings (unquoted True/False/yes/no in YAML are
    booleans, not strings: they must be quoted)."""
    if not isinstance(value, list) or not value:
        raise MtnbError(f"{where}: {key} must be a non-empty list of names")
    for item in value:
        if not isinstance(item, str) or not item:
            hint = "; quote it in the YAML" if isinstance(item, (bool, int, float)) else ""
            raise MtnbError(f"{where}: {key}: {item!r} is not a name (a non-empty string){hint}")
    if len(set(value)) != len(value):
        duplicate = next(item for item in value if value.count(item) > 1)
        raise MtnbError(f"{where}: {key}: {duplicate!r} is listed twice")
    return tuple(value)


def _dataset(where: str, fields: dict) -> str | None:
    """The mini corpus folder name: only for source mini; defaults to None (the task name)."""
    value = fields.get("dataset")
    if value is None:
        return None
    if fields["source"] != "mini":
        raise MtnbError(f"{where}: key 'dataset' is only for source mini; remove it")
    if not isinstance(value, str) or not value or "/" in value or "\\" in value:
        raise MtnbError(f"{where}: dataset {value!r} must be a folder name (no slashes)")
    return value


def _check_against_xglue(where: str, spec: TaskSpec, xglue) -> None:
    """An xglue entry must name an XGLUE task (``xglue``: its XglueTask, None when there is none)
    and repeat its fields, labels (in XGLUE's order) and a subset of its languages, so that
    loader, heads and metrics agree; a ud entry so agrees with XGLUE's POS, whose loader reads it."""
    if xglue is None:
        raise MtnbError(f"{where}: source xglue, but XGLUE has no task {spec.name!r} "
                        f"(it has {', '.join(XGLUE)})")
    for key, ours, theirs in (("text_fields", spec.text_fields, xglue.text_fields),
                              ("label_field", spec.label_field, xglue.label_field),
                              ("labels", spec.labels, xglue.labels)):
        if ours != theirs:
            shown = ", ".join(theirs) if isinstance(theirs, tuple) else theirs
            owner = "XGLUE's" if xglue.name == spec.name else f"XGLUE {xglue.name}'s"
            raise MtnbError(f"{where}: {key} must be {owner}, in its order: {shown}")
    extra = [lang for lang in spec.languages if lang not in xglue.languages]
    if extra:
        raise MtnbError(f"{where}: languages: XGLUE {xglue.name} has no {extra[0]!r} "
                        f"(it has {', '.join(xglue.languages)})")
