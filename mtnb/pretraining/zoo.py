"""The mini model zoo: small models trained here on the same corpus, differing in objective.

| member          | architecture | objective                                                    |
|-----------------|--------------|--------------------------------------------------------------|
| mini-mbert      | BERT         | masked LM (15%: 80% [MASK], 10% random, 10% kept), WordPiece |
| mini-xlmr       | XLM-RoBERTa  | masked LM, unigram vocabulary                                |
| mini-mbart      | mBART        | denoising: sentence permutation, then span infilling (span   |
|                 |              | lengths ~ Poisson(3.5), about 35% of tokens masked, each     |
|                 |              | span one <mask>), a language token per sequence              |
| mini-mbart-m2o  | mBART        | mini-mbart continued on translation into English             |
| mini-mbart-o2m  | mBART        | mini-mbart continued on translation out of English           |
| mini-mbart-m2m  | mBART        | mini-mbart continued on both directions                      |
| mini-nllb       | M2M100       | translation in both directions, from scratch, BPE vocabulary |
| mini-random     | XLM-RoBERTa  | none: mini-xlmr's architecture and tokenizer, untrained      |

Every encoder has the same depth and width (``SHAPE``); seq2seq models add a smaller decoder.
The language-model objectives (masked LM, denoising) see the same number of training tokens;
the three continued models the same number of optimizer steps. Each checkpoint is a standard
Hugging Face folder (safetensors, tokenizer, config) with ``pretrain.json`` recording the
budget, the tokens seen, the held-out loss against the untrained model's, chrF per translation
direction where the model has a decoder, and the speed. ``precision`` (``mtnb.core.precision``) sets
the dtype of the training steps' forward passes; the held-out losses and chrF are computed in
float32 at every precision, so that they compare across precisions.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from sacrebleu.metrics import CHRF
from tqdm.auto import tqdm
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, BertConfig, BertForMaskedLM, M2M100Config,
                          M2M100ForConditionalGeneration, MBartConfig, MBartForConditionalGeneration, XLMRobertaConfig,
                          XLMRobertaForMaskedLM)

from mtnb.core.errors import MtnbError
from mtnb.core.files import atomic_folder
from mtnb.core.precision import autocast, grad_scaler, precision_name, resolve_precision
from mtnb.data.languages import language_code
from mtnb.data.mini.datasets import load_mini
from mtnb.models.loading import quiet_transformers
from mtnb.models.training import adamw_loop, linear_schedule, optimizer_step, seed_everything
from mtnb.pretraining.members import LANGS, MAX_LENGTH, SHAPE, VOCAB_SIZE, Budget, check_zoo_request
from mtnb.pretraining.vocab import train_tokenizer

# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def build_model(family: str, tokenizer):
    """An untrained model of ``family`` at SHAPE, for a tokenizer (its size and special ids)."""
    s = SHAPE
    if family == "bert":
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                            num_attention_heads=s["heads"], intermediate_size=s["ffn"],
                            max_position_embeddings=s["max_positions"], pad_token_id=tokenizer.pad_token_id)
        return BertForMaskedLM(config)
    if family == "xlm-roberta":
        config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                                  num_attention_heads=s["heads"], intermediate_size=s["ffn"],
                                  max_position_embeddings=s["max_positions"] + 2, pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        return XLMRobertaForMaskedLM(config)
    common = dict(vocab_size=len(tokenizer), d_model=s["hidden"], encoder_layers=s["layers"],
                  decoder_layers=s["decoder_layers"], encoder_attention_heads=s["heads"],
                  decoder_attention_heads=s["heads"], encoder_ffn_dim=s["ffn"], decoder_ffn_dim=s["ffn"],
                  max_position_embeddings=s["max_positions"], pad_token_id=tokenizer.pad_token_id,
                  bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else 0,
                  eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.eos_token_id,
                  scale_embedding=True, dropout=0.1)
    if family == "mbart":
        return MBartForConditionalGeneration(MBartConfig(**common))
    return M2M100ForConditionalGeneration(M2M100Config(**common))


# --------------------------------------------------------------------------------------------
# Objectives: each turns a list of texts (or pairs) into one batch of tensors
# --------------------------------------------------------------------------------------------

def mlm_batch(tokenizer, texts: list[str], rng: np.random.Generator, p: float = 0.15,
              max_length: int = MAX_LENGTH) -> dict:
    """Masked LM (BERT's recipe): choose 15% of the non-special tokens; of those 80% become the
    mask token, 10% a random token, 10% stay; labels are -100 except at chosen positions."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                    return_special_tokens_mask=True)
    ids = enc["input_ids"].clone()
    candidates = (enc.pop("special_tokens_mask") == 0) & (enc["attention_mask"] == 1)
    chosen = torch.from_numpy(rng.random(ids.shape) < p) & candidates
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.from_numpy(rng.random(ids.shape))
    ids[chosen & (roll < 0.8)] = tokenizer.mask_token_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    ids[swap] = torch.from_numpy(rng.integers(0, len(tokenizer), ids.shape))[swap]
    return {"input_ids": ids, "attention_mask": enc["attention_mask"], "labels": labels}


def permute_sentences(text: str, rng: np.random.Generator) -> str:
    """mBART's sentence permutation: split after ". " and shuffle the sentences."""
    sentences = [s for s in text.replace(". ", ".\n").split("\n") if s]
    order = rng.permutation(len(sentences))
    return " ".join(sentences[i] for i in order)


def infill(ids: list[int], mask_id: int, rng: np.random.Generator, ratio: float = 0.35,
           poisson: float = 3.5) -> list[int]:
    """mBART's span infilling on a token id list: spans with Poisson(3.5) lengths are replaced,
    each by a single mask token, until about ``ratio`` of the tokens are masked (a zero-length
    span inserts a mask)."""
    ids = list(ids)
    goal, masked = int(round(ratio * len(ids))), 0
    while masked < goal and ids:
        length = min(int(rng.poisson(poisson)), goal - masked, len(ids))
        start = int(rng.integers(0, len(ids) - length + 1))
        ids[start:start + length] = [mask_id]
        masked += max(length, 1)
    return ids


def denoise_batch(tokenizer, texts_by_lang: list[tuple[str, str]], rng: np.random.Generator) -> dict:
    """Denoising: the target is ``[lang] text </s>``; the input is the same with its sentences
    permuted and spans infilled (language token and </s> kept)."""
    inputs, labels = [], []
    for lang, text in texts_by_lang:
        tokenizer.src_lang = language_code(lang, "mbart50")
        target = tokenizer(text, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        noisy = tokenizer(permute_sentences(text, rng), truncation=True, max_length=MAX_LENGTH)["input_ids"]
        inputs.append([noisy[0]] + infill(noisy[1:-1], tokenizer.mask_token_id, rng) + [noisy[-1]])
        labels.append(target)
    return _pad_seq2seq(inputs, labels, tokenizer.pad_token_id, torch)


def translation_pairs(parallel: dict[str, list[dict]], directions: str) -> list[tuple[str, str, str, str]]:
    """``(src_lang, tgt_lang, src, tgt)`` for the directions: m2o = xx->en, o2m = en->xx,
    m2m = both, from ``{lang: rows with columns en and lang}``."""
    pairs = []
    for lang, rows in parallel.items():
        for row in rows:
            if directions in ("m2o", "m2m"):
                pairs.append((lang, "en", row[lang], row["en"]))
            if directions in ("o2m", "m2m"):
                pairs.append(("en", lang, row["en"], row[lang]))
    return pairs


def translation_batch(tokenizer, scheme: str, pairs: list[tuple[str, str, str, str]]) -> dict:
    """Translation as mBART-50 / NLLB mark it: source ``[src_lang] x </s>``, target
    ``[tgt_lang] y </s>``."""
    inputs, labels = [], []
    for src_lang, tgt_lang, src, tgt in pairs:
        tokenizer.src_lang = language_code(src_lang, scheme)
        tokenizer.tgt_lang = language_code(tgt_lang, scheme)
        enc = tokenizer(src, text_target=tgt, truncation=True, max_length=MAX_LENGTH)
        inputs.append(enc["input_ids"])
        labels.append(enc["labels"])
    return _pad_seq2seq(inputs, labels, tokenizer.pad_token_id, torch)


def _pad_seq2seq(inputs, labels, pad_id, torch) -> dict:
    width, target_width = max(map(len, inputs)), max(map(len, labels))
    ids = torch.full((len(inputs), width), pad_id)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    lab = torch.full((len(inputs), target_width), -100)
    for i, (x, y) in enumerate(zip(inputs, labels)):
        ids[i, :len(x)], mask[i, :len(x)], lab[i, :len(y)] = torch.tensor(x), 1, torch.tensor(y)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


# --------------------------------------------------------------------------------------------
# Training and evaluation
# --------------------------------------------------------------------------------------------

def model_loss(model, batch: dict):
    """The objective's mean cross-entropy on ``batch``. For a masked LM the vocabulary
    projection runs only at the chosen positions (about 15%): the same value as the full
    model's ``.loss``, without the (batch x length x vocabulary) logits of every other token."""
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if head is None or model.config.is_encoder_decoder:
        return model(**batch).loss
    hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    chosen = batch["labels"] != -100
    return torch.nn.functional.cross_entropy(head(hidden[chosen]).float(), batch["labels"][chosen])


def heldout_loss(model, batches: list[dict], loss_fn=model_loss) -> float:
    """Mean loss over fixed held-out batches (same masking for every model compared);
    ``loss_fn(model, batch)`` computes a batch's loss."""
    model.eval()
    with torch.no_grad():
        losses = [float(loss_fn(model, b)) for b in batches]
    return float(np.mean(losses))


def grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, group: int = 16):
    """Endless random batches of item indices, each drawn from ``group`` x ``batch_size`` random
    items sorted by length (``lengths``: one number per item, e.g. characters), so a batch
    pads to a length close to its own items'; the batches of a group come in random order."""
    while True:
        picks = rng.integers(0, len(lengths), group * batch_size)
        picks = picks[np.argsort(lengths[picks], kind="stable")]
        for g in rng.permutation(group):
            yield picks[g * batch_size:(g + 1) * batch_size].tolist()


def chrf_per_direction(translate, parallel_test: dict[str, list[dict]], n: int) -> dict[str, float]:
    """chrF (sacrebleu) of ``translate(sources, src_lang, tgt_lang) -> hypotheses`` on the first
    ``n`` test pairs of every direction (``xx-en`` and ``en-xx``), keyed ``"src-tgt"``."""
    scores = {}
    for lang, rows in parallel_test.items():
        rows = rows[:n]
        for src_lang, tgt_lang in ((lang, "en"), ("en", lang)):
            hyps = translate([r[src_lang] for r in rows], src_lang, tgt_lang)
            scores[f"{src_lang}-{tgt_lang}"] = CHRF().corpus_score(hyps, [[r[tgt_lang] for r in rows]]).score
    return scores


def chrf_by_direction(model, tokenizer, scheme: str, parallel_test: dict[str, list[dict]], n: int,
                      batch_size: int = 16, max_tokens: int = MAX_LENGTH) -> dict[str, float]:
    """chrF of a seq2seq model's greedy translations (target language forced as the first
    token, as mBART-50 and NLLB do), per direction."""
    model.eval()

    def translate(sources, src_lang, tgt_lang):
        tokenizer.src_lang = language_code(src_lang, scheme)
        forced = tokenizer.convert_tokens_to_ids(language_code(tgt_lang, scheme))
        hyps = []
        for i in range(0, len(sources), batch_size):
            enc = tokenizer(sources[i:i + batch_size], truncation=True, max_length=MAX_LENGTH, padding=True,
                            return_tensors="pt")
            with torch.no_grad():
                out = model.generate(**enc, forced_bos_token_id=forced, max_new_tokens=max_tokens,
                                     num_beams=1, do_sample=False)
            hyps += tokenizer.batch_decode(out, skip_special_tokens=True)
        return hyps

    return chrf_per_direction(translate, parallel_test, n)


def copy_source_chrf(parallel_test: dict[str, list[dict]], n: int) -> dict[str, float]:
    """chrF of copying the source unchanged, per direction, on the same first ``n`` test pairs:
    what shared names, numbers and markup alone score (a model that translates beats it)."""
    return chrf_per_direction(lambda sources, src_lang, tgt_lang: sources, parallel_test, n)


def train_loop(model, next_batch, total_steps: int, lr: float, stop_tokens: int | None = None,
               progress: bool = True, *, loss_fn=model_loss, optimizer=None, desc: str = "pretraining",
               dtype=None) -> dict:
    """AdamW with a linear warmup (5% of ``total_steps``) and linear decay, for ``total_steps``
    optimizer steps or until ``stop_tokens`` input tokens (non-padding) have been seen. Returns
    the steps, tokens and seconds. ``next_batch(step)`` gives each batch, ``loss_fn(model,
    batch)`` its loss; ``optimizer``: an (optimizer, scheduler) pair to use instead (``lr`` is
    then unused); ``dtype``: the autocast dtype of ``loss_fn``'s forward pass
    (``mtnb.core.precision.resolve_precision``; None: float32), the loss taken as float32; AdamW
    loops as ``mtnb.models.training.adamw_loop`` says (fused at low precision, else foreach)."""
    if optimizer is None:
        adamw = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, **adamw_loop(fused=dtype is not None))
        warmup = max(1, total_steps // 20)
        optimizer = adamw, torch.optim.lr_scheduler.LambdaLR(adamw, lambda s: linear_schedule(s, total_steps, warmup))
    optimizer, scheduler = optimizer
    device = next(model.parameters()).device
    scaler = grad_scaler(dtype, device)
    step, seen, start = 0, 0, time.perf_counter()
    bar = tqdm(total=total_steps, desc=desc, disable=not progress)
    model.train()
    while step < total_steps and (stop_tokens is None or seen < stop_tokens):
        batch = next_batch(step)
        with autocast(dtype, device):
            loss = loss_fn(model, batch).float()
        if not torch.isfinite(loss):
            raise MtnbError(f"the {desc} loss became {loss.item()} at step {step + 1}; lower the learning rate")
        optimizer_step(model, optimizer, scheduler, loss, scaler)
        step += 1
        seen += int(batch["attention_mask"].sum())
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.2f}")
    bar.close()
    return {"steps": step, "tokens": seen, "seconds": time.perf_counter() - start}


