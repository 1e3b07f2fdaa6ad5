"""The linear probe: cached features, the probe's training, its notebooks, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest
import torch

import mtnb.models.registry as models
from mtnb.core.errors import MtnbError
from mtnb.data.inputs import encode, input_prefixes
from mtnb.transfer.jobs import run_job
from mtnb.models.loading import load_encoder
from mtnb.transfer.probe import ProbeConfig, fit_logistic, load_probe, probe_run, train_probe
from mtnb.analysis.features import FeatureExtractor, extract_features, weights_fingerprint
from mtnb.data.tasks import get_task
from conftest import patch_everywhere

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["Choose Format - Cells.", "Press Enter.", "A longer paragraph about the Calc sheet and its cells.", "x"]


def no_weights(*args, **kwargs):
    pytest.fail("the encoder was loaded although every feature was in the cache")


def test_features_are_computed_once_and_reused(tiny_checkpoint, tmp_path, monkeypatch):
    first = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False)
    ids = first.encode_texts(TEXTS, "en", max_length=32)
    positions = [[1, 2], [1], [1, 5, 9], [1]]
    pooled = first.pooled(ids)
    words = first.words(ids, positions, layer=-1)
    assert pooled.shape == (3, len(TEXTS), 64) and pooled.dtype == np.float32
    assert [w.shape for w in words] == [(2, 64), (1, 64), (3, 64), (1, 64)]
    assert first.forward_passes == 2 and first.sequences_computed == 2 * len(TEXTS)

    # a second extractor (another job) reads the store: no forward pass, the encoder never loads
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", no_weights)
    second = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False)
    again = second.encode_texts(TEXTS, "en", max_length=32)
    np.testing.assert_array_equal(second.pooled(again), pooled)
    np.testing.assert_array_equal(second.pooled(again, layer=1), pooled[1])
    for a, b in zip(second.words(again, positions, layer=2), words):
        np.testing.assert_array_equal(a, b)
    assert second.forward_passes == 0
    # CKA's entry point reads the same store for the same texts
    cka = extract_features([str(tiny_checkpoint)], {"en": TEXTS}, cache_dir=tmp_path, max_length=32, progress=False)
    np.testing.assert_array_equal(cka[(str(tiny_checkpoint), "en")], pooled)


def test_cached_features_equal_a_fresh_forward_pass(tiny_checkpoint, tmp_path):
    extractor = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, batch_size=3, progress=False)
    ids = extractor.encode_texts(TEXTS, "en", max_length=32)
    extractor.compute(pooled=ids, words=[(s, [0, len(s) - 1]) for s in ids], layer=1)
    cached = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, progress=False)
    encoder = load_encoder(str(tiny_checkpoint))
    with torch.no_grad():
        for s in ids:  # one at a time: no padding at all
            hidden = encoder.model(input_ids=torch.tensor([s]), output_hidden_states=True).hidden_states
            fresh = torch.stack([h[0].mean(0) for h in hidden]).numpy()
            np.testing.assert_allclose(cached.pooled([s])[:, 0], fresh, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(cached.words([s], [[0, len(s) - 1]], layer=1)[0],
                                       hidden[1][0, [0, len(s) - 1]].numpy(), rtol=1e-5, atol=1e-5)
    first = FeatureExtractor(str(tiny_checkpoint), pooling="first", cache_dir=tmp_path, progress=False)
    with torch.no_grad():
        hidden = encoder.model(input_ids=torch.tensor([ids[0]]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(first.pooled(ids[:1])[:, 0], torch.stack([h[0, 0] for h in hidden]).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_word_features_below_the_last_layer_stop_the_forward_pass_there(tiny_checkpoint, tmp_path):
    """A words-only request at layer 1 gives output_hidden_states[1] at the positions, and the
    layers above it never run; a request that also needs pooled features runs them all."""
    from mtnb.models.loading import encoder_layers

    extractor = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, batch_size=2, progress=False)
    ids = extractor.encode_texts(TEXTS, "en", max_length=32)
    positions = [[0, len(s) - 1] for s in ids]
    blocks = encoder_layers(extractor.encoder().model)
    calls = [0] * len(blocks)
    hooks = [block.register_forward_hook(lambda *args, i=i: calls.__setitem__(i, calls[i] + 1))
             for i, block in enumerate(blocks)]
    words = extractor.words(ids, positions, layer=1)
    assert calls[0] > 0 and sum(calls[1:]) == 0, f"layers above the one asked for ran: {calls}"
    extractor.compute(pooled=ids[:1], words=[(ids[1], positions[1])], layer=2)
    assert all(c > 0 for c in calls), "a batch with pooled features runs every layer"
    for hook in hooks:
        hook.remove()
    encoder = load_encoder(str(tiny_checkpoint))
    with torch.no_grad():
        for s, p, w in zip(ids, positions, words):
            hidden = encoder.model(input_ids=torch.tensor([s]), output_hidden_states=True).hidden_states
            np.testing.assert_allclose(w, hidden[1][0, p].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["xlm-roberta", "mbart", "m2m100"])
def test_hooked_hidden_states_are_output_hidden_states_at_paper_shape(paper_checkpoints, family, tmp_path):
    """The layer hooks take what output_hidden_states gives, the last one after mBART's and
    M2M100's final layer norm included; padding in a batch changes nothing."""
    extractor = FeatureExtractor(str(paper_checkpoints[family]), cache_dir=tmp_path, batch_size=3, progress=False)
    ids = extractor.encode_texts(TEXTS[:3], "en", max_length=32)
    assert len({len(s) for s in ids}) == 3, "three lengths: the batch is padded"
    positions = [[0, len(s) - 1] for s in ids]
    pooled = extractor.pooled(ids)
    words = extractor.words(ids, positions, layer=-1)
    encoder = extractor.encoder()
    with torch.inference_mode():
        for k, s in enumerate(ids):
            hidden = encoder.model(input_ids=torch.tensor([s]), output_hidden_states=True).hidden_states
            assert len(hidden) == extractor.n_layers + 1 == pooled.shape[0]
            np.testing.assert_allclose(pooled[:, k], torch.stack([h[0].mean(0) for h in hidden]).numpy(),
                                       rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(words[k], hidden[-1][0, positions[k]].numpy(), rtol=1e-4, atol=1e-4)
    assert extractor.forward_passes == 2


def test_another_checkpoint_gets_its_own_features(tiny_checkpoint, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    shutil.copytree(tiny_checkpoint, other)
    state = load_file(str(other / "model.safetensors"))
    name = next(k for k in state if k.endswith("encoder.layer.1.output.dense.weight"))
    state[name] = state[name] * 2
    save_file(state, str(other / "model.safetensors"), metadata={"format": "pt"})
    a = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path / "cache", progress=False)
    b = FeatureExtractor(str(other), cache_dir=tmp_path / "cache", progress=False)
    ids = a.encode_texts(TEXTS, "en", 32)
    assert a.fingerprint() != b.fingerprint()
    fa, fb = a.pooled(ids), b.pooled(ids)
    assert b.forward_passes == 1
    np.testing.assert_array_equal(fa[:2], fb[:2])  # embeddings and layer 1 are shared weights
    assert not np.allclose(fa[2], fb[2])


def test_probe_separates_linearly_separable_features():
    rng = np.random.default_rng(0)
    task = get_task("mini-topic")  # 8 labels, accuracy
    centres = rng.standard_normal((8, 32)) * 4

    def blobs(n):
        y = rng.integers(0, 8, n)
        return (centres[y] + rng.standard_normal((n, 32))).astype(np.float32), y

    x, y = blobs(800)
    dev_x, dev_y = blobs(200)
    probe, curve = train_probe(task, x, y, dev_x, None, [{"labels": int(v)} for v in dev_y], ProbeConfig())
    assert max(curve.dev_score) >= 0.99
    test_x, test_y = blobs(300)
    assert np.mean(np.array(probe.predict(test_x)) == test_y) >= 0.99
    for losses in curve.losses:
        assert losses[-1] < losses[0]


def test_the_one_standard_error_rule_takes_the_strongest_decay_the_dev_set_cannot_tell_apart():
    """SE of a ratio metric by the delta method: sqrt(p(1-p)/n) for accuracy; the rule keeps
    the strongest decay within one SE of the best, "best" the best itself; on a noisy task the
    probe it keeps is the stronger one, with its dev score recorded."""
    from mtnb.transfer.probe import chosen_decay, score_se

    right = np.array([1.0] * 60 + [0.0] * 40)
    assert score_se(right, np.ones(100)) == pytest.approx(np.sqrt(0.6 * 0.4 / 100))
    num, den = np.array([2.0, 0.0, 4.0]), np.array([2.0, 2.0, 4.0])   # F1-like units: S = 6 / 8
    assert score_se(num, den) == pytest.approx(np.sqrt(0.5 ** 2 + 1.5 ** 2 + 1.0 ** 2) / 8)
    assert score_se(np.zeros(0), np.zeros(0)) == 0.0
    scores, errors = [0.50, 0.61, 0.63, 0.62], [0.05, 0.05, 0.05, 0.05]   # strongest decay first
    assert chosen_decay(scores, errors, "best") == 2
    assert chosen_decay(scores, errors, "one_se") == 1, "0.61 >= 0.63 - 0.05; 0.50 is not"
    assert chosen_decay(scores, [0.0] * 4, "one_se") == 2

    rng = np.random.default_rng(2)
    task = get_task("mini-topic")
    x = rng.standard_normal((120, 64)).astype(np.float32)
    y = rng.integers(0, 8, 120)
    dev_x, dev_y = rng.standard_normal((60, 64)).astype(np.float32), rng.integers(0, 8, 60)
    dev = [{"labels": int(v)} for v in dev_y]
    _, best = train_probe(task, x, y, dev_x, None, dev, ProbeConfig(selection="best"))
    _, rule = train_probe(task, x, y, dev_x, None, dev, ProbeConfig(selection="one_se"))
    assert rule.dev_score == best.dev_score and len(rule.dev_se) == len(rule.weight_decays)
    assert rule.chosen >= best.chosen, "never a weaker decay than the best score's"
    k = rule.weight_decays.index(rule.chosen)
    assert rule.dev_score[k] >= max(rule.dev_score) - rule.dev_se[int(np.argmax(rule.dev_score))]
    with pytest.raises(MtnbError, match="probe selection 'median'"):
        train_probe(task, x, y, dev_x, None, dev, ProbeConfig(selection="median"))


def test_fit_is_deterministic_and_decreases_the_loss():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.standard_normal(300) > 0).astype(np.int64)
    w1, b1, losses = fit_logistic(x, y, 2, 1e-2)
    w2, b2, _ = fit_logistic(x, y, 2, 1e-2)
    assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert losses[0] == pytest.approx(np.log(2), rel=1e-6), "from zeros the loss starts at log(n_labels)"
    assert losses[-1] < 0.5 * losses[0]


