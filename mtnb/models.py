"""The model registry and the one way every model's encoder is loaded.

``params/models.yaml`` lists the models of the study (see the comment at its top). A model is
a standard Hugging Face checkpoint, on the Hub or in a folder; ``load_encoder`` resolves a
registry name, a Hub id or a folder to a checkpoint folder, then builds only the encoder:

- bert, xlm-roberta: the encoder-only model (``AutoModel``), without the pooler;
- mbart, m2m100 (NLLB): the encoder stack alone (``MBartEncoder`` / ``M2M100Encoder``), its
  weights read from the checkpoint's ``model.encoder.*`` tensors (and the shared embedding).
  The decoder is never built, so it never occupies memory.

Either way ``model(input_ids, attention_mask, output_hidden_states=True).hidden_states`` is a
tuple of ``n_layers + 1`` tensors of shape (batch, seq, hidden): the embeddings, then each layer.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import MtnbError
from .languages import SCHEMES
from .paths import params_dir, project_root

FAMILIES = ("bert", "xlm-roberta", "mbart", "m2m100")
ROLES = ("lm", "cp", "mt")
FIELDS = ("source", "family", "role", "base", "lang_codes", "note")
REQUIRED = ("source", "family", "role")
# config.model_type -> registry family
MODEL_TYPES = {"bert": "bert", "xlm-roberta": "xlm-roberta", "mbart": "mbart", "m2m_100": "m2m100"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt"]


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """One model of the study.

    ``source`` is a Hub id (``org/name``) or a folder; ``family`` the architecture; ``role`` lm,
    cp or mt; ``base`` the registry name a cp model was continued from; ``lang_codes`` none,
    mbart50 or nllb.
    """

    name: str
    source: str
    family: str
    role: str
    base: str | None = None
    lang_codes: str = "none"
    note: str = ""

    def local_folder(self) -> Path | None:
        """The checkpoint folder when ``source`` is a path, None when it is a Hub id.

        A path is absolute, starts with ``./``, ``../`` or ``~``, has more than one ``/``, or
        names an existing folder under the project root (relative paths are read from there).
        """
        src = self.source
        if src.startswith(("/", "./", "../", "~")):
            return Path(src).expanduser().resolve()
        candidate = project_root() / src
        if candidate.exists() or src.count("/") != 1:
            return candidate
        return None


def registry_path() -> Path:
    """``params/models.yaml`` of the current project."""
    return params_dir() / "models.yaml"


def load_registry(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Read and validate the registry file; returns ``{name: ModelSpec}`` in file order.

    Raises MtnbError naming the file, the model and the key when the YAML does not parse, a
    required key is missing, a key is unknown, a value is not an allowed one, or a cp model's
    base is not in the registry.
    """
    path = Path(path) if path is not None else registry_path()
    if not path.is_file():
        raise MtnbError(f"{path}: model registry not found; run from the project folder or set MTNB_ROOT")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise MtnbError(f"{path}:{where} not valid YAML ({problem}); fix the syntax") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise MtnbError(f"{path}: expected a top-level 'models:' mapping of name -> fields")
    specs: dict[str, ModelSpec] = {}
    for name, fields in doc["models"].items():
        where = f"{path}: model {name!r}"
        if not isinstance(fields, dict):
            raise MtnbError(f"{where}: expected a mapping of fields, got {type(fields).__name__}")
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise MtnbError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {', '.join(FIELDS)}")
        for key in REQUIRED:
            if not fields.get(key):
                raise MtnbError(f"{where}: missing key {key!r}")
        _check_choice(where, "family", fields["family"], FAMILIES)
        _check_choice(where, "role", fields["role"], ROLES)
        _check_choice(where, "lang_codes", fields.get("lang_codes", "none"), tuple(SCHEMES))
        specs[str(name)] = ModelSpec(
            name=str(name), source=str(fields["source"]), family=fields["family"],
            role=fields["role"], base=fields.get("base"),
            lang_codes=fields.get("lang_codes", "none"), note=str(fields.get("note") or ""),
        )
    for spec in specs.values():
        if spec.role == "cp" and spec.base not in specs:
            raise MtnbError(f"{path}: model {spec.name!r}: base {spec.base!r} is not a model of the registry")
    return specs


