"""Fine-tuning and zero-shot evaluation: encoding, batching, determinism, errors, notebooks."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import papermill as pm
import numpy as np
import pytest
import torch

from mtnb.core.errors import MtnbError
from mtnb.transfer.finetune import finetune_run, load_finetuned, predict, task_model, train, TrainConfig
from mtnb.data.inputs import collate, encode, length_grouped_batches
from mtnb.models.loading import load_encoder
from mtnb.models.training import NO_DECAY, linear_schedule, optimizer_and_schedule, optimizer_step
from mtnb.data.tasks import get_task
from conftest import patch_everywhere

ROOT = Path(__file__).resolve().parent.parent


def test_token_labels_go_to_the_first_subword_only(tiny_checkpoint):
    enc = load_encoder(str(tiny_checkpoint))
    task = get_task("mini-spans")
    records = [{"words": ["Choose", "Format", "now"], "tags": [0, 1, 2]}]
    [example] = encode(records, task, enc.tokenizer, max_length=64)
    # character tokenizer: "Choose" is 6 sub-words, "Format" 6, "now" 3, plus [CLS] and [SEP]
    assert len(example["input_ids"]) == 2 + 6 + 6 + 3
    assert example["labels"] == [-100, 0] + [-100] * 5 + [1] + [-100] * 5 + [2, -100, -100, -100]


def test_length_grouped_batches_cover_everything_once_with_less_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 250) for _ in range(1000)]
    batches = length_grouped_batches(lengths, 16, random.Random(1))
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded < 1.05 * sum(lengths), "batches of similar length waste under 5% on padding"
    assert length_grouped_batches(lengths, 16, random.Random(1)) == batches


def test_collate_pads_to_the_longest():
    batch = collate([{"input_ids": [5, 6, 7], "labels": [1, -100, 2]}, {"input_ids": [5], "labels": [0]}], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, -100, 2], [0, -100, -100]]


def _run(tiny_checkpoint, real_corpus, out, task="mini-topic", seed=0, **kw):
    config = TrainConfig(lr=1e-3, epochs=1, batch_size=16, max_length=48, seed=seed, max_steps=kw.pop("max_steps", 6))
    return finetune_run(str(tiny_checkpoint), task, out, config=config, max_train=96, max_dev=32,
                        mini_root=real_corpus, progress=False, **kw)


def _adamw_trained(optimizer_for, steps=30):
    """A 2-layer, 64-wide task model (embeddings, attention, layer norms, head) after ``steps``
    AdamW steps on random token batches through optimizer_step, in eval mode."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
    net = task_model(BertModel(config), 64, 5, "sequence")
    if steps == 0:
        return net.eval()
    optimizer, scheduler = optimizer_for(net)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 300, (8, 12), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(ids, torch.ones_like(ids)), ids[:, 1] % 5)
        optimizer_step(net, optimizer, scheduler, loss)
    return net.eval()


