"""Grid files: which notebooks a study runs, over which models, tasks and seeds.

A grid is a YAML file, ``params/grids/<name>.yaml`` (``mtnb run smoke`` reads
params/grids/smoke.yaml; a path works too), read with ``yaml.safe_load``:

    name: smoke               # its runs go to runs/<name>/ (default: the file's name)
    registry: null            # a models.yaml other than params/models.yaml (relative to the project root)
    mini_root: null           # the mini corpus folder (default runs/data/mini), passed to finetune and cka
    models: [a, b]            # registry names
    tasks: [mini-topic, mini-spans, mini-rank]    # tasks of params/tasks.yaml
    seeds: [0, 1, 2]
    pretrain: {budget: mini,  # pretrain.ipynb parameters for the zoo members the grid uses
               seeds: [0, 1, 2]}   # optional: train each member once per seed (default: one, seed 0)
    finetune: {learning_rate: 1.0e-3, max_steps: 10,   # finetune.ipynb parameters
               per_task: {mini-spans: {probe_layer: 6}},   # ... per task, over the section's,
               per_model: {a: {mode: probe}}}          # ... and per model, over both
    probe: {max_train: 500, models: [a], tasks: [mini-topic]}   # optional: a second protocol, linear probes
                              # (finetune.ipynb with mode probe) beside the fine-tuning section's jobs
    zeroshot: {max_eval: 100, per_model: {a: {max_eval: 50}}}   # zeroshot.ipynb parameters (per_task, per_model too)
    layer_sweep: {model: a, tasks: [mini-spans], layers: [0, 2, 4]}   # layer_sweep.ipynb parameters:
                              # a probe per layer, to choose finetune.probe_layer; omit to skip
    cka: {n_samples: 20}      # cka.ipynb parameters (models default: the grid's); omit to skip CKA
    svd: {base: a}            # svd.ipynb parameters (base required; models default: the grid's
                              # others); a list of such mappings runs one SVD job each; omit to skip SVD
    slurm: {partition: gpu, gpus_per_node: 1, timeout_min: 120, array_parallelism: 16}
    book: {family: [a, b], base: a, title: ...,   # optional: the family that leads the book's
           note: ...}         # results page (mtnb book); family and base are models of the grid;
                              # note: a sentence the book's first page opens with (what the grid is)

Models of the mini zoo (``mtnb.pretraining.members.ZOO``) and of the e5 family (``mtnb.pretraining.members.E5_MEMBERS``)
are trained by the grid itself: a pretrain job per member the grid names anywhere (models, cka,
svd), and per member they start from (mini-mbart for its continued models, mini-xlmr for
mini-random's tokenizer), each writing its checkpoint into its own job folder. The runner then
writes ``runs/<name>/models.yaml``, the registry with those members pointing at their job
folders, and gives it to every notebook of the grid.

``pretrain.seeds`` (several) trains each such member once per seed, as replicas named
``<member>@p<seed>`` (``replica_name``) that are fine-tuned and evaluated like any model of the
grid (a replica of a continued zoo member starts from its base's replica of the same seed). The
member's own name stays registered for the first seed's checkpoint, which CKA, SVD and the
book's pretraining page read; the results tables pool the replicas back into their member
(``summary.pool_pretraining_seeds``).

Protocols. The ``finetune`` section's jobs are one protocol (fine-tuning, or probing where it
sets ``mode: probe``); a ``probe`` section adds linear probes as a second protocol, with
finetune.ipynb's parameters (``mode`` is probe). Either section may narrow what it covers with
``models`` and ``tasks`` (subsets of the grid's), ``seeds`` (instead of the grid's), and
``replica_seeds``: ``all`` (default: every replica of a member is trained with every seed) or
``paired`` (replica ``<member>@p<k>`` is trained with seed k alone, so that a member's runs
draw pretraining and fine-tuning seeds together while a model without replicas, the base, gets
every seed; the verdict's fine-tuning then costs one run per replica).

The verdict (``verdict``, optional) is the analysis plan, fixed before any result: the models
compared (``base``; ``control``, continued on masked LM; ``translation``, the members continued on
translation; ``alignment``, the member continued on sentence alignment), the comparisons they
imply (each member − base, each translation member − control, alignment − control, alignment −
each translation member: ``verdict_pairs``), ``tasks`` (default: the grid's), ``alpha`` (default
0.05), ``n_boot`` (default: enough draws that Holm's smallest attainable p stays ten times below
alpha), ``margin`` (points by which the base must beat the bag-of-subwords control on English
dev for a task to enter the verdict; default 10), ``probe_layers`` (a sentence saying how the
probes' layers were chosen) and ``pretraining_seeds`` (a sentence saying what a pretraining seed
changes), both printed with the plan. The book prints the plan above the verdict.

``models``, ``tasks`` and ``seeds`` are required lists. Each notebook section holds parameters of
that notebook's ``parameters`` cell (its defaults apply to the rest); the runner sets the others
itself: model, task, seeds (a finetune job trains every seed of the grid), registry, mini_root,
run_dir and output_dir. A parameter whose default
is a list takes a list (zeroshot languages, cka pairs and svd layers: a list or null). Write
floats with a dot (``1.0e-3``): YAML reads ``1e-3`` as a string.

``slurm`` (used only by ``mtnb run --slurm``) takes submitit's shared parameters (timeout_min,
gpus_per_node, cpus_per_task, mem_gb, nodes, tasks_per_node) and Slurm's own (partition,
account, qos, constraint, mem, ...); ``array_parallelism`` caps how many jobs are queued or
running at once.

``load_grid`` checks the whole file before anything runs, and raises MtnbError with one line
naming the file and the key: an unknown key, a model not in the registry, a task not in the task
table, a language that is not the task's, a parameter the notebook does not have, a scalar where
a list is needed.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from mtnb.core.errors import MtnbError
from mtnb.core.paths import params_dir, project_root
from mtnb.core.yamlfile import read_yaml
from mtnb.data.tasks import load_tasks
from mtnb.models.registry import load_registry
from mtnb.pretraining.members import BUDGETS, E5_BUDGETS, E5_MEMBERS, ZOO, training_order

KEYS = ("name", "registry", "mini_root", "models", "tasks", "seeds",
        "pretrain", "finetune", "probe", "zeroshot", "layer_sweep", "cka", "svd", "slurm", "book", "verdict")
PROTOCOLS = ("finetune", "probe")             # sections of finetune.ipynb jobs: the two protocols
PROTOCOL_KEYS = ("models", "tasks", "seeds", "replica_seeds")   # what a protocol section narrows
VERDICT_KEYS = ("base", "control", "translation", "alignment", "tasks", "alpha", "n_boot", "margin",
                "probe_layers", "pretraining_seeds")
KINDS = ("pretrain", "finetune", "zeroshot", "layer_sweep", "cka", "svd", "verdict")   # notebooks/<kind>.ipynb
OPTIONAL = ("layer_sweep", "cka", "svd", "verdict")   # run only when the grid has the section
# the parameters the runner sets in each notebook (from the grid's top level, or job folders)
RUNNER_SET = {
    "pretrain": ("member", "corpus", "base_dir", "output_dir"),
    "finetune": ("model", "task", "seeds", "registry", "mini_root", "output_dir"),
    "zeroshot": ("run_dir", "output_dir"),
    "layer_sweep": ("registry", "mini_root", "output_dir"),
    "cka": ("registry", "mini_root", "output_dir"),
    "svd": ("registry", "output_dir"),
    "verdict": ("zeroshot_dirs", "output_dir"),
}
# list parameters whose notebook default is None: a list or null
NULLABLE_LISTS = {"zeroshot": ("languages",), "cka": ("pairs",), "svd": ("layers",)}
FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?\d+[eE][-+]?\d+$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Grid:
    """A checked grid file. ``sections`` maps each notebook kind the grid runs (pretrain,
    finetune and zeroshot always, cka and svd when present) to its notebook parameters, defaults
    filled in for cka and svd models; ``sections["svd"]`` is a list, one mapping per SVD job."""

    path: Path
    name: str
    registry: str | None
    mini_root: str | None
    models: list[str]
    tasks: list[str]
    seeds: list[int]
    sections: dict[str, dict] = field(default_factory=dict)
    slurm: dict = field(default_factory=dict)
    task_languages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    task_sources: dict[str, str] = field(default_factory=dict)   # {task of the table: its source (mini, ud, xglue)}
    book: dict = field(default_factory=dict)
    per_model: dict[str, dict] = field(default_factory=dict)  # {finetune|probe|zeroshot: {model: parameters}}
    per_task: dict[str, dict] = field(default_factory=dict)   # {finetune|probe|zeroshot: {task: parameters}}
    protocols: dict[str, dict] = field(default_factory=dict)  # {finetune|probe: {models, tasks, seeds, replica_seeds}}
    verdict: dict = field(default_factory=dict)               # the analysis plan (VERDICT_KEYS), or {}
    zoo_members: list[str] = field(default_factory=list)      # trained by the grid, bases first
    pretrain_seeds: list[int] = field(default_factory=lambda: [0])  # each zoo member trained once per seed

    def replicas(self, model: str) -> list[str]:
        """The registry names ``model`` is fine-tuned under: itself, or, when the grid trains it
        with several pretraining seeds, one replica per seed (``replica_name``)."""
        return [name for name, _ in self.replica_seeds(model)]

    def replica_seeds(self, model: str) -> list[tuple[str, int | None]]:
        """(registry name, pretraining seed) of each replica of ``model``; the seed is None for a
        model the grid does not train with several pretraining seeds."""
        if model not in self.zoo_members or len(self.pretrain_seeds) < 2:
            return [(model, None)]
        return [(replica_name(model, seed), seed) for seed in self.pretrain_seeds]

    def training_seeds(self, protocol: str, pretrain_seed: int | None) -> list[int]:
        """The fine-tuning (probe) seeds of one replica's job under ``protocol``: the protocol's
        seeds, or with ``replica_seeds: paired`` the replica's own pretraining seed alone."""
        spec = self.protocols[protocol]
        if spec["replica_seeds"] == "paired" and pretrain_seed is not None:
            return [pretrain_seed]
        return list(spec["seeds"])

    def parameters(self, kind: str, model: str, task: str) -> dict:
        """The finetune, probe or zeroshot parameters of ``model``'s job on ``task``: the
        section's, then ``per_task``'s for the task over them, then ``per_model``'s for the model
        over both (a probe job's ``mode`` is probe)."""
        params = {**self.sections[kind], **self.per_task[kind].get(task, {}), **self.per_model[kind].get(model, {})}
        return {**params, "mode": "probe"} if kind == "probe" else params

    @property
    def runs_dir(self) -> Path:
        """``runs/<name>/`` under the project root."""
        return project_root() / "runs" / self.name