def _probe(tiny_checkpoint, real_corpus, out, task="mini-topic", seeds=(0,), **kw):
    return probe_run(str(tiny_checkpoint), task, out, seeds=list(seeds), config=ProbeConfig(max_length=48),
                     max_train=kw.pop("max_train", 96), max_dev=32, max_eval=kw.pop("max_eval", 24),
                     mini_root=real_corpus, cache_dir=kw.pop("cache_dir", out.parent / "features"), progress=False, **kw)


@pytest.mark.parametrize("task", ["mini-topic", "mini-spans", "mini-rank"])
def test_probe_trains_on_a_tiny_checkpoint_and_is_evaluated(tiny_checkpoint, real_corpus, tmp_path, task, monkeypatch):
    from mtnb.transfer.zeroshot import evaluate_runs

    [record] = _probe(tiny_checkpoint, real_corpus, tmp_path / "job", task=task)
    run = tmp_path / "job" / "seed-0"
    assert [p.name for p in sorted(run.iterdir())] == ["curve.json", "curve.png", "done.json", "probe.safetensors", "run.json"]
    curve = json.loads((run / "curve.json").read_text())
    assert all(losses[-1] < losses[0] for losses in curve["losses"]), "every fit lowers its training loss"
    assert record["mode"] == "probe" and record["layer_index"] == 2 and 0 <= record["best_dev_score"] <= 1
    # the job computed the test features ahead: zero-shot evaluation needs no forward pass
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", no_weights)
    results, counts, units, notes = evaluate_runs(tmp_path / "job", max_eval=24, progress=False)
    assert set(results.language) == {"en", "de", "es", "fr", "ru"} and (results["mode"] == "probe").all()
    assert set(results.system) == {"model", "majority", "bag-of-subwords"} and (results.n == 24).all()
    assert results.value.between(0, 100).all()
    if task == "mini-topic":
        assert counts.groupby("language")["count"].sum().tolist() == [24] * 5