def test_adamw_matches_the_per_tensor_update():
    config = TrainConfig(lr=1e-3, weight_decay=0.01, warmup=0.1)

    def per_tensor(net):  # the update as it ran before issue 30: torch's per-tensor loop on a CPU
        named = list(net.named_parameters())
        optimizer = torch.optim.AdamW(
            [{"params": [p for n, p in named if not any(k in n for k in NO_DECAY)], "weight_decay": 0.01},
             {"params": [p for n, p in named if any(k in n for k in NO_DECAY)], "weight_decay": 0.0}],
            lr=1e-3, foreach=False)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, 30, 3))

    start = dict(_adamw_trained(per_tensor, steps=0).named_parameters())
    nets = {"per-tensor": _adamw_trained(per_tensor),
            "foreach": _adamw_trained(lambda net: optimizer_and_schedule(net, config, 30)),
            "fused": _adamw_trained(lambda net: optimizer_and_schedule(net, config, 30, fused=True))}
    weights = {k: dict(net.named_parameters()) for k, net in nets.items()}
    words = "encoder.embeddings.word_embeddings.weight"
    assert not torch.equal(start[words], weights["per-tensor"][words]), "the steps moved the weights"
    assert all(torch.equal(w, weights["foreach"][n]) for n, w in weights["per-tensor"].items()), \
        "fp32's foreach AdamW gives the per-tensor loop's bits"
    # the fused kernel rounds differently (up to 1e-5 of a tensor's largest value here): the same
    # predictions, logits within 1e-5 of their scale
    ids = torch.randint(0, 300, (64, 12), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = {k: net(ids, torch.ones_like(ids)) for k, net in nets.items()}
    assert torch.equal(logits["per-tensor"].argmax(1), logits["fused"].argmax(1))
    assert (logits["per-tensor"] - logits["fused"]).abs().max() <= 1e-5 * logits["per-tensor"].abs().max()


def test_bf16_predict_casts_each_weight_once_and_keeps_the_scores():
    from types import SimpleNamespace

    from torch.profiler import profile

    net = _adamw_trained(None, steps=0)  # a 2-layer, 64-wide task model, 5 labels
    gen = torch.Generator().manual_seed(2)
    examples = [{"input_ids": torch.randint(1, 300, (n,), generator=gen).tolist(), "labels": 0} for n in (5, 9, 7, 12, 6, 8)]
    task = SimpleNamespace(head="ranking")  # scores: the expected grade, a float per example
    with profile(record_shapes=True) as prof:
        scores = predict(net, examples, task, pad_id=0, batch_size=2, dtype=torch.bfloat16)  # 3 batches
    # the feed-forward layers' (128, 64) weights, one per layer: cast to bf16 once for all batches
    casts = sum(e.count for e in prof.key_averages(group_by_input_shape=True)
                if e.key == "aten::_to_copy" and e.input_shapes[:1] == [[128, 64]])
    assert casts == 2
    before = {}  # as before: one autocast context per batch
    with torch.no_grad():
        for rows in length_grouped_batches([len(e["input_ids"]) for e in examples], 2, None):
            batch = collate([examples[i] for i in rows], 0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = net(batch["input_ids"], batch["attention_mask"])
            for j, i in enumerate(rows):
                p = logits.float()[j].softmax(-1)
                before[i] = float((p * torch.arange(len(p))).sum())
    assert scores == [before[i] for i in range(len(examples))]


def test_same_seed_same_weights(tiny_checkpoint, real_corpus, tmp_path):
    from safetensors.torch import load_file

    _run(tiny_checkpoint, real_corpus, tmp_path / "a", seed=3)
    _run(tiny_checkpoint, real_corpus, tmp_path / "b", seed=3)
    _run(tiny_checkpoint, real_corpus, tmp_path / "c", seed=4)
    a, b, c = (load_file(str(tmp_path / x / "model.safetensors")) for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    curve = json.loads((tmp_path / "a" / "curve.json").read_text())
    assert len(curve["loss"]) == 6 and curve["dev_score"]


@pytest.mark.parametrize("task", ["mini-spans", "mini-rank"])
def test_other_heads_train_and_reload(tiny_checkpoint, real_corpus, tmp_path, task):
    record = _run(tiny_checkpoint, real_corpus, tmp_path / task, task=task, max_steps=3)
    assert 0 <= record["best_dev_score"] <= 1
    net, tokenizer, spec, saved = load_finetuned(tmp_path / task)
    assert spec.name == task and saved["head"] == spec.head


def test_nan_loss_names_the_step(tiny_checkpoint, real_corpus, tmp_path):
    enc = load_encoder(str(tiny_checkpoint))
    task = get_task("mini-topic")
    from mtnb.data.mini.datasets import load_mini
    examples = encode(load_mini("mini-topic", "en", "train", root=real_corpus).select(range(32)), task, enc.tokenizer, 32)
    net = task_model(enc.model, 64, len(task.labels), "sequence")
    with torch.no_grad():
        net.classifier.weight.fill_(float("nan"))
    with pytest.raises(MtnbError, match="loss became nan at step 1"):
        train(net, examples, examples[:8], task, enc.tokenizer.pad_token_id, TrainConfig(lr=1e-3, epochs=1, batch_size=8), progress=False)


def test_bad_input_fails_before_loading(tmp_path, real_corpus, monkeypatch):
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", lambda *a, **k: pytest.fail("weights were loaded"))
    config = TrainConfig(epochs=1)
    with pytest.raises(MtnbError, match="unknown task"):
        finetune_run("mbert", "mini-ner", tmp_path / "x", config=config, mini_root=real_corpus)
    with pytest.raises(MtnbError, match="unknown model"):
        finetune_run("no-such-model", "mini-topic", tmp_path / "x", config=config, mini_root=real_corpus)
    with pytest.raises(MtnbError, match="unknown pooling"):
        finetune_run("mbert", "mini-topic", tmp_path / "x", config=config, pooling="max", mini_root=real_corpus)
    with pytest.raises(MtnbError, match="holds no finished fine-tuning run"):
        load_finetuned(tmp_path)


def test_zeroshot_languages_and_missing_run(tiny_checkpoint, real_corpus, tmp_path):
    from mtnb.transfer.zeroshot import evaluate_run, evaluate_runs

    with pytest.raises(MtnbError, match="holds no finished fine-tuning run"):
        evaluate_run(tmp_path / "nothing")
    with pytest.raises(MtnbError, match="holds no finished fine-tuning run"):
        evaluate_runs(tmp_path / "nothing")
    _run(tiny_checkpoint, real_corpus, tmp_path / "run", max_steps=2)
    with pytest.raises(MtnbError, match="has no language 'zh'"):
        evaluate_run(tmp_path / "run", languages=["zh"])
    results, counts, units, notes = evaluate_run(tmp_path / "run", languages=["en", "ru"], max_eval=40,
                                                 progress=False)
    assert set(results.system) == {"model", "majority", "bag-of-subwords"}
    assert set(results.language) == {"en", "ru"} and (results.n == 40).all()
    assert counts.groupby("language")["count"].sum().tolist() == [40, 40]
    # the per-example units give back each row's score
    sums = units.groupby(["system", "language"])[["num", "den"]].sum()
    for row in results.itertuples():
        assert 100 * sums.loc[(row.system, row.language), "num"] / sums.loc[(row.system, row.language), "den"] \
            == pytest.approx(row.value)
    assert units.groupby(["system", "language"]).size().eq(40).all()
    # dev scored in English alone (the verdict's task filter), test in every language asked for
    results, _, _, _ = evaluate_run(tmp_path / "run", languages=["en", "ru"], splits=("dev", "test"), max_eval=12,
                                    progress=False, dev_languages=["en"])
    assert set(zip(results.split, results.language)) == {("dev", "en"), ("test", "en"), ("test", "ru")}
    with pytest.raises(MtnbError, match="has no language 'zh'"):
        evaluate_run(tmp_path / "run", splits=("dev",), dev_languages=["zh"])


def _execute(notebook, out, **parameters):
    pm.execute_notebook(str(ROOT / "notebooks" / notebook), str(out), parameters=parameters,
                        kernel_name="python3", cwd=str(ROOT), progress_bar=False)


def test_finetune_and_zeroshot_notebooks(tiny_checkpoint, real_corpus, tmp_path):
    job = tmp_path / "job"
    _execute("finetune.ipynb", tmp_path / "finetune.ipynb", model=str(tiny_checkpoint), task="mini-topic",
             learning_rate=1e-3, epochs=1, max_train=64, max_dev=32, max_length=48, max_steps=4, seeds=[0, 2],
             mini_root=str(real_corpus), output_dir=str(job))
    assert sorted(p.name for p in job.iterdir()) == ["seed-0", "seed-2"]
    for seed in (0, 2):
        run = job / f"seed-{seed}"
        assert (run / "done.json").is_file() and (run / "curve.png").is_file() and (run / "model.safetensors").is_file()
        assert json.loads((run / "run.json").read_text())["train"]["seed"] == seed
        assert (run / "done.json").stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in run.iterdir()), \
            "done.json is written last"
    # one run folder, or the job's folder of seed-<k> runs
    _execute("zeroshot.ipynb", tmp_path / "zeroshot-one.ipynb", run_dir=str(job / "seed-2"), max_eval=30)
    one = pd.read_csv(job / "seed-2" / "zeroshot" / "results.csv")
    assert set(one.seed) == {2} and set(one.language) == {"en", "de", "es", "fr", "ru"}
    _execute("zeroshot.ipynb", tmp_path / "zeroshot.ipynb", run_dir=str(job), max_eval=30)
    results = pd.read_csv(job / "zeroshot" / "results.csv")
    assert set(results.language) == {"en", "de", "es", "fr", "ru"} and set(results.seed) == {0, 2}
    assert list(results.columns) == ["model", "task", "seed", "mode", "system", "language", "split", "metric",
                                     "value", "n"]
    assert set(results["mode"]) == {"finetune"} and len(results) == 2 * 5 * 3
    pd.testing.assert_frame_equal(results[results.seed == 2].reset_index(drop=True), one)
    assert (job / "zeroshot" / "results.png").is_file() and (job / "zeroshot" / "predicted_counts.png").is_file()


def test_finetune_runs_on_a_paper_shaped_checkpoint(paper_checkpoints, real_corpus, tmp_path):
    config = TrainConfig(lr=5e-6, epochs=1, batch_size=4, max_length=32, max_steps=2)
    record = finetune_run(str(paper_checkpoints["xlm-roberta"]), "mini-topic", tmp_path / "run", config=config,
                          max_train=8, max_dev=4, mini_root=real_corpus, progress=False)
    assert record["n_train"] == 8 and (tmp_path / "run" / "done.json").is_file()


def test_bag_of_subwords_on_seen_columns_matches_the_full_vocabulary():
    """Fitting on the training sub-words' columns only gives the full-width fit's predictions
    (never-seen sub-words keep a zero weight), for sequence and token tasks."""
    from types import SimpleNamespace

    from sklearn.linear_model import LogisticRegression

    from mtnb.transfer import controls

    rng = np.random.default_rng(0)
    vocab = 5000
    train = [{"input_ids": rng.integers(0, 300, 12).tolist(), "labels": int(rng.integers(0, 3))} for _ in range(60)]
    test = [{"input_ids": rng.integers(0, 600, 12).tolist(), "labels": 0} for _ in range(40)]
    bag = controls.BagOfSubwords(SimpleNamespace(head="sequence"), vocab).fit(train)
    assert len(bag.columns) <= 300 < vocab
    full = LogisticRegression(max_iter=300, C=1.0, random_state=0).fit(
        controls.bag_matrix([e["input_ids"] for e in train], vocab), [e["labels"] for e in train])
    expected = full.predict(controls.bag_matrix([e["input_ids"] for e in test], vocab)).tolist()
    assert bag.predict(test) == expected
    assert np.allclose(full.coef_[:, bag.columns], bag.model.coef_, atol=1e-4)
    unseen = np.setdiff1d(np.arange(vocab), bag.columns)
    assert np.abs(full.coef_[:, unseen]).max() < 1e-8, "a sub-word never seen in training keeps weight 0"

    token_train = [{"input_ids": [1, 7, 8, 9, 20, 21], "labels": [-100, 1, -100, 0, 2, -100]},
                   {"input_ids": [1, 9, 20, 7, 3], "labels": [-100, 0, 2, 1, -100]}]
    tagger = controls.BagOfSubwords(SimpleNamespace(head="token"), vocab).fit(token_train)
    assert tagger.columns.tolist() == [3, 7, 8, 9, 20, 21], "every sub-word of a labelled word, continuations too"
    words = [[7, 8], [9], [20, 21], [9], [20], [7, 3]]
    full = LogisticRegression(max_iter=300, C=1.0, random_state=0).fit(controls.bag_matrix(words, vocab), [1, 0, 2, 0, 2, 1])
    unseen = [{"input_ids": [1, 7, 4000, 20, 9], "labels": [-100, 0, -100, 0, 0]}]
    expected = full.predict(controls.bag_matrix([[7, 4000], [20], [9]], vocab)).tolist()
    assert tagger.predict(unseen) == [expected], "a word's unseen sub-word is left out, as its zero weight does"


def test_the_oracle_scores_the_chosen_checkpoint_as_zero_shot_does(tiny_checkpoint, tmp_path, monkeypatch):
    """With ``oracle``, every evaluation also scores each other language's dev and test (ud-pos,
    whose PUD dev half exists in every language); the checkpoint English dev chose scores on test
    exactly what the zero-shot job gives the saved model, and the oracle's checkpoint is each
    language's own first-best dev evaluation."""
    import mtnb.data.loading
    from mtnb.data.ud import build_ud
    from mtnb.transfer.zeroshot import evaluate_run, oracle_table
    from test_ud import ud_tree

    build_ud(tmp_path / "ud", ud_tree(tmp_path / "src"))
    monkeypatch.setattr(mtnb.data.loading, "default_ud_dir", lambda: tmp_path / "ud")
    config = TrainConfig(lr=1e-3, epochs=4, batch_size=16, max_length=48, seed=0)
    finetune_run(str(tiny_checkpoint), "ud-pos", tmp_path / "run", config=config, max_dev=4, max_eval=3,
                 oracle=True, progress=False)
    curve = json.loads((tmp_path / "run" / "curve.json").read_text())
    assert sorted(curve["target"]) == ["de", "es", "fr", "ru"], "every language but English"
    assert all(len(s["dev"]) == len(s["test"]) == len(curve["eval_steps"]) == 4 for s in curve["target"].values())
    table = oracle_table(tmp_path / "run")
    assert len(table) == 4 * 2 and set(table.selection) == {"English dev", "target dev"}
    k_en = curve["dev_score"].index(max(curve["dev_score"]))
    chosen = table[table.selection == "English dev"].set_index("language")
    assert (chosen["step"] == curve["eval_steps"][k_en]).all()
    results, _, _, _ = evaluate_run(tmp_path / "run", max_eval=3, controls=False, progress=False)
    zero_shot = results[results.language != "en"].set_index("language")["value"]
    assert sorted(zero_shot.index) == sorted(chosen.index)
    for lang, value in zero_shot.items():
        assert chosen.loc[lang, "test"] == pytest.approx(value, abs=1e-9), lang
    for lang, scores in curve["target"].items():
        own = table[(table.language == lang) & (table.selection == "target dev")].iloc[0]
        k = scores["dev"].index(max(scores["dev"]))
        assert (own.step, own.dev, own.test) == (curve["eval_steps"][k], 100 * scores["dev"][k], 100 * scores["test"][k])
        assert own.dev >= chosen.loc[lang, "dev"]


def test_the_oracle_needs_a_dev_split_in_every_language(tiny_checkpoint, real_corpus, tmp_path):
    """mini-topic has English dev alone: the oracle is refused before training, and a run
    without it gives no oracle rows."""
    from mtnb.transfer.zeroshot import oracle_table

    with pytest.raises(MtnbError, match=r"^the target-dev oracle needs a dev split in every language: .*'de'.*run "
                                        r"without oracle$"):
        _run(tiny_checkpoint, real_corpus, tmp_path / "run", oracle=True)
    assert not (tmp_path / "run").exists()
    _run(tiny_checkpoint, real_corpus, tmp_path / "plain", max_steps=2)
    assert oracle_table(tmp_path / "plain").empty