def grid_path(name_or_path: str | Path) -> Path:
    """A grid name (``smoke`` -> params/grids/smoke.yaml) or a path -> the grid file."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") or "/" in text or path.is_file():
        if not path.is_file():
            raise MtnbError(f"{text}: grid file not found; give a grid name or the path of a YAML file")
        return path
    path = params_dir() / "grids" / f"{text}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise MtnbError(f"grid {text!r}: no {shown(path)} (known grids: {', '.join(known) or 'none'}); "
                        "give a grid name or a path")
    return path


def shown(path: Path) -> str:
    """``path`` relative to the project root when it lies inside it, for messages."""
    try:
        return str(Path(path).absolute().relative_to(project_root()))
    except ValueError:
        return str(path)


def notebook_path(kind: str) -> Path:
    """``notebooks/<kind>.ipynb`` of the current project."""
    return project_root() / "notebooks" / f"{kind}.ipynb"


def notebook_parameters(path: Path) -> dict[str, object]:
    """The names and default values of the notebook's ``parameters`` cell, in order (a default
    that is not a Python literal reads as None).

    Read as plain JSON and parsed with ``ast``: nbformat would cost seconds of imports here.
    """
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    cell = next((c for c in cells if c["cell_type"] == "code"
                 and "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise MtnbError(f"{shown(path)}: no code cell tagged 'parameters'; tag the first code cell")
    source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
    params = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    params[target.id] = ast.literal_eval(node.value) if node.value is not None else None
                except ValueError:
                    params[target.id] = None
    return params


def load_grid(path: str | Path) -> Grid:
    """Read and check a grid file (a name or a path; see the module docstring for the format)."""
    path = grid_path(path)
    where = shown(path)
    doc = _read_yaml(path, where)
    unknown = [str(key) for key in doc if key not in KEYS]
    if unknown:
        raise MtnbError(f"{where}: {unknown[0]}: unknown key; allowed keys are {', '.join(KEYS)}")
    for key in ("models", "tasks", "seeds"):
        if key not in doc:
            raise MtnbError(f"{where}: {key}: missing; give a list, e.g. {key}: [...]")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not NAME.match(name):
        raise MtnbError(f"{where}: name: {name!r} must be a folder name (letters, digits, . _ -)")

    registry_file = _existing(where, "registry", doc.get("registry"), want_dir=False)
    specs = load_registry(registry_file)
    registry_label = shown(registry_file) if registry_file else "params/models.yaml"
    _existing(where, "mini_root", doc.get("mini_root"), want_dir=True)
    tasks = load_tasks()

    models = _names(where, "models", doc["models"])
    _known(where, "models", models, specs, registry_label)
    task_names = _names(where, "tasks", doc["tasks"])
    _known(where, "tasks", task_names, tasks, "params/tasks.yaml")
    seeds = _seeds(where, "seeds", doc["seeds"])

    per_model, per_task, protocols = {}, {}, {}
    for kind in ("finetune", "probe", "zeroshot"):
        if kind == "probe" and "probe" not in doc:
            continue
        section = dict(doc.get(kind) or {})
        notebook_kind = "finetune" if kind == "probe" else kind
        if kind in PROTOCOLS:
            protocols[kind] = _protocol(where, kind, section, models, task_names, seeds)
            if kind == "probe" and section.get("mode", "probe") != "probe":
                raise MtnbError(f"{where}: probe.mode: {section['mode']!r}; the probe section's jobs are probes "
                                "(put fine-tuning in the finetune section)")
        per_model[kind] = _overrides(where, notebook_kind, "per_model", section.pop("per_model", None), models,
                                     label=kind)
        per_task[kind] = _overrides(where, notebook_kind, "per_task", section.pop("per_task", None), task_names,
                                    label=kind)
        doc = {**doc, kind: section}
    pretrain = dict(doc.get("pretrain") or {})
    if "seed" in pretrain and "seeds" in pretrain:
        raise MtnbError(f"{where}: pretrain.seed: give either seed or seeds, not both")
    pretrain_seeds = _seeds(where, "pretrain.seeds", pretrain.pop("seeds", [pretrain.pop("seed", 0)]))
    doc = {**doc, "pretrain": pretrain}
    sections = {kind: _section(where, kind, doc.get(kind)) for kind in KINDS
                if kind not in ("svd", "verdict") and (kind not in OPTIONAL or kind in doc)}
    if "probe" in doc:
        sections["probe"] = _section(where, "finetune", doc["probe"], label="probe")
    _check_budget(where, sections["pretrain"].get("budget", "mini"))
    for lang in sections["zeroshot"].get("languages") or []:
        for task in task_names:
            if lang not in tasks[task].languages:
                raise MtnbError(f"{where}: zeroshot.languages: {lang!r} is not a language of task {task} "
                                f"(it has: {', '.join(tasks[task].languages)})")
    if "layer_sweep" in sections:
        sweep = sections["layer_sweep"]
        if "model" not in sweep:
            raise MtnbError(f"{where}: layer_sweep.model: missing; name the model whose layers are probed")
        _known(where, "layer_sweep.model", [sweep["model"]], specs, registry_label)
        sweep.setdefault("tasks", list(task_names))
        _known(where, "layer_sweep.tasks", _names(where, "layer_sweep.tasks", sweep["tasks"]),
               dict.fromkeys(task_names), "the grid's tasks")
    if "cka" in sections:
        sections["cka"].setdefault("models", list(models))
        _known(where, "cka.models", _names(where, "cka.models", sections["cka"]["models"]), specs, registry_label)
    if "svd" in doc:
        items = doc["svd"] if isinstance(doc["svd"], list) else [doc["svd"]]
        sections["svd"] = [_section(where, "svd", item) for item in items]
        for i, svd in enumerate(sections["svd"]):
            key = "svd" if len(items) == 1 else f"svd[{i}]"
            if "base" not in svd:
                raise MtnbError(f"{where}: {key}.base: missing; name the model the others are compared with")
            _known(where, f"{key}.base", [svd["base"]], specs, registry_label)
            svd.setdefault("models", [m for m in models if m != svd["base"]])
            _known(where, f"{key}.models", _names(where, f"{key}.models", svd["models"]), specs, registry_label)
    return Grid(path=path, name=name, registry=doc.get("registry"), mini_root=doc.get("mini_root"),
                models=models, tasks=task_names, seeds=seeds, sections=sections,
                slurm=_slurm(where, doc.get("slurm")),
                task_languages={t: tasks[t].languages for t in task_names},
                task_sources={t: spec.source for t, spec in tasks.items()},
                book=_book(where, doc.get("book"), models), per_model=per_model, per_task=per_task,
                zoo_members=zoo_members(named_models(models, sections)), pretrain_seeds=pretrain_seeds,
                protocols=protocols, verdict=_verdict(where, doc.get("verdict"), models, task_names))


def replica_name(member: str, seed: int) -> str:
    """The registry name of ``member`` trained with pretraining seed ``seed`` (not the first)."""
    return f"{member}@p{seed}"


def _seeds(where: str, key: str, value) -> list[int]:
    """A list of distinct integer seeds."""
    seeds = _list(where, key, value, example="[0, 1, 2]")
    if not seeds:
        raise MtnbError(f"{where}: {key}: empty; give at least one seed, e.g. [0]")
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise MtnbError(f"{where}: {key}: {seed!r} is not an integer")
    if len(set(seeds)) != len(seeds):
        raise MtnbError(f"{where}: {key}: a seed is listed twice")
    return seeds


def named_models(models: list[str], sections: dict) -> list[str]:
    """Every model the grid names, each once, in order of first mention: its models, the layer
    sweep's model, then CKA's and SVD's others."""
    named = list(models)
    svd = [name for item in sections.get("svd", []) for name in [item["base"], *item["models"]]]
    sweep = [sections["layer_sweep"]["model"]] if "layer_sweep" in sections else []
    for name in [*sweep, *sections.get("cka", {}).get("models", []), *svd]:
        if name not in named:
            named.append(name)
    return named


