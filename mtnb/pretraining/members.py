"""The members the study pretrains, and their budgets: catalogues only, no torch.

The **mini zoo** (``ZOO``, trained by ``mtnb.pretraining.zoo``): small models of the paper's
four architectures trained from scratch on the mini corpus, and mBART continued on translation.
The **e5 family** (``E5_MEMBERS``, trained by ``mtnb.pretraining.e5_family``):
multilingual-e5-small (``E5_BASE``) continued on masked LM, on translation in three direction
sets, and on sentence alignment, under one protocol and budget.

``mtnb.study.grids`` and the runner read these catalogues to order and check jobs without
importing torch. ``check_zoo_request`` and ``check_e5_request`` make every check that can fail
before training starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtnb.core.errors import MtnbError
from mtnb.data.mini.corpus import LANGS
from mtnb.data.mini.datasets import corpus_manifest

# --------------------------------------------------------------------------------------------
# The mini zoo
# --------------------------------------------------------------------------------------------

SHAPE = dict(layers=4, hidden=128, heads=4, ffn=512, decoder_layers=2, max_positions=130)
VOCAB_SIZE = 8000
MAX_LENGTH = 64


@dataclass(frozen=True)
class Member:
    """One zoo member: its architecture (``family``), objective, translation directions and the
    member it starts from (``base``: weights for continued pretraining; tokenizer for random)."""

    family: str
    objective: str                 # mlm | denoise | translate | none
    directions: str | None = None  # m2o | o2m | m2m (translate only)
    base: str | None = None


ZOO = {
    "mini-mbert": Member("bert", "mlm"),
    "mini-xlmr": Member("xlm-roberta", "mlm"),
    "mini-mbart": Member("mbart", "denoise"),
    "mini-mbart-m2o": Member("mbart", "translate", "m2o", base="mini-mbart"),
    "mini-mbart-o2m": Member("mbart", "translate", "o2m", base="mini-mbart"),
    "mini-mbart-m2m": Member("mbart", "translate", "m2m", base="mini-mbart"),
    "mini-nllb": Member("m2m100", "translate", "m2m"),
    "mini-random": Member("xlm-roberta", "none", base="mini-xlmr"),
}


@dataclass
class Budget:
    """How much training: language-model objectives stop after ``lm_tokens`` training tokens,
    translation objectives after ``mt_steps`` optimizer steps; ``batch_size`` sequences of at
    most MAX_LENGTH tokens per step; ``eval_pairs`` test pairs per direction for chrF, translated
    greedily up to ``eval_tokens`` tokens."""

    lm_tokens: int
    mt_steps: int
    batch_size: int = 32
    lr: float = 1e-3
    eval_pairs: int = 100
    eval_tokens: int = MAX_LENGTH
    vocab_texts: int = 10000   # paragraphs per language for training the vocabulary


BUDGETS = {
    "smoke": Budget(lm_tokens=6000, mt_steps=6, batch_size=8, eval_pairs=4, eval_tokens=16, vocab_texts=1500),
    "mini": Budget(lm_tokens=400_000, mt_steps=300, batch_size=32, eval_pairs=100),
}


# --------------------------------------------------------------------------------------------
# The e5 family
# --------------------------------------------------------------------------------------------

E5_MEMBERS = {"me5-mlm": "mlm", "me5-m2o": "m2o", "me5-o2m": "o2m", "me5-m2m": "m2m", "me5-align": "align"}
TRANSLATION = ("m2o", "o2m", "m2m")   # objectives with a decoder (the translation directions)
E5_BASE = "me5-small"


@dataclass
class E5Budget:
    """The budget every member gets. Stage 1: ``warmup_steps`` head-only steps of
    ``warmup_batch_size`` items drawn from ``warmup_pool`` training items whose encoder states
    are computed once. Stage 2: ``steps`` joint steps of ``batch_size`` encoder sequences (of at
    most ``max_length`` tokens), the encoder at ``encoder_lr``, the head at ``head_lr``, each
    stage with a linear warm-up over ``warmup`` of its steps, then linear decay.
    ``decoder_layers`` of the fresh decoder; ``eval_pairs`` test pairs per direction for chrF
    and retrieval; ``heldout`` held-out items for the losses; ``train_layers``: how many of the
    encoder's top layers stage 2 trains (None: all); ``temperature`` of the alignment loss."""

    steps: int
    batch_size: int = 16
    max_length: int = 48
    encoder_lr: float = 5e-5
    head_lr: float = 1e-3
    warmup: float = 0.06
    warmup_steps: int = 0
    warmup_batch_size: int = 32
    warmup_pool: int = 4000
    decoder_layers: int = 1
    eval_pairs: int = 60
    heldout: int = 64
    train_layers: int | None = None
    temperature: float = 0.05