def test_every_seed_is_scored_on_the_same_test_examples(tiny_checkpoint, real_corpus, tmp_path, monkeypatch):
    from mtnb.transfer import zeroshot

    records = _probe(tiny_checkpoint, real_corpus, tmp_path / "job", seeds=[0, 1], max_eval=20)
    one_seed = _probe(tiny_checkpoint, real_corpus, tmp_path / "one", seeds=[0], max_eval=20,
                      cache_dir=tmp_path / "other-features")
    assert records[0]["sequences_encoded"] <= one_seed[0]["sequences_encoded"] + records[1]["n_train"] + records[1]["n_dev"], \
        "a second seed adds its own training and dev subsample to the forward pass, not more test examples"
    drawn = []
    draw = zeroshot.eval_subset
    monkeypatch.setattr(zeroshot, "eval_subset",
                        lambda rows, n, ids=None: drawn.append(draw(rows, n, ids)["text"]) or draw(rows, n, ids))
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", no_weights)  # the job computed these features already
    results, _, units, _ = zeroshot.evaluate_runs(tmp_path / "job", max_eval=20, progress=False)
    assert set(results.seed) == {0, 1} and len(drawn) == 10 and all(len(d) == 20 for d in drawn)
    assert drawn[:5] == drawn[5:], "seed 1 is scored on the examples seed 0 was scored on, language by language"
    per_seed = {seed: rows.sort_values(["system", "language", "unit"])[["system", "language", "unit"]].to_numpy().tolist()
                for seed, rows in units.groupby("seed")}
    assert per_seed[0] == per_seed[1], "both seeds' units name the same examples: they pair"
    assert len({tuple(d) for d in drawn[:5]}) == 5