def zoo_members(names: list[str]) -> list[str]:
    """The members of the mini zoo and the e5 family among ``names``, with the members they
    start from, each after its base; the e5 family last, in ``mtnb.pretraining.members.training_order``."""

    ordered = []

    def add(name: str) -> None:
        if name in ordered or (name not in ZOO and name not in E5_MEMBERS):
            return
        if name in ZOO and ZOO[name].base is not None:
            add(ZOO[name].base)
        ordered.append(name)

    for name in names:
        add(name)
    family = [m for m in ordered if m in E5_MEMBERS]
    return [m for m in ordered if m not in E5_MEMBERS] + training_order(family)


def _check_budget(where: str, budget) -> None:
    """pretrain.budget names a budget both the zoo and the e5 family have."""

    names = [b for b in BUDGETS if b in E5_BUDGETS]
    if budget not in names:
        raise MtnbError(f"{where}: pretrain.budget: {budget!r} is not a budget; use one of {', '.join(names)}")


def _overrides(where: str, kind: str, key: str, value, names: list[str], label: str | None = None) -> dict[str, dict]:
    """<kind>.per_model or <kind>.per_task: {model (task) of the grid: <kind>.ipynb parameters
    for that model's (task's) jobs} (``label``: the section's name, when not ``kind``)."""
    what = "model" if key == "per_model" else "task"
    label = label or kind
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MtnbError(f"{where}: {label}.{key}: expected a mapping of {what} -> parameters, got {value!r}")
    out = {}
    for name, params in value.items():
        if name not in names:
            raise MtnbError(f"{where}: {label}.{key}.{name}: not a {what} of this grid ({what}s: {', '.join(names)})")
        out[name] = _section(where, kind, params, label=f"{label}.{key}.{name}")
    return out


