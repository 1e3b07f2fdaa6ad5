"""A stand-in for the Hub, to rehearse the paper grid offline: the paper's seven models and
XGLUE's parquet export, small, under their real names.

``build_repositories(out)`` writes one plain folder per Hub repository the paper grid reads:

- the seven models under their Hub ids (``google-bert/bert-base-multilingual-cased``, ...): small
  random checkpoints of each paper model's architecture (BERT, XLM-R, mBART, M2M100 as NLLB,
  2 layers of 32 units) with its tokenizer class (BertTokenizer WordPiece, XLMRobertaTokenizer,
  MBart50Tokenizer with its language codes, NllbTokenizer with its codes), trained here on the
  records below; mBART's three MT-continued checkpoints are mBART's weights moved by seeded
  noise (their SVD distances to it are then small and distinct), as the real ones start from it;
- ``microsoft/xglue`` at revision ``refs/convert/parquet``: records of all eight tasks in the
  parquet export's layout and schema (``{task}/{split}/0000.parquet``, ClassLabel names in the
  parquet metadata) for every split and language, ``train`` English only.

``build_cache(cache_dir)`` puts those folders into a Hugging Face cache (``mtnb.core.hub_cache.cache_put``),
so that ``HF_HUB_CACHE=<cache_dir> HF_HUB_OFFLINE=1 mtnb run paper-rehearsal`` reads them through
the real loading code, exactly as it reads the Hub's files. Only the sizes differ from the real run.

The records are synthetic and parallel across languages: record i of a split carries the same
sequence of concepts in every language, each concept written as a made-up word in the
language's script (Latin, Cyrillic, Greek, Arabic, Devanagari, Thai, Han), and its label is a
function of its first concept (so the tasks can be learned). Same seed, same bytes.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import torch
from transformers import (BertForMaskedLM, M2M100ForConditionalGeneration, MBartForConditionalGeneration,
                          XLMRobertaForMaskedLM)
from transformers.utils import logging as hf_logging

from mtnb.core.hub_cache import cache_put_folder
from mtnb.data.xglue import PARQUET_REVISION, XGLUE, XGLUE_REPO, build_dataset, parquet_split_name
from mtnb.models.random_checkpoints import PAPER_SHAPES, family_shape, random_config
from mtnb.models.registry import load_registry
from mtnb.pretraining.vocab import train_tokenizer
from mtnb.study.paper import PAPER_MODELS

TINY_SHAPES = {family: family_shape(family, width=32, layers=2, heads=2, ffn=64) for family in PAPER_SHAPES}
SIZES = {"train": 48, "validation": 12, "test": 12}   # records per split and language
CONCEPTS = 120
SCRIPTS = {
    "latin": "abcdefghijklmnopqrstuvwxyz",
    "cyrillic": "абвгдежзиклмнопрстуфхцчшэюя",
    "greek": "αβγδεζηθικλμνξοπρστυφχψω",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "devanagari": "कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह",
    "thai": "กขคงจฉชซญดตถทนบปผพฟมยรลวสหอฮ",
    "han": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
}
SCRIPT_OF = {"ru": "cyrillic", "bg": "cyrillic", "el": "greek", "ar": "arabic", "ur": "arabic",
             "hi": "devanagari", "th": "thai", "zh": "han"}


def word(concept: int, lang: str) -> str:
    """The made-up word for ``concept`` in ``lang``: 2-4 letters (Han: 1-2 characters) of the
    language's script, chosen by a generator seeded with (language, concept)."""
    letters = SCRIPTS[SCRIPT_OF.get(lang, "latin")]
    rng = random.Random(f"{lang}:{concept}")
    n = rng.randint(1, 2) if letters is SCRIPTS["han"] else rng.randint(2, 4)
    return "".join(rng.choice(letters) for _ in range(n))


def sentence(rng: random.Random, lo: int, hi: int) -> list[int]:
    """A sequence of ``lo``..``hi`` concept ids."""
    return [rng.randrange(CONCEPTS) for _ in range(rng.randint(lo, hi))]