def _check_choice(where: str, key: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise MtnbError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")


def format_table(specs: dict[str, ModelSpec]) -> str:
    """The registry as a fixed-width text table, one row per model."""
    header = ("name", "family", "role", "base", "lang codes", "source")
    rows = [header] + [(s.name, s.family, s.role, s.base or "-", s.lang_codes, s.source)
                       for s in specs.values()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# From a name to a checkpoint folder
# --------------------------------------------------------------------------------------------

def resolve(name: str, registry: dict[str, ModelSpec] | None = None) -> ModelSpec:
    """A registry name, a checkpoint folder or a Hub id -> its ModelSpec.

    A folder or Hub id outside the registry gets a spec whose family is read later from the
    checkpoint's config (``family='auto'``).
    """
    registry = load_registry() if registry is None else registry
    if name in registry:
        return registry[name]
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelSpec(name=path.name, source=str(path.resolve()), family="auto", role="lm")
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if looks_like_hub_id:
        return ModelSpec(name=name, source=name, family="auto", role="lm")
    raise MtnbError(f"unknown model {name!r}: use a registry name ({', '.join(registry)}), "
                    "a checkpoint folder or a Hub id org/name")


def checkpoint_folder(spec: ModelSpec) -> Path:
    """The local folder holding ``spec``'s checkpoint, downloading from the Hub if needed.

    Raises MtnbError when a folder lacks config.json or weights, or when a Hub model is
    neither in the local cache nor downloadable (no network, or HF_HUB_OFFLINE=1).
    """
    folder = spec.local_folder()
    if folder is None:
        folder = _hub_snapshot(spec)
    if not folder.is_dir():
        raise MtnbError(f"model {spec.name!r}: folder {folder} does not exist; build or copy the checkpoint there")
    if not (folder / "config.json").is_file():
        raise MtnbError(f"model {spec.name!r}: {folder} has no config.json; it is not a Hugging Face checkpoint folder")
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise MtnbError(f"model {spec.name!r}: {folder} has no weights (model.safetensors); "
                        "save the model there with save_pretrained()")
    return folder


def _hub_snapshot(spec: ModelSpec) -> Path:
    """Download (or find in the Hugging Face cache) the files of Hub model ``spec.source``.

    Safetensors weights, config and tokenizer files only; PyTorch pickles are fetched only when
    the repository has no safetensors, and are then read with ``weights_only=True``.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(spec.source, allow_patterns=HUB_PATTERNS))
        if not any((folder / f).is_file() for f in WEIGHT_FILES):
            folder = Path(snapshot_download(spec.source, allow_patterns=HUB_PATTERNS + ["pytorch_model*.bin*"]))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MtnbError(
            f"model {spec.name!r}: Hub model {spec.source} is not in the local cache and cannot be "
            f"downloaded ({reason[:120]}); download it where there is internet "
            f"(huggingface-cli download {spec.source}) and copy the cache, or point its source "
            "in params/models.yaml at a local checkpoint folder"
        ) from None
    return folder


# --------------------------------------------------------------------------------------------
# From a checkpoint folder to an encoder
# --------------------------------------------------------------------------------------------

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
                 dtype=None, device: str = "cpu", with_tokenizer: bool = True) -> Encoder:
    """Load the encoder of model ``name`` (registry name, Hub id or folder), in eval mode.

    ``dtype`` defaults to float32. For mbart and m2m100 only the encoder is built and only its
    tensors are read. Never runs remote code. Raises MtnbError for an unknown name, a folder
    without a checkpoint, an unavailable Hub model, or a family outside the study.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    spec = resolve(name, registry)
    folder = checkpoint_folder(spec)
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    family = MODEL_TYPES.get(config.model_type)
    if family is None:
        raise MtnbError(f"model {spec.name!r}: architecture {config.model_type!r} is not one of the study's "
                        f"families ({', '.join(FAMILIES)})")
    if spec.family not in ("auto", family):
        raise MtnbError(f"model {spec.name!r}: params/models.yaml says family {spec.family!r} but the "
                        f"checkpoint is {family!r}; correct the registry entry")
    if spec.family == "auto":
        spec = ModelSpec(spec.name, spec.source, family, spec.role, spec.base,
                         {"mbart": "mbart50", "m2m100": "nllb"}.get(family, "none"), spec.note)
    dtype = torch.float32 if dtype is None else dtype
    with _quiet_transformers():
        if family in ("bert", "xlm-roberta"):
            model = AutoModel.from_pretrained(folder, add_pooling_layer=False, dtype=dtype,
                                              trust_remote_code=False, use_safetensors=_has_safetensors(folder) or None)
            shape = EncoderShape(config.num_hidden_layers, config.hidden_size)
        else:
            model = _load_seq2seq_encoder(folder, family, dtype)
            shape = EncoderShape(config.encoder_layers, config.d_model)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False) if with_tokenizer else None
    model.to(device).eval()
    return Encoder(model=model, tokenizer=tokenizer, shape=shape, spec=spec, folder=folder)


def _load_seq2seq_encoder(folder: Path, family: str, dtype):
    """Build ``MBartEncoder`` / ``M2M100Encoder`` from a full seq2seq checkpoint.

    Checkpoint keys ``[model.]encoder.X`` become ``X``; the shared embedding ``[model.]shared``
    becomes ``embed_tokens`` when the checkpoint stores no separate encoder copy. Decoder
    tensors match nothing and are never read.
    """
    if family == "mbart":
        from transformers.models.mbart.modeling_mbart import MBartEncoder as cls
    else:
        from transformers.models.m2m_100.modeling_m2m_100 import M2M100Encoder as cls
    mapping = {r"^(model\.)?encoder\.": ""}
    if not any(k.endswith("encoder.embed_tokens.weight") for k in _checkpoint_keys(folder)):
        mapping[r"^(model\.)?shared\."] = "embed_tokens."
    return cls.from_pretrained(folder, key_mapping=mapping, dtype=dtype, trust_remote_code=False,
                               use_safetensors=_has_safetensors(folder) or None)


def _has_safetensors(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()


def _checkpoint_keys(folder: Path) -> list[str]:
    """Tensor names of the checkpoint in ``folder`` (read from headers, no tensor is loaded)."""
    index = next((folder / f for f in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
                  if (folder / f).is_file()), None)
    if index is not None:
        return list(json.loads(index.read_text())["weight_map"])
    if (folder / "model.safetensors").is_file():
        from safetensors import safe_open
        with safe_open(folder / "model.safetensors", "pt") as f:
            return list(f.keys())
    import torch
    return list(torch.load(folder / "pytorch_model.bin", map_location="meta", weights_only=True, mmap=True))


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load reports (the unused decoder keys are expected) and bars."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()
