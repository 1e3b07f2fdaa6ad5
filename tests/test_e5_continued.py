"""Continued pretraining of multilingual-e5-small: vocabulary, batches, training, errors.

The training tests use a tiny BERT (2 layers x 32) with e5's real 250k tokenizer in place of
the 12-layer model, so they run in seconds; the real family is trained by the mini grid."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mtnb.pretraining import e5_family as e5c
from mtnb.pretraining import heads
from mtnb.pretraining.members import LANGS, E5Budget, check_e5_request
from mtnb.models import me5
from mtnb.core.errors import MtnbError
from mtnb.models.loading import load_encoder
from mtnb.models.random_checkpoints import character_tokenizer
from conftest import patch_everywhere

BUDGET = E5Budget(steps=12, batch_size=8, max_length=24, encoder_lr=1e-3, head_lr=3e-3, eval_pairs=4, heldout=8,
                      warmup_steps=10, warmup_batch_size=8, warmup_pool=48)


@pytest.fixture(scope="module")
def tiny_e5(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT over e5's vocabulary, with e5's tokenizer files."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-e5")
    config = BertConfig(vocab_size=250037, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=1)
    torch.manual_seed(0)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    shutil.copyfile(me5.tokenizer_source().path, folder / "tokenizer.json")
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 64, **me5.SPECIAL_TOKENS}))
    (folder / "special_tokens_map.json").write_text(json.dumps(me5.SPECIAL_TOKENS))
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_e5):
    return load_encoder(str(tiny_e5)).tokenizer


def test_vocabulary_maps_pieces_both_ways(tokenizer):
    texts = ["Click the OK button.", "Klicken Sie auf OK."]
    kept = e5c.corpus_pieces(tokenizer, texts, 24)
    vocab = e5c.OutputVocabulary(kept, tokenizer.eos_token_id, tokenizer.unk_token_id)
    ids = tokenizer(e5c.PREFIX + texts[1])["input_ids"]
    assert vocab.full(vocab.small(ids)) == ids
    assert vocab.size == len(kept) + 5 and sorted(vocab.lang.values()) == list(range(len(kept), vocab.size))
    outside = next(i for i in range(5, 250000) if i not in set(kept.tolist()))
    assert vocab.small([outside, ids[1]]).tolist() == [vocab.unk, vocab.small([ids[1]])[0]], \
        "a piece of held-out text outside the training pieces becomes <unk>"


def test_translation_batch_marks_the_target_language(tokenizer):
    pairs = [("de", "en", "Klicken Sie auf OK.", "Click OK."), ("en", "ru", "Click OK.", "Нажмите OK.")]
    texts = [t for p in pairs for t in p[2:]]
    vocab = e5c.OutputVocabulary(e5c.corpus_pieces(tokenizer, texts, 24), tokenizer.eos_token_id, tokenizer.unk_token_id)
    batch = e5c.translation_step_batch(tokenizer, vocab, pairs, 24)
    assert batch["decoder_input_ids"][:, 0].tolist() == [vocab.lang["en"], vocab.lang["ru"]]
    for row_in, row_lab in zip(batch["decoder_input_ids"], batch["labels"]):
        n = int((row_lab != -100).sum())
        assert row_lab[n - 1] == vocab.eos, "labels end with </s>"
        assert row_in[1:n].tolist() == row_lab[:n - 1].tolist(), "decoder input is the labels shifted right"
    target = tokenizer.decode(vocab.full(batch["labels"][1][batch["labels"][1] >= 0].tolist()), skip_special_tokens=True)
    assert target == "Нажмите OK."


@pytest.fixture(scope="module")
def trained(tiny_e5, real_corpus, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("e5-family")
    cache = tmp_path_factory.mktemp("vocab-cache")
    folders = {}
    for member in ("me5-mlm", "me5-m2m", "me5-align"):
        e5c.continue_member(member, real_corpus, out / member, budget=BUDGET, base=tiny_e5, progress=False,
                            vocab_cache=cache, warmup_cache=out / "warmup")
        folders[member] = out / member
    return folders


def test_members_learn_and_keep_the_embeddings_frozen(trained, tiny_e5):
    base = load_file(str(tiny_e5 / "model.safetensors"))
    for member, folder in trained.items():
        record = json.loads((folder / "continued.json").read_text())
        assert record["trained"]["steps"] == BUDGET.steps and record["trained"]["tokens"] > 0
        assert record["heldout_loss_after"] < record["heldout_loss_before"], member
        joint = record["stages"]["joint"]
        assert joint["heldout_loss_after"] < joint["heldout_loss_before"], f"{member}: stage 2 learns"
        if member == "me5-align":
            assert "warmup" not in record["stages"] and record["head_parameters"] == 0, "alignment has no head"
        else:
            warm = record["stages"]["warmup"]
            assert warm["steps"] == BUDGET.warmup_steps and warm["pool"] == BUDGET.warmup_pool
            assert warm["heldout_loss_after"] < warm["heldout_loss_before"], f"{member}: stage 1 learns"
        weights = load_file(str(folder / "model.safetensors"))
        assert set(weights) == set(base)
        key = "embeddings.word_embeddings.weight"
        assert torch.equal(weights[key], base[key]), "the 250k-row embedding matrix stays frozen"
        moved = [k for k in base if k != key and not torch.equal(weights[k], base[k])]
        assert any("encoder.layer.1" in k for k in moved), "the encoder layers were trained"
        enc = load_encoder(str(folder))
        assert enc.shape.n_layers == 2 and enc.shape.hidden_size == 32


def test_translation_member_reports_chrf_per_direction(trained):
    record = json.loads((trained["me5-m2m"] / "continued.json").read_text())
    directions = {f"{x}-en" for x in ("de", "es", "fr", "ru")} | {f"en-{x}" for x in ("de", "es", "fr", "ru")}
    assert set(record["chrf"]) == directions == set(record["chrf_copy_source"])
    assert record["chrf_copy_source"]["de-en"] > record["chrf_copy_source"]["ru-en"], \
        "copying a Latin-script source shares more characters with English than Cyrillic does"
    assert set(record["chrf_mismatched_source"]) == directions, "the mismatched-source bar covers every direction"
    assert json.loads((trained["me5-mlm"] / "continued.json").read_text())["chrf"] is None
    for member in trained:
        record = json.loads((trained[member] / "continued.json").read_text())
        assert set(record["retrieval_after"]) == set(record["retrieval_before"]) == directions
        assert all(0 <= v <= 100 for v in record["retrieval_after"].values())


# six parallel test rows per language (row i: translations of each other); the tests score the first five
EN = ["Click the OK button to close the dialog.", "Choose Format - Cells and open the Numbers tab.",
      "The spreadsheet recalculates every formula automatically.", "Press Ctrl+S to save the document.",
      "Insert a chart from the Insert menu.", "Hidden rows are not printed."]
PARALLEL_TEST = {
    "de": ["Klicken Sie auf OK, um den Dialog zu schließen.", "Wählen Sie Format - Zellen und öffnen Sie das Register Zahlen.",
           "Die Tabelle berechnet jede Formel automatisch neu.", "Drücken Sie Strg+S, um das Dokument zu speichern.",
           "Fügen Sie über das Menü Einfügen ein Diagramm ein.", "Ausgeblendete Zeilen werden nicht gedruckt."],
    "ru": ["Нажмите кнопку OK, чтобы закрыть диалог.", "Выберите Формат - Ячейки и откройте вкладку Числа.",
           "Электронная таблица автоматически пересчитывает каждую формулу.", "Нажмите Ctrl+S, чтобы сохранить документ.",
           "Вставьте диаграмму из меню Вставка.", "Скрытые строки не печатаются."],
}
PARALLEL_TEST = {lang: [{lang: xx, "en": en} for xx, en in zip(rows, EN)] for lang, rows in PARALLEL_TEST.items()}
N_TEST = 5


def test_chrf_bars_perfect_translation_scores_100_and_the_mismatched_source_is_another_sentence(monkeypatch):
    """A member that translates perfectly (greedy decoding replaced by a lookup of each test
    pair's reference) scores chrF 100 in every direction; its mismatched-source bar gives it
    every test sentence's source but its own (a permutation without fixed points of the first
    n sources) and lies far below."""
    reference = {}
    for lang, rows in PARALLEL_TEST.items():
        for row in rows:
            reference[("en", row[lang])], reference[(lang, row["en"])] = row["en"], row[lang]
    given = []

    def translate_perfectly(model, tokenizer, vocab, sources, tgt_lang, max_length, batch_size=16):
        given.append(list(sources))
        return [reference[(tgt_lang, source)] for source in sources]

    monkeypatch.setattr(e5c, "greedy_translate", translate_perfectly)
    real = e5c.chrf_table(None, None, None, PARALLEL_TEST, N_TEST, 64)
    directions = {f"{x}-en" for x in PARALLEL_TEST} | {f"en-{x}" for x in PARALLEL_TEST}
    assert real == {d: pytest.approx(100.0) for d in directions}, "a perfect translation scores chrF 100"
    shown = [list(sources) for sources in given]
    assert shown == [[r[src] for r in rows[:N_TEST]] for lang, rows in PARALLEL_TEST.items() for src in (lang, "en")]
    given.clear()
    mismatched = e5c.chrf_table(None, None, None, PARALLEL_TEST, N_TEST, 64, mismatched=True)
    assert set(mismatched) == directions
    for direction in directions:
        assert mismatched[direction] < real[direction] - 40, f"{direction}: {mismatched[direction]:.1f}"
    for own, swapped in zip(shown, given):
        assert sorted(swapped) == sorted(own), "the same n test sources, reordered"
        assert all(s != o for s, o in zip(swapped, own)), "each hypothesis comes from another sentence's source"
    copy = e5c.copy_source_chrf(PARALLEL_TEST, N_TEST)
    assert all(copy[d] < real[d] - 40 for d in directions) and copy["de-en"] > copy["ru-en"]


class ConceptEncoder(torch.nn.Module):
    """A stand-in for a member's encoder: every token of test sentence i carries the one-hot
    vector of row (i + shift) mod n for non-English text and of row i for English, so mean pooling
    returns that vector. ``shift`` 0: each sentence lies on its translation; 1: on another's."""

    def __init__(self, tokenizer, max_length: int, shift: int):
        super().__init__()
        self.rows: dict[tuple, int] = {}
        for lang, rows in PARALLEL_TEST.items():
            for i, row in enumerate(rows[:N_TEST]):
                for text, index in ((row["en"], i), (row[lang], (i + shift) % N_TEST)):
                    ids = tokenizer(e5c.PREFIX + text, truncation=True, max_length=max_length)["input_ids"]
                    self.rows[tuple(ids)] = index

    def encode(self, input_ids, attention_mask):
        index = [self.rows[tuple(ids[mask.bool()].tolist())] for ids, mask in zip(input_ids, attention_mask)]
        one_hot = torch.nn.functional.one_hot(torch.tensor(index), N_TEST).float()   # (batch, n)
        return one_hot[:, None, :].expand(-1, input_ids.shape[1], -1)                 # (batch, tokens, n)