def task_records(task: str, lang: str, split: str, seed: int = 0) -> tuple[dict[str, list], list]:
    """``({text field: values}, label ids)`` of XGLUE ``task``'s ``split`` in ``lang``: the same
    concepts and labels in every language (see the module docstring)."""
    spec = XGLUE[task]
    n_labels = len(spec.labels)
    texts: dict[str, list] = {name: [] for name in spec.text_fields}
    labels: list = []
    for i in range(SIZES[split]):
        rng = random.Random(f"{seed}:{task}:{split}:{i}")
        if spec.tagging:
            concepts = sentence(rng, 4, 10)
            texts["words"].append([word(c, lang) for c in concepts])
            labels.append([c % n_labels for c in concepts])
            continue
        fields = [sentence(rng, 2, 5)] + [sentence(rng, 4, 12) for _ in spec.text_fields[1:]]
        if task == "wpr":                      # four pages per query: queries repeat
            fields[0] = sentence(random.Random(f"{seed}:{task}:{split}:query:{i // 4}"), 2, 4)
        for name, concepts in zip(spec.text_fields, fields):
            texts[name].append(" ".join(word(c, lang) for c in concepts))
        labels.append(fields[-1][0] % n_labels)
    return texts, labels


def write_xglue_export(out: Path, seed: int = 0) -> list[Path]:
    """Write every task, split and language of the export's layout under ``out``
    (``{task}/{split}/0000.parquet``); returns the files."""
    files = []
    for task, spec in XGLUE.items():
        for split in ("train", "validation", "test"):
            for lang in (["en"] if split == "train" else spec.languages):
                texts, labels = task_records(task, lang, split, seed)
                path = out / task / parquet_split_name(lang, split) / "0000.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                dataset = build_dataset(spec, texts, labels)
                if task == "wpr":          # the export has no query id: load_xglue derives it
                    dataset = dataset.remove_columns("query_id")
                pq.write_table(dataset.data.table, path)   # the table's schema carries the ClassLabel names
                files.append(path)
    return files


def tokenizer_texts(seed: int = 0) -> list[str]:
    """Every language's words, a sentence per concept block, to train the tokenizers on."""
    languages = sorted({lang for spec in XGLUE.values() for lang in spec.languages})
    return [" ".join(word(c, lang) for c in range(start, min(start + 12, CONCEPTS)))
            for lang in languages for start in range(0, CONCEPTS, 12)]


def write_model(folder: Path, family: str, tokenizer, seed: int, base: Path | None = None) -> Path:
    """Save a small random ``family`` model with ``tokenizer`` into ``folder``; with ``base``,
    the base checkpoint's weights moved by noise of standard deviation 0.02 drawn with ``seed``."""
    classes = {"bert": BertForMaskedLM, "xlm-roberta": XLMRobertaForMaskedLM,
               "mbart": MBartForConditionalGeneration, "m2m100": M2M100ForConditionalGeneration}
    torch.manual_seed(seed)
    if base is None:
        model = classes[family](random_config(family, len(tokenizer), shape=TINY_SHAPES[family]))
    else:
        model = classes[family].from_pretrained(base)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def paper_hub_models() -> dict[str, tuple[str, str]]:
    """{registry name: (Hub id, family)} of the paper's seven models, from params/models.yaml."""
    registry = load_registry()
    return {name: (registry[name].source, registry[name].family) for name in PAPER_MODELS}


def build_repositories(out: str | Path, seed: int = 0) -> dict[tuple[str, str, str], Path]:
    """Write the stand-in repositories under ``out``; returns {(repo type, repo id, revision):
    folder} (see the module docstring)."""
    out = Path(out)
    texts = tokenizer_texts(seed)
    tokenizers = {}
    repos: dict[tuple[str, str, str], Path] = {}
    models = paper_hub_models()
    bases = {name: spec for name, spec in models.items() if not name.startswith("mbart-")}
    for i, (name, (hub_id, family)) in enumerate(models.items()):
        if family not in tokenizers:
            tokenizers[family] = train_tokenizer(family, texts, vocab_size=600)
        base = out / "model" / models["mbart"][0] if name not in bases else None
        folder = write_model(out / "model" / hub_id, family, tokenizers[family], seed + i, base=base)
        repos[("model", hub_id, "main")] = folder
    folder = out / "dataset" / XGLUE_REPO
    write_xglue_export(folder, seed)
    repos[("dataset", XGLUE_REPO, PARQUET_REVISION)] = folder
    return repos


def build_cache(cache_dir: str | Path, seed: int = 0) -> Path:
    """A Hugging Face cache holding the stand-in repositories; returns ``cache_dir``."""
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        for (repo_type, repo_id, revision), folder in build_repositories(tmp, seed).items():
            cache_put_folder(cache_dir, repo_type, repo_id, revision, folder)
    return Path(cache_dir)