def test_bf16_extraction_casts_each_weight_once_and_keeps_the_features(tiny_checkpoint, tmp_path):
    from torch.profiler import profile

    extractor = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path, batch_size=1, progress=False,
                                 precision="bf16", device="cpu")
    ids = extractor.encode_texts(TEXTS, "en", max_length=32)
    extractor.encoder()
    with profile(record_shapes=True) as prof:
        pooled = extractor.pooled(ids)            # 4 batches of 1
    # the feed-forward layers' (128, 64) weights, one per layer: cast to bf16 once for all batches
    # (autocast's cache, which inference_mode would bypass: then 2 per batch)
    casts = sum(e.count for e in prof.key_averages(group_by_input_shape=True)
                if e.key == "aten::_to_copy" and e.input_shapes[:1] == [[128, 64]])
    assert casts == 2
    # the same features as each batch in its own autocast context under inference_mode (as before)
    model = extractor.encoder().model
    for j, s in enumerate(ids):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = model(input_ids=torch.tensor([s]), attention_mask=torch.ones(1, len(s), dtype=torch.long),
                           output_hidden_states=True).hidden_states
            m = torch.ones(1, len(s), 1)
            before = torch.stack([(h.float() * m).sum(1)[0] / m.sum(1)[0] for h in hidden]).numpy()
        np.testing.assert_array_equal(pooled[:, j], before)


def test_features_do_not_depend_on_the_batch_size_and_freed_tensors_are_unmapped(tiny_checkpoint, tmp_path):
    import sys

    from mtnb.analysis.features import pin_mmap_threshold

    texts = {"en": TEXTS * 3, "de": ["Wählen Sie Format - Zellen.", "Drücken Sie die Eingabetaste."] * 4}
    small = extract_features([str(tiny_checkpoint)], texts, cache_dir=tmp_path / "a", progress=False)
    large = extract_features([str(tiny_checkpoint)], texts, cache_dir=tmp_path / "b", batch_size=16, progress=False)
    for key in small:
        assert small[key].shape == (3, len(texts[key[1]]), 64)
        np.testing.assert_allclose(small[key], large[key], atol=1e-5)
    if sys.platform == "linux":  # glibc: the threshold that keeps extraction near one encoder's size
        assert pin_mmap_threshold() is True


def test_probe_leaves_the_encoder_bit_identical(tiny_checkpoint, real_corpus, tmp_path):
    before = load_encoder(str(tiny_checkpoint)).model.state_dict()
    fingerprint = weights_fingerprint(tiny_checkpoint, tmp_path)
    extractor = FeatureExtractor(str(tiny_checkpoint), cache_dir=tmp_path / "features", progress=False)
    ids = extractor.encode_texts(TEXTS, "en", 32)
    extractor.compute(pooled=ids)
    after = extractor.encoder().model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad or p.grad is None for p in extractor.encoder().model.parameters())
    _probe(tiny_checkpoint, real_corpus, tmp_path / "job", cache_dir=tmp_path / "features")
    assert weights_fingerprint(tiny_checkpoint, tmp_path / "fresh-memo") == fingerprint


