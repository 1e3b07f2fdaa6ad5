"""SVD of encoder weight matrices: names, norms, distances, the table."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from mtnb.analysis.svd import (MATRICES, encoder_matrices, matrix_name, sigma_distance, sigma_norm,
                               singular_values, svd_table)
from mtnb.core.errors import MtnbError

SHAPES = {  # kind -> (out, in) at the paper's shapes
    "bert": {"q": (768, 768), "k": (768, 768), "v": (768, 768), "out": (768, 768),
             "fc1": (3072, 768), "fc2": (768, 3072)},
    "mbart": {"q": (1024, 1024), "k": (1024, 1024), "v": (1024, 1024), "out": (1024, 1024),
              "fc1": (4096, 1024), "fc2": (1024, 4096)},
}
SHAPES["xlm-roberta"] = SHAPES["bert"]
SHAPES["m2m100"] = SHAPES["mbart"]


def reference_tensor(folder, key: str):
    """Tensor ``key`` of a checkpoint folder read by the safetensors library itself (an
    independent reader: the code under test reads through mtnb.models.loading.TensorReader)."""
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    name = json.loads(index.read_text())["weight_map"][key] if index.is_file() else "model.safetensors"
    with safe_open(folder / name, "pt") as f:
        return f.get_tensor(key)


@pytest.mark.parametrize("family", ["bert", "xlm-roberta", "mbart", "m2m100"])
def test_both_naming_schemes_find_six_matrices_by_twelve_layers(paper_checkpoints, family):
    found = encoder_matrices(paper_checkpoints[family])
    assert sorted(found) == [(layer, k) for layer in range(12) for k in sorted(MATRICES)] or \
        set(found) == {(layer, k) for layer in range(12) for k in MATRICES}
    assert len(found) == 72
    for (layer, kind), key in found.items():
        assert "decoder" not in key
        assert tuple(reference_tensor(paper_checkpoints[family], key).shape) == SHAPES[family][kind], key


def test_matrix_names():
    assert matrix_name("bert.encoder.layer.0.attention.output.dense.weight") == (0, "out")
    assert matrix_name("bert.encoder.layer.0.output.dense.weight") == (0, "fc2")
    assert matrix_name("bert.encoder.layer.0.output.dense.bias") is None
    assert matrix_name("model.decoder.layers.0.fc1.weight") is None
    assert matrix_name("model.encoder.layers.5.self_attn.k_proj.weight") == (5, "k")


def test_norm_is_frobenius_and_distance_to_self_is_zero(paper_checkpoints):
    folder = paper_checkpoints["bert"]
    sigma = singular_values(folder, layers=[11])
    names = encoder_matrices(folder)
    for key, s in sigma.items():
        w = reference_tensor(folder, names[key]).double()
        assert sigma_norm(s) == pytest.approx(torch.linalg.matrix_norm(w, "fro").item(), rel=1e-10)
        assert np.all(np.diff(s) <= 0), "descending"
    table = svd_table(("bert", folder), [("same", folder)], layers=[11], progress=False)
    assert len(table) == 12
    assert (table["distance"] == 0).all()


def test_known_singular_values_come_back(tmp_path):
    """A matrix built as U diag(s) Vᵀ gives s back, and d between two such is ‖s1 − s2‖."""
    rng = np.random.default_rng(0)

    def with_singular_values(s, shape):
        u, _ = np.linalg.qr(rng.normal(size=(shape[0], shape[0])))
        v, _ = np.linalg.qr(rng.normal(size=(shape[1], shape[1])))
        m = np.zeros(shape)
        m[: len(s), : len(s)] = np.diag(s)
        return u @ m @ v.T

    def write(folder, scale):
        tensors = {}
        for kind, name in [("q", "query"), ("k", "key"), ("v", "value")]:
            tensors[f"encoder.layer.0.attention.self.{name}.weight"] = with_singular_values(scale * np.arange(8, 0, -1.0), (8, 8))
        tensors["encoder.layer.0.attention.output.dense.weight"] = with_singular_values(scale * np.ones(8), (8, 8))
        tensors["encoder.layer.0.intermediate.dense.weight"] = with_singular_values(scale * np.array([5, 4, 3, 2, 1, 1, 1, .5]), (16, 8))
        tensors["encoder.layer.0.output.dense.weight"] = with_singular_values(scale * np.array([3.0, 2, 1, 1, 1, 1, 1, 1]), (8, 16))
        folder.mkdir()
        save_file({k: torch.tensor(v, dtype=torch.float64) for k, v in tensors.items()}, folder / "model.safetensors")
        return folder

    a, b = write(tmp_path / "a", 1.0), write(tmp_path / "b", 2.0)
    sigma = singular_values(a)
    np.testing.assert_allclose(sigma[(0, "q")], np.arange(8, 0, -1.0), atol=1e-10)
    np.testing.assert_allclose(sigma[(0, "fc1")], [5, 4, 3, 2, 1, 1, 1, .5], atol=1e-10)
    table = svd_table(("a", a), [("b", b)], progress=False).set_index(["model", "matrix"])
    expected_q = np.linalg.norm(np.arange(8, 0, -1.0))
    assert table.loc[("a", "q"), "sigma_norm"] == pytest.approx(expected_q)
    assert table.loc[("b", "q"), "sigma_norm"] == pytest.approx(2 * expected_q)
    assert table.loc[("b", "q"), "distance"] == pytest.approx(expected_q)   # ‖2s − s‖ = ‖s‖
    assert table.loc[("b", "out"), "distance"] == pytest.approx(np.sqrt(8))


def test_errors(tmp_path, paper_checkpoints):
    with pytest.raises(MtnbError, match="not a checkpoint folder"):
        singular_values(tmp_path)
    with pytest.raises(MtnbError, match="no encoder layer 12"):
        singular_values(paper_checkpoints["bert"], layers=[12])
    with pytest.raises(MtnbError, match="different lengths"):
        sigma_distance(np.ones(3), np.ones(4))