# --------------------------------------------------------------------------------------------
# One zoo member, end to end (what notebooks/pretrain.ipynb calls)
# --------------------------------------------------------------------------------------------


def pretrain_member(member: str, corpus_root: str | Path, zoo_dir: str | Path, *, budget: str | Budget = "mini",
                    base_dir: str | Path | None = None,
                    seed: int = 0, progress: bool = True, precision: str = "fp32") -> dict:
    """Train zoo ``member`` into ``zoo_dir/member`` (a Hugging Face checkpoint folder with
    ``pretrain.json``); returns the record. Members with a ``base`` read it from ``base_dir``
    (default ``zoo_dir``): ``base_dir/<base>``. Training runs on the CPU, its forward passes at
    ``precision`` (fp32, bf16 or auto: ``mtnb.core.precision``)."""
    dtype = resolve_precision(precision, "cpu")
    corpus_root, zoo_dir = Path(corpus_root), Path(zoo_dir)
    base_dir = Path(base_dir) if base_dir is not None else zoo_dir
    spec, budget = check_zoo_request(member, corpus_root, budget, base_dir)
    out = zoo_dir / member
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    mono = {lang: load_mini("monolingual", lang, "train", root=corpus_root)["text"] for lang in LANGS}
    mono_dev = {lang: load_mini("monolingual", lang, "dev", root=corpus_root)["text"][:64] for lang in LANGS}

    if spec.base is not None:
        tokenizer = AutoTokenizer.from_pretrained(base_dir / spec.base)
    else:
        vocab_texts = [t for lang in LANGS for t in mono[lang][:budget.vocab_texts]]
        tokenizer = train_tokenizer(spec.family, vocab_texts, VOCAB_SIZE)
    if spec.objective == "translate" and spec.base is not None:
        with quiet_transformers():
            model = AutoModelForSeq2SeqLM.from_pretrained(base_dir / spec.base, dtype=torch.float32)
    else:
        torch.manual_seed(seed)
        model = build_model(spec.family, tokenizer)

    # the batches of each objective, and fixed held-out batches to compare losses on
    scheme = "mbart50" if spec.family == "mbart" else "nllb"
    pool = [(lang, t) for lang in LANGS for t in mono[lang]]
    dev_pool = [(lang, t) for lang in LANGS for t in mono_dev[lang]]
    parallel = parallel_test = None
    if spec.objective in ("mlm", "none"):
        def make(items, r):
            return mlm_batch(tokenizer, [t for _, t in items], r)
    elif spec.objective == "denoise":
        def make(items, r):
            return denoise_batch(tokenizer, items, r)
    else:
        parallel = {lang: load_mini("parallel", lang, "train", root=corpus_root).to_list() for lang in LANGS[1:]}
        parallel_test = {lang: load_mini("parallel", lang, "test", root=corpus_root).to_list() for lang in LANGS[1:]}
        pool = translation_pairs(parallel, spec.directions)
        dev_pool = translation_pairs({lang: rows[-16:] for lang, rows in parallel_test.items()}, spec.directions)

        def make(items, r):
            return translation_batch(tokenizer, scheme, items)
    dev_rng = np.random.default_rng(1234)
    dev_batches = [make(dev_pool[i:i + 16], dev_rng) for i in range(0, len(dev_pool), 16)]
    loss_before = heldout_loss(model, dev_batches)

    lengths = np.array([len(item[1]) if len(item) == 2 else len(item[2]) for item in pool])
    batches = grouped_batches(lengths, budget.batch_size, rng)

    def next_batch(step):
        return make([pool[i] for i in next(batches)], rng)

    if spec.objective == "none":
        trained = {"steps": 0, "tokens": 0, "seconds": 0.0}
    elif spec.objective == "translate":
        trained = train_loop(model, next_batch, budget.mt_steps, budget.lr, progress=progress, dtype=dtype)
    else:
        # the schedule's length: the steps the token budget takes at the training texts' mean
        # length (estimated on 256 of them), with room to spare; training stops at the budget
        sample = make([pool[i] for i in np.random.default_rng(99).integers(0, len(pool), 256)], np.random.default_rng(99))
        mean_len = int(sample["attention_mask"].sum()) / 256
        cap = math.ceil(1.2 * budget.lm_tokens / (budget.batch_size * mean_len)) + 1
        trained = train_loop(model, next_batch, cap, budget.lr, stop_tokens=budget.lm_tokens, progress=progress,
                             dtype=dtype)
    loss_after = heldout_loss(model, dev_batches)
    chrf = None
    if spec.family in ("mbart", "m2m100"):
        if parallel_test is None:
            parallel_test = {lang: load_mini("parallel", lang, "test", root=corpus_root).to_list() for lang in LANGS[1:]}
        chrf = chrf_by_direction(model, tokenizer, scheme, parallel_test, budget.eval_pairs,
                                 max_tokens=budget.eval_tokens)
    record = {
        "member": member, "family": spec.family, "objective": spec.objective, "directions": spec.directions,
        "base": spec.base, "seed": seed, "precision": precision_name(dtype), "budget": asdict(budget), "shape": SHAPE,
        "vocab_size": len(tokenizer),
        "trained": trained, "tokens_per_second": trained["tokens"] / trained["seconds"] if trained["seconds"] else None,
        "heldout_loss_before": loss_before, "heldout_loss_after": loss_after, "chrf": chrf,
        "chrf_copy_source": copy_source_chrf(parallel_test, budget.eval_pairs) if chrf else None,
    }
    _save(model, tokenizer, record, out)
    return record


def _save(model, tokenizer, record: dict, out: Path) -> None:
    """Write the checkpoint into a temporary sibling folder, then rename it into place."""
    with atomic_folder(out) as tmp:
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "pretrain.json").write_text(json.dumps(record, indent=1))
