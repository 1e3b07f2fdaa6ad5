"""How large a grid's fine-tuning is: training tokens per task and an estimate of GPU-hours.

``mtnb run GRID --dry-run`` prints it, so that a SLURM allocation can be asked for before
anything runs. For each (model, task) of the grid, per fine-tuning seed:

    examples   the English training records (capped by ``max_train``)
    tokens     = examples × epochs × mean length, the mean length in the model's own sub-word
               tokens after truncation at ``max_length``, measured on up to 512 training records;
               with ``max_steps``, at most max_steps × batch_size examples are seen
    FLOPs      ≈ 6 × N × tokens: a forward pass costs about 2 N multiply-adds per token and the
               backward pass twice that, N the encoder's parameters outside its embedding tables
               (those are looked up, not multiplied; attention's own sequence-length term and the
               task head are left out)
    GPU-hours  = FLOPs × seeds / (peak × utilisation) / 3600, at the stated throughput
               ``GPU_PEAK_FLOPS`` × ``GPU_UTILISATION``

Probed models (``mode: probe``) and evaluation are left out: their forward passes cost a
small fraction of fine-tuning. Records and tokenizers are read from the local cache only; what is
not there is reported as unknown, never downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig

from mtnb.core.errors import MtnbError
from mtnb.core.hub_cache import find_cached
from mtnb.core.paths import project_root
from mtnb.data.inputs import encode, input_prefixes
from mtnb.data.loading import load_task
from mtnb.data.tasks import load_tasks
from mtnb.data.xglue import xglue_item
from mtnb.models.loading import encoder_class, load_tokenizer
from mtnb.models.registry import MODEL_TYPES, checkpoint_folder, load_registry
from mtnb.study.grids import notebook_parameters, notebook_path

GPU_NAME = "an A100"
GPU_PEAK_FLOPS = 312e12     # dense bf16 tensor-core peak of an NVIDIA A100, FLOP/s
GPU_UTILISATION = 0.30      # the fraction of peak a fine-tuning loop of base-size encoders reaches
LENGTH_SAMPLE = 512         # training records tokenized to measure the mean length


@dataclass
class TaskSize:
    """One (model, task) of a grid, per seed: ``examples`` seen per epoch, ``epochs``,
    ``mean_tokens`` per example, ``tokens`` in all, ``flops``; None where unknown."""

    model: str
    task: str
    examples: int | None
    epochs: float
    mean_tokens: float | None
    tokens: float | None
    flops: float | None


def non_embedding_parameters(folder) -> int:
    """N: the encoder's parameters outside its embedding tables (token, position, type), from
    the checkpoint's config alone (the module is built on the meta device: no memory, no weights)."""
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    family = MODEL_TYPES.get(config.model_type)
    if family is None:
        raise MtnbError(f"{folder}: architecture {config.model_type!r} is not one of the study's families")
    kwargs = {"add_pooling_layer": False} if family in ("bert", "xlm-roberta") else {}
    with torch.device("meta"):
        model = encoder_class(family)(config, **kwargs)
    return sum(p.numel() for name, p in model.named_parameters() if "embed" not in name)


def task_size(model: str, task: str, grid, registry, tasks) -> TaskSize:
    """The size of fine-tuning ``model`` on ``task`` in ``grid`` (see the module docstring)."""
    defaults = notebook_parameters(notebook_path("finetune"))
    params = {**defaults, **grid.parameters("finetune", model, task)}
    epochs = float(params["epochs"])
    spec = tasks[task]
    data = {"mini_root": grid.mini_root, "xglue_dir": params.get("xglue_dir")}
    examples = mean = flops = None
    try:
        if spec.source == "xglue" and not data["xglue_dir"]:   # the Hub export: the cache only, never the network
            cached = find_cached(xglue_item(task, "train"))
            if cached is None:
                raise MtnbError(f"{task} train not in the cache")
            data["xglue_parquet"] = cached
        records = load_task(spec, "en", "train", **data)
        examples = len(records) if params.get("max_train") is None else min(len(records), int(params["max_train"]))
        if params.get("max_steps") is not None:
            epochs = min(epochs, params["max_steps"] * params["batch_size"] / max(examples, 1))
    except (MtnbError, OSError):
        records = None
    try:
        folder = checkpoint_folder(registry[model], local_only=True)
        n = non_embedding_parameters(folder)
        if records is not None:
            sample = records.select(range(min(LENGTH_SAMPLE, len(records))))
            encoded = encode(sample, spec, load_tokenizer(folder), int(params["max_length"]),
                             input_prefixes(registry[model].inputs, spec.head))
            mean = sum(len(e["input_ids"]) for e in encoded) / max(len(encoded), 1)
    except (MtnbError, OSError):
        n = None
    tokens = examples * epochs * mean if examples is not None and mean is not None else None
    if tokens is not None and n is not None and params.get("mode", "finetune") == "finetune":
        flops = 6.0 * n * tokens
    return TaskSize(model, task, examples, epochs, mean, tokens, flops)


def grid_sizes(grid) -> list[TaskSize]:
    """``task_size`` of every (model, task) the grid fine-tunes (a model's replicas count once)."""
    registry = load_registry(project_root() / grid.registry if grid.registry else None)
    tasks = load_tasks()
    return [task_size(model, task, grid, registry, tasks) for task in grid.tasks for model in grid.models
            if model in registry]


def millions(n: float) -> str:
    """A count in millions (``235.2 M``), or whole below a million."""
    return f"{n / 1e6:,.1f} M" if n >= 1e6 else f"{n:,.0f}"


def sizing_lines(grid, sizes: list[TaskSize] | None = None) -> list[str]:
    """The dry run's sizing: one line per task (examples, epochs, tokens per example over the
    grid's models, training tokens summed over them), then the GPU-hours estimate."""
    sizes = grid_sizes(grid) if sizes is None else sizes
    lines = [f"sizing, per fine-tuning seed (training tokens = examples x epochs x mean length; "
             f"{len(grid.seeds)} seed(s)):"]
    for task in grid.tasks:
        rows = [s for s in sizes if s.task == task]
        known = [s for s in rows if s.tokens is not None]
        examples = next((s.examples for s in rows if s.examples is not None), None)
        if examples is None:
            lines.append(f"  {task:<12} training records not on this machine (mtnb data mini, or mtnb fetch "
                         f"{grid.name}): unknown")
            continue
        lengths = [s.mean_tokens for s in known]
        span = f"{min(lengths):.0f}-{max(lengths):.0f}" if lengths else "?"
        epochs = max(s.epochs for s in rows)
        lines.append(f"  {task:<12} {examples:>9,} examples x {epochs:.3g} epochs x {span} tokens = "
                     f"{millions(sum(s.tokens for s in known))} tokens over {len(known)} of {len(rows)} model(s)")
    flops = [s.flops for s in sizes if s.flops is not None]
    if flops:
        total = sum(flops) * len(grid.seeds)
        hours = total / (GPU_PEAK_FLOPS * GPU_UTILISATION) / 3600
        unknown = sum(s.flops is None for s in sizes)
        lines.append(f"fine-tuning compute: {total:.3g} FLOPs (6 x non-embedding parameters x tokens) = "
                     f"{hours:,.3g} GPU-hours on {GPU_NAME} at {GPU_UTILISATION:.0%} of its "
                     f"{GPU_PEAK_FLOPS / 1e12:.0f} bf16 TFLOP/s"
                     + (f"; {unknown} (model, task) pair(s) unknown or probed, not counted" if unknown else ""))
    return lines
