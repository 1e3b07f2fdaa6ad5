"""Loading an encoder: the one way every model of the study is read.

A model is a standard Hugging Face checkpoint, on the Hub or in a folder; ``load_encoder``
resolves a registry name, a Hub id or a folder to a checkpoint folder
(``mtnb.models.registry.checkpoint_folder``), then builds only the encoder:

- bert, xlm-roberta: the encoder-only model (``BertModel`` / ``XLMRobertaModel``), no pooler;
- mbart, m2m100 (NLLB): the encoder stack alone (``MBartEncoder`` / ``M2M100Encoder``), its
  weights read from the checkpoint's ``model.encoder.*`` tensors (and the shared embedding).

The module is allocated without random initialisation and each of its tensors is read from the
checkpoint file straight into place (``TensorReader``), so the decoder (or LM head) is never
built nor read, and loading peaks at about the encoder's own size.

Either way ``model(input_ids, attention_mask, output_hidden_states=True).hidden_states`` is a
tuple of ``n_layers + 1`` tensors of shape (batch, seq, hidden): the embeddings, then each layer.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertModel, XLMRobertaModel
from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder
from transformers.models.mbart.modeling_mbart import MBartEncoder
from transformers.utils import logging as hf_logging

from mtnb.core.errors import MtnbError
from mtnb.models.registry import AUTO_LANG_CODES, FAMILIES, MODEL_TYPES, ModelSpec, checkpoint_folder, resolve


@dataclass
class EncoderShape:
    """The encoder's depth and width: ``n_layers`` Transformer layers of ``hidden_size`` units."""

    n_layers: int
    hidden_size: int


@dataclass
class Encoder:
    """A loaded encoder: ``model`` (torch module, eval mode), ``tokenizer``, ``shape``, ``spec``
    and the checkpoint ``folder`` it came from."""

    model: object
    tokenizer: object
    shape: EncoderShape
    spec: ModelSpec
    folder: Path


def load_encoder(name: str, registry: dict[str, ModelSpec] | None = None, *,
                 dtype=None, device: str = "cpu", with_tokenizer: bool = True, cache_dir=None,
                 local_only: bool = False) -> Encoder:
    """Load the encoder of model ``name`` (registry name, Hub id or folder), in eval mode.

    ``dtype`` defaults to float32. For mbart and m2m100 only the encoder is built and only its
    tensors are read. Never runs remote code. A Hub model is read from the Hugging Face cache
    (``cache_dir``; default the standard one) when it is there, else downloaded unless
    ``local_only``. Raises MtnbError for an unknown name, a folder without a checkpoint, an
    unavailable Hub model, or a family outside the study.
    """
    spec = resolve(name, registry)
    folder = checkpoint_folder(spec, cache_dir=cache_dir, local_only=local_only)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    family = MODEL_TYPES.get(config.model_type)
    if family is None:
        raise MtnbError(f"model {spec.name!r}: architecture {config.model_type!r} is not one of the study's "
                        f"families ({', '.join(FAMILIES)})")
    if spec.family not in ("auto", family):
        raise MtnbError(f"model {spec.name!r}: params/models.yaml says family {spec.family!r} but the "
                        f"checkpoint is {family!r}; correct the registry entry")
    if spec.family == "auto":
        spec = replace(spec, family=family, lang_codes=AUTO_LANG_CODES.get(family, "none"))
    dtype = torch.float32 if dtype is None else dtype
    shape = (EncoderShape(config.num_hidden_layers, config.hidden_size) if family in ("bert", "xlm-roberta")
             else EncoderShape(config.encoder_layers, config.d_model))
    model = build_encoder(folder, family, config, dtype)
    tokenizer = load_tokenizer(folder) if with_tokenizer else None
    model.to(device).eval()
    return Encoder(model=model, tokenizer=tokenizer, shape=shape, spec=spec, folder=folder)


