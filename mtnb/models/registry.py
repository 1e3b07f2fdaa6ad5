"""The model registry: which models the study has, and where each one's checkpoint is.

``params/models.yaml`` lists the models of the study (see the comment at its top). A model is
a standard Hugging Face checkpoint, on the Hub or in a folder; ``resolve`` turns a registry
name, a Hub id or a folder into a ``ModelSpec`` and ``checkpoint_folder`` finds its files (the
Hub's through the local cache first). ``mtnb.models.loading.load_encoder`` builds the
encoder. No torch here: the grids and the runner read the registry without it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from huggingface_hub import constants, snapshot_download

from mtnb.core.errors import MtnbError
from mtnb.core.hub_cache import (MODEL_FILE_PATTERNS, PICKLE_PATTERNS, SAFETENSORS_PATTERNS, HubItem, download_command,
                                 find_cached)
from mtnb.core.paths import params_dir, project_root
from mtnb.core.yamlfile import read_yaml
from mtnb.data.languages import SCHEMES

FAMILIES = ("bert", "xlm-roberta", "mbart", "m2m100")
ROLES = ("lm", "cp", "mt")
FIELDS = ("source", "family", "role", "base", "lang_codes", "inputs", "note")
# how a model expects its input texts: as they are, or with e5's "query: " / "passage: " prefixes
INPUTS = ("plain", "e5")
REQUIRED = ("source", "family", "role")
# config.model_type -> registry family
MODEL_TYPES = {"bert": "bert", "xlm-roberta": "xlm-roberta", "mbart": "mbart", "m2m_100": "m2m100"}
# the language codes of a checkpoint outside the registry, by family
AUTO_LANG_CODES = {"mbart": "mbart50", "m2m100": "nllb"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """One model of the study.

    ``source`` is a Hub id (``org/name``) or a folder; ``family`` the architecture; ``role`` lm,
    cp or mt; ``base`` the registry name a cp model was continued from; ``lang_codes`` none,
    mbart50 or nllb; ``inputs`` plain (texts as they are) or e5 (each text starts with
    "query: " or "passage: ", see ``mtnb.data.inputs.input_prefixes``).
    """

    name: str
    source: str
    family: str
    role: str
    base: str | None = None
    lang_codes: str = "none"
    note: str = ""
    inputs: str = "plain"

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
    doc = read_yaml(path)
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
        if fields.get("inputs") is not None:
            _check_choice(where, "inputs", fields["inputs"], INPUTS)
        specs[str(name)] = ModelSpec(
            name=str(name), source=str(fields["source"]), family=fields["family"],
            role=fields["role"], base=fields.get("base"),
            lang_codes=fields.get("lang_codes", "none"), note=str(fields.get("note") or ""),
            inputs=fields.get("inputs"),
        )
    for spec in specs.values():
        if spec.role == "cp" and spec.base not in specs:
            raise MtnbError(f"{path}: model {spec.name!r}: base {spec.base!r} is not a model of the registry")
    return {name: replace(spec, inputs=_inputs(spec, specs)) for name, spec in specs.items()}


def _inputs(spec: ModelSpec, specs: dict[str, ModelSpec]) -> str:
    """A model's input convention: its own ``inputs``, else its base's (a model continued from
    me5-small keeps e5's prefixes), else plain."""
    seen = set()
    while spec.inputs is None and spec.base in specs and spec.name not in seen:
        seen.add(spec.name)
        spec = specs[spec.base]
    return spec.inputs or "plain"


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


def checkpoint_folder(spec: ModelSpec, *, cache_dir=None, local_only: bool = False) -> Path:
    """The local folder holding ``spec``'s checkpoint; a Hub model is looked up in the Hugging
    Face cache first (``cache_dir``, default the standard one) and downloaded only when it is not
    complete there, the network allowed (not ``local_only``, not HF_HUB_OFFLINE=1).

    Raises MtnbError when a folder lacks config.json or weights, or when a Hub model is
    neither in the local cache nor downloadable.
    """
    folder = spec.local_folder()
    if folder is None:
        folder = hub_snapshot(spec, cache_dir=cache_dir, local_only=local_only)
    if not folder.is_dir():
        raise MtnbError(f"model {spec.name!r}: folder {folder} does not exist; build or copy the checkpoint there")
    if not (folder / "config.json").is_file():
        raise MtnbError(f"model {spec.name!r}: {folder} has no config.json; it is not a Hugging Face checkpoint folder")
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise MtnbError(f"model {spec.name!r}: {folder} has no weights (model.safetensors); "
                        "save the model there with save_pretrained()")
    return folder


def hub_snapshot(spec: ModelSpec, *, cache_dir=None, local_only: bool = False) -> Path:
    """The cached snapshot of Hub model ``spec.source``, offline first; downloaded (the files
    ``mtnb.core.hub_cache.select_files`` selects: config, tokenizer, safetensors weights, PyTorch pickles only when the
    repository has no safetensors) when it is not complete in the cache and the network is
    allowed. Pickles are read with ``weights_only=True``."""
    item = HubItem("model", f"model {spec.name} ({spec.source})", spec.source)
    folder = find_cached(item, cache_dir)
    if folder is not None:
        return folder
    offline = local_only or constants.HF_HUB_OFFLINE
    why = "HF_HUB_OFFLINE is set" if offline and not local_only else "it was asked for offline"
    if not offline:
        patterns = [*MODEL_FILE_PATTERNS, *SAFETENSORS_PATTERNS]
        try:
            folder = Path(snapshot_download(spec.source, allow_patterns=patterns, cache_dir=cache_dir))
            if not any((folder / f).is_file() for f in WEIGHT_FILES):
                folder = Path(snapshot_download(spec.source, allow_patterns=patterns + list(PICKLE_PATTERNS),
                                                cache_dir=cache_dir))
            return folder
        except Exception as err:  # noqa: BLE001 - any failure to reach or read the Hub
            why = f"the download failed: {type(err).__name__}"
    raise MtnbError(f"model {spec.name!r}: Hub model {spec.source} is not complete in the local Hugging Face cache "
                    f"and {why}; where there is internet run 'mtnb fetch GRID' (every model and dataset of a grid) "
                    f"or '{download_command(item)}', and copy the cache here, or point its source in "
                    "params/models.yaml at a local checkpoint folder")


# --------------------------------------------------------------------------------------------
# From a checkpoint folder to an encoder
# --------------------------------------------------------------------------------------------