def _protocol(where: str, kind: str, section: dict, models: list[str], tasks: list[str], seeds: list[int]) -> dict:
    """What a protocol section covers (its ``PROTOCOL_KEYS``, popped from ``section``): models,
    tasks and seeds (default: the grid's) and replica_seeds (all | paired)."""
    spec = {"models": _names(where, f"{kind}.models", section.pop("models", list(models))),
            "tasks": _names(where, f"{kind}.tasks", section.pop("tasks", list(tasks))),
            "seeds": _seeds(where, f"{kind}.seeds", section.pop("seeds", list(seeds))),
            "replica_seeds": section.pop("replica_seeds", "all")}
    _known(where, f"{kind}.models", spec["models"], dict.fromkeys(models), "the grid's models")
    _known(where, f"{kind}.tasks", spec["tasks"], dict.fromkeys(tasks), "the grid's tasks")
    if spec["replica_seeds"] not in ("all", "paired"):
        raise MtnbError(f"{where}: {kind}.replica_seeds: {spec['replica_seeds']!r}; use all or paired")
    return spec


def _verdict(where: str, value, models: list[str], tasks: list[str]) -> dict:
    """The verdict section, the analysis plan (``VERDICT_KEYS``; see the module docstring),
    checked and with its defaults; {} without one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MtnbError(f"{where}: verdict: expected a mapping with base, control, translation, alignment, ...")
    for key in value:
        if key not in VERDICT_KEYS:
            raise MtnbError(f"{where}: verdict.{key}: unknown key; allowed keys are {', '.join(VERDICT_KEYS)}")
    plan = {"tasks": list(tasks), "alpha": 0.05, "n_boot": None, "margin": 10.0, "translation": [],
            "control": None, "alignment": None, "probe_layers": "", "pretraining_seeds": "", **value}
    if "base" not in value:
        raise MtnbError(f"{where}: verdict.base: missing; name the model the members were continued from")
    named = [plan["base"], *([plan["control"]] if plan["control"] else []),
             *_names(where, "verdict.translation", plan["translation"]),
             *([plan["alignment"]] if plan["alignment"] else [])]
    _known(where, "verdict", named, dict.fromkeys(models), "the grid's models")
    _known(where, "verdict.tasks", _names(where, "verdict.tasks", plan["tasks"]), dict.fromkeys(tasks), "the grid's tasks")
    if not (isinstance(plan["alpha"], float) and 0 < plan["alpha"] < 1):
        raise MtnbError(f"{where}: verdict.alpha: {plan['alpha']!r}; give a level such as 0.05")
    if plan["n_boot"] is not None and not (isinstance(plan["n_boot"], int) and plan["n_boot"] >= 10_000):
        raise MtnbError(f"{where}: verdict.n_boot: {plan['n_boot']!r}; give at least 10000 draws, or null for enough")
    if not isinstance(plan["margin"], (int, float)) or isinstance(plan["margin"], bool):
        raise MtnbError(f"{where}: verdict.margin: {plan['margin']!r}; give points, e.g. 10.0")
    return plan


def verdict_pairs(plan: dict) -> list[tuple[str, str, str]]:
    """The comparisons an analysis plan implies, as (a, b, what a - b tests): each continued
    member − the base; each translation member − the masked-LM control; alignment − the control;
    alignment − each translation member."""
    base, control, alignment, translation = plan["base"], plan.get("control"), plan.get("alignment"), plan["translation"]
    members = [m for m in [control, *translation, alignment] if m]
    pairs = [(m, base, "member − base") for m in members]
    if control:
        pairs += [(m, control, "translation − masked LM") for m in translation]
        if alignment:
            pairs.append((alignment, control, "alignment − masked LM"))
    if alignment:
        pairs += [(alignment, m, "alignment − translation") for m in translation]
    return pairs


def _read_yaml(path: Path, where: str) -> dict:
    """The grid file's top-level mapping."""
    doc = read_yaml(path, where)
    if not isinstance(doc, dict):
        raise MtnbError(f"{where}: expected a mapping with models, tasks, seeds and notebook sections")
    return doc


