"""Hidden states of an encoder, computed once per model and input and cached on disk.

Two kinds of features, both float32:

- pooled: for one input sequence, every layer pooled to one vector, shape (n_layers + 1, hidden):
  the embedding output, then each Transformer layer,

      mean:  h̄ = Σ_t m_t h_t / Σ_t m_t      (m_t = 1 on non-padding tokens, special tokens included)
      first: h̄ = h_0                       (the first token: [CLS] / <s> / the language token)

- words: for one input sequence and one layer, the hidden state at given token positions (the
  first sub-word of each word, for tagging), shape (n_positions, hidden).

``FeatureExtractor`` serves one model's features. It keys each input by its token ids (so the
tokenizer, a text prefix, truncation and a language token are all part of the key), looks it up
in a ``FeatureStore`` under ``runs/cache/features/<model key>/`` and runs the encoder only over
the inputs not stored yet: one forward pass, batched by length under ``torch.inference_mode``
(``torch.no_grad`` under bf16/fp16 autocast, which then casts each weight once for all batches
instead of once per batch: e5-small's bf16 extraction 1.31x as fast at batch 4, 1.11x at batch
32, issue 30), gives the pooled features of every layer and the word features of the asked layer
together.
The model key is a SHA-256 of the weight files' content (``weights_fingerprint``), so a
retrained checkpoint never reuses stale features, while every task, seed, zero-shot evaluation
and CKA analysis of the same weights shares them. The key also holds the precision the forward
passes ran at (``mtnb.core.precision``) unless it is fp32: features computed under bf16 autocast
are never served to an fp32 request, nor the other way round (fp32 keys are those from before
the setting existed). Features are pooled and stored in float32 at every precision. The encoder
is loaded only when something is missing, and kept until ``close()``.

``extract_features`` is the CKA notebook's entry point: pooled features of given texts per
(model, language), through the same store, one model at a time. Its peak memory stays near the
largest encoder's size (``benchmarks/bench_features_memory.py``) for four reasons:

- glibc's mmap threshold is pinned at 128 KiB (``pin_mmap_threshold``). By default glibc raises
  the threshold to 32 MiB once a large block is freed, after which a layer's activations (a few
  MiB each) come from the heap, where fragmentation keeps freed space from the system: over four
  paper-size encoders the process grew to 3.3x the largest one. Pinned, every tensor of 128 KiB
  or more gets its own mapping and goes back to the system when freed (about 10% slower here);
- each hidden state is pooled by a hook as soon as the encoder computes it, so one of the
  n_layers + 1 hidden states of a batch is alive at a time, not all (``output_hidden_states``);
- batches of 4 sequences: on the mini corpus's CKA samples (up to 128 tokens) the forward
  passes of an mBART-large-shaped encoder add 0.13x its weights at batch 4 (working tensors
  such as attention scores and the 4x wide feed-forward activations, plus the features waiting
  to be written), 0.18x at batch 8 and 0.26x at batch 16;
- the features are read back from the store once every encoder is freed, so no model's
  features sit in memory beside the next model's weights.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mtnb.core.errors import MtnbError
from mtnb.core.files import save_npy, write_text
from mtnb.core.paths import project_root
from mtnb.core.precision import autocast, check_precision, default_device, precision_name, resolve_precision
from mtnb.data.inputs import input_prefixes, length_grouped_batches, set_language
from mtnb.models.loading import complete_spec, encoder_layers, encoder_shape, load_encoder, load_tokenizer
from mtnb.models.registry import checkpoint_folder, resolve

POOLINGS = ("mean", "first")
FEATURES_VERSION = 2  # bump when the way features are computed changes
SHARD_BYTES = 64 << 20  # a forward pass writes its features in shards of about this size


def default_cache_dir() -> Path:
    """``<project>/runs/cache/features``."""
    return project_root() / "runs" / "cache" / "features"


def weights_fingerprint(folder: str | Path, memo_dir: Path | None = None) -> str:
    """SHA-256 over the content of a checkpoint's weight files (safetensors or pickles).

    Hashing gigabytes takes seconds, so each file's digest is remembered in ``memo_dir``
    (``fingerprints.json``), keyed by its path, size and modification time.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        raise MtnbError(f"{folder}: no weight files to fingerprint")
    memo_path = (memo_dir or default_cache_dir()) / "fingerprints.json"
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    total = hashlib.sha256()
    changed = False
    for path in files:
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in memo:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):
                    digest.update(block)
            memo[key] = digest.hexdigest()
            changed = True
        total.update(f"{path.name}:{memo[key]}".encode())
    if changed:
        # another process may have added its own files meanwhile: merge, then replace atomically
        latest = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
        write_text(memo_path, json.dumps({**latest, **memo}, indent=0))
    return total.hexdigest()