def complete_spec(spec: ModelSpec, folder: Path) -> ModelSpec:
    """``spec`` with the family (and language codes) of a folder or Hub id outside the registry
    (``family='auto'``) read from the checkpoint's config.json, as ``load_encoder`` reads them."""
    if spec.family != "auto":
        return spec
    family = MODEL_TYPES.get(json.loads((Path(folder) / "config.json").read_text()).get("model_type"))
    if family is None:
        return spec  # load_encoder names the unsupported architecture
    return replace(spec, family=family, lang_codes=AUTO_LANG_CODES.get(family, "none"))


def load_tokenizer(folder: Path):
    """The tokenizer of the checkpoint in ``folder`` (the one ``load_encoder`` gives), without
    reading any weights."""
    with quiet_transformers():
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


def encoder_shape(folder: Path) -> EncoderShape:
    """The encoder's depth and width from the checkpoint's config.json (no weights read)."""
    config = json.loads((Path(folder) / "config.json").read_text())
    if "encoder_layers" in config and "d_model" in config:       # mbart, m2m100
        return EncoderShape(int(config["encoder_layers"]), int(config["d_model"]))
    if "num_hidden_layers" in config and "hidden_size" in config:  # bert, xlm-roberta
        return EncoderShape(int(config["num_hidden_layers"]), int(config["hidden_size"]))
    raise MtnbError(f"{folder}/config.json names no encoder depth and width (num_hidden_layers and "
                    "hidden_size, or encoder_layers and d_model)")


# Where each family keeps its encoder inside a checkpoint: the prefixes a checkpoint tensor name
# may carry before the encoder's own parameter name (an encoder-only save has none). For the
# seq2seq families, the shared input embedding stands in for the encoder's when absent.
ENCODER_PREFIXES = {"bert": ("bert.", ""), "xlm-roberta": ("roberta.", ""),
                    "mbart": ("model.encoder.", "encoder."), "m2m100": ("model.encoder.", "encoder.")}

SHARED_EMBEDDING = ("model.shared.weight", "shared.weight")


def encoder_class(family: str):
    """The transformers module that is the encoder of ``family`` (built from the full config)."""
    return {"bert": BertModel, "xlm-roberta": XLMRobertaModel, "mbart": MBartEncoder, "m2m100": M2M100Encoder}[family]


def encoder_layers(model):
    """The Transformer layers of an encoder from ``encoder_class``, in order: an
    ``nn.ModuleList`` of n_layers blocks, each mapping (batch, seq, hidden) to the same shape."""
    return model.encoder.layer if hasattr(model, "encoder") else model.layers   # BERT/XLM-R; mBART/M2M100


def build_encoder(folder: Path, family: str, config, dtype):
    """Build the encoder of ``family`` and fill it with the checkpoint's tensors in ``folder``.

    The module is allocated without random initialisation, then each of its parameters and
    persistent buffers is read from the checkpoint straight into its own storage: peak memory is
    the encoder's size, whatever else (decoder, LM head) the checkpoint holds. Raises MtnbError if
    the checkpoint lacks one of the encoder's tensors or has it at another shape.
    """
    cls = encoder_class(family)
    kwargs = {"add_pooling_layer": False} if family in ("bert", "xlm-roberta") else {}
    with _no_init(), quiet_transformers():
        model = cls(config, **kwargs)
    model.to(dtype)
    index = checkpoint_index(folder)
    missing = []
    with torch.no_grad(), TensorReader(folder) as reader:
        for name, target in model.state_dict(keep_vars=True).items():
            key = next((p + name for p in ENCODER_PREFIXES[family] if p + name in index), None)
            if key is None and name == "embed_tokens.weight":
                key = next((k for k in SHARED_EMBEDDING if k in index), None)
            if key is None:
                missing.append(name)
                continue
            reader.read_into(index[key], key, target)
    if missing:
        raise MtnbError(f"{folder}: checkpoint lacks the encoder tensor(s) {', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''}; is it a complete {family} checkpoint?")
    return model