def test_retrieval_finds_translations_only_where_the_encoder_aligns_them():
    tokenizer = character_tokenizer("xlm-roberta")
    directions = {f"{x}-en" for x in PARALLEL_TEST} | {f"en-{x}" for x in PARALLEL_TEST}
    aligned = e5c.retrieval_accuracy(ConceptEncoder(tokenizer, 64, shift=0), tokenizer, PARALLEL_TEST, N_TEST, 64)
    assert aligned == {d: pytest.approx(100.0) for d in directions}
    misaligned = e5c.retrieval_accuracy(ConceptEncoder(tokenizer, 64, shift=1), tokenizer, PARALLEL_TEST, N_TEST, 64)
    assert misaligned == {d: pytest.approx(0.0) for d in directions}, "each sentence lies on another's translation"


def test_train_layers_freezes_the_layers_below(tiny_e5, real_corpus, tmp_path):
    budget = replace(BUDGET, steps=3, train_layers=1)
    e5c.continue_member("me5-o2m", real_corpus, tmp_path / "o2m", budget=budget, base=tiny_e5, progress=False,
                        vocab_cache=tmp_path / "cache", warmup_cache=tmp_path / "warmup")
    base, weights = load_file(str(tiny_e5 / "model.safetensors")), load_file(str(tmp_path / "o2m" / "model.safetensors"))
    frozen = [k for k in base if k.startswith(("embeddings.", "encoder.layer.0."))]
    assert frozen and all(torch.equal(weights[k], base[k]) for k in frozen), "embeddings and layer 0 untouched"
    assert any(not torch.equal(weights[k], base[k]) for k in base if k.startswith("encoder.layer.1.")), "layer 1 trained"
    record = json.loads((tmp_path / "o2m" / "continued.json").read_text())
    assert record["budget"]["train_layers"] == 1 and "encoder layers 0-0" in record["frozen"]


