"""The ``ud-pos`` task's data: XGLUE's POS layout built from real Universal Dependencies treebanks.

XGLUE's POS task comes from UD treebanks (English EWT for training). ``build_ud`` writes the
same release layout from the CoNLL-U files of six treebanks, so that ``ud-pos`` is read by the
very loader of XGLUE's POS (``mtnb.data.xglue.load_xglue('pos', ..., local_dir=...)``):

    runs/data/ud/
        manifest.json                     sources, SHA-256, counts, licence, which sentence went where
        xglue_full_dataset/POS/en.train   English-EWT dev + test (4,078 sentences, in file order)
        xglue_full_dataset/POS/{l}.dev    the PUD dev half, l in en de es fr ru (500 sentences each)
        xglue_full_dataset/POS/{l}.test   the PUD test half, l in en de es fr ru (500 sentences each)
        licences/UD_<name>/               each treebank's LICENSE.txt and README.md (CC BY-SA)

A file holds one token a line, ``word TAG`` (TAG: the UPOS of column 4), and a blank line after
each sentence. Multiword-token lines (ID ``1-2``) and empty nodes (ID ``1.1``) are skipped: the
tags belong to the syntactic words. A FORM may hold spaces in CoNLL-U (French ``10 000``); they
are written as U+00A0 (no-break space), so that a line still splits into word and tag at its one
ASCII space; tokenizers treat U+00A0 as a space.

The split of PUD (the same 1,000 sentences in every PUD language): the half (500) whose
``sent_id`` has the smallest SHA-256 (of its UTF-8 bytes, compared as hex strings) are the test
half, the other 500 the dev half (``pud_halves``). Both are written in ``sent_id`` order, the
same in every language, so the i-th test sentence is the same sentence in en, de, es, fr and
ru. English dev selects the model; the other languages' dev halves are read only by the
target-language-dev oracle of fine-tuning (an upper bound, ``mtnb.transfer.finetune``). A
per-example unit of a ``ud-pos`` evaluation (``mtnb.transfer.scoring.metric_units``, unit ``i``)
names one sentence for all languages, and ``manifest["files"][...]["sent_ids"][i]`` is its
PUD id (e.g. ``n01001011``).

The CoNLL-U files come from ``--from DIR``, a folder laid out like ``../shared/data/ud/`` (one
``UD_<name>/`` folder per treebank, unmodified), or are downloaded (``download_treebanks``) from
the UD repositories on GitHub at the commits pinned in ``TREEBANKS``, their SHA-256 checked.
Everything is read and checked before anything is written, and the output folder appears whole
or not at all (``mtnb.core.files.atomic_folder``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mtnb.core.errors import MtnbError
from mtnb.core.files import atomic_file, atomic_folder, sha256_file
from mtnb.core.paths import project_root
from mtnb.data.xglue import RELEASE_FOLDER, UPOS_TAGS, XGLUE

RAW_BASE_URL = "https://raw.githubusercontent.com/UniversalDependencies"
REPOSITORY_URL = "https://github.com/UniversalDependencies/UD_{name}"
URL_SCHEMES = ("https://", "http://", "file:")
EXTRA_FILES = ("LICENSE.txt", "README.md")   # copied beside the data for attribution, when present
POS = XGLUE["pos"]                           # the XGLUE task whose release layout is written
POS_FOLDER = f"{RELEASE_FOLDER}/{POS.folder}"
WORD_SPACE = "\u00a0"                        # what a space inside a FORM is written as
BUILD_COMMAND = "mtnb data ud --from ../shared/data/ud"


@dataclass(frozen=True)
class Treebank:
    """One UD treebank as pinned: repository ``UD_<name>``, the commit read, its CoNLL-U files
    with their SHA-256 at that commit, its language (ISO 639-1) and licence."""

    name: str
    lang: str
    commit: str
    files: tuple[tuple[str, str], ...]   # (file name, SHA-256)
    licence: str

    @property
    def folder(self) -> str:
        """``UD_<name>``: the repository's and the local folder's name."""
        return f"UD_{self.name}"


EWT = Treebank("English-EWT", "en", "15d613d8447b3478787d4c278730a1e48a945efb",
               (("en_ewt-ud-dev.conllu", "531a54ff90d6ab12201c5a50c3e78e6ddac4de69abc4bce5d275d3cd29efe2b6"),
                ("en_ewt-ud-test.conllu", "e266e515a0a7547657ed3d90d9ba46487d6bd251f27ad4269d4e8a427c8555cd")),
               "CC BY-SA 4.0")
# the PUD treebanks: name, language, commit, SHA-256 of {lang}_pud-ud-test.conllu (CC BY-SA 3.0)
PUD_PINS = (
    ("English-PUD", "en", "f16eba4ae7f3d161870ed320676c5088b8fa476c",
     "c80584f2bc2b31d5bada78a1136f9feec7ac49e5e18898db02dea434b5b8f0aa"),
    ("German-PUD", "de", "ff80846ae60a0a70fc4d6251ef73e6a483a620ee",
     "a530bdb50349bbd7c13706b6a759a9d73e8f514fff41fbf27149e914b0c3e723"),
    ("Spanish-PUD", "es", "818a82b8628c9cbec78750c7e83ccba34b9ce22b",
     "48a7b5c7f409100b24eba90c7397e01f6fecaaf3207315a9a1bda029f77e98d3"),
    ("French-PUD", "fr", "c245786cfb3020d43bcfc96215ae531a1b07bcbc",
     "793540702db111d2bfe04f846edddb23e7a2a432294fe17cb612dd795fb0301f"),
    ("Russian-PUD", "ru", "da5b3816eeaa24283c1d81a48bb1de4d062fc5d5",
     "a37e076d24f0c3cfd5d48a11bbfec36026da5dc46180b7a12dc991dc372de1ea"),
)
TREEBANKS: dict[str, Treebank] = {EWT.name: EWT, **{
    name: Treebank(name, lang, commit, ((f"{lang}_pud-ud-test.conllu", digest),), "CC BY-SA 3.0")
    for name, lang, commit, digest in PUD_PINS}}
TRAIN_TREEBANK = EWT.name
PUD_TREEBANKS = {lang: name for name, lang, _, _ in PUD_PINS}   # language -> PUD treebank

ATTRIBUTION = (
    "Universal Dependencies treebanks (https://universaldependencies.org), unmodified except for the "
    "conversion to XGLUE's POS layout: UD English-EWT (annotations (c) 2013-2021 The Board of Trustees "
    "of The Leland Stanford Junior University; Silveira et al. 2014, 'A Gold Standard Dependency Corpus "
    "for English', LREC), CC BY-SA 4.0; the Parallel Universal Dependencies (PUD) treebanks of the "
    "CoNLL 2017 shared task in English, German, Spanish, French and Russian (texts and annotations made "
    "available by Google; Zeman et al. 2017), CC BY-SA 3.0. Derived files are shared under the same terms.")


@dataclass(frozen=True)
class Sentence:
    """One CoNLL-U sentence: its ``sent_id``, its syntactic words and their UPOS tags (equal
    lengths), and where it starts (``file:line``)."""

    sent_id: str
    words: tuple[str, ...]
    tags: tuple[str, ...]
    where: str


def default_ud_dir() -> Path:
    """``<project>/runs/data/ud``: where ``mtnb data ud`` writes by default."""
    return project_root() / "runs" / "data" / "ud"


def default_cache_dir() -> Path:
    """``<project>/runs/data/cache/ud``: where downloaded treebanks are kept."""
    return project_root() / "runs" / "data" / "cache" / "ud"


def ud_manifest(root: str | Path | None = None) -> dict:
    """The manifest.json of the built task in ``root`` (default runs/data/ud); a one-line
    MtnbError naming the command that builds it when it is absent."""
    root = Path(root) if root is not None else default_ud_dir()
    path = root / "manifest.json"
    if not path.is_file():
        raise MtnbError(f"no UD POS data at {root}: build it with '{BUILD_COMMAND}' (or without --from, "
                        "where there is internet)")
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Reading CoNLL-U
# --------------------------------------------------------------------------------------------

def read_conllu(path: Path) -> list[Sentence]:
    """The sentences of CoNLL-U file ``path``: the words of integer-ID lines with their UPOS
    (column 4); multiword-token ranges (``1-2``) and empty nodes (``1.1``) are skipped.

    MtnbError naming the file and line for text that is not UTF-8, a token line without the 10
    tab-separated columns, an ID that is none of the three forms, a UPOS outside the 17 UD tags,
    a sentence without ``# sent_id``, and a sent_id used twice."""
    sentences: list[Sentence] = []
    seen: set[str] = set()
    sent_id, start, words, tags = None, None, [], []

    def close() -> None:
        nonlocal sent_id, start, words, tags
        if words:
            if sent_id is None:
                raise MtnbError(f"{path}:{start}: a sentence without a '# sent_id = ...' comment; "
                                "is this a UD CoNLL-U file?")
            if sent_id in seen:
                raise MtnbError(f"{path}:{start}: sent_id {sent_id!r} is used twice in the file")
            seen.add(sent_id)
            sentences.append(Sentence(sent_id, tuple(words), tuple(tags), f"{path}:{start}"))
        sent_id, start, words, tags = None, None, [], []

    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError:
                raise MtnbError(f"{path}:{number}: not UTF-8 text; is this a CoNLL-U file?") from None
            if number == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                close()
                continue
            if start is None:
                start = number
            if line.startswith("#"):
                key, _, value = line[1:].partition("=")
                if key.strip() == "sent_id":
                    sent_id = value.strip()
                continue
            columns = line.split("\t")
            if len(columns) != 10:
                raise MtnbError(f"{path}:{number}: {len(columns)} tab-separated column(s) where CoNLL-U has 10; "
                                "is this an unmodified UD CoNLL-U file?")
            token_id = columns[0]
            if "-" in token_id or "." in token_id:      # a multiword-token range or an empty node
                if not all(part.isdigit() for part in token_id.replace("-", ".").split(".")):
                    raise MtnbError(f"{path}:{number}: ID {token_id!r} is not a word index, a range (1-2) "
                                    "or an empty node (1.1)")
                continue
            if not token_id.isdigit():
                raise MtnbError(f"{path}:{number}: ID {token_id!r} is not a word index, a range (1-2) "
                                "or an empty node (1.1)")
            upos = columns[3]
            if upos not in UPOS_TAGS:
                raise MtnbError(f"{path}:{number}: UPOS tag {upos!r} is not one of the 17 UD tags "
                                f"({', '.join(UPOS_TAGS)})")
            words.append(columns[1])
            tags.append(upos)
    close()
    return sentences