E5_BUDGETS = {
    "smoke": E5Budget(steps=3, batch_size=4, max_length=24, warmup_steps=3, warmup_batch_size=4, warmup_pool=16,
                      eval_pairs=4, heldout=8),
    "mini": E5Budget(steps=200, warmup_steps=1200, warmup_pool=6000),
}


def training_order(members: list[str]) -> list[str]:
    """The order in which to train ``members`` of the family so that, two jobs at a time, none
    waits long for the shared decoder: the first translation member (it warms the decoder up),
    then the members with heads of their own or none, then the translation members that load
    it."""
    translation = [m for m in members if E5_MEMBERS[m] in TRANSLATION]
    return translation[:1] + [m for m in members if m not in translation] + translation[1:]


# --------------------------------------------------------------------------------------------
# Checks before training
# --------------------------------------------------------------------------------------------

def named_budget(budget, budgets: dict):
    """``budgets[budget]`` for a budget's name, the budget itself otherwise; MtnbError for an
    unknown name."""
    if not isinstance(budget, str):
        return budget
    if budget not in budgets:
        raise MtnbError(f"unknown budget {budget!r}: use one of {', '.join(budgets)}")
    return budgets[budget]


def check_corpus(corpus_root: Path, member: str, parallel: bool) -> None:
    """MtnbError unless the corpus at ``corpus_root`` holds the monolingual training text of every
    language and, when ``parallel``, the parallel train and test splits ``member`` needs."""
    files = corpus_manifest(corpus_root)["files"]
    needed = [f"monolingual/train.{lang}.parquet" for lang in LANGS]
    if parallel:
        needed += [f"parallel/{split}.{lang}.parquet" for split in ("train", "test") for lang in LANGS[1:]]
    missing = [f for f in needed if f not in files]
    if missing:
        raise MtnbError(f"the corpus at {corpus_root} lacks {missing[0]}, which {member} needs; rebuild it with 'mtnb data mini'")


def check_zoo_request(member: str, corpus_root: Path, budget: str | Budget, base_dir: Path) -> tuple[Member, Budget]:
    """Every check that can fail before training: the member, the budget, the corpus files it
    needs, and the base checkpoint a continued member starts from."""
    if member not in ZOO:
        raise MtnbError(f"unknown zoo member {member!r}: use one of {', '.join(ZOO)}")
    spec = ZOO[member]
    budget = named_budget(budget, BUDGETS)
    if budget.lm_tokens <= 0 or budget.mt_steps <= 0 or budget.batch_size <= 0:
        raise MtnbError("the training budget must be positive (lm_tokens, mt_steps, batch_size > 0)")
    check_corpus(corpus_root, member, parallel=spec.objective == "translate")
    if spec.base is not None and not (base_dir / spec.base / "config.json").is_file():
        raise MtnbError(f"{member} starts from {spec.base}, which is not built in {base_dir}; build {spec.base} first")
    return spec, budget


def check_e5_request(member: str, corpus_root: Path, budget: str | E5Budget) -> E5Budget:
    """Every check that can fail before training: the member, the budget and the corpus files."""
    if member not in E5_MEMBERS:
        raise MtnbError(f"unknown e5 member {member!r}: use one of {', '.join(E5_MEMBERS)}")
    budget = named_budget(budget, E5_BUDGETS)
    if budget.steps <= 0 or budget.batch_size < 2 or budget.max_length < 8:
        raise MtnbError("the e5 budget must have steps > 0, batch_size >= 2 and max_length >= 8")
    if budget.warmup_steps < 0 or (budget.warmup_steps and (budget.warmup_pool < 1 or budget.warmup_batch_size < 1)):
        raise MtnbError("the e5 budget's warm-up needs warmup_steps >= 0, and warmup_pool and warmup_batch_size >= 1")
    if budget.train_layers is not None and budget.train_layers < 1:
        raise MtnbError(f"the e5 budget's train_layers is {budget.train_layers}: train at least 1 layer, or None for all")
    check_corpus(corpus_root, member, parallel=True)
    return budget