def test_same_seed_same_probe(tiny_checkpoint, real_corpus, tmp_path):
    from safetensors.numpy import load_file

    _probe(tiny_checkpoint, real_corpus, tmp_path / "a", seeds=[3, 4])
    _probe(tiny_checkpoint, real_corpus, tmp_path / "b", seeds=[3])
    a3, a4, b3 = (load_file(str(tmp_path / j / f"seed-{s}" / "probe.safetensors")) for j, s in (("a", 3), ("a", 4), ("b", 3)))
    assert all(np.array_equal(a3[k], b3[k]) for k in a3)
    assert not np.array_equal(a3["weight"], a4["weight"]), "another seed draws another training subsample"


def test_bad_mode_layer_or_seeds_fail_before_weights_load(tiny_checkpoint, real_corpus, tmp_path, monkeypatch):
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", no_weights)
    job = dict(mini_root=real_corpus, progress=False)
    with pytest.raises(MtnbError, match="unknown mode 'probes': use one of finetune, probe"):
        run_job(str(tiny_checkpoint), "mini-topic", tmp_path / "x", mode="probes", **job)
    with pytest.raises(MtnbError, match=r"layer 3: model .* has 2 layers; use 0 \(the embeddings\) to 2"):
        run_job(str(tiny_checkpoint), "mini-topic", tmp_path / "x", mode="probe", probe_layer=3, **job)
    with pytest.raises(MtnbError, match="layer 'last'"):
        run_job(str(tiny_checkpoint), "mini-topic", tmp_path / "x", mode="probe", probe_layer="last", **job)
    with pytest.raises(MtnbError, match="a seed is listed twice"):
        run_job(str(tiny_checkpoint), "mini-topic", tmp_path / "x", mode="probe", seeds=[0, 0], **job)
    with pytest.raises(MtnbError, match="give a list of integers"):
        run_job(str(tiny_checkpoint), "mini-topic", tmp_path / "x", seeds=["0"], **job)
    with pytest.raises(MtnbError, match="unknown pooling"):
        run_job(str(tiny_checkpoint), "mini-topic", tmp_path / "x", mode="probe", pooling="max", **job)
    (tmp_path / "x" / "seed-1").mkdir(parents=True)
    (tmp_path / "x" / "seed-1" / "done.json").write_text("{}")
    with pytest.raises(MtnbError, match="seed-1 already holds a finished run"):
        run_job(str(tiny_checkpoint), "mini-topic", tmp_path / "x", mode="probe", seeds=[0, 1], **job)
    with pytest.raises(MtnbError, match="holds no finished probe run"):
        load_probe(tmp_path / "x" / "seed-0")
    assert not (tmp_path / "x" / "seed-0").exists()


def test_e5_inputs_get_their_prefixes(tiny_checkpoint, tmp_path):
    assert input_prefixes("e5", "sequence") == ("passage: ", "passage: ")
    assert input_prefixes("e5", "ranking") == ("query: ", "passage: ")
    assert input_prefixes("plain", "ranking") == ("", "")
    tokenizer = load_encoder(str(tiny_checkpoint)).tokenizer
    spans = get_task("mini-spans")
    record = {"words": ["Choose", "Format"], "tags": [0, 1]}
    [plain] = encode([record], spans, tokenizer, 64)
    [e5] = encode([record], spans, tokenizer, 64, input_prefixes("e5", "token"))
    # character tokenizer: "passage:" is 8 sub-words before the sentence, all unlabelled
    assert e5["labels"] == [-100] + [-100] * 8 + plain["labels"][1:]
    topic = get_task("mini-topic")
    [e5] = encode([{"text": "Hello", "label": 0}], topic, tokenizer, 64, input_prefixes("e5", "sequence"))
    assert tokenizer.decode(e5["input_ids"], skip_special_tokens=True).replace(" ", "") == "passage:Hello"

    registry = tmp_path / "models.yaml"
    registry.write_text("models:\n"
                        "  e5:\n    source: a/b\n    family: bert\n    role: lm\n    inputs: e5\n"
                        "  e5-mlm:\n    source: c/d\n    family: bert\n    role: cp\n    base: e5\n"
                        "  plain:\n    source: e/f\n    family: bert\n    role: lm\n")
    specs = models.load_registry(registry)
    assert [specs[n].inputs for n in ("e5", "e5-mlm", "plain")] == ["e5", "e5", "plain"]
    assert models.load_registry()["me5-small"].inputs == "e5"
    registry.write_text("models:\n  x:\n    source: a/b\n    family: bert\n    role: lm\n    inputs: e6\n")
    with pytest.raises(MtnbError, match="inputs 'e6' is not one of plain, e5"):
        models.load_registry(registry)


