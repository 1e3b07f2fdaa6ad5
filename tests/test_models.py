"""The model registry and load_encoder on checkpoints at the paper models' real shapes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from mtnb.core.errors import MtnbError
from mtnb.models.registry import FAMILIES, load_registry, resolve
from mtnb.models.loading import load_encoder
from mtnb.models.random_checkpoints import PAPER_SHAPES

PAPER_HUB_IDS = {
    "mbert": "google-bert/bert-base-multilingual-cased",
    "xlmr": "FacebookAI/xlm-roberta-base",
    "mbart": "facebook/mbart-large-50",
    "mbart-m2o": "facebook/mbart-large-50-many-to-one-mmt",
    "mbart-o2m": "facebook/mbart-large-50-one-to-many-mmt",
    "mbart-m2m": "facebook/mbart-large-50-many-to-many-mmt",
    "nllb-600m": "facebook/nllb-200-distilled-600M",
}
WIDTH = {"bert": 768, "xlm-roberta": 768, "mbart": 1024, "m2m100": 1024}


def test_registry_holds_the_seven_paper_models():
    specs = load_registry()
    for name, hub_id in PAPER_HUB_IDS.items():
        assert specs[name].source == hub_id
        assert specs[name].local_folder() is None, "a Hub id must not be taken for a folder"
    assert {s.family for s in specs.values()} == set(FAMILIES)
    for name in ("mbart-m2o", "mbart-o2m", "mbart-m2m"):
        assert specs[name].role == "cp" and specs[name].base == "mbart"
        assert specs[name].lang_codes == "mbart50"
    assert specs["nllb-600m"].lang_codes == "nllb" and specs["nllb-600m"].role == "mt"


def test_mtnb_models_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "mtnb.cli", "models"], capture_output=True, text=True, check=True)
    for name, hub_id in PAPER_HUB_IDS.items():
        line = next(line for line in out.stdout.splitlines() if line.startswith(name + " "))
        assert hub_id in line


@pytest.mark.parametrize("family", FAMILIES)
def test_load_encoder_at_paper_shape(paper_checkpoints, family):
    folder = paper_checkpoints[family]
    enc = load_encoder(str(folder))
    assert enc.spec.family == family
    assert (enc.shape.n_layers, enc.shape.hidden_size) == (12, WIDTH[family])
    assert not enc.model.training
    names = [n for n, _ in enc.model.named_parameters()]
    assert not any("decoder" in n for n in names), "the decoder must not be built"

    batch = enc.tokenizer(["Das ist ein Test.", "Это проверка, 42!"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = enc.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=True)
    assert len(out.hidden_states) == 13
    for h in out.hidden_states:
        assert h.shape == (2, batch["input_ids"].shape[1], WIDTH[family])
        assert torch.isfinite(h).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_weights_are_the_checkpoints(paper_checkpoints, family):
    """Every encoder parameter equals its tensor in the saved checkpoint (nothing left random)."""
    folder = paper_checkpoints[family]
    enc = load_encoder(str(folder), with_tokenizer=False)
    with safe_open(folder / "model.safetensors", "pt") as f:
        keys = set(f.keys())
        checked = 0
        for name, param in enc.model.named_parameters():
            if family in ("mbart", "m2m100"):
                key = f"model.encoder.{name}"
                if key not in keys and name == "embed_tokens.weight":
                    key = "model.shared.weight"
            else:
                prefix = "bert." if family == "bert" else "roberta."
                key = prefix + name
            assert key in keys, f"{name} has no tensor {key} in the checkpoint"
            assert torch.equal(param.detach(), f.get_tensor(key)), name
            checked += 1
    layers = PAPER_SHAPES[family].get("num_hidden_layers") or PAPER_SHAPES[family]["encoder_layers"]
    assert checked > 10 * layers


def test_registry_name_with_a_local_folder(paper_checkpoints, project):
    (project / "params" / "models.yaml").write_text(
        "models:\n"
        "  tiny:\n"
        f"    source: {paper_checkpoints['xlm-roberta']}\n"
        "    family: xlm-roberta\n"
        "    role: lm\n")
    enc = load_encoder("tiny")
    assert enc.spec.name == "tiny" and enc.shape.hidden_size == 768


def test_registry_family_mismatch_is_reported(paper_checkpoints, project):
    (project / "params" / "models.yaml").write_text(
        f"models:\n  wrong:\n    source: {paper_checkpoints['bert']}\n    family: mbart\n    role: lm\n")
    with pytest.raises(MtnbError, match="family 'mbart' but the checkpoint is 'bert'"):
        load_encoder("wrong")


def test_hub_id_is_read_from_the_local_hub_cache(paper_checkpoints, tmp_path, monkeypatch):
    """A Hub id goes through the Hub code path; with the model in the cache it loads offline."""
    import shutil

    cache = tmp_path / "hub"
    snapshot = cache / "models--someorg--tiny-bert" / "snapshots" / ("0" * 40)
    shutil.copytree(paper_checkpoints["bert"], snapshot)
    (cache / "models--someorg--tiny-bert" / "refs").mkdir()
    (cache / "models--someorg--tiny-bert" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hc
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    enc = load_encoder("someorg/tiny-bert", with_tokenizer=False)
    assert enc.folder == snapshot and enc.shape.n_layers == 12


def test_hub_model_missing_offline_is_one_clear_line(tmp_path):
    code = ("from mtnb.models.loading import load_encoder\n"
            "load_encoder('mbart')\n")
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "facebook/mbart-large-50" in last and "not complete in the local Hugging Face cache" in last
    assert "'mtnb fetch GRID'" in last and "'hf download facebook/mbart-large-50" in last
    assert last.endswith("point its source in params/models.yaml at a local checkpoint folder")


def test_cli_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  x: [unclosed\n")
    out = subprocess.run([sys.executable, "-m", "mtnb.cli", "models", "--registry", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert str(bad) in out.stderr and "not valid YAML" in out.stderr


def test_unknown_model_name():
    with pytest.raises(MtnbError, match=r"unknown model 'no-such-model'.*registry name"):
        resolve("no-such-model")


def test_folder_without_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MtnbError, match="has no config.json"):
        load_encoder(str(tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(MtnbError, match="has no weights"):
        load_encoder(str(tmp_path / "empty"))


def test_registry_folder_that_does_not_exist(project):
    (project / "params" / "models.yaml").write_text(
        "models:\n  later:\n    source: runs/zoo/later\n    family: bert\n    role: lm\n")
    with pytest.raises(MtnbError, match=r"model 'later': folder .*runs/zoo/later does not exist"):
        load_encoder("later")


@pytest.mark.parametrize("text, message", [
    ("models:\n  x: [unclosed\n", r"line \d+: not valid YAML"),
    ("- just\n- a list\n", "expected a top-level 'models:' mapping"),
    ("models:\n  x:\n    source: a/b\n    role: lm\n", "model 'x': missing key 'family'"),
    ("models:\n  x:\n    source: a/b\n    family: gpt2\n    role: lm\n", "family 'gpt2' is not one of"),
    ("models:\n  x:\n    source: a/b\n    family: bert\n    role: lm\n    colour: red\n", "unknown key 'colour'"),
    ("models:\n  x:\n    source: a/b\n    family: mbart\n    role: cp\n    base: y\n", "base 'y' is not a model"),
    ("models:\n  x:\n    source: a/b\n    family: mbart\n    role: lm\n    lang_codes: iso\n", "lang_codes 'iso'"),
])
def test_malformed_registry(tmp_path, text, message):
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(MtnbError, match=message) as info:
        load_registry(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_language_mbart50_lacks_is_marked_with_the_fine_tuning_languages_code():
    from mtnb.data.languages import input_language_code

    assert input_language_code("de", "mbart50") == ("de_DE", None)
    code, note = input_language_code("bg", "mbart50")
    assert code == "en_XX" and note.startswith("bg: mbart50 has no code")
    assert input_language_code("bg", "nllb") == ("bul_Cyrl", None) and input_language_code("bg", "none") == (None, None)


def test_language_codes():
    from mtnb.data.languages import language_code

    assert language_code("de", "mbart50") == "de_DE"
    assert language_code("ru", "nllb") == "rus_Cyrl"
    assert language_code("de", "none") is None
    with pytest.raises(MtnbError, match="no mbart50 code"):
        language_code("bg", "mbart50")


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_outputs_match_transformers_full_model(paper_checkpoints, family):
    """Same hidden states as the encoder of the whole model loaded by transformers itself."""
    from transformers import AutoModel

    folder = paper_checkpoints[family]
    enc = load_encoder(str(folder))
    reference = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    if family in ("mbart", "m2m100"):
        reference = reference.get_encoder()
    batch = enc.tokenizer(["Choose Tools - Options.", "Wählen Sie Extras"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = enc.model(**{k: batch[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
        theirs = reference(**{k: batch[k] for k in ("input_ids", "attention_mask")}, output_hidden_states=True)
    for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _tiny_bert(folder, dtype):
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(1)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    model = BertForMaskedLM(config).to(dtype)
    return model


def test_half_precision_checkpoint_is_converted(tmp_path):
    model = _tiny_bert(tmp_path, torch.float16)
    model.save_pretrained(tmp_path)
    enc = load_encoder(str(tmp_path), with_tokenizer=False)
    weight = enc.model.encoder.layer[1].attention.self.query.weight
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, model.bert.encoder.layer[1].attention.self.query.weight.float())


def test_pytorch_pickle_checkpoint_without_safetensors(tmp_path):
    model = _tiny_bert(tmp_path, torch.float32)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    enc = load_encoder(str(tmp_path), with_tokenizer=False)
    torch.testing.assert_close(enc.model.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)


def test_truncated_or_mismatched_checkpoint(tmp_path):
    model = _tiny_bert(tmp_path, torch.float32)
    model.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(config.replace('"intermediate_size": 32', '"intermediate_size": 48'))
    with pytest.raises(MtnbError, match="config.json and the weights disagree"):
        load_encoder(str(tmp_path), with_tokenizer=False)
    (tmp_path / "config.json").write_text(config)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(MtnbError, match="truncated"):
        load_encoder(str(tmp_path), with_tokenizer=False)
