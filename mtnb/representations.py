"""Pooled hidden states of every layer of an encoder, computed once and cached on disk.

For a model and a list of texts in one language, ``layer_features`` returns an array of shape
(n_layers + 1, n_texts, hidden): the embedding output, then each Transformer layer, each
sequence pooled to one vector:

    mean:  h̄ = Σ_t m_t h_t / Σ_t m_t      (m_t = 1 on non-padding tokens, special tokens included)
    first: h̄ = h_0                       (the first token: [CLS] / <s> / the language token)

The cache key is a SHA-256 of the model's weight files (their content), the texts, the
language, the pooling and the maximum length, so a retrained checkpoint or another sample set
never reuses stale features. ``extract_features`` loads one model at a time and frees it
before the next, so peak memory is one encoder plus the (small) features.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .errors import MtnbError
from .languages import language_code
from .paths import project_root

POOLINGS = ("mean", "first")
FEATURES_VERSION = 1  # bump when the way features are computed changes


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
        _atomic_write_text(memo_path, json.dumps(memo, indent=0))
    return total.hexdigest()


def pooled_hidden_states(encoder, texts: list[str], lang: str | None = None, pooling: str = "mean",
                         batch_size: int = 16, max_length: int = 128, progress: bool = False) -> np.ndarray:
    """Run ``encoder`` (an ``mtnb.models.Encoder``) over ``texts``; returns float32 features of
    shape (n_layers + 1, len(texts), hidden), pooled per sequence as the module docstring says.

    For models that mark languages (mBART-50, NLLB) the tokenizer's source language is set to
    ``lang`` when the tokenizer supports it. Texts are sorted by length into batches (less
    padding) and the rows are put back in input order.
    """
    import torch
    from tqdm.auto import tqdm

    if pooling not in POOLINGS:
        raise MtnbError(f"unknown pooling {pooling!r}: use one of {', '.join(POOLINGS)}")
    tokenizer = encoder.tokenizer
    if lang is not None and encoder.spec.lang_codes != "none" and hasattr(tokenizer, "src_lang"):
        tokenizer.src_lang = language_code(lang, encoder.spec.lang_codes)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((encoder.shape.n_layers + 1, len(texts), encoder.shape.hidden_size), dtype=np.float32)
    device = next(encoder.model.parameters()).device
    with torch.no_grad():
        for start in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="features"):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            mask = batch["attention_mask"].to(device)
            hidden = encoder.model(input_ids=batch["input_ids"].to(device), attention_mask=mask,
                                   output_hidden_states=True).hidden_states
            for layer, h in enumerate(hidden):            # h: (batch, seq, hidden)
                if pooling == "mean":
                    m = mask.unsqueeze(-1).to(h.dtype)    # (batch, seq, 1)
                    pooled = (h * m).sum(1) / m.sum(1)
                else:
                    pooled = h[:, 0]
                out[layer, rows] = pooled.float().cpu().numpy()
    return out


def features_key(fingerprint: str, texts: list[str], lang: str | None, pooling: str, max_length: int) -> str:
    """The cache key of one (model weights, texts, language, pooling, length) combination."""
    h = hashlib.sha256()
    h.update(json.dumps([FEATURES_VERSION, fingerprint, lang, pooling, max_length, texts],
                        ensure_ascii=False).encode())
    return h.hexdigest()[:32]


def extract_features(models: list[str], texts: dict[str, list[str]], *, registry=None,
                     pooling: str = "mean", max_length: int = 128, batch_size: int = 16,
                     cache_dir: str | Path | None = None, progress: bool = True) -> dict[tuple[str, str], np.ndarray]:
    """``{(model, lang): features (n_layers + 1, n, hidden)}`` for every model and language.

    ``texts`` maps a language to its samples. Cached features are read back; a model is loaded
    only when some of its features are missing, one model at a time, and freed before the next.
    """
    from tqdm.auto import tqdm

    from .models import checkpoint_folder, load_encoder, resolve

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    specs = {name: resolve(name, registry) for name in models}  # unknown names fail before any work
    result = {}
    for name in tqdm(models, desc="models", disable=not progress):
        fingerprint = weights_fingerprint(checkpoint_folder(specs[name]), cache)
        keys = {lang: features_key(fingerprint, t, lang, pooling, max_length) for lang, t in texts.items()}
        missing = [lang for lang, key in keys.items() if not (cache / f"{key}.npy").is_file()]
        if missing:
            encoder = load_encoder(name, registry)
            for lang in missing:
                feats = pooled_hidden_states(encoder, texts[lang], lang, pooling, batch_size, max_length)
                _atomic_save(cache / f"{keys[lang]}.npy", feats)
            del encoder
            gc.collect()
        for lang, key in keys.items():
            result[(name, lang)] = np.load(cache / f"{key}.npy")
    return result


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary name, then rename: a killed run never leaves a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
