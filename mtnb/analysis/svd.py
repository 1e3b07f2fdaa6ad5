"""Singular values of the encoder's weight matrices, as in the paper's Tables 2 and 5.

For every encoder layer ℓ and each of six matrices (query, key, value, attention output, FC1
"up", FC2 "down"), the singular values σ₁ ≥ σ₂ ≥ ... of the weight matrix W. The paper reports

    ‖σ‖₂ = sqrt(Σᵢ σᵢ²) = ‖W‖_F          (the L2 norm of the singular values: W's Frobenius norm)
    d    = ‖σ_model − σ_base‖₂            (the L2 distance between the two sorted σ vectors)

Tensors are read one at a time from the checkpoint file (``mtnb.models.loading.TensorReader``:
safetensors, or a PyTorch pickle read with ``weights_only=True``), so no model is ever built and at most one matrix per model is in
memory; the singular values are computed in float64.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mtnb.core.errors import MtnbError
from mtnb.models.loading import TensorReader, checkpoint_index

MATRICES = ("q", "k", "v", "out", "fc1", "fc2")
# parameter-name suffix after "encoder.layer(s).<i>." -> matrix kind, per naming scheme
BERT_NAMES = {  # bert, xlm-roberta
    "attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
    "attention.output.dense": "out", "intermediate.dense": "fc1", "output.dense": "fc2",
}
BART_NAMES = {  # mbart, m2m100 (NLLB)
    "self_attn.q_proj": "q", "self_attn.k_proj": "k", "self_attn.v_proj": "v",
    "self_attn.out_proj": "out", "fc1": "fc1", "fc2": "fc2",
}
_PATTERNS = [
    (re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(" + "|".join(map(re.escape, BERT_NAMES)) + r")\.weight$"), BERT_NAMES),
    (re.compile(r"(?:^|\.)encoder\.layers\.(\d+)\.(" + "|".join(map(re.escape, BART_NAMES)) + r")\.weight$"), BART_NAMES),
]


def matrix_name(key: str) -> tuple[int, str] | None:
    """``(layer, kind)`` for an encoder weight-matrix tensor name, None for any other tensor.

    >>> matrix_name("roberta.encoder.layer.3.attention.self.query.weight")
    (3, 'q')
    >>> matrix_name("model.encoder.layers.11.fc2.weight")
    (11, 'fc2')
    """
    for pattern, names in _PATTERNS:
        m = pattern.search(key)
        if m:
            return int(m.group(1)), names[m.group(2)]
    return None


def encoder_matrices(folder: str | Path) -> dict[tuple[int, str], str]:
    """``{(layer, kind): tensor name}`` of the encoder weight matrices in a checkpoint folder.

    Raises MtnbError when the checkpoint has none of the known parameter names, or when a layer
    lacks one of the six matrices.
    """
    found = {}
    for key in checkpoint_index(Path(folder)):
        where = matrix_name(key)
        if where is not None:
            found[where] = key
    if not found:
        raise MtnbError(f"{folder}: no encoder weight matrices with BERT/XLM-R or mBART/M2M100 names; "
                        "SVD supports the families bert, xlm-roberta, mbart and m2m100")
    layers = sorted({layer for layer, _ in found})
    for layer in layers:
        missing = [k for k in MATRICES if (layer, k) not in found]
        if missing:
            raise MtnbError(f"{folder}: layer {layer} lacks the matrices {missing}; is the checkpoint complete?")
    return found


def singular_values(folder: str | Path, layers: list[int] | None = None) -> dict[tuple[int, str], np.ndarray]:
    """``{(layer, kind): σ}``: singular values (descending, float64) of each encoder matrix.

    ``layers`` restricts to some layers (0-based; default all). One matrix in memory at a time.
    """
    names = encoder_matrices(folder)
    if layers is not None:
        available = sorted({layer for layer, _ in names})
        bad = [layer for layer in layers if layer not in available]
        if bad:
            raise MtnbError(f"{folder}: no encoder layer {bad[0]}; layers run 0..{available[-1]}")
        names = {key: name for key, name in names.items() if key[0] in layers}
    index = checkpoint_index(Path(folder))
    out = {}
    with TensorReader(Path(folder)) as reader:
        for key in sorted(names):
            weight = reader.read(index[names[key]], names[key]).to(torch.float64)
            out[key] = torch.linalg.svdvals(weight).numpy()
            del weight
    return out


def sigma_norm(sigma: np.ndarray) -> float:
    """‖σ‖₂ = sqrt(Σ σᵢ²), which equals the Frobenius norm of the matrix."""
    return float(np.sqrt(np.sum(np.square(sigma, dtype=np.float64))))


def sigma_distance(sigma: np.ndarray, sigma_base: np.ndarray) -> float:
    """d = ‖σ − σ_base‖₂ for two descending σ vectors of the same length (same matrix shape)."""
    if sigma.shape != sigma_base.shape:
        raise MtnbError(f"singular-value vectors of different lengths ({sigma.shape[0]} vs {sigma_base.shape[0]}): "
                        "compare models of the same architecture")
    return float(np.linalg.norm(sigma - sigma_base))


def svd_table(base: tuple[str, str | Path], models: list[tuple[str, str | Path]],
              layers: list[int] | None = None, progress: bool = True):
    """The paper's Table 5 layout as a tidy DataFrame.

    ``base`` and each of ``models`` are ``(name, checkpoint folder)``. Returns one row per
    (layer, model, matrix) with ``sigma_norm`` (‖σ‖₂) and ``distance`` (d to the base; 0 for the
    base itself). The base's σ stay in memory (one vector per matrix), each compared model's
    matrices are read one at a time: at most two models' weights are ever needed at once.
    """
    base_name, base_folder = base
    base_sigma = singular_values(base_folder, layers)
    rows = [dict(layer=l, model=base_name, matrix=k, sigma_norm=sigma_norm(s), distance=0.0)
            for (l, k), s in base_sigma.items()]
    for name, folder in tqdm(models, desc="SVD", disable=not progress):
        sigma = singular_values(folder, layers)
        if set(sigma) != set(base_sigma):
            raise MtnbError(f"model {name!r} has other layers or matrices than base {base_name!r}: "
                            "compare models of the same architecture")
        rows += [dict(layer=l, model=name, matrix=k, sigma_norm=sigma_norm(s),
                      distance=sigma_distance(s, base_sigma[(l, k)])) for (l, k), s in sigma.items()]
    table = pd.DataFrame(rows)
    order = [base_name] + [name for name, _ in models]
    table["model"] = pd.Categorical(table["model"], categories=order, ordered=True)
    table["matrix"] = pd.Categorical(table["matrix"], categories=list(MATRICES), ordered=True)
    return table.sort_values(["layer", "model", "matrix"]).reset_index(drop=True)


def table5_layout(table, with_paper=None):
    """The paper's Table 5 layout: rows (layer, model), columns (matrix, ‖σ‖ / d), from a tidy
    ``svd_table``. ``with_paper``: a tidy table of published values (``mtnb.study.paper.svd_tables``)
    to put beside ours, as extra columns ``(matrix, ‖σ‖ paper)`` and ``(matrix, d paper)``."""
    wide = table.pivot_table(index=["layer", "model"], columns="matrix", values=["sigma_norm", "distance"],
                             observed=True, sort=False)
    columns = []
    for kind in MATRICES:
        columns += [("sigma_norm", kind), ("distance", kind)]
    wide = wide[columns]
    wide.columns = pd.MultiIndex.from_tuples([(kind, "‖σ‖" if what == "sigma_norm" else "d") for what, kind in columns])
    if with_paper is not None:
        paper = with_paper.pivot_table(index=["layer", "model"], columns="matrix",
                                       values=["sigma_norm", "distance"], observed=True)
        for kind in MATRICES:
            wide[(kind, "‖σ‖ paper")] = paper[("sigma_norm", kind)].reindex(wide.index)
            wide[(kind, "d paper")] = paper[("distance", kind)].reindex(wide.index)
        order = [(k, c) for k in MATRICES for c in ("‖σ‖", "‖σ‖ paper", "d", "d paper")]
        wide = wide[order]
    return wide.round(2)


def plot_svd(table, with_paper=None):
    """Six panels (k, q, v, out, fc1, fc2): ‖σ‖₂ per layer for each model (solid), and the
    paper's values when given (dashed, same colour)."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True)
    models = list(dict.fromkeys(table["model"].astype(str)))
    colours = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, kind in zip(axes.flat, MATRICES):
        for model in models:
            rows = table[(table["model"].astype(str) == model) & (table["matrix"].astype(str) == kind)]
            ax.plot(rows["layer"], rows["sigma_norm"], marker="o", ms=3, color=colours[model], label=model)
            if with_paper is not None:
                ref = with_paper[(with_paper["model"] == model) & (with_paper["matrix"] == kind)]
                if not ref.empty:
                    ax.plot(ref["layer"], ref["sigma_norm"], ls="--", color=colours[model], alpha=0.7,
                            label=f"{model} (paper)")
        ax.set_title({"fc1": "fc1 (FC up)", "fc2": "fc2 (FC down)"}.get(kind, kind))
        ax.set_xlabel("layer")
        ax.set_ylabel("‖σ‖₂")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