def test_masked_lm_loss_at_chosen_positions_equals_the_full_loss(tiny_e5, tokenizer):
    texts = ["Click the OK button to close the dialog.", "Klicken Sie auf OK, um den Dialog zu schließen."]
    kept = e5c.corpus_pieces(tokenizer, texts, 24)
    vocab = e5c.OutputVocabulary(kept, tokenizer.eos_token_id, tokenizer.unk_token_id)
    batch = e5c.mlm_step_batch(tokenizer, vocab, texts, np.random.default_rng(3), 24)
    assert (batch["labels"] != -100).any()
    bert = load_encoder(str(tiny_e5)).model
    torch.manual_seed(0)
    head = heads.MaskedLMHead(bert.embeddings.word_embeddings.weight.detach()[torch.from_numpy(kept)],
                           bert.config.num_attention_heads)
    model = heads.Continued(bert, head, "mlm").eval()
    with torch.no_grad():
        states = model.encode(batch["input_ids"], batch["attention_mask"])
        everywhere = torch.ones_like(batch["attention_mask"], dtype=torch.bool)
        full = head(states, batch["attention_mask"] == 0, everywhere).unflatten(0, states.shape[:2])
        expected = torch.nn.functional.cross_entropy(full.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        assert torch.allclose(model(batch), expected, atol=1e-5)
        cached = e5c.cache_states(model, [batch], progress=False)
        assert torch.allclose(e5c.cached_loss(model, cached[0]), expected, atol=1e-5), "stage 1 sees the same loss"


def test_cached_decoding_step_equals_the_full_decoder():
    torch.manual_seed(0)
    decoder = heads.Decoder(torch.randn(40, 32), 5, 2, 4, 20).eval()
    decoder.standardize(3 * torch.randn(50, 32) + 1)  # the memory is standardized in both paths
    memory = torch.randn(3, 7, 32)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[1, 5:], padding[2, 3:] = True, True
    tokens = torch.randint(0, 45, (3, 10))
    decoder.logits = lambda hidden: hidden  # compare the float32 hidden states (the output layer runs in bf16)
    with torch.inference_mode():
        cache = decoder.start(memory, padding)
        for t in range(tokens.shape[1]):
            full = decoder.logits(decoder(tokens[:, :t + 1], memory, padding)[:, -1])
            assert torch.allclose(decoder.step(tokens[:, t], t, cache), full, atol=1e-5), f"position {t}"


def test_greedy_decoding_stops_at_the_limit_and_keeps_the_order(tokenizer):
    sources = ["Click the OK button to close the dialog box now.", "Click OK.", "Open the Tools menu."]
    vocab = e5c.OutputVocabulary(e5c.corpus_pieces(tokenizer, sources, 24), tokenizer.eos_token_id, tokenizer.unk_token_id)
    torch.manual_seed(0)
    decoder = heads.Decoder(torch.randn(len(vocab.kept), 32), 5, 1, 2, 48)
    with torch.no_grad():
        decoder.bias[vocab.eos] = -1e4  # a decoder that never writes </s>
    # an encoder whose memory is the source's embedding (32 wide): decoding depends on the source
    embed = torch.nn.Embedding(tokenizer.vocab_size + 10, 32)
    model = heads.Continued(None, decoder, "m2o")
    model.encode = lambda input_ids, attention_mask: embed(input_ids)
    out = e5c.greedy_translate(model, tokenizer, vocab, sources, "de", 48, batch_size=2)
    alone = [e5c.greedy_translate(model, tokenizer, vocab, [s], "de", 48)[0] for s in sources]
    assert out == alone, "each output belongs to its own source, whatever the batch"
    written = []
    full = vocab.full
    vocab.full = lambda row: written.append(len(row)) or full(row)
    e5c.greedy_translate(model, tokenizer, vocab, sources, "de", 48, batch_size=2)
    limits = [min(48, 2 * len(tokenizer(s, add_special_tokens=False)["input_ids"]) + 8) for s in sources]
    assert sorted(written) == sorted(limits) and len(set(limits)) == 3, \
        "without </s>, each source gets exactly 2n + 8 tokens (at most 48)"


def test_translation_members_share_one_warm_decoder_and_loading_it_changes_nothing(trained, tiny_e5, real_corpus,
                                                                                      tmp_path):
    """me5-m2o loads the decoder me5-m2m warmed up (same key: all eight directions); trained
    again with a fresh cache, where it warms the decoder up itself, it ends with the same
    weights: stage 2 draws its batches and dropout from its own seeds either way."""
    loaded = tmp_path / "loaded"
    record = e5c.continue_member("me5-m2o", real_corpus, loaded, budget=BUDGET, base=tiny_e5, progress=False,
                                 vocab_cache=tmp_path / "cache", warmup_cache=trained["me5-m2m"].parent / "warmup")
    assert record["stages"]["warmup"]["loaded"].endswith(".safetensors")
    assert record["stages"]["warmup"]["trained_on"] == "translation, all eight directions"
    fresh = tmp_path / "fresh"
    record = e5c.continue_member("me5-m2o", real_corpus, fresh, budget=BUDGET, base=tiny_e5, progress=False,
                                 vocab_cache=tmp_path / "cache", warmup_cache=tmp_path / "warmup")
    assert "loaded" not in record["stages"]["warmup"]
    first, second = load_file(str(loaded / "model.safetensors")), load_file(str(fresh / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_same_seed_same_weights(trained, tiny_e5, real_corpus, tmp_path):
    again = tmp_path / "me5-mlm"
    e5c.continue_member("me5-mlm", real_corpus, again, budget=BUDGET, base=tiny_e5, progress=False,
                        vocab_cache=tmp_path / "cache", warmup_cache=tmp_path / "warmup")
    first, second = load_file(str(trained["me5-mlm"] / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("member, budget, message", [
    ("me5-xyz", BUDGET, "unknown e5 member 'me5-xyz'"),
    ("me5-mlm", "huge", "unknown budget 'huge'"),
    ("me5-mlm", replace(BUDGET, steps=0), "steps > 0"),
    ("me5-align", replace(BUDGET, batch_size=1), "batch_size >= 2"),
    ("me5-m2o", replace(BUDGET, warmup_pool=0), "warmup_pool and warmup_batch_size >= 1"),
    ("me5-mlm", replace(BUDGET, train_layers=0), "train at least 1 layer"),
])
def test_bad_requests_fail_before_loading(member, budget, message, real_corpus, tmp_path, monkeypatch):
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(MtnbError, match=message):
        e5c.continue_member(member, real_corpus, tmp_path / "out", budget=budget, base=tmp_path)
    assert not (tmp_path / "out").exists()


def test_corpus_without_parallel_data_is_named(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"files": {}}))
    with pytest.raises(MtnbError, match="lacks monolingual/train.en.parquet"):
        check_e5_request("me5-m2m", tmp_path, BUDGET)


def test_cached_vocabulary_is_reused(tokenizer, real_corpus, tmp_path, monkeypatch):
    first = e5c.cached_corpus_pieces(tokenizer, real_corpus, ["Click OK."], 24, cache_dir=tmp_path)
    monkeypatch.setattr(e5c, "corpus_pieces", lambda *a: pytest.fail("recomputed"))
    assert np.array_equal(e5c.cached_corpus_pieces(tokenizer, real_corpus, ["Click OK."], 24, cache_dir=tmp_path), first)


def test_stage_one_trains_the_head_only_and_stage_two_keeps_the_frozen_parts(tiny_e5, tokenizer, real_corpus, tmp_path):
    """Stage 1 on cached states leaves every encoder weight as it was; the fixed output rows of
    the decoder stay e5's rows through it."""
    from mtnb.data.mini.datasets import load_mini

    bert = load_encoder(str(tiny_e5)).model
    parallel = {lang: load_mini("parallel", lang, "train", root=real_corpus).to_list()[:30] for lang in LANGS[1:]}
    pairs = e5c.training_items("m2o", parallel)[:24]
    vocab = e5c.OutputVocabulary(e5c.corpus_pieces(tokenizer, [t for p in pairs for t in p[2:]], 24),
                           tokenizer.eos_token_id, tokenizer.unk_token_id)
    rows = bert.embeddings.word_embeddings.weight.detach()[torch.from_numpy(vocab.kept)].clone()
    torch.manual_seed(0)
    decoder = heads.Decoder(rows, 5, 1, 2, 24)
    model = heads.Continued(bert, decoder, "m2o")
    before = {k: v.clone() for k, v in bert.state_dict().items()}
    head_before = {k: v.clone() for k, v in decoder.named_parameters()}
    cached = e5c.cache_states(model, [e5c.translation_step_batch(tokenizer, vocab, pairs[i:i + 8], 24)
                                      for i in range(0, 24, 8)], progress=False)
    trained = e5c.warm_up_head(model, cached, replace(BUDGET, warmup_steps=5), np.random.default_rng(0), progress=False)
    assert trained["steps"] == 5
    assert all(torch.equal(v, before[k]) for k, v in bert.state_dict().items()), "stage 1 leaves the encoder as it was"
    assert all(not torch.equal(v, head_before[k]) for k, v in decoder.named_parameters() if k != "langs"), \
        "stage 1 trains every part of the head the batches reach"
    assert torch.equal(decoder.words, rows), "the output rows stay e5's"


def test_info_nce_is_low_for_matching_rows_only():
    torch.manual_seed(0)
    u = torch.randn(4, 5, 16)
    mask = torch.ones(4, 5, dtype=torch.long)
    matched = torch.cat([u, u + 0.01 * torch.randn_like(u)])
    shuffled = torch.cat([u, u[[1, 2, 3, 0]]])
    mask2 = torch.cat([mask, mask])
    assert heads.info_nce(matched, mask2, 0.05) < 0.01 < heads.info_nce(shuffled, mask2, 0.05)


def test_replicas_sharing_a_warmup_seed_share_the_warmed_head_and_differ_in_stage_two(trained, tiny_e5, real_corpus,
                                                                                      tmp_path):
    """A grid's pretrain.warmup_seed: replica seeds 1 and 2 load the head that seed 0's stage 1
    warmed up (the same warm-up key, so the same weights), and their stage 2 differs."""
    cache = trained["me5-mlm"].parent / "warmup"
    records, weights = {}, {}
    for seed in (1, 2):
        out = tmp_path / f"mlm-p{seed}"
        records[seed] = e5c.continue_member("me5-mlm", real_corpus, out, budget=BUDGET, base=tiny_e5, progress=False,
                                            vocab_cache=tmp_path / "cache", warmup_cache=cache, seed=seed, warmup_seed=0)
        weights[seed] = load_file(str(out / "model.safetensors"))
    assert all(r["stages"]["warmup"]["loaded"].endswith(".safetensors") for r in records.values())
    assert records[1]["warmup_seed"] == records[2]["warmup_seed"] == 0 and records[1]["seed"] == 1
    assert records[1]["stages"]["warmup"]["heldout_loss_after"] == records[2]["stages"]["warmup"]["heldout_loss_after"]
    assert any(not torch.equal(weights[1][k], weights[2][k]) for k in weights[1]), "stage 2 follows the seed"
    own = e5c.continue_member("me5-mlm", real_corpus, tmp_path / "own", budget=BUDGET, base=tiny_e5, progress=False,
                              vocab_cache=tmp_path / "cache", warmup_cache=cache, seed=1)
    assert "loaded" not in own["stages"]["warmup"], "without warmup_seed a replica warms its own head up"