def _execute(notebook, out, **parameters):
    pm.execute_notebook(str(ROOT / "notebooks" / notebook), str(out), parameters=parameters,
                        kernel_name="python3", cwd=str(ROOT), progress_bar=False)


def test_probe_notebook_then_zeroshot_notebook(tiny_checkpoint, real_corpus, tmp_path):
    job = tmp_path / "job"
    _execute("finetune.ipynb", tmp_path / "finetune.ipynb", model=str(tiny_checkpoint), task="mini-topic",
             mode="probe", probe_layer=1, seeds=[0, 1], max_train=64, max_dev=32, max_eval=20, max_length=48,
             mini_root=str(real_corpus), output_dir=str(job))
    for seed in (0, 1):
        record = json.loads((job / f"seed-{seed}" / "run.json").read_text())
        assert record["mode"] == "probe" and record["layer_index"] == 1 and record["train"]["seed"] == seed
        assert (job / f"seed-{seed}" / "done.json").is_file() and (job / f"seed-{seed}" / "curve.png").is_file()
    store = FeatureExtractor(str(tiny_checkpoint)).pooled_store().folder
    shards = sorted(store.glob("*.npy"))
    _execute("zeroshot.ipynb", tmp_path / "zeroshot.ipynb", run_dir=str(job), max_eval=20)
    assert sorted(store.glob("*.npy")) == shards, "the zero-shot job computed no features: the probe job had"
    results = pd.read_csv(job / "zeroshot" / "results.csv")
    assert list(results.columns) == ["model", "task", "seed", "mode", "system", "language", "split", "metric",
                                     "value", "n"]
    assert set(results.seed) == {0, 1} and set(results["mode"]) == {"probe"}
    assert len(results) == 2 * 5 * 3
    counts = pd.read_csv(job / "zeroshot" / "predicted_counts.csv")
    assert set(counts.seed) == {0, 1} and counts["count"].sum() == 2 * 5 * 20


def test_a_layer_sweep_probes_and_scores_every_layer(tiny_checkpoint, real_corpus, tmp_path):
    from mtnb.transfer.layer_sweep import best_layer, layer_sweep, plot_layer_sweep

    sweep = layer_sweep(str(tiny_checkpoint), "mini-spans", tmp_path / "sweep", [0, 1, -1], seeds=(0, 1),
                        config=ProbeConfig(max_length=48), max_train=64, max_dev=32, max_eval=16,
                        mini_root=real_corpus, cache_dir=tmp_path / "features", progress=False)
    assert sorted(zip(sweep["layer"], sweep["seed"])) == [(l, s) for l in (0, 1, 2) for s in (0, 1)], "-1 is layer 2"
    assert sweep[["english_dev", "english_test", "non_english_test"]].apply(lambda c: c.between(0, 100)).all().all()
    # each layer's rows are its own probe job's: the dev score is the one its run recorded
    recorded = json.loads((tmp_path / "sweep" / "layer-1" / "seed-1" / "run.json").read_text())
    assert sweep.query("layer == 1 and seed == 1")["english_dev"].item() == pytest.approx(100 * recorded["best_dev_score"])
    assert best_layer(sweep) == int(sweep.groupby("layer")["english_dev"].mean().idxmax())
    plot_layer_sweep(sweep, "tiny")


def test_a_layer_sweep_refuses_repeated_layers_before_any_work(tmp_path):
    from mtnb.transfer.layer_sweep import layer_sweep

    with pytest.raises(MtnbError, match="give distinct layers"):
        layer_sweep("no-such-model", "mini-spans", tmp_path, [1, 1])
    assert not any(tmp_path.iterdir())