def word_field(form: str) -> str:
    """A CoNLL-U FORM as the word field of a ``word TAG`` line: its spaces become U+00A0."""
    return form.replace(" ", WORD_SPACE)


def pos_lines(sentences: list[Sentence]) -> str:
    """The text of an XGLUE POS file: ``word TAG`` a line, a blank line after each sentence."""
    return "".join("".join(f"{word_field(w)} {t}\n" for w, t in zip(s.words, s.tags)) + "\n"
                   for s in sentences)


def pud_halves(sent_ids: list[str]) -> tuple[list[str], list[str]]:
    """``(dev, test)`` halves of the PUD sentence ids, each in sent_id order: test is the half
    (rounded down: 500 of PUD's 1,000) whose SHA-256 (hex, of the UTF-8 id) is smallest, dev
    the rest. The rule depends on the ids alone, so every language splits the same way."""
    by_hash = sorted(sent_ids, key=lambda s: hashlib.sha256(s.encode("utf-8")).hexdigest())
    test = set(by_hash[:len(sent_ids) // 2])
    return sorted(s for s in sent_ids if s not in test), sorted(test)


# --------------------------------------------------------------------------------------------
# Building the task
# --------------------------------------------------------------------------------------------

def treebank_files(source: Path) -> dict[str, list[Path]]:
    """``{treebank name: its CoNLL-U paths}`` in ``source`` (laid out like ../shared/data/ud);
    MtnbError naming the first missing folder or file before anything is read."""
    if not source.is_dir():
        raise MtnbError(f"--from {source}: no such folder; point it at a folder laid out like ../shared/data/ud "
                        "(one UD_<name>/ folder per treebank)")
    found = {}
    for bank in TREEBANKS.values():
        paths = [source / bank.folder / name for name, _ in bank.files]
        for path in paths:
            if not path.is_file():
                raise MtnbError(f"{path}: not found; the folder must hold treebank {bank.folder}/ with "
                                f"{', '.join(n for n, _ in bank.files)} (as ../shared/data/ud does)")
        found[bank.name] = paths
    return found


def build_ud(out: str | Path | None = None, source: str | Path | None = None, *, cache: str | Path | None = None,
             base_url: str = RAW_BASE_URL) -> dict:
    """Build the ``ud-pos`` data in ``out`` (default runs/data/ud) and return its manifest.

    ``source``: a folder laid out like ../shared/data/ud; None: the pinned treebanks are
    downloaded from ``base_url`` into ``cache`` (default runs/data/cache/ud) first. Every file is
    read and checked before anything is written; ``out`` is replaced whole at the end."""
    out = Path(out) if out is not None else default_ud_dir()
    if source is None:
        source = download_treebanks(Path(cache) if cache is not None else default_cache_dir(), base_url)
        origin = {"downloaded_from": base_url}
    else:
        origin = {"from": str(Path(source))}
    source = Path(source)
    paths = treebank_files(source)
    read = {name: [read_conllu(p) for p in files] for name, files in paths.items()}

    english = {s.sent_id: s for s in read[PUD_TREEBANKS["en"]][0]}
    english_pud = list(english)
    for lang, name in PUD_TREEBANKS.items():
        mine = {s.sent_id: s for s in read[name][0]}
        extra = [s for i, s in mine.items() if i not in english]
        missing = [s for i, s in english.items() if i not in mine]
        if extra or missing:
            raise MtnbError(f"{extra[0].where}: sent_id {extra[0].sent_id!r} is not in English PUD" if extra else
                            f"{paths[name][0]}: sent_id {missing[0].sent_id!r} of English PUD ({missing[0].where}) "
                            "is missing" + "; the PUD treebanks must be the same parallel sentences")
    if len(english_pud) < 2:
        raise MtnbError(f"{paths[PUD_TREEBANKS['en']][0]}: {len(english_pud)} sentence(s); PUD has 1,000, "
                        "split into a dev and a test half")
    dev_ids, test_ids = pud_halves(english_pud)

    outputs: dict[str, list[Sentence]] = {"en.train": [s for part in read[TRAIN_TREEBANK] for s in part]}
    sources = {"en.train": [str(p.relative_to(source)) for p in paths[TRAIN_TREEBANK]]}
    for lang, name in PUD_TREEBANKS.items():
        by_id = {s.sent_id: s for s in read[name][0]}
        outputs[f"{lang}.dev"] = [by_id[i] for i in dev_ids]
        sources[f"{lang}.dev"] = [str(paths[name][0].relative_to(source))]
        outputs[f"{lang}.test"] = [by_id[i] for i in test_ids]
        sources[f"{lang}.test"] = [str(paths[name][0].relative_to(source))]

    manifest = {
        "task": "ud-pos",
        "format": f"XGLUE's POS release layout ({POS_FOLDER}/{{lang}}.{{split}}): 'word TAG' a line (TAG: the "
                  "UPOS of CoNLL-U column 4), a blank line after each sentence; multiword-token ranges (1-2) and "
                  "empty nodes (1.1) skipped; a space inside a word written as U+00A0",
        **origin,
        "licence": "CC BY-SA 4.0 (English-EWT), CC BY-SA 3.0 (the PUD treebanks); share-alike",
        "attribution": ATTRIBUTION,
        "splits": {
            "en.train": "English-EWT dev + test, every sentence, in file order",
            "dev": f"each language's PUD: the {len(dev_ids)} sentences not in the test half, in sent_id order (English "
                   "dev selects models; the other languages' only the target-dev oracle's checkpoints)",
            "test": f"each language's PUD: the {len(test_ids)} sentences whose SHA-256(sent_id) is smallest, "
                    "in sent_id order (the same sentences in the same order in every language: unit i of a "
                    "zero-shot evaluation is sent_ids[i] in all of them)",
        },
        "treebanks": {bank.name: treebank_record(bank, paths[bank.name], source) for bank in TREEBANKS.values()},
        "files": {f"{POS_FOLDER}/{name}": {"sentences": len(sents), "tokens": sum(len(s.words) for s in sents),
                                           "from": sources[name], "sent_ids": [s.sent_id for s in sents]}
                  for name, sents in outputs.items()},
    }
    with atomic_folder(out) as tmp:
        for name, sents in outputs.items():
            target = tmp / POS_FOLDER / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(pos_lines(sents), encoding="utf-8")
            manifest["files"][f"{POS_FOLDER}/{name}"]["sha256"] = sha256_file(target)
        for bank in TREEBANKS.values():
            for extra in EXTRA_FILES:
                if (source / bank.folder / extra).is_file():
                    (tmp / "licences" / bank.folder).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source / bank.folder / extra, tmp / "licences" / bank.folder / extra)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def treebank_record(bank: Treebank, paths: list[Path], source: Path) -> dict:
    """The manifest's entry of one treebank: repository, pinned commit, licence, and per file its
    SHA-256 and whether that is the pinned commit's."""
    pinned = dict(bank.files)
    return {"repository": REPOSITORY_URL.format(name=bank.name), "commit": bank.commit, "licence": bank.licence,
            "files": {str(p.relative_to(source)): {"sha256": (digest := sha256_file(p)),
                                                   "pinned": digest == pinned[p.name]} for p in paths}}


# --------------------------------------------------------------------------------------------
# Downloading the pinned treebanks
# --------------------------------------------------------------------------------------------

def raw_url(base_url: str, bank: Treebank, name: str) -> str:
    """The raw file ``name`` of ``bank`` at its pinned commit: ``{base}/UD_<name>/{commit}/{name}``."""
    return f"{base_url.rstrip('/')}/{bank.folder}/{bank.commit}/{name}"


def download_treebanks(cache: Path, base_url: str = RAW_BASE_URL, treebanks: dict[str, Treebank] | None = None,
                       timeout: float = 60.0) -> Path:
    """Download every pinned file of ``treebanks`` (default ``TREEBANKS``) into ``cache`` laid out
    like ../shared/data/ud (``UD_<name>/<file>``) and return ``cache``. A CoNLL-U file already
    there with its pinned SHA-256 is kept; a download whose SHA-256 is not the pinned one is
    refused (MtnbError) and not kept. LICENSE.txt and README.md come along when the server has
    them (attribution)."""
    treebanks = TREEBANKS if treebanks is None else treebanks
    for bank in treebanks.values():
        folder = cache / bank.folder
        for name, digest in bank.files:
            path = folder / name
            if path.is_file() and sha256_file(path) == digest:
                continue
            url = raw_url(base_url, bank, name)
            data = fetch(url, timeout)
            if data is None:
                raise MtnbError(f"{url}: not found; is the commit {bank.commit} of {bank.folder} still served? "
                                f"Offline, run '{BUILD_COMMAND}'")
            if hashlib.sha256(data).hexdigest() != digest:
                raise MtnbError(f"{url}: SHA-256 {hashlib.sha256(data).hexdigest()[:12]}... is not the pinned "
                                f"{digest[:12]}...; the download is damaged or the file changed")
            with atomic_file(path) as tmp:
                tmp.write_bytes(data)
        for extra in EXTRA_FILES:
            if not (folder / extra).is_file():
                data = fetch(raw_url(base_url, bank, extra), timeout)
                if data is not None:
                    with atomic_file(folder / extra) as tmp:
                        tmp.write_bytes(data)
    return cache


def fetch(url: str, timeout: float) -> bytes | None:
    """The bytes at ``url`` (http, https or file), None when the server says 404; MtnbError for
    any other failure to reach it."""
    if not url.startswith(URL_SCHEMES):
        raise MtnbError(f"{url}: not an {', '.join(URL_SCHEMES)} address; give the base URL of raw UD files")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:   # noqa: S310 - schemes checked above
            return response.read()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise MtnbError(f"{url}: HTTP {err.code}; try again later, or offline run '{BUILD_COMMAND}'") from None
    except (urllib.error.URLError, OSError) as err:
        if url.startswith("file:"):
            return None
        raise MtnbError(f"{url}: cannot be reached ({getattr(err, 'reason', err)}); offline, run "
                        f"'{BUILD_COMMAND}'") from None