def _existing(where: str, key: str, value, want_dir: bool) -> Path | None:
    """The file (or folder) ``value`` names, relative to the project root; None when null."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MtnbError(f"{where}: {key}: expected a path, got {value!r}")
    path = project_root() / Path(value).expanduser()
    if not (path.is_dir() if want_dir else path.is_file()):
        raise MtnbError(f"{where}: {key}: no such {'folder' if want_dir else 'file'} {path}; "
                        "fix the path (relative paths start at the project root)")
    return path


def _list(where: str, key: str, value, example: str = "[a, b]") -> list:
    """``value`` when it is a list; else the one-line error."""
    if not isinstance(value, list):
        raise MtnbError(f"{where}: {key}: expected a list, e.g. {example}; got {value!r}")
    return value


def _names(where: str, key: str, value) -> list[str]:
    """A list of distinct names."""
    names = _list(where, key, value)
    for name in names:
        if not isinstance(name, str):
            raise MtnbError(f"{where}: {key}: {name!r} is not a name; quote it")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise MtnbError(f"{where}: {key}: {twice!r} is listed twice")
    return names


def _known(where: str, key: str, names: list[str], known: dict, label: str) -> None:
    """Every name is a key of ``known`` (the registry or the task table, called ``label``)."""
    for name in names:
        if name not in known:
            raise MtnbError(f"{where}: {key}: {name!r} is not in {label} (it has: {', '.join(known)})")


def _section(where: str, kind: str, value, label: str | None = None) -> dict:
    """A notebook section: parameters of notebooks/<kind>.ipynb that the runner does not set
    (``label``: the section's name in messages, default ``kind``)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MtnbError(f"{where}: {label or kind}: expected a mapping of {kind}.ipynb parameters, got {value!r}")
    notebook = notebook_path(kind)
    defaults = notebook_parameters(notebook)
    settable = [p for p in defaults if p not in RUNNER_SET[kind]]
    label = label or kind
    for key, item in value.items():
        if key in RUNNER_SET[kind]:
            raise MtnbError(f"{where}: {label}.{key}: set by the runner (from the grid's models, tasks, "
                            "seeds, registry, mini_root and job folders); remove it")
        if key not in defaults:
            raise MtnbError(f"{where}: {label}.{key}: not a parameter of {shown(notebook)} "
                            f"(it has: {', '.join(settable)})")
        wants_list = isinstance(defaults[key], list) or key in NULLABLE_LISTS.get(kind, ())
        if wants_list and not isinstance(item, list) and not (item is None and key in NULLABLE_LISTS.get(kind, ())):
            raise MtnbError(f"{where}: {label}.{key}: expected a list, e.g. [a, b]; got {item!r}")
        if isinstance(item, str) and FLOAT_WITHOUT_DOT.match(item):
            raise MtnbError(f"{where}: {label}.{key}: {item!r} is a string to YAML; write the number "
                            f"with a dot, e.g. {item.lower().replace('e', '.0e', 1)}")
    return dict(value)


def _book(where: str, value, models: list[str]) -> dict:
    """The book section: ``family`` (models of the grid), its ``base`` (one of them), ``title``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MtnbError(f"{where}: book: expected a mapping with family, base and title, got {value!r}")
    for key in value:
        if key not in ("family", "base", "title", "note"):
            raise MtnbError(f"{where}: book.{key}: unknown key; allowed keys are family, base, title, note")
    family = _names(where, "book.family", value.get("family", []))
    base = value.get("base")
    if family and base is None:
        raise MtnbError(f"{where}: book.base: missing; name the model of book.family the others continue")
    for key, names in (("book.family", family), ("book.base", [base] if base is not None else [])):
        for name in names:
            if name not in models:
                raise MtnbError(f"{where}: {key}: {name!r} is not a model of this grid (models: {', '.join(models)})")
    if family and base not in family:
        raise MtnbError(f"{where}: book.base: {base!r} is not in book.family ({', '.join(family)})")
    for key in ("title", "note"):
        if not isinstance(value.get(key, ""), str):
            raise MtnbError(f"{where}: book.{key}: expected a string, got {value[key]!r}")
    return dict(value)


def _slurm(where: str, value) -> dict:
    """The slurm section: submitit's shared parameters and Slurm's own."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MtnbError(f"{where}: slurm: expected a mapping of submitit parameters, got {value!r}")

    allowed = sorted(submitit.AutoExecutor._valid_parameters() | submitit.SlurmExecutor._valid_parameters())
    for key in value:
        if key not in allowed:
            raise MtnbError(f"{where}: slurm.{key}: not a submitit parameter (allowed: {', '.join(allowed)})")
    return dict(value)