def input_key(ids, positions=None) -> str:
    """The store key of one input: 32 hex digits of SHA-256 over its token ids (and, for word
    features, the token positions)."""
    h = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes())
    if positions is not None:
        h.update(b"|" + np.asarray(positions, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

class LayerReached(Exception):
    """Raised by the forward hook once a words-only batch has its layer: the rest is not needed."""


class FeatureStore:
    """Feature matrices on disk, one per key, each of shape (rows, hidden), float32.

    Written in shards and never overwritten::

        <folder>/<shard>.npy    (total rows, hidden): every entry's rows, one after the other
        <folder>/<shard>.json   {"keys": [...], "starts": [...], "stops": [...]}

    A shard's .json is written (atomically) after its .npy, so a killed writer leaves no
    entry that points at a partial file. Two processes adding the same entries at once write
    two shards; lookups take the first. Reads memory-map the shards.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.index: dict[str, tuple[str, int, int]] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._seen: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        """Read the index of shards written since (by this or another process)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.json")):
            if path.stem in self._seen:
                continue
            shard = json.loads(path.read_text())
            for key, start, stop in zip(shard["keys"], shard["starts"], shard["stops"]):
                self.index.setdefault(key, (path.stem, start, stop))
            self._seen.add(path.stem)

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def _array(self, shard: str) -> np.ndarray:
        if shard not in self._arrays:
            self._arrays[shard] = np.load(self.folder / f"{shard}.npy", mmap_mode="r")
        return self._arrays[shard]

    def get(self, key: str) -> np.ndarray:
        """The (rows, hidden) matrix stored under ``key`` (KeyError when absent)."""
        shard, start, stop = self.index[key]
        return np.array(self._array(shard)[start:stop])

    def row(self, key: str, row: int) -> np.ndarray:
        """Row ``row`` of the matrix under ``key``, shape (hidden,)."""
        shard, start, stop = self.index[key]
        if not 0 <= row < stop - start:
            raise IndexError(f"row {row} of an entry with {stop - start} rows")
        return np.array(self._array(shard)[start + row])

    def add(self, entries: dict[str, np.ndarray]) -> None:
        """Store ``{key: (rows, hidden) array}`` as one new shard (keys already stored are skipped)."""
        entries = {k: v for k, v in entries.items() if k not in self.index}
        if not entries:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(entries)
        stops = np.cumsum([len(entries[k]) for k in keys]).tolist()
        starts = [0] + stops[:-1]
        data = np.concatenate([np.asarray(entries[k], dtype=np.float32) for k in keys])
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:24]
        save_npy(self.folder / f"{name}.npy", data)
        write_text(self.folder / f"{name}.json", json.dumps({"keys": keys, "starts": starts, "stops": stops}))
        self.refresh()


# --------------------------------------------------------------------------------------------
# One model's features
# --------------------------------------------------------------------------------------------

class FeatureExtractor:
    """Pooled and word features of one model (registry name, folder or Hub id), from the store
    or from one forward pass.

    ``compute(pooled=..., words=..., layer=...)`` runs the encoder once over every input not yet
    stored; ``pooled(sequences)`` -> (n_layers + 1, n, hidden) (or (n, hidden) for one
    ``layer``); ``words(sequences, positions, layer)`` -> one (n_positions_i, hidden) array per
    sequence. Both compute what is missing first. Inputs are token id lists; ``encode_texts``
    makes them from texts the way the model expects (language token, e5 prefix). Nothing is
    loaded but config.json and the tokenizer until a forward pass is needed. The encoder runs on
    ``device`` (default: the GPU where there is one, else the CPU), at ``precision`` (fp32,
    bf16, fp16 or auto: ``mtnb.core.precision``). ``encoder``: an ``Encoder`` of this model
    already loaded on ``device`` (``mtnb.models.loading.load_encoder``), to use instead of
    loading one.
    """

    def __init__(self, model: str, registry=None, *, pooling: str = "mean", cache_dir: str | Path | None = None,
                 batch_size: int = 32, progress: bool = True, precision: str = "fp32", device: str | None = None,
                 encoder=None):
        if pooling not in POOLINGS:
            raise MtnbError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
        self.device = device or default_device()
        self.dtype = resolve_precision(precision, self.device)  # the forward passes' autocast dtype
        self.precision = precision_name(self.dtype)             # fp32 | bf16 | fp16 (resolved)
        self.model, self.registry, self.pooling = model, registry, pooling
        self.batch_size, self.progress = batch_size, progress
        self.folder = checkpoint_folder(resolve(model, registry))
        self.spec = complete_spec(resolve(model, registry), self.folder)
        shape = encoder_shape(self.folder)
        self.n_layers, self.hidden_size = shape.n_layers, shape.hidden_size
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._encoder = encoder
        self._tokenizer = encoder.tokenizer if encoder is not None else None
        self._root = None
        self._fingerprint = None
        self._stores: dict[str, FeatureStore] = {}
        self.forward_passes = 0     # how many times the encoder ran (0 when all came from the store)
        self.sequences_computed = 0

    # -- names and inputs --------------------------------------------------------------------

    def layer_index(self, layer: int) -> int:
        """``layer`` as an index into (embeddings, layer 1, ..., layer n): 0..n, or -1 for the
        last, -2 for the one before, ...; MtnbError when the model has no such layer."""
        depth = self.n_layers + 1
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -depth <= layer < depth:
            raise MtnbError(f"layer {layer!r}: model {self.model} has {self.n_layers} layers; use 0 (the "
                            f"embeddings) to {self.n_layers}, or -1 (the last) to -{depth}")
        return int(layer) % depth

    @property
    def tokenizer(self):
        """The model's tokenizer (loaded on first use, without the weights)."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.folder)
        return self._tokenizer

    def encode_texts(self, texts: list[str], lang: str | None, max_length: int, kind: str = "passage") -> list[list[int]]:
        """Token ids of ``texts`` as the model reads them: the source language set for models
        with language tokens, e5's prefix of ``kind`` (passage or query) for e5 models,
        truncated to ``max_length`` tokens."""
        if lang is not None:
            set_language(self.tokenizer, self.spec.lang_codes, lang)
        query, passage = input_prefixes(self.spec.inputs, "ranking")
        prefix = {"query": query, "passage": passage}[kind]
        return self.tokenizer([prefix + t for t in texts], truncation=True, max_length=max_length)["input_ids"]

    def fingerprint(self) -> str:
        """SHA-256 of the model's weight files (``weights_fingerprint``)."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.folder, self.cache_dir)
        return self._fingerprint

    def store_key(self) -> str:
        """The name of this model's folder in the cache: 32 hex digits of SHA-256 over the
        features' version, the weights' fingerprint and, unless it is fp32, the precision."""
        key = f"{FEATURES_VERSION}:{self.fingerprint()}"
        if self.precision != "fp32":
            key += f":{self.precision}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def _store(self, name: str) -> FeatureStore:
        if self._root is None:
            self._root = self.cache_dir / self.store_key()
            if not (self._root / "model.json").is_file():
                write_text(self._root / "model.json", json.dumps(
                    {"model": self.model, "folder": str(self.folder), "weights_sha256": self.fingerprint(),
                     "features_version": FEATURES_VERSION, "precision": self.precision, "n_layers": self.n_layers,
                     "hidden_size": self.hidden_size}, indent=1))
        if name not in self._stores:
            self._stores[name] = FeatureStore(self._root / name)
        return self._stores[name]

    def pooled_store(self) -> FeatureStore:
        """The store of pooled features (every layer) for this model and pooling."""
        return self._store(f"pooled-{self.pooling}")

    def words_store(self, layer: int) -> FeatureStore:
        """The store of word features of ``layer`` (an index, see ``layer_index``)."""
        return self._store(f"words-layer{self.layer_index(layer)}")

    # -- computing ---------------------------------------------------------------------------

    def compute(self, pooled=(), words=(), layer: int | None = None) -> None:
        """Compute and store what is missing, in one forward pass over the distinct inputs:
        pooled features of every layer for each id list in ``pooled``; word features of
        ``layer`` for each (ids, positions) in ``words``."""
        pooled_store = self.pooled_store()
        todo: dict[tuple, dict] = {}
        for ids in pooled:
            key = input_key(ids)
            if key not in pooled_store:
                todo.setdefault(tuple(ids), {})["pooled"] = key
        if words:
            if layer is None:
                raise MtnbError("word features need a layer")
            store, k = self.words_store(layer), self.layer_index(layer)
            for ids, positions in words:
                key = input_key(ids, positions)
                if key not in store:
                    todo.setdefault(tuple(ids), {}).setdefault("words", {})[key] = list(positions)
        if todo:
            self._forward(todo, None if not words else k)

    def _forward(self, todo: dict[tuple, dict], layer: int | None) -> None:
        """Run the encoder over ``todo``'s inputs (batched by length) and store the features.

        Hidden state i is what ``output_hidden_states`` gives: the input of Transformer layer i
        for i < n (the embedding output for i = 0), and the encoder's output (after mBART's and
        M2M100's final layer norm) for i = n. A forward pre-hook on layer i pools it (and takes
        the asked layer's word features) as soon as it exists, so one hidden state of the batch
        is alive at a time instead of all n + 1. A batch that asks only for word features of a
        layer below the last stops there (``LayerReached``): the layers above it never run, so
        a token task probed at layer 6 of 12 costs half a forward pass.
        """
        encoder = self.encoder()
        device = next(encoder.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id
        inputs = list(todo)
        batch = {}                            # the batch in the encoder: its rows and (batch, seq, 1) mask
        states = [None] * (self.n_layers + 1)  # its pooled hidden states, (batch, hidden) each
        words = {}                            # its word features, {key: (n_positions, hidden)}

        def take(i: int, h) -> None:          # h: hidden state i of the batch, (batch, seq, hidden)
            m = batch["mask"]
            if not batch["words_only"]:
                states[i] = ((h.float() * m).sum(1) / m.sum(1) if self.pooling == "mean" else h[:, 0].float()).cpu().numpy()
            if i == layer:
                for j, row in enumerate(batch["rows"]):
                    for key, positions in todo[inputs[row]].get("words", {}).items():
                        words[key] = h[j, positions].float().cpu().numpy()
                if batch["words_only"] and i < self.n_layers:
                    raise LayerReached(i)

        hooks = [block.register_forward_pre_hook(
                     lambda module, args, kwargs, i=i: take(i, args[0] if args else kwargs["hidden_states"]),
                     with_kwargs=True)
                 for i, block in enumerate(encoder_layers(encoder.model))]
        pooled_out, words_out, size = {}, {}, 0
        batches = length_grouped_batches([len(ids) for ids in inputs], self.batch_size, None)
        # fp32: inference_mode. Under autocast: no_grad, because autocast keeps the bf16/fp16 copy
        # of each weight for the whole loop only outside inference_mode (inside it, every batch
        # re-casts every weight); the copies hold the same values either way, so the features do
        # too (tests/test_probe.py), for the memory of the linear layers' weights at half size
        no_grad = torch.inference_mode() if self.dtype is None else torch.no_grad()
        try:
            with no_grad, autocast(self.dtype, device):
                for rows in tqdm(batches, desc=f"features of {self.model}", disable=not self.progress):
                    width = max(len(inputs[i]) for i in rows)
                    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                    mask = torch.zeros((len(rows), width), dtype=torch.long)
                    for j, i in enumerate(rows):
                        ids[j, :len(inputs[i])] = torch.tensor(inputs[i])
                        mask[j, :len(inputs[i])] = 1
                    mask = mask.to(device)
                    words_only = not any("pooled" in todo[inputs[i]] for i in rows)
                    batch.update(rows=rows, mask=mask.unsqueeze(-1).float(), words_only=words_only)
                    try:
                        out = encoder.model(input_ids=ids.to(device), attention_mask=mask)
                        take(self.n_layers, out.last_hidden_state)
                        del out
                    except LayerReached:
                        pass
                    if not words_only:
                        pooled = np.stack(states, 1)                              # (batch, n_layers + 1, hidden)
                        for j, i in enumerate(rows):
                            if "pooled" in todo[inputs[i]]:
                                pooled_out[todo[inputs[i]]["pooled"]] = pooled[j]
                                size += pooled[j].nbytes
                    size += sum(w.nbytes for w in words.values())
                    words_out.update(words)
                    words.clear()
                    if size >= SHARD_BYTES:
                        self._flush(pooled_out, words_out, layer)
                        pooled_out, words_out, size = {}, {}, 0
        finally:
            for hook in hooks:
                hook.remove()
        self._flush(pooled_out, words_out, layer)
        self.forward_passes += 1
        self.sequences_computed += len(inputs)

    def _flush(self, pooled_out: dict, words_out: dict, layer: int | None) -> None:
        if pooled_out:
            self.pooled_store().add(pooled_out)
        if words_out:
            self.words_store(layer).add(words_out)

    def encoder(self):
        """The loaded encoder (``mtnb.models.loading.Encoder``), loaded on first call."""
        if self._encoder is None:
            self._encoder = load_encoder(self.model, self.registry, device=self.device)
            if self._tokenizer is None:
                self._tokenizer = self._encoder.tokenizer
        return self._encoder

    def close(self) -> None:
        """Free the encoder and the tokenizer (the store stays; both load again when needed)."""
        self._encoder = self._tokenizer = None
        gc.collect()

    # -- reading -----------------------------------------------------------------------------

    def pooled(self, sequences, layer: int | None = None) -> np.ndarray:
        """Pooled features of each id list: (n_layers + 1, n, hidden), or (n, hidden) for one
        ``layer``; computes the missing ones first."""
        sequences = list(sequences)
        self.compute(pooled=sequences)
        store = self.pooled_store()
        keys = [input_key(ids) for ids in sequences]
        if layer is not None:
            k = self.layer_index(layer)
            out = np.empty((len(keys), self.hidden_size), dtype=np.float32)
            for i, key in enumerate(keys):
                out[i] = store.row(key, k)
            return out
        out = np.empty((self.n_layers + 1, len(keys), self.hidden_size), dtype=np.float32)
        for i, key in enumerate(keys):
            out[:, i] = store.get(key)
        return out

    def words(self, sequences, positions, layer: int) -> list[np.ndarray]:
        """Word features of ``layer``: for each id list, its hidden states at ``positions``
        (n_positions, hidden); computes the missing ones first."""
        pairs = list(zip(sequences, positions))
        self.compute(words=pairs, layer=layer)
        store = self.words_store(layer)
        return [store.get(input_key(ids, pos)) for ids, pos in pairs]


def extract_features(models: list[str], texts: dict[str, list[str]], *, registry=None,
                     pooling: str = "mean", max_length: int = 128, batch_size: int = 4,
                     cache_dir: str | Path | None = None, progress: bool = True,
                     precision: str = "fp32") -> dict[tuple[str, str], np.ndarray]:
    """``{(model, lang): features (n_layers + 1, n, hidden)}`` for every model and language,
    float32 at every ``precision`` (the forward passes' dtype: ``mtnb.core.precision``).

    ``texts`` maps a language to its samples (given e5's "passage: " prefix for e5 models, as
    the linear probe does). First the missing features are computed and stored, one model at a
    time: a model is loaded only when some of its features are missing, and freed before the
    next. Then, with no model in memory, every model's features are read back from the store
    (memory: see the module's docstring).
    """
    check_precision(precision)
    for name in models:  # unknown names fail before any work
        resolve(name, registry)
    pin_mmap_threshold()
    extractors, ids = {}, {}
    for name in tqdm(models, desc="models", disable=not progress):
        extractor = FeatureExtractor(name, registry, pooling=pooling, cache_dir=cache_dir,
                                     batch_size=batch_size, progress=progress, precision=precision)
        ids[name] = {lang: extractor.encode_texts(t, lang, max_length) for lang, t in texts.items()}
        extractor.compute(pooled=[s for seqs in ids[name].values() for s in seqs])
        extractor.close()
        extractors[name] = extractor
    return {(name, lang): extractors[name].pooled(seqs) for name in models for lang, seqs in ids[name].items()}


def pin_mmap_threshold(threshold: int = 128 << 10) -> bool:
    """Pin glibc's mmap threshold at ``threshold`` bytes for the rest of this process (see the
    module's docstring): blocks that large are mapped on their own and unmapped when freed.
    Returns False where the C library is not glibc (nothing is changed there)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_MMAP_THRESHOLD = -3  # glibc's malloc.h
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1

