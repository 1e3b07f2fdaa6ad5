"""The CKA and SVD notebooks, executed by papermill on the paper-shaped random checkpoints."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def random_registry(paper_checkpoints, tmp_path) -> Path:
    """A models.yaml naming the four random checkpoints (and one of them twice)."""
    lines = ["models:"]
    entries = [("random-bert", "bert"), ("random-xlmr", "xlm-roberta"), ("random-mbart", "mbart"),
               ("random-nllb", "m2m100"), ("random-bert-again", "bert")]
    for name, family in entries:
        lines += [f"  {name}:", f"    source: {paper_checkpoints[family]}", f"    family: {family}", "    role: lm"]
    path = tmp_path / "models.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(notebook: str, out_dir: Path, **parameters) -> None:
    pm.execute_notebook(str(ROOT / "notebooks" / notebook), str(out_dir / notebook),
                        parameters=parameters, kernel_name="python3", cwd=str(ROOT), progress_bar=False)


def test_cka_notebook(random_registry, real_corpus, tmp_path):
    models = ["random-bert", "random-xlmr", "random-mbart", "random-nllb", "random-bert-again"]
    run("cka.ipynb", tmp_path, models=models, registry=str(random_registry), n_samples=6,
        max_length=24, mini_root=str(real_corpus), output_dir=str(tmp_path / "cka"))
    pairs = pd.read_csv(tmp_path / "cka" / "cka_model_pairs.csv")
    langs = pd.read_csv(tmp_path / "cka" / "cka_language_pairs.csv")
    assert len(pairs) == 10 * 5 * 13 and len(langs) == 5 * 10 * 13
    assert pairs["cka"].between(-1e-9, 1 + 1e-9).all()
    same = pairs[(pairs.model_a == "random-bert") & (pairs.model_b == "random-bert-again")]
    assert (same["cka"] > 1 - 1e-6).all(), "a model against itself has CKA 1 at every layer"
    other = pairs[(pairs.model_a == "random-bert") & (pairs.model_b == "random-mbart")]
    assert (other["cka"] < 1 - 1e-3).any()
    assert (tmp_path / "cka" / "cka_model_pairs.png").stat().st_size > 10_000
    assert (tmp_path / "cka" / "cka_language_pairs.png").stat().st_size > 10_000


def test_svd_notebook(random_registry, tmp_path):
    run("svd.ipynb", tmp_path, base="random-bert", models=["random-xlmr", "random-bert-again"],
        registry=str(random_registry), output_dir=str(tmp_path / "svd"))
    table = pd.read_csv(tmp_path / "svd" / "svd.csv")
    assert len(table) == 3 * 12 * 6
    assert (table[table.model == "random-bert-again"]["distance"] == 0).all()
    assert (table[table.model == "random-xlmr"]["distance"] > 0).all()
    assert (tmp_path / "svd" / "svd.png").stat().st_size > 10_000
