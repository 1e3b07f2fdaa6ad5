"""Controlled continued pretraining of multilingual-e5-small: one control, four alternatives.

| member    | objective after me5-small                                                    |
|-----------|------------------------------------------------------------------------------|
| me5-mlm   | masked LM on the texts of the parallel training pairs (the control)          |
| me5-m2o   | translation into English (de/es/fr/ru -> en) through a small fresh decoder   |
| me5-o2m   | translation out of English (en -> de/es/fr/ru)                               |
| me5-m2m   | both                                                                         |
| me5-align | contrastive translation ranking (in-batch InfoNCE between a sentence's and   |
|           | its translation's pooled encodings; no head): explicit sentence alignment    |

All five start from the same weights, read the same parallel training text, and follow one
two-stage protocol (recorded in ``continued.json``, stage by stage):

1. **Head warm-up** (``warmup_steps``): the encoder is frozen; the head (masked-LM head or
   decoder; me5-align has none, so its stage is empty) trains alone on encoder states computed
   once, for ``warmup_pool`` training items, and cached. This stage costs head time only, and
   the encoder's first gradients in stage 2 come from a head that already works. The three
   translation members share one decoder warmed up on all eight directions (computed by the
   first member that needs it, loaded by the others), as the paper's three MT checkpoints were
   all continued from the same mBART-50, whose decoder was pretrained in every language; with
   the encoder frozen, stage 1 leaves every member's encoder exactly as me5-small has it.
2. **Joint continuation** (``steps``): encoder and head train together, every member for the
   same steps with ``batch_size`` encoder sequences each (masked LM: texts; translation:
   sources; alignment: ``batch_size / 2`` pairs, both sides) and the same schedule and rates.

What else is the same for every member, so that only the objective differs:

- the encoder's 250,002-row word-embedding matrix is frozen, and so are the heads' copies of
  its rows (the output layer of both heads predicts only the ``V'`` pieces that occur in the
  corpus's training text, ``corpus_pieces``, about 28k of the 250k, with e5's rows as fixed
  output vectors and a trained bias); training them at the head's rate overwrote e5's geometry
  within tens of steps;
- only the top ``train_layers`` encoder layers are trained (``None``: all twelve);
- batches are drawn length-grouped (``mtnb.pretraining.zoo.grouped_batches``), so they pad little;
- the heads' output layer runs in bfloat16 where the CPU has native bf16, else float32 (``output_logits``), the losses in float32;
- ``precision`` (``mtnb.core.precision``) sets the dtype of both stages' forward passes (the encoding
  of the warm-up pool included); the held-out losses, chrF and retrieval are computed in float32
  at every precision, so that they compare across precisions;
- every encoder input is ``"passage: " + text`` (e5's prefix), at most ``max_length`` tokens.

Masked LM (BERT's recipe, 15% of the text's pieces: 80% <mask>, 10% random, 10% kept) puts a
head on the last layer that matches the decoder's capacity: one pre-norm Transformer encoder
layer, then ``x -> LayerNorm(GELU(W x)) E'^T + b`` at the masked positions only. (With the
dense layer alone, the encoder's top layer did the head's work: the control fell to 32.7 on
mini-topic outside English against me5-small's 45.7; with the layer, 45.7 too.)
Translation feeds the encoder's last layer to a one-layer pre-norm Transformer decoder
whose first input token names the target language (as mBART-50's forced first token does):
decoder input ``[<2xx>] y_1 ... y_n``, labels ``y_1 ... y_n </s>``. The decoder standardizes
its memory per dimension, ``(h - mu) / sigma`` with ``mu``, ``sigma`` fixed from the warm-up's
cached states: e5's token states share a large common component (mean cosine 0.71 between two
tokens), which left cross-attention nearly uniform, so a decoder that could not tell source
positions apart learned a target-language model instead of a translation (on 64 pairs it
reached training chrF 5 before, 77 after). Greedy decoding starts from ``[<2xx>]``, keeps each
layer's keys and values (one token's pass per step) and writes at most 2n + 8 tokens for n
source pieces. Its chrF is reported beside two bars: copying the source unchanged, and the same
model translating a *mismatched* source (each test sentence's encoding swapped for another's),
which is what the decoder's own target-language model scores without using the source. Every
member also reports translation retrieval on held-out pairs (top-1 accuracy of finding each
sentence's translation by the cosine of mean-pooled last-layer encodings), before and after.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mtnb.core.errors import MtnbError
from mtnb.core.files import atomic_file, atomic_folder, save_npy
from mtnb.core.paths import project_root
from mtnb.core.precision import autocast, precision_name, resolve_precision
from mtnb.data.inputs import E5_PREFIXES
from mtnb.data.mini.datasets import corpus_manifest, load_mini
from mtnb.models.loading import load_encoder, quiet_transformers
from mtnb.models.me5 import ensure_me5_small
from mtnb.models.training import adamw_loop, linear_schedule, seed_everything
from mtnb.pretraining.heads import Continued, Decoder, MaskedLMHead, mean_pool
from mtnb.pretraining.members import E5_MEMBERS, LANGS, TRANSLATION, E5Budget, check_e5_request
from mtnb.pretraining.zoo import (chrf_per_direction, copy_source_chrf, grouped_batches, heldout_loss, mlm_batch,
                                  train_loop, translation_pairs)

FIXED = {"words", "words_bf16"}       # the heads' copies of e5's rows: never trained, never saved
PREFIX = E5_PREFIXES["passage"]  # every input of continued pretraining is a passage


# --------------------------------------------------------------------------------------------
# The output vocabulary: the corpus's pieces
# --------------------------------------------------------------------------------------------

def corpus_pieces(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """Sorted ids of the pieces that occur in ``texts`` (whole, with and without e5's prefix:
    every piece an input or a target can hold), plus the special tokens; shape (V',).
    (``max_length`` is part of the cache key only.)"""
    unique = sorted(set(texts))
    ids = tokenizer(unique)["input_ids"] + tokenizer([PREFIX + t for t in unique[:1000]])["input_ids"]
    seen = set(tokenizer.all_special_ids)
    for row in ids:
        seen.update(row)
    return np.array(sorted(seen), dtype=np.int64)


def cached_corpus_pieces(tokenizer, corpus_root: Path, texts: list[str], max_length: int,
                         cache_dir: Path | None = None) -> np.ndarray:
    """``corpus_pieces`` computed once per corpus, tokenizer and length (tokenizing the whole
    corpus takes tens of seconds; the four members share the result), kept under
    runs/cache/e5-vocabulary/<key>.npy, the key a SHA-256 of the corpus manifest's file hashes,
    the tokenizer's vocabulary size and ``max_length``."""
    files = corpus_manifest(corpus_root)["files"]
    key = hashlib.sha256(json.dumps([files, len(tokenizer), max_length, PREFIX], sort_keys=True,
                                    default=str).encode()).hexdigest()[:20]
    cache = (cache_dir or project_root() / "runs" / "cache" / "e5-vocabulary") / f"{key}.npy"
    if cache.is_file():
        return np.load(cache)
    kept = corpus_pieces(tokenizer, texts, max_length)
    save_npy(cache, kept)
    return kept


class OutputVocabulary:
    """The map between the encoder's ids (0..250,001) and the heads' output ids (0..V'-1 for the
    kept pieces, then ``</s>`` is among them, then one ``<2xx>`` per language)."""

    def __init__(self, kept: np.ndarray, eos_id: int, unk_id: int, langs=LANGS):
        self.kept = kept
        self.to_small = np.full(int(kept.max()) + 1, -1, dtype=np.int64)
        self.to_small[kept] = np.arange(len(kept))
        self.eos, self.unk = int(self.to_small[eos_id]), int(self.to_small[unk_id])
        self.lang = {lang: len(kept) + i for i, lang in enumerate(langs)}
        self.size = len(kept) + len(langs)

    def small(self, ids):
        """Encoder ids -> output ids; a piece outside the kept set (only held-out text can hold
        one: the kept set is every piece of the training text) becomes ``<unk>``."""
        ids = np.asarray(ids)
        out = np.full(ids.shape, self.unk, dtype=np.int64)
        known = ids < len(self.to_small)
        out[known] = self.to_small[ids[known]]
        out[out < 0] = self.unk
        return out

    def full(self, small_ids) -> list[int]:
        """Output ids -> encoder ids (language tokens dropped)."""
        return [int(self.kept[i]) for i in small_ids if i < len(self.kept)]


def corpus_vocabulary(tokenizer, corpus_root: Path, mono: dict[str, list[str]], parallel: dict[str, list[dict]],
                      max_length: int, cache_dir: Path | None = None) -> OutputVocabulary:
    """The output vocabulary every member shares: the pieces of all the corpus's training text,
    monolingual (``mono``: {lang: texts}) and parallel (``parallel``: {lang: rows holding one
    text per language}), through ``cached_corpus_pieces`` (whose key assumes exactly this text)."""
    texts = [t for lang in LANGS for t in mono[lang]] + [r[k] for rows in parallel.values() for r in rows for k in r
                                                          if k in LANGS]
    kept = cached_corpus_pieces(tokenizer, corpus_root, texts, max_length, cache_dir)
    return OutputVocabulary(kept, tokenizer.eos_token_id, tokenizer.unk_token_id)


# --------------------------------------------------------------------------------------------
# The heads
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Training items and batches
# --------------------------------------------------------------------------------------------

def training_items(objective: str, parallel: dict[str, list[dict]]) -> list:
    """What a member trains on, all from the parallel training pairs (``parallel``: {lang: rows
    with columns en and lang}): masked LM, every text of every pair (the sentences the m2m
    member's encoder reads as sources); translation, ``(src_lang, tgt_lang, src, tgt)`` in the
    member's directions; alignment, ``(xx, "en", xx text, en text)`` for every language."""
    if objective == "mlm":
        return [row[key] for lang, rows in parallel.items() for row in rows for key in (lang, "en")]
    return translation_pairs(parallel, "m2o" if objective == "align" else objective)


def item_length(item) -> int:
    """Characters of what the encoder reads of an item (a text, or a pair's source)."""
    return len(item) if isinstance(item, str) else len(item[2])


def mlm_step_batch(tokenizer, vocab: OutputVocabulary, texts: list[str], rng, max_length: int) -> dict:
    """A masked-LM batch of prefixed texts with labels in output ids (-100 where not chosen)."""
    batch = mlm_batch(tokenizer, [PREFIX + t for t in texts], rng, max_length=max_length)
    labels = batch["labels"]
    chosen = labels != -100
    small = torch.full_like(labels, -100)
    small[chosen] = torch.from_numpy(vocab.small(labels[chosen].numpy()))
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": small}


def translation_step_batch(tokenizer, vocab: OutputVocabulary, pairs, max_length: int) -> dict:
    """Source ids (prefixed) with their mask; decoder input ``[<2tgt>] y`` and labels ``y </s>``
    in output ids, padded with -100 (labels) and 0 (decoder input, masked out by the labels)."""
    src = tokenizer([PREFIX + s for _, _, s, _ in pairs], truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt")
    targets = tokenizer([t for _, _, _, t in pairs], truncation=True, max_length=max_length - 1,
                        add_special_tokens=False)["input_ids"]
    width = max(len(t) for t in targets) + 1
    dec = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for i, ((_, tgt_lang, _, _), target) in enumerate(zip(pairs, targets)):
        y = vocab.small(target).tolist()
        dec[i, :len(y) + 1] = torch.tensor([vocab.lang[tgt_lang]] + y)
        labels[i, :len(y) + 1] = torch.tensor(y + [vocab.eos])
    return {"input_ids": src["input_ids"], "attention_mask": src["attention_mask"],
            "decoder_input_ids": dec, "labels": labels}


def align_step_batch(tokenizer, pairs, max_length: int) -> dict:
    """The pairs' sources, then their targets, as one batch of 2 x len(pairs) prefixed texts:
    row i and row len(pairs) + i are translations of each other."""
    enc = tokenizer([PREFIX + p[2] for p in pairs] + [PREFIX + p[3] for p in pairs], truncation=True,
                    max_length=max_length, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def step_batch(objective: str, tokenizer, vocab: OutputVocabulary, items: list, rng, max_length: int) -> dict:
    """One batch of ``objective`` from ``items`` (see ``training_items``)."""
    if objective == "mlm":
        return mlm_step_batch(tokenizer, vocab, items, rng, max_length)
    if objective == "align":
        return align_step_batch(tokenizer, items, max_length)
    return translation_step_batch(tokenizer, vocab, items, max_length)


# --------------------------------------------------------------------------------------------
# The model: encoder + head
# --------------------------------------------------------------------------------------------


def _loss(model, batch):
    """The Continued model's loss on ``batch`` (the ``loss_fn`` of pretrain's loops)."""
    return model(batch)


def decode_limit(source_pieces: int, max_length: int) -> int:
    """How many tokens greedy decoding may write for a source of ``source_pieces`` pieces:
    2 n + 8, at most ``max_length``. No reference among the mini corpus's first 60 test pairs in
    any of the 8 directions is longer than that (the longest is 2.5 n). A decoder that has not
    learned to write ``</s>`` stops there instead of at ``max_length``."""
    return min(max_length, 2 * source_pieces + 8)


def greedy_translate(model, tokenizer, vocab: OutputVocabulary, sources: list[str], tgt_lang: str, max_length: int,
                     batch_size: int = 16) -> list[str]:
    """Greedy decoding from ``[<2tgt>]`` until ``</s>`` or ``decode_limit`` tokens. Sources are
    decoded in batches of similar length (the outputs come back in the sources' order)."""
    model.eval()
    if not sources:
        return []
    pieces = [len(ids) for ids in tokenizer(sources, add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(sources)), key=lambda i: (pieces[i], i))
    out: list[str] = [""] * len(sources)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            enc = tokenizer([PREFIX + sources[i] for i in rows], truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
            memory = model.encode(enc["input_ids"], enc["attention_mask"])
            limits = torch.tensor([decode_limit(pieces[i], max_length) for i in rows])
            tokens = torch.full((len(memory), 1), vocab.lang[tgt_lang])
            finished = torch.zeros(len(memory), dtype=torch.bool)
            cache = model.head.start(memory, enc["attention_mask"] == 0)
            for step in range(int(limits.max())):
                nxt = model.head.step(tokens[:, -1], step, cache).argmax(-1)
                nxt[finished] = vocab.eos
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
                finished |= (nxt == vocab.eos) | (step + 1 >= limits)
                if finished.all():
                    break
            for i, row in zip(rows, tokens[:, 1:].tolist()):
                row = row[:row.index(vocab.eos)] if vocab.eos in row else row  # a row stops at its limit
                out[i] = tokenizer.decode(vocab.full(row), skip_special_tokens=True)
    return out


def chrf_table(model, tokenizer, vocab, parallel_test: dict[str, list[dict]], n: int, max_length: int,
               mismatched: bool = False) -> dict:
    """chrF (sacrebleu) of greedy translations of the first ``n`` test pairs in every direction
    (``xx-en`` and ``en-xx``). ``mismatched``: translate source i+1 (cyclically) in place of source
    i, against reference i: what the decoder scores without using its source."""
    def translate(sources, src_lang, tgt_lang):
        if mismatched:
            sources = sources[1:] + sources[:1]
        return greedy_translate(model, tokenizer, vocab, sources, tgt_lang, max_length)

    return chrf_per_direction(translate, parallel_test, n)


# --------------------------------------------------------------------------------------------
# Stage 1: the head on cached encoder states
# --------------------------------------------------------------------------------------------

def cache_states(model, batches: list[dict], progress: bool = True, dtype=None) -> list[dict]:
    """Encode each batch once with the frozen encoder (forward passes at the autocast ``dtype``;
    None: float32); returns per batch its inputs with ``memory`` (batch, n, d), float32, added."""
    cached = []
    model.eval()
    with torch.no_grad():  # not inference_mode: stage 1 backpropagates through the head from these
        for batch in tqdm(batches, desc="encoding the warm-up pool", disable=not progress):
            with autocast(dtype, batch["input_ids"].device):
                memory = model.encode(batch["input_ids"], batch["attention_mask"])
            cached.append({**batch, "memory": memory.float().clone()})
    return cached


def cached_loss(model, batch: dict):
    """The head's loss on a cached batch (``cache_states``), the encoder not run."""
    return model.head_loss(batch["memory"], batch)


def warm_up_head(model, cached: list[dict], budget: E5Budget, rng, progress: bool = True, desc: str = "head",
                 dtype=None) -> dict:
    """Stage 1: ``budget.warmup_steps`` AdamW steps of the head alone (lr ``head_lr``, linear
    warm-up and decay), each on one cached batch drawn at random (the encoder is not run), the
    head's forward passes at the autocast ``dtype`` (None: float32; low precision also takes
    AdamW's fused kernel, ``mtnb.models.training.adamw_loop``). Returns the steps, tokens and
    seconds."""
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=budget.head_lr, weight_decay=0.01,
                                  **adamw_loop(fused=dtype is not None))
    warmup = max(1, int(budget.warmup * budget.warmup_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, budget.warmup_steps, warmup))
    return train_loop(model.head, lambda step: cached[int(rng.integers(len(cached)))], budget.warmup_steps,
                      budget.head_lr, progress=progress, loss_fn=lambda head, batch: cached_loss(model, batch),
                      optimizer=(optimizer, scheduler), desc=f"{desc}, stage 1", dtype=dtype)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def retrieval_accuracy(model, tokenizer, parallel_test: dict[str, list[dict]], n: int, max_length: int) -> dict:
    """Top-1 accuracy (%) of finding each of the first ``n`` test sentences' translation among
    the other side's ``n`` by the cosine of mean-pooled last-layer encodings, both ways, per
    language pair (``"de-en"``: German queries, English candidates)."""
    model.eval()

    def encode(texts):
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                enc = tokenizer([PREFIX + t for t in texts[start:start + 32]], truncation=True, max_length=max_length,
                                padding=True, return_tensors="pt")
                out.append(mean_pool(model.encode(enc["input_ids"], enc["attention_mask"]), enc["attention_mask"]))
        return torch.nn.functional.normalize(torch.cat(out), dim=-1)

    scores = {}
    for lang, rows in parallel_test.items():
        rows = rows[:n]
        xx, en = encode([r[lang] for r in rows]), encode([r["en"] for r in rows])
        sim = xx @ en.T
        truth = torch.arange(len(rows))
        scores[f"{lang}-en"] = float((sim.argmax(1) == truth).float().mean() * 100)
        scores[f"en-{lang}"] = float((sim.argmax(0) == truth).float().mean() * 100)
    return scores


# --------------------------------------------------------------------------------------------
# One member, end to end
# --------------------------------------------------------------------------------------------

def warmup_key(objective: str, head, base_folder: Path, corpus_root: Path, vocab: OutputVocabulary, budget: E5Budget,
               seed: int, precision: str = "fp32") -> str:
    """What determines a warmed-up head: the head (the three translation members share one
    decoder, warmed up on all eight directions) and its layout (the names and shapes of its
    trained tensors), the base weights, the corpus, the output vocabulary, the stage-1 budget,
    the seed and, unless it is fp32 (whose keys are those from before the setting), the
    resolved precision; a SHA-256 prefix."""
    weights = hashlib.sha256()
    with open(base_folder / "model.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 24), b""):
            weights.update(block)
    stage1 = {k: v for k, v in asdict(budget).items() if k not in ("steps", "batch_size", "encoder_lr", "train_layers",
                                                                      "eval_pairs", "temperature")}
    layout = [[name, list(t.shape)] for name, t in head.state_dict().items() if name not in FIXED]
    doc = ["decoder" if objective in TRANSLATION else objective, layout, weights.hexdigest(),
           corpus_manifest(corpus_root)["files"], hashlib.sha256(vocab.kept.tobytes()).hexdigest(), stage1, seed]
    if precision != "fp32":
        doc.append(precision)
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def warm_up_or_load(model, key: str, pool: list, dev_batches: list[dict], budget: E5Budget, tokenizer, vocab: OutputVocabulary,
                    seed: int, cache_dir: Path | None, progress: bool, desc: str, dtype=None) -> dict:
    """Stage 1 for ``model``'s head: load the head warmed up under ``key`` from ``cache_dir``
    (default runs/cache/e5-warmup), or warm it up (``budget.warmup_pool`` items of ``pool``
    encoded once by the frozen encoder, then ``warm_up_head``, forward passes at the autocast
    ``dtype``) and save it there. A lock file makes a second job asking for the same key wait
    for the first and load its result, so the three translation members pay for their shared
    decoder once. Returns the stage's record, with the held-out loss of this member's objective
    before and after."""
    cache_dir = cache_dir or project_root() / "runs" / "cache" / "e5-warmup"
    cache_dir.mkdir(parents=True, exist_ok=True)
    weights, meta = cache_dir / f"{key}.safetensors", cache_dir / f"{key}.json"
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    before = heldout_loss(model, dev_batches, _loss)
    with open(cache_dir / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if weights.is_file() and meta.is_file():
            missing, unexpected = model.head.load_state_dict(load_file(str(weights)), strict=False)
            if unexpected or set(missing) - FIXED:
                raise MtnbError(f"{weights} does not fit this head (missing {sorted(set(missing) - FIXED)}, unexpected "
                                f"{unexpected}); delete it and run again")
            record = {**json.loads(meta.read_text()), "loaded": str(weights)}
        else:
            rng = np.random.default_rng((seed, 1))
            lengths = np.array([item_length(item) for item in pool])
            picks = rng.choice(len(pool), size=min(budget.warmup_pool, len(pool)), replace=False)
            picks = picks[np.argsort(lengths[picks], kind="stable")]          # length-sorted: batches pad little
            batches = [step_batch(model.objective, tokenizer, vocab, [pool[i] for i in picks[k:k + budget.warmup_batch_size]],
                                  rng, budget.max_length) for k in range(0, len(picks), budget.warmup_batch_size)]
            start = time.perf_counter()
            cached = cache_states(model, batches, progress, dtype)
            encode_seconds = time.perf_counter() - start
            if model.objective in TRANSLATION:
                model.head.standardize(torch.cat([c["memory"][c["attention_mask"].bool()] for c in cached]))
            trained = warm_up_head(model, cached, budget, rng, progress, desc=desc, dtype=dtype)
            record = {"frozen": "the whole encoder", "pool": len(picks), "encode_seconds": encode_seconds, **trained,
                      "trained_on": "translation, all eight directions" if model.objective in TRANSLATION
                      else "masked LM"}
            with atomic_file(weights) as tmp:
                save_file({k: v.contiguous() for k, v in model.head.state_dict().items() if k not in FIXED}, str(tmp))
            meta.write_text(json.dumps(record, indent=1))
    return {**record, "heldout_loss_before": before, "heldout_loss_after": heldout_loss(model, dev_batches, _loss)}


def continue_member(member: str, corpus_root: str | Path, out_dir: str | Path, *, budget: str | E5Budget = "mini",
                    seed: int = 0, base: str | Path | None = None, progress: bool = True,
                    vocab_cache: str | Path | None = None, warmup_cache: str | Path | None = None,
                    precision: str = "fp32", warmup_seed: int | None = None) -> dict:
    """Continue me5-small (or the checkpoint folder ``base``) on ``member``'s objective through
    both stages and write its encoder to ``out_dir`` (a BERT checkpoint folder with
    ``continued.json``); returns the record. ``vocab_cache``: where the corpus vocabulary is
    cached (runs/cache/e5-vocabulary); ``warmup_cache``: where warmed-up heads are kept
    (runs/cache/e5-warmup; see ``warm_up_or_load``). Training runs on the CPU, both stages'
    forward passes at ``precision`` (fp32, bf16 or auto: ``mtnb.core.precision``).

    ``warmup_seed``: the seed of stage 1 (the head's initial weights and its warm-up batches),
    when it is to differ from ``seed``. Pretraining replicas that share one (a grid's
    ``pretrain.warmup_seed``) share one warmed-up head, computed once and loaded by the others,
    and differ only in stage 2: its batches, masks and dropout. None: ``seed`` (each replica
    warms its own head up)."""
    dtype = resolve_precision(precision, "cpu")
    stage1_seed = seed if warmup_seed is None else warmup_seed
    corpus_root, out_dir = Path(corpus_root), Path(out_dir)
    budget = check_e5_request(member, corpus_root, budget)
    objective = E5_MEMBERS[member]
    base_folder = Path(base) if base is not None else ensure_me5_small()
    seed_everything(seed)

    encoder = load_encoder(str(base_folder))
    tokenizer, bert = encoder.tokenizer, encoder.model
    mono = {lang: load_mini("monolingual", lang, "train", root=corpus_root)["text"] for lang in LANGS}
    parallel = {lang: load_mini("parallel", lang, "train", root=corpus_root).to_list() for lang in LANGS[1:]}
    parallel_test = {lang: load_mini("parallel", lang, "test", root=corpus_root).to_list() for lang in LANGS[1:]}
    vocab = corpus_vocabulary(tokenizer, corpus_root, mono, parallel, budget.max_length,
                              Path(vocab_cache) if vocab_cache else None)

    bert.embeddings.word_embeddings.weight.requires_grad_(False)
    kept_rows = bert.embeddings.word_embeddings.weight.detach()[torch.from_numpy(vocab.kept)]
    torch.manual_seed(stage1_seed)
    head = (MaskedLMHead(kept_rows, bert.config.num_attention_heads) if objective == "mlm" else
            Decoder(kept_rows, len(LANGS), budget.decoder_layers, bert.config.num_attention_heads, budget.max_length)
            if objective in TRANSLATION else None)
    model = Continued(bert, head, objective, budget.temperature)
    pool = training_items(objective, parallel)
    heldout = training_items(objective, {lang: rows[-(budget.heldout // 4):] for lang, rows in parallel_test.items()})
    dev_rng = np.random.default_rng(1234)
    dev_batches = [step_batch(objective, tokenizer, vocab, heldout[i:i + 16], dev_rng, budget.max_length)
                   for i in range(0, len(heldout), 16)]
    lengths = np.array([item_length(item) for item in pool])
    retrieval_before = retrieval_accuracy(model, tokenizer, parallel_test, budget.eval_pairs, budget.max_length)

    # stage 1: the head alone, on cached encoder states (its own random streams, so stage 2 draws
    # the same batches and dropout whether stage 1 ran here or was loaded)
    stages = {}
    if head is not None and budget.warmup_steps:
        warm_pool = training_items("m2m" if objective in TRANSLATION else objective, parallel)
        key = warmup_key(objective, head, base_folder, corpus_root, vocab, budget, stage1_seed, precision_name(dtype))
        stages["warmup"] = warm_up_or_load(model, key, warm_pool, dev_batches, budget, tokenizer, vocab, stage1_seed,
                                           Path(warmup_cache) if warmup_cache else None, progress, member, dtype)
    elif objective in TRANSLATION:  # no warm-up: standardize from the held-out batches' states
        with torch.no_grad():
            head.standardize(torch.cat([model.encode(b["input_ids"], b["attention_mask"])[b["attention_mask"].bool()]
                                        for b in dev_batches]))
    torch.manual_seed(seed + 1)
    rng = np.random.default_rng((seed, 2))

    # stage 2: encoder and head together
    for p in bert.parameters():
        p.requires_grad_(True)
    bert.embeddings.word_embeddings.weight.requires_grad_(False)
    frozen_layers = freeze_lower_layers(bert, budget.train_layers)
    before = heldout_loss(model, dev_batches, _loss)
    groups = [{"params": [p for p in bert.parameters() if p.requires_grad], "lr": budget.encoder_lr}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": budget.head_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.01, **adamw_loop(fused=dtype is not None))
    warmup = max(1, int(budget.warmup * budget.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: linear_schedule(s, budget.steps, warmup))
    per_step = budget.batch_size // 2 if objective == "align" else budget.batch_size
    batches = grouped_batches(lengths, per_step, rng)
    trained = train_loop(model, lambda step: step_batch(objective, tokenizer, vocab, [pool[i] for i in next(batches)],
                                                        rng, budget.max_length),
                         budget.steps, budget.head_lr, progress=progress, loss_fn=_loss,
                         optimizer=(optimizer, scheduler), desc=f"{member}, stage 2", dtype=dtype)
    stages["joint"] = {"frozen": "the word embeddings" + (f", the embedding block and layers 0-{frozen_layers - 1}"
                                                          if frozen_layers else ""),
                       "sequences_per_step": budget.batch_size, **trained, "heldout_loss_before": before,
                       "heldout_loss_after": heldout_loss(model, dev_batches, _loss)}

    chrf = chrf_mismatched = None
    if objective in TRANSLATION:
        chrf = chrf_table(model, tokenizer, vocab, parallel_test, budget.eval_pairs, budget.max_length)
        chrf_mismatched = chrf_table(model, tokenizer, vocab, parallel_test, budget.eval_pairs, budget.max_length,
                                     mismatched=True)
    first = stages.get("warmup", stages["joint"])
    record = {
        "member": member, "base": str(base_folder), "objective": "translate" if objective in TRANSLATION else objective,
        "directions": objective if objective in TRANSLATION else None, "seed": seed, "warmup_seed": stage1_seed,
        "precision": precision_name(dtype), "budget": asdict(budget),
        "output_vocabulary": len(vocab.kept), "training_items": len(pool),
        "frozen": "encoder word embeddings (250k rows) and the heads' copies of them; heads predict only the "
                  "corpus's pieces" + (f"; in stage 2 the embedding block and encoder layers 0-{frozen_layers - 1}"
                                       if frozen_layers else ""),
        "head_parameters": sum(p.numel() for p in head.parameters()) if head is not None else 0,
        "stages": stages, "trained": stages["joint"], "tokens_per_second": trained["tokens"] / trained["seconds"],
        "heldout_loss_before": first["heldout_loss_before"], "heldout_loss_after": stages["joint"]["heldout_loss_after"],
        "chrf": chrf, "chrf_copy_source": copy_source_chrf(parallel_test, budget.eval_pairs) if chrf else None,
        "chrf_mismatched_source": chrf_mismatched,
        "retrieval_before": retrieval_before,
        "retrieval_after": retrieval_accuracy(model, tokenizer, parallel_test, budget.eval_pairs, budget.max_length),
    }
    _save_encoder(bert, base_folder, record, out_dir)
    return record


def freeze_lower_layers(bert, train_layers: int | None) -> int:
    """Freeze the embedding block and all but the top ``train_layers`` encoder layers of ``bert``
    (None: freeze nothing more); returns how many layers are frozen."""
    layers = bert.encoder.layer
    if train_layers is None or train_layers >= len(layers):
        return 0
    frozen = len(layers) - train_layers
    for module in [bert.embeddings, *layers[:frozen]]:
        for p in module.parameters():
            p.requires_grad_(False)
    return frozen


def _save_encoder(bert, base_folder: Path, record: dict, out: Path) -> None:
    """Write the encoder (BertModel tensor names, safetensors) with me5-small's tokenizer files
    into a temporary sibling folder, then rename it into place."""
    bert.eval()
    with atomic_folder(out) as tmp:
        with quiet_transformers():
            bert.save_pretrained(tmp, safe_serialization=True)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (base_folder / name).is_file():
                shutil.copy2(base_folder / name, tmp / name)
        (tmp / "continued.json").write_text(json.dumps(record, indent=1))