def checkpoint_index(folder: Path) -> dict[str, str]:
    """``{tensor name: file name}`` for the checkpoint in ``folder`` (headers only, no tensor read)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index_name).is_file():
            return json.loads((folder / index_name).read_text())["weight_map"]
    if (folder / "model.safetensors").is_file():
        return {key: "model.safetensors" for key in safetensors_header(folder / "model.safetensors")[0]}
    if not (folder / "pytorch_model.bin").is_file():
        raise MtnbError(f"{folder}: no model.safetensors or pytorch_model.bin; not a checkpoint folder")
    state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True, mmap=True)
    return {key: "pytorch_model.bin" for key in state}


SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                      "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                      "BOOL": "bool"}


def safetensors_header(path: Path) -> tuple[dict, int]:
    """The safetensors header of ``path`` and the byte offset where tensor data starts.

    The format: 8 bytes little-endian header length N, then N bytes of JSON mapping each tensor
    name to ``{"dtype", "shape", "data_offsets": [begin, end]}``, offsets relative to the data.
    """
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


class TensorReader:
    """Reads checkpoint tensors, one at a time, into existing tensors.

    Safetensors: plain file reads straight into the target's storage (no memory map, and no
    intermediate copy when the dtypes match). PyTorch pickles (only for a checkpoint without
    safetensors): ``torch.load(weights_only=True, mmap=True)``, then a copy.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.files: dict[str, object] = {}
        self.headers: dict[str, tuple[dict, int]] = {}
        self.pickles: dict[str, dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for f in self.files.values():
            f.close()
        self.pickles.clear()

    def read(self, file_name: str, key: str) -> torch.Tensor:
        """Tensor ``key`` of ``file_name`` as a new CPU tensor of its stored dtype and shape."""
        if not file_name.endswith(".safetensors"):
            if file_name not in self.pickles:
                self.pickles[file_name] = torch.load(self.folder / file_name, map_location="cpu",
                                                     weights_only=True, mmap=True)
            return self.pickles[file_name][key].clone()
        entry = self.header(file_name)[0][key]
        target = torch.empty(tuple(entry["shape"]), dtype=getattr(torch, SAFETENSORS_DTYPES[entry["dtype"]]))
        self.read_into(file_name, key, target)
        return target

    def header(self, file_name: str) -> tuple[dict, int]:
        """The safetensors header of ``file_name`` (read once) and where its data starts."""
        if file_name not in self.headers:
            self.files[file_name] = open(self.folder / file_name, "rb")
            self.headers[file_name] = safetensors_header(self.folder / file_name)
        return self.headers[file_name]

    def read_into(self, file_name: str, key: str, target) -> None:
        """Copy tensor ``key`` of ``file_name`` into ``target`` (same shape; dtype converted)."""
        if not file_name.endswith(".safetensors"):
            if file_name not in self.pickles:
                self.pickles[file_name] = torch.load(self.folder / file_name, map_location="cpu",
                                                     weights_only=True, mmap=True)
            source = self.pickles[file_name][key]
            self._check_shape(key, tuple(source.shape), target)
            target.data.copy_(source)
            return
        header, start = self.header(file_name)
        f = self.files[file_name]
        entry = header[key]
        self._check_shape(key, tuple(entry["shape"]), target)
        begin, end = entry["data_offsets"]
        dtype = getattr(torch, SAFETENSORS_DTYPES[entry["dtype"]])
        data = target.data
        direct = data.dtype == dtype and data.is_contiguous()
        buffer = data if direct else torch.empty(tuple(entry["shape"]), dtype=dtype)
        raw = memoryview(buffer.reshape(-1).view(torch.uint8).numpy())
        f.seek(start + begin)
        done = 0
        while done < end - begin:
            n = f.readinto(raw[done:])
            if not n:
                raise MtnbError(f"{self.folder / file_name}: file ends inside tensor {key}; the checkpoint is truncated")
            done += n
        if not direct:
            data.copy_(buffer)

    def _check_shape(self, key: str, shape: tuple, target) -> None:
        if shape != tuple(target.shape):
            raise MtnbError(f"{self.folder}: tensor {key} has shape {list(shape)} but the config implies "
                            f"{list(target.shape)}; config.json and the weights disagree")


@contextlib.contextmanager
def _no_init():
    """Skip random initialisation while building a module whose weights are read right after."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # another transformers version: initialising costs time, not correctness
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        yield


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports (the unused decoder keys are expected) and bars."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
