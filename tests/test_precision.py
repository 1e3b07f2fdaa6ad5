"""Mixed precision: names and their errors, bf16 forward passes close to fp32 with float32
features, bf16 training steps with float32 losses, and the feature cache keyed by precision."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from mtnb.core.errors import MtnbError
from mtnb.transfer.finetune import task_model, train, TrainConfig
from mtnb.transfer.jobs import run_job
from mtnb.models.loading import load_encoder
import mtnb.core.machine as machine
from mtnb.core.precision import check_precision, precision_name, recorded_precision, resolve_precision
from mtnb.analysis.features import FEATURES_VERSION, FeatureExtractor
from mtnb.data.tasks import get_task
from conftest import patch_everywhere

TEXTS = ["Choose Format - Cells.", "Press Enter to confirm the dialog.", "A longer paragraph about the Calc sheet, "
         "its cells, rows and columns, and the formulas that fill them.", "x"]


def no_weights(*args, **kwargs):
    pytest.fail("the encoder was loaded although the request should have been refused or served from the cache")


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

AVX2_CPU = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n"
NATIVE_BF16_CPU = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"


@pytest.fixture
def avx2_cpu(tmp_path, monkeypatch):
    """Every default cpuinfo read points at a CPU whose flags stop at AVX2 (auto: fp32)."""
    path = tmp_path / "cpuinfo-avx2"
    path.write_text(AVX2_CPU)
    monkeypatch.setattr(machine, "CPUINFO", str(path))
    return path


def test_names_resolve_per_device(monkeypatch, tmp_path):
    assert resolve_precision("fp32", "cpu") is None
    assert resolve_precision("bf16", "cpu") is torch.bfloat16
    avx2, native = tmp_path / "avx2", tmp_path / "native"
    avx2.write_text(AVX2_CPU)
    native.write_text(NATIVE_BF16_CPU)
    # auto on a CPU: bf16 where it has native bf16 (measured to pay: precision's docstring), else fp32
    assert resolve_precision("auto", torch.device("cpu"), cpuinfo=native) is torch.bfloat16
    assert resolve_precision("auto", "cpu", cpuinfo=avx2) is None
    assert resolve_precision("auto", "cpu", cpuinfo=tmp_path / "unreadable") is None
    monkeypatch.setattr(machine, "CPUINFO", str(native))      # the default path, as runs resolve it
    assert resolve_precision("auto", "cpu") is torch.bfloat16
    monkeypatch.setattr(machine, "CPUINFO", str(avx2))
    assert resolve_precision("auto", "cpu") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda:0") is torch.bfloat16
    assert resolve_precision("fp16", "cuda") is torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") is torch.float16
    assert [precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]


def test_unknown_names_and_fp16_on_cpu_are_refused_in_one_line():
    for bad in ("bf32", "FP32", "float16", None, 16):
        with pytest.raises(MtnbError, match="unknown precision .*use one of fp32, bf16, fp16, auto") as err:
            check_precision(bad)
        assert "\n" not in str(err.value)
    with pytest.raises(MtnbError, match="unknown precision 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(MtnbError, match="fp16 needs a CUDA GPU .*use bf16, fp32 or auto") as err:
        resolve_precision("fp16", "cpu")
    assert "\n" not in str(err.value)
    # a finished run is evaluated at its own precision where the machine runs it, else fp32
    assert recorded_precision("bf16", "cpu") == "bf16"
    assert recorded_precision("fp16", "cpu") == "fp32"


def test_bad_precision_fails_before_weights_load(tiny_checkpoint, tmp_path, monkeypatch):
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", no_weights)
    for mode in ("finetune", "probe"):
        with pytest.raises(MtnbError, match="unknown precision 'bf32'"):
            run_job(str(tiny_checkpoint), "mini-topic", tmp_path / mode, mode=mode,
                    config=TrainConfig(precision="bf32"), mini_root=tmp_path / "no-corpus", progress=False)
        with pytest.raises(MtnbError, match="fp16 needs a CUDA GPU"):
            run_job(str(tiny_checkpoint), "mini-topic", tmp_path / mode, mode=mode,
                    config=TrainConfig(precision="fp16"), mini_root=tmp_path / "no-corpus", progress=False)


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------

def test_bf16_features_are_float32_and_close_to_fp32(tiny_checkpoint, tmp_path):
    features = {}
    for name in ("fp32", "bf16"):
        extractor = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, batch_size=3, progress=False,
                                     precision=name)
        ids = extractor.encode_texts(TEXTS, "en", max_length=64)
        features[name] = (extractor.pooled(ids), extractor.words(ids, [[1, 2]] * len(ids), layer=-1))
    (pooled32, words32), (pooled16, words16) = features["fp32"], features["bf16"]
    assert pooled16.dtype == np.float32 and all(w.dtype == np.float32 for w in words16)
    assert pooled16.shape == pooled32.shape

    def relative(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    # bf16 keeps 8 bits of mantissa: close to fp32, yet not equal (so autocast did run)
    for layer in range(1, pooled32.shape[0]):
        assert 0 < relative(pooled16[layer], pooled32[layer]) < 0.03, layer
    assert 0 < relative(np.concatenate(words16), np.concatenate(words32)) < 0.03


def test_the_feature_cache_keys_on_precision(tiny_checkpoint, tmp_path, monkeypatch, avx2_cpu):
    fp32 = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False)
    bf16 = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False, precision="bf16")
    auto = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False, precision="auto")
    assert bf16.store_key() != fp32.store_key()
    assert auto.store_key() == fp32.store_key()        # auto is fp32 on an AVX2 CPU: the same features
    native = tmp_path / "cpuinfo-native"
    native.write_text(NATIVE_BF16_CPU)
    monkeypatch.setattr(machine, "CPUINFO", str(native))
    on_native = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False, precision="auto")
    assert on_native.store_key() == bf16.store_key()   # and bf16 on a CPU with native bf16
    monkeypatch.setattr(machine, "CPUINFO", str(avx2_cpu))
    # fp32 keeps the key it had before precision existed, so earlier caches stay valid
    legacy = hashlib.sha256(f"{FEATURES_VERSION}:{fp32.fingerprint()}".encode()).hexdigest()[:32]
    assert fp32.store_key() == legacy

    ids = bf16.encode_texts(TEXTS, "en", max_length=64)
    bf16.pooled(ids)
    assert bf16.forward_passes == 1
    fp32.pooled(ids)                                   # bf16 features are not served for fp32
    assert fp32.forward_passes == 1

    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", no_weights)
    again = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False, precision="bf16")
    np.testing.assert_array_equal(again.pooled(ids), bf16.pooled(ids))
    assert again.forward_passes == 0
    assert again.pooled(ids).dtype == np.float32


# --------------------------------------------------------------------------------------------
# Training steps
# --------------------------------------------------------------------------------------------

def _tiny_examples(tokenizer, n: int = 48, n_labels: int = 8) -> list[dict]:
    rng = np.random.default_rng(0)
    words = ["Calc", "sheet", "cell", "Writer", "page", "style", "Impress", "slide", "Draw", "shape"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n)]
    ids = tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    return [{"input_ids": row, "labels": i % n_labels} for i, row in enumerate(ids)]


def _finetune(tiny_checkpoint, name: str, monkeypatch):
    """Train the tiny checkpoint for 4 steps at precision ``name``; returns (curve, model, the
    dtypes cross-entropy saw: (input, output) per call)."""
    from mtnb.models.training import seed_everything

    seen = []
    cross_entropy = torch.nn.functional.cross_entropy

    def recording(logits, *args, **kwargs):
        loss = cross_entropy(logits, *args, **kwargs)
        seen.append((logits.dtype, loss.dtype))
        return loss

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", recording)
    task = get_task("mini-topic")
    seed_everything(0)
    enc = load_encoder(str(tiny_checkpoint))
    net = task_model(enc.model, enc.shape.hidden_size, len(task.labels), task.head)
    examples = _tiny_examples(enc.tokenizer)
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=8, max_length=64, max_steps=4, precision=name)
    _, best, curve = train(net, examples, examples[:16], task, enc.tokenizer.pad_token_id, config, progress=False)
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", cross_entropy)
    return curve, net, seen


def test_a_bf16_finetune_step_has_a_finite_float32_loss_and_float32_weights(tiny_checkpoint, monkeypatch):
    curve32, net32, _ = _finetune(tiny_checkpoint, "fp32", monkeypatch)
    curve16, net16, seen = _finetune(tiny_checkpoint, "bf16", monkeypatch)
    assert len(curve16.loss) == 4 and all(np.isfinite(curve16.loss))
    assert seen and all(pair == (torch.float32, torch.float32) for pair in seen)
    assert all(p.dtype == torch.float32 for p in net16.parameters())   # autocast, not model.to(bf16)
    # the same seed and batches: the losses differ by bf16's rounding only
    assert curve16.loss != curve32.loss
    np.testing.assert_allclose(curve16.loss, curve32.loss, rtol=0.03)
    again, _, _ = _finetune(tiny_checkpoint, "bf16", monkeypatch)       # and a seed repeats on the CPU
    assert again.loss == curve16.loss


def test_a_bf16_pretraining_step_has_a_finite_float32_loss(tiny_checkpoint, monkeypatch):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mtnb.pretraining.zoo import mlm_batch, model_loss, train_loop

    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    texts = [" ".join(["Choose Format - Cells"] * (1 + i % 3)) for i in range(16)]
    losses = {}
    for name in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = AutoModelForMaskedLM.from_pretrained(tiny_checkpoint)
        rng = np.random.default_rng(0)
        batches = [mlm_batch(tokenizer, texts[k:k + 8], rng) for k in (0, 8, 0)]
        seen = []

        def recording(model, batch):
            loss = model_loss(model, batch)
            seen.append(loss)
            return loss

        trained = train_loop(model, lambda step: batches[step], 3, 1e-3, progress=False, loss_fn=recording,
                             dtype=resolve_precision(name, "cpu"))
        assert trained["steps"] == 3
        assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in seen)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        losses[name] = [loss.item() for loss in seen]
    assert losses["bf16"] != losses["fp32"]
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.03)


def test_a_bf16_probe_job_records_it_and_zeroshot_reads_its_features(tiny_checkpoint, real_corpus, tmp_path,
                                                                      monkeypatch):
    from mtnb.transfer.probe import ProbeConfig, probe_run
    from mtnb.transfer.zeroshot import evaluate_run

    config = ProbeConfig(max_length=48, batch_size=16, precision="bf16", weight_decays=(1.0, 0.1))
    [record] = probe_run(str(tiny_checkpoint), "mini-topic", tmp_path / "job", config=config, max_train=64,
                         max_dev=32, max_eval=16, mini_root=real_corpus, cache_dir=tmp_path / "features",
                         progress=False)
    assert record["precision"] == "bf16" and record["train"]["precision"] == "bf16"
    assert np.isfinite(record["best_dev_score"])
    # the zero-shot evaluation reads the test features the job computed at bf16: no forward pass
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", no_weights)
    results, _, _, _ = evaluate_run(tmp_path / "job" / "seed-0", max_eval=16, controls=False, progress=False)
    assert len(results) == 5 and results["value"].between(0, 100).all()


def test_the_alignment_loss_keeps_its_similarities_float32_under_autocast():
    from mtnb.pretraining.heads import info_nce

    torch.manual_seed(0)
    states = torch.randn(8, 6, 32).to(torch.bfloat16)      # what a bf16 encoder pass hands over
    mask = torch.ones(8, 6, dtype=torch.long)
    mask[:, 4:] = 0
    exact = info_nce(states.float(), mask, temperature=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = info_nce(states, mask, temperature=0.05)
    assert mixed.dtype == torch.float32
    # the same float32 arithmetic on the same (bf16-rounded) states: a bf16 product of the
    # cosines, divided by the temperature 0.05, would move the loss by about 1e-2
    torch.testing.assert_close(mixed, exact, rtol=1e-6, atol=1e-6)
