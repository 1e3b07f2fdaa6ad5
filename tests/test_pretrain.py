"""The mini zoo: objectives, determinism, errors, and the whole zoo at the smoke budget."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import papermill as pm
import pytest
import torch
from safetensors.torch import load_file

from mtnb.pretraining import members
from mtnb.pretraining import zoo as pretrain
from mtnb.core.errors import MtnbError
from mtnb.models.loading import load_encoder

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "pretrain.ipynb"


def test_span_infilling_masks_about_35_percent_in_spans():
    rng = np.random.default_rng(0)
    ids = list(range(10, 110))
    out = pretrain.infill(ids, mask_id=1, rng=rng)
    kept = [i for i in out if i != 1]
    assert 60 <= len(kept) <= 70, "about 35% of 100 tokens masked"
    assert kept == sorted(kept), "unmasked tokens keep their order"
    assert out.count(1) < 100 - len(kept), "spans longer than one token collapse into one mask"
    assert pretrain.infill(ids, 1, np.random.default_rng(0)) == out


def test_sentence_permutation_keeps_the_sentences():
    sentences = ["One here.", "Two there.", "Three everywhere."]
    text = " ".join(sentences)
    orders = set()
    for seed in range(60):
        out = pretrain.permute_sentences(text, np.random.default_rng(seed))
        parts = out.replace(". ", ".\n").split("\n")
        assert sorted(parts) == sorted(sentences), f"seed {seed}: every sentence whole, none lost or doubled: {out!r}"
        orders.add(tuple(parts))
    assert len(orders) == 6, "all 3! orders of three sentences occur over 60 seeds: the sentences are shuffled"
    same = {pretrain.permute_sentences(text, np.random.default_rng(3)) for _ in range(2)}
    assert len(same) == 1, "the same seed gives the same order"


@pytest.fixture(scope="module")
def smoke_zoo(real_corpus, tmp_path_factory) -> Path:
    zoo = tmp_path_factory.mktemp("zoo")
    for member in members.ZOO:
        pretrain.pretrain_member(member, real_corpus, zoo, budget="smoke", progress=False)
    return zoo


def test_every_member_is_a_checkpoint_load_encoder_reads(smoke_zoo):
    for member, spec in members.ZOO.items():
        record = json.loads((smoke_zoo / member / "pretrain.json").read_text())
        enc = load_encoder(str(smoke_zoo / member))
        assert (enc.shape.n_layers, enc.shape.hidden_size) == (members.SHAPE["layers"], members.SHAPE["hidden"])
        assert enc.spec.family == spec.family
        if spec.objective in ("mlm", "denoise"):
            assert record["trained"]["tokens"] >= members.BUDGETS["smoke"].lm_tokens
            assert record["heldout_loss_after"] < record["heldout_loss_before"], member
        if spec.objective == "translate":
            assert record["trained"]["steps"] == members.BUDGETS["smoke"].mt_steps
            assert set(record["chrf"]) == {f"{a}-{b}" for l in ("de", "es", "fr", "ru") for a, b in (("en", l), (l, "en"))}
    # mini-random shares mini-xlmr's tokenizer; the continued models share mini-mbart's
    assert (smoke_zoo / "mini-random" / "tokenizer.json").read_bytes() == (smoke_zoo / "mini-xlmr" / "tokenizer.json").read_bytes()
    tok = load_encoder(str(smoke_zoo / "mini-mbart-o2m")).tokenizer
    tok.src_lang = "de_DE"
    assert tok.convert_ids_to_tokens(tok("Hallo")["input_ids"])[0] == "de_DE"


def test_translation_batches_carry_language_tokens(smoke_zoo):
    from transformers import AutoTokenizer

    for member, scheme, codes in (("mini-mbart", "mbart50", ("ru_RU", "en_XX")), ("mini-nllb", "nllb", ("rus_Cyrl", "eng_Latn"))):
        tok = AutoTokenizer.from_pretrained(smoke_zoo / member)
        batch = pretrain.translation_batch(tok, scheme, [("ru", "en", "Привет мир", "Hello world")])
        assert tok.convert_ids_to_tokens(int(batch["input_ids"][0, 0])) == codes[0]
        assert tok.convert_ids_to_tokens(int(batch["labels"][0, 0])) == codes[1]


def test_same_seed_same_weights(real_corpus, tmp_path):
    for zoo in ("a", "b"):
        pretrain.pretrain_member("mini-xlmr", real_corpus, tmp_path / zoo, budget="smoke", seed=7, progress=False)
    a = load_file(str(tmp_path / "a" / "mini-xlmr" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "mini-xlmr" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_requests_fail_before_training(real_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain, "train_loop", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(MtnbError, match="unknown zoo member"):
        pretrain.pretrain_member("mini-gpt", real_corpus, tmp_path)
    with pytest.raises(MtnbError, match="budget must be positive"):
        pretrain.pretrain_member("mini-xlmr", real_corpus, tmp_path, budget=members.Budget(lm_tokens=0, mt_steps=1))
    with pytest.raises(MtnbError, match="starts from mini-mbart, which is not built"):
        pretrain.pretrain_member("mini-mbart-m2o", real_corpus, tmp_path / "empty-zoo")
    import shutil
    partial = tmp_path / "corpus"
    shutil.copytree(real_corpus, partial)
    manifest = json.loads((partial / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith("parallel/")}
    (partial / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MtnbError, match="lacks parallel/train.de.parquet"):
        pretrain.pretrain_member("mini-nllb", partial, tmp_path)


def test_pretrain_notebook(real_corpus, tmp_path):
    """The notebook trains the member it is given, with the seed and budget it is given, into a
    checkpoint load_encoder reads at the zoo's shape, and prints the record's figures."""
    executed = tmp_path / "pretrain.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(executed),
                        parameters=dict(member="mini-mbart", corpus=str(real_corpus), budget="smoke", seed=3,
                                        precision="fp32", output_dir=str(tmp_path / "zoo")),
                        kernel_name="python3", cwd=str(ROOT), progress_bar=False)
    folder = tmp_path / "zoo" / "mini-mbart"
    record = json.loads((folder / "pretrain.json").read_text())
    assert (record["member"], record["family"], record["objective"]) == ("mini-mbart", "mbart", "denoise")
    assert record["seed"] == 3 and record["precision"] == "fp32"
    assert record["budget"] == json.loads(json.dumps(asdict(members.BUDGETS["smoke"])))
    assert record["trained"]["tokens"] >= members.BUDGETS["smoke"].lm_tokens and record["trained"]["steps"] > 0
    before, after = record["heldout_loss_before"], record["heldout_loss_after"]
    assert np.isfinite([before, after]).all() and after < before, f"held-out loss {before} -> {after}"
    assert set(record["chrf"]) == {f"{a}-{b}" for l in ("de", "es", "fr", "ru") for a, b in (("en", l), (l, "en"))}
    assert all(0 <= v <= 100 for v in record["chrf"].values())
    enc = load_encoder(str(folder))
    assert enc.spec.family == "mbart"
    assert (enc.shape.n_layers, enc.shape.hidden_size) == (members.SHAPE["layers"], members.SHAPE["hidden"])
    batch = enc.tokenizer(["Click the OK button."], return_tensors="pt")
    with torch.no_grad():
        hidden = enc.model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == members.SHAPE["layers"] + 1 and all(torch.isfinite(h).all() for h in hidden)
    printed = "".join("".join(out.get("text", "")) for cell in json.loads(executed.read_text())["cells"]
                      for out in cell.get("outputs", []))         # nbformat: text is a string or a list of lines
    assert (f"mini-mbart, training: {record['trained']['steps']} steps, {record['trained']['tokens']:,} input tokens"
            in printed), printed
    assert f"held-out loss {before:.3f} -> {after:.3f}" in printed, printed
