"""The offline mini corpus: LibreOffice help in five languages, turned into XGLUE-style tasks.

Debian ships the LibreOffice help as packages (``libreoffice-help-en-us``, ``-de``, ``-es``,
``-fr``, ``-ru``): about 2,560 HTML pages per language, human translations of the same source
files, whose paragraphs carry ids that are identical across languages. ``build_corpus``

1. obtains the packages (``apt-get download`` into a cache folder, ``dpkg-deb -x``; no system
   install) or takes unpacked help trees (``--from DIR``);
2. parses every page (``mtnb.data.mini.libo_help``, an HTML parser) in parallel worker processes;
3. aligns paragraphs across languages by (help file, paragraph id, occurrence), dropping a
   language's copy when it is left untranslated (identical to the English; for Russian,
   without a Cyrillic letter);
4. splits by help file (a hash of the file's path: 80% train, 10% dev, 10% test), then the
   training pages, by another hash of the path, into pretraining pages (PRETRAINING_SHARE: the
   parallel and monolingual text, with a few pages held out for its own losses) and task
   training pages (``page_role``); drops any task dev or test paragraph whose text, in any
   language, also occurs on a training page, and any pretraining paragraph whose text occurs
   on a task page, so that no paragraph a task trains, selects or tests on, nor its
   translation, is ever pretrained on, and no test paragraph is ever trained on;
5. writes the datasets as Parquet files with a manifest (package versions, counts, class
   balance, a SHA-256 per file). Building twice gives byte-identical files.

| dataset      | analog of | records                                                             |
|--------------|-----------|---------------------------------------------------------------------|
| mini-spans   | NER       | words + BIO tags of the inline span classes; en train/dev, test x5  |
| mini-topic   | NC        | paragraph -> module (calc, writer, ...); en train/dev, test x5      |
| mini-rank    | WPR       | query (page title), candidate paragraph, relevance 2/1/0, query id  |
| parallel     | (MT data) | en <-> de/es/fr/ru paragraph pairs, train/dev/test; pretraining pages |
| monolingual  | (LM data) | paragraphs per language, train/dev; pretraining pages               |
| cka-samples  | (CKA)     | 80 paragraphs in all five languages, from task test pages           |

The three tasks read task pages only; parallel and monolingual read pretraining pages only. The
manifest's ``page_split`` records the rule, the pages of each side (counts and a SHA-256 of each
list) and the training text's size before and after the split.

File layout: ``<out>/<dataset>/<split>.<lang>.parquet`` and ``<out>/manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from mtnb.core.errors import MtnbError
from mtnb.core.files import sha256_file
from mtnb.data.mini.libo_help import HelpPageError, parse_page

LANGS = ("en", "de", "es", "fr", "ru")
HELP_DIRS = {"en": "en-US", "de": "de", "es": "es", "fr": "fr", "ru": "ru"}
PACKAGES = {lang: f"libreoffice-help-{'en-us' if lang == 'en' else lang}" for lang in LANGS}
TOPIC_MODULES = ("calc", "writer", "impress", "draw", "base", "math", "chart", "basic")
SPAN_KINDS = ("menu", "emph", "literal", "input", "key", "product", "widget")
RANK_GRADES = ("other-module", "same-module", "same-page")  # relevance 0, 1, 2
SPAN_TAGS = ("O",) + tuple(f"{p}-{k}" for k in SPAN_KINDS for p in ("B", "I"))
SPLITS = ("train", "dev", "test")
N_CKA = 80
# Refuse a corpus smaller than this (a broken or partial source, never a silently tiny dataset).
MIN_RECORDS = {"mini-topic/train.en": 1000, "mini-spans/train.en": 1000, "mini-rank/train.en": 1000,
               "cka-samples/test.all": N_CKA, **{f"parallel/train.{lang}": 1000 for lang in LANGS[1:]}}
WORD = re.compile(r"\w+|[^\w\s]")
CYRILLIC = re.compile(r"[\u0400-\u04FF]")


# --------------------------------------------------------------------------------------------
# 1. Getting the help pages
# --------------------------------------------------------------------------------------------

def fetch_packages(cache: Path) -> dict[str, Path]:
    """``{lang: .deb path}``: download the five help packages into ``cache`` (kept for reuse).

    Uses ``apt-get download`` (no installation). Where the package lists are missing it runs
    ``apt-get update`` when root, else asks for it. Raises MtnbError in one line when the
    registry is unreachable, naming the packages and the ``--from DIR`` alternative.
    """
    cache.mkdir(parents=True, exist_ok=True)
    found = {lang: cached_deb(cache, pkg) for lang, pkg in PACKAGES.items()}
    missing = [PACKAGES[lang] for lang, deb in found.items() if deb is None]
    if missing:
        if shutil.which("apt-get") is None:
            raise MtnbError("apt-get not found: on a non-Debian machine pass --from DIR, a folder with "
                            "unpacked LibreOffice help trees (usr/share/libreoffice/help/<lang>/)")
        result = apt_download(missing, cache)
        if result.returncode != 0 and "Unable to locate package" in result.stderr:
            if os.geteuid() != 0:
                raise MtnbError("apt package lists are missing: run 'sudo apt-get update', then again "
                                "(or pass --from DIR with unpacked help trees)")
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
            result = apt_download(missing, cache)
        if result.returncode != 0:
            reason = next((line for line in result.stderr.splitlines() if line.startswith("E:")), "")
            raise MtnbError(f"could not download {' '.join(missing)} from the Debian registry "
                            f"({reason}); on a machine without it pass --from DIR with unpacked "
                            "LibreOffice help trees")
        found = {lang: cached_deb(cache, pkg) for lang, pkg in PACKAGES.items()}
    return found


def cached_deb(cache: Path, package: str) -> Path | None:
    """The newest ``<package>_*.deb`` in the ``cache`` folder, or None."""
    debs = sorted(cache.glob(f"{package}_*.deb"))
    return debs[-1] if debs else None


def apt_download(packages: list[str], cache: Path) -> subprocess.CompletedProcess:
    """``apt-get download PACKAGES`` into ``cache`` (no shell, output captured)."""
    command = ["apt-get", "download", *packages]
    if os.geteuid() == 0:  # root: apt's sandbox user cannot write into our cache folder
        command[1:1] = ["-o", "APT::Sandbox::User=root"]
    return subprocess.run(command, cwd=cache, capture_output=True, text=True)


def deb_version(deb: Path) -> str:
    """The package version recorded in a .deb file (``dpkg-deb -f FILE Version``)."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def unpack(debs: dict[str, Path], tree: Path) -> Path:
    """Unpack the .deb files into ``tree`` with ``dpkg-deb -x``; returns the help root."""
    for deb in debs.values():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    return tree / "usr" / "share" / "libreoffice" / "help"


def find_help_root(folder: Path) -> Path:
    """The ``.../libreoffice/help`` folder inside ``folder`` (or ``folder`` itself).

    Raises MtnbError naming the languages whose pages are missing.
    """
    for candidate in (folder / "usr" / "share" / "libreoffice" / "help", folder / "help", folder):
        if candidate.is_dir() and any((candidate / d / "text").is_dir() for d in HELP_DIRS.values()):
            missing = [lang for lang, d in HELP_DIRS.items() if not (candidate / d / "text").is_dir()]
            if missing:
                raise MtnbError(f"{candidate}: no help pages for {', '.join(missing)}; install or unpack "
                                f"{' '.join(PACKAGES[m] for m in missing)}")
            return candidate
    raise MtnbError(f"{folder}: no LibreOffice help tree (expected usr/share/libreoffice/help/<lang>/text/); "
                    "unpack the libreoffice-help-* packages there")


# --------------------------------------------------------------------------------------------
# 2. Parsing (in worker processes)
# --------------------------------------------------------------------------------------------

def page_keys(help_root: Path) -> list[str]:
    """Relative paths (``text/scalc/01/x.html``) of the English pages, sorted."""
    base = help_root / HELP_DIRS["en"]
    return sorted(p.relative_to(base).as_posix() for p in (base / "text").rglob("*.html"))


def _parse_chunk(args: tuple[str, str, list[str]]) -> tuple[str, dict, list]:
    """Worker: parse pages ``keys`` of one language; returns (lang, {key: page tuple}, failures)."""
    root, lang, keys = args
    pages, failed = {}, []
    for key in keys:
        path = Path(root) / HELP_DIRS[lang] / key
        if not path.is_file():
            continue
        try:
            page = parse_page(str(path))
        except HelpPageError as err:
            failed.append((key, err.reason))
            continue
        pages[key] = (page.title, page.module,
                      [(p.par_id, p.n, p.text, tuple(p.spans)) for p in page.paragraphs])
    return lang, pages, failed


def parse_all(help_root: Path, workers: int = 2, progress: bool = True) -> tuple[dict, dict]:
    """Parse every page of every language: ``({lang: {key: (title, module, paragraphs)}}, failures)``.

    A page that fails to parse is skipped and listed in ``failures[lang]``.
    """
    keys = page_keys(help_root)
    chunks = [(str(help_root), lang, keys[i:i + 200]) for lang in LANGS for i in range(0, len(keys), 200)]
    pages: dict[str, dict] = {lang: {} for lang in LANGS}
    failures: dict[str, list] = {lang: [] for lang in LANGS}
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for lang, parsed, failed in tqdm(pool.map(_parse_chunk, chunks), total=len(chunks),
                                         desc="parsing help pages", disable=not progress):
            pages[lang].update(parsed)
            failures[lang].extend(failed)
    return pages, failures


# --------------------------------------------------------------------------------------------
# 3. Alignment
# --------------------------------------------------------------------------------------------

@dataclass
class Unit:
    """One paragraph aligned across languages: ``text[lang]`` and ``spans[lang]`` for each
    language where it is translated (English always)."""

    key: str
    par_id: str
    n: int
    module: str
    text: dict = field(default_factory=dict)
    spans: dict = field(default_factory=dict)

    @property
    def uid(self) -> str:
        return f"{self.key}#{self.par_id}#{self.n}"


def is_translated(lang: str, text: str, english: str) -> bool:
    """False for a copy left in English: identical text, or (Russian) no Cyrillic letter."""
    if lang == "en":
        return True
    if text == english:
        return False
    return lang != "ru" or CYRILLIC.search(text) is not None


def align(pages: dict[str, dict]) -> tuple[list[Unit], dict[str, dict], Counter]:
    """Align paragraphs by (page, id, occurrence).

    Returns the units (in page and paragraph order), ``titles[key][lang]`` (translated titles
    only) and the number of untranslated copies dropped per language. English paragraphs
    without a letter (numbers, symbols) are skipped.
    """
    units, titles, dropped = [], {}, Counter()
    for key in sorted(pages["en"]):
        title_en, module, paragraphs = pages["en"][key]
        titles[key] = {"en": title_en}
        for lang in LANGS[1:]:
            if key in pages[lang] and is_translated(lang, pages[lang][key][0], title_en):
                titles[key][lang] = pages[lang][key][0]
        others = {lang: {(p[0], p[1]): p for p in pages[lang][key][2]} for lang in LANGS[1:] if key in pages[lang]}
        for par_id, n, text, spans in paragraphs:
            if not any(ch.isalpha() for ch in text):
                continue
            unit = Unit(key, par_id, n, module, {"en": text}, {"en": spans})
            for lang, by_id in others.items():
                p = by_id.get((par_id, n))
                if p is None:
                    continue
                if is_translated(lang, p[2], text):
                    unit.text[lang], unit.spans[lang] = p[2], p[3]
                else:
                    dropped[lang] += 1
            units.append(unit)
    return units, titles, dropped


# --------------------------------------------------------------------------------------------
# 4. Splits
# --------------------------------------------------------------------------------------------

# Half of the training pages (split_of == "train") hold the pretraining text, half the tasks'
# training data. Half, because both halves stay well above what the grids draw: the e5 members'
# mini budget reads 200 x 16 stage-2 items and a 6,000-item warm-up pool from ~20,000 pairs per
# direction, the zoo's 400,000 tokens are a fraction of one pass, and the tasks use at most 2,000
# English training examples (mini-finetune) of ~9,000 (mini-topic). The pretraining pages keep
# PRETRAINING_HELD_OUT of their own pages for the pretraining losses and chrF (parallel and
# monolingual dev and test), 5% each, at least a few hundred pairs per direction.
PRETRAINING_SHARE = 0.5
PRETRAINING_HELD_OUT = {"dev": 0.05, "test": 0.05}
SIDES = ("pretraining", "task")


def split_of(key: str) -> str:
    """train (80%), dev (10%) or test (10%), from a SHA-1 of the page path: stable across runs."""
    bucket = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 8 else ("dev" if bucket == 8 else "test")


def page_role(key: str) -> tuple[str, str]:
    """``(side, split)`` of the page ``key`` (its path, ``text/scalc/01/x.html``): a pure function
    of the path, so stable across runs and independent of the order pages are read in.

    Dev and test pages (``split_of``) are task pages. A training page is a pretraining page when
    the first 8 hex digits of the SHA-256 of its path, as a number mod 10,000, fall below
    PRETRAINING_SHARE x 10,000 (a different hash from ``split_of``'s, so the two draws are
    independent), else a task training page. A pretraining page is held out for the pretraining
    losses by the next 8 hex digits mod 10,000: below PRETRAINING_HELD_OUT["dev"] x 10,000 dev,
    below the sum of both shares test, else train."""
    split = split_of(key)
    if split != "train":
        return "task", split
    digest = hashlib.sha256(key.encode()).hexdigest()
    if int(digest[:8], 16) % 10_000 >= round(PRETRAINING_SHARE * 10_000):
        return "task", "train"
    bucket = int(digest[8:16], 16) % 10_000
    dev = round(PRETRAINING_HELD_OUT["dev"] * 10_000)
    if bucket < dev:
        return "pretraining", "dev"
    return "pretraining", ("test" if bucket < dev + round(PRETRAINING_HELD_OUT["test"] * 10_000) else "train")


def text_key(text: str) -> str:
    """A paragraph's words joined by single spaces: texts differing only in spacing around
    punctuation ("!(x)" and "! (x)") share it, and count as the same paragraph."""
    return " ".join(WORD.findall(text))


def unit_texts(units: list[Unit]) -> set[str]:
    """The ``text_key`` of every text, in every language, of ``units``."""
    return {text_key(t) for u in units for t in u.text.values()}


def unseen(units: list[Unit], seen: set[str]) -> list[Unit]:
    """The units none of whose texts, in any language, is in ``seen`` (``text_key`` strings)."""
    return [u for u in units if seen.isdisjoint(map(text_key, u.text.values()))]


@dataclass
class Splits:
    """The aligned units by side and split (``task[split]``, ``pretraining[split]``, split in
    SPLITS), after dropping shared text, and how many units each drop removed."""

    task: dict[str, list[Unit]]
    pretraining: dict[str, list[Unit]]
    dropped: dict[str, int]
    before: list[Unit]   # every unit of the training pages: the pretraining text before the split


def split_units(units: list[Unit], titles: dict[str, dict[str, str]]) -> Splits:
    """Units by ``page_role``, with shared text (boilerplate such as "Related Topics", copied
    paragraphs; compared up to spacing, see ``text_key``) dropped so that no paragraph a task
    trains, selects or tests on, nor its translation, is ever trained on:

    1. a task dev or test unit whose text, in any language, occurs on a training page (task
       training or pretraining page) is dropped (as before the pretraining split, so task dev
       and test are unchanged by it);
    2. a pretraining unit whose text, in any language, occurs on any task page (any split), or
       is the title of one (``titles[key][lang]``: mini-rank's queries), is dropped;
    3. a pretraining dev or test unit whose text occurs in the pretraining training units is
       dropped (the held-out losses and chrF read unseen text).
    """
    roles = {key: page_role(key) for key in {u.key for u in units}}
    task = {s: [u for u in units if roles[u.key] == ("task", s)] for s in SPLITS}
    pretraining = {s: [u for u in units if roles[u.key] == ("pretraining", s)] for s in SPLITS}
    before = [u for u in units if split_of(u.key) == "train"]
    on_task_pages = unit_texts([u for s in SPLITS for u in task[s]])
    on_task_pages |= {text_key(t) for key, by_lang in titles.items() if page_role(key)[0] == "task"
                      for t in by_lang.values()}
    trained = unit_texts(before)
    dropped = {}
    for split in ("dev", "test"):
        kept = unseen(task[split], trained)
        dropped[f"task_{split}_as_training_duplicates"] = len(task[split]) - len(kept)
        task[split] = kept
    for split in SPLITS:
        kept = unseen(pretraining[split], on_task_pages)
        dropped[f"pretraining_{split}_as_task_duplicates"] = len(pretraining[split]) - len(kept)
        pretraining[split] = kept
    pretrained = unit_texts(pretraining["train"])
    for split in ("dev", "test"):
        kept = unseen(pretraining[split], pretrained)
        dropped[f"pretraining_{split}_as_pretraining_duplicates"] = len(pretraining[split]) - len(kept)
        pretraining[split] = kept
    return Splits(task, pretraining, dropped, before)


def text_sizes(units: list[Unit]) -> dict:
    """How much text ``units`` hold: pages, paragraphs (aligned units), parallel pairs per
    direction (units translated into that language) and characters per language."""
    return {"pages": len({u.key for u in units}), "paragraphs": len(units),
            "parallel_pairs": {lang: sum(lang in u.text for u in units) for lang in LANGS[1:]},
            "characters": {lang: sum(len(u.text[lang]) for u in units if lang in u.text) for lang in LANGS}}


def page_split_record(keys: list[str], splits: Splits) -> dict:
    """The manifest's record of the pretraining/task split: the rule, the pages of each side and
    split with a SHA-256 of each side's sorted page list (one path a line), the units each drop
    removed, and the sizes of the training text before the split (every training page) and of
    each side's training units after it (``text_sizes``)."""
    roles = {key: page_role(key) for key in keys}
    lists = {side: sorted(k for k, r in roles.items() if r[0] == side) for side in SIDES}
    return {
        "rule": "page_role: dev/test pages (split_of, SHA-1) are task pages; a training page is a pretraining "
                "page when int(sha256(path)[:8], 16) % 10000 < share x 10000, held out for the pretraining "
                "losses by int(sha256(path)[8:16], 16) % 10000",
        "pretraining_share": PRETRAINING_SHARE,
        "pretraining_held_out": PRETRAINING_HELD_OUT,
        "pages": {side: {split: sum(r == (side, split) for r in roles.values()) for split in SPLITS} for side in SIDES},
        "page_list_sha256": {side: hashlib.sha256("".join(k + "\n" for k in lists[side]).encode()).hexdigest()
                             for side in SIDES},
        "dropped": splits.dropped,
        "training_text": {"before_split": text_sizes(splits.before),
                          "pretraining": text_sizes(splits.pretraining["train"]),
                          "task": text_sizes(splits.task["train"])},
    }


# --------------------------------------------------------------------------------------------
# 5. The datasets
# --------------------------------------------------------------------------------------------

def words_and_tags(text: str, spans) -> tuple[list[str], list[str]]:
    """Split ``text`` into words (``\\w+`` runs and single punctuation marks) and BIO-tag them.

    Spans of kinds outside SPAN_KINDS (links, acronyms) are ignored; of overlapping spans the
    outer (first, longest) wins. A word is inside a span when it starts inside it.
    """
    chosen, last_end = [], -1
    for start, end, kind in sorted(spans, key=lambda s: (s[0], -s[1])):
        if kind in SPAN_KINDS and start >= last_end:
            chosen.append((start, end, kind))
            last_end = end
    words, tags, previous = [], [], None
    for m in WORD.finditer(text):
        span = next((s for s in chosen if s[0] <= m.start() < s[1]), None)
        words.append(m.group())
        if span is None:
            tags.append("O")
        else:  # B- opens an entity, I- continues the span the previous word was in
            tags.append(("I-" if span is previous else "B-") + span[2])
        previous = span
    return words, tags


def spans_records(units: list[Unit], lang: str, max_words: int = 128) -> list[dict]:
    """mini-spans rows for ``lang``: ``{id, words, tags}`` for paragraphs of 3 to max_words words."""
    rows = []
    for u in units:
        if lang in u.text:
            words, tags = words_and_tags(u.text[lang], u.spans[lang])
            if 3 <= len(words) <= max_words:
                rows.append({"id": u.uid, "words": words, "tags": tags})
    return rows


def topic_records(units: list[Unit], lang: str, min_words: int = 5) -> list[dict]:
    """mini-topic rows: ``{id, text, label}``, label the page's module (TOPIC_MODULES only)."""
    return [{"id": u.uid, "text": u.text[lang], "label": u.module} for u in units
            if u.module in TOPIC_MODULES and lang in u.text and len(u.text["en"].split()) >= min_words]


def rank_records(units: list[Unit], titles: dict, langs: tuple[str, ...], seed: int,
                 per_grade: tuple[int, int, int] = (3, 3, 4)) -> dict[str, list[dict]]:
    """mini-rank rows per language: ``{query_id, query, text, label, id}``.

    One query per page of a topic module whose title is translated in every language of
    ``langs``; candidates are paragraphs present in every language of ``langs``: up to
    ``per_grade`` = (same page: label 2, same module: 1, other module: 0). The same queries and
    candidates in every language, so scores are comparable across languages.
    """
    pool = [u for u in units if u.module in TOPIC_MODULES and all(l in u.text for l in langs)
            and len(u.text["en"].split()) >= 5]
    by_page, by_module = defaultdict(list), defaultdict(list)
    for u in pool:
        by_page[u.key].append(u)
        by_module[u.module].append(u)
    rng = random.Random(seed)
    rows = {lang: [] for lang in langs}
    query_id = 0
    for key in sorted(by_page):
        if len(by_page[key]) < 2 or not all(l in titles[key] for l in langs):
            continue
        module = by_page[key][0].module
        same_module = [u for u in by_module[module] if u.key != key]
        other = [u for m in TOPIC_MODULES if m != module for u in by_module[m]]
        picks = [(u, 2) for u in rng.sample(by_page[key], min(per_grade[0], len(by_page[key])))]
        picks += [(u, 1) for u in rng.sample(same_module, min(per_grade[1], len(same_module)))]
        picks += [(u, 0) for u in rng.sample(other, min(per_grade[2], len(other)))]
        for lang in langs:
            rows[lang] += [{"query_id": query_id, "query": titles[key][lang], "text": u.text[lang],
                            "label": grade, "id": u.uid} for u, grade in picks]
        query_id += 1
    return rows


def cka_records(test_units: list[Unit], n: int = N_CKA) -> list[dict]:
    """``n`` test paragraphs translated into all five languages, at most one per page, 8 to 60
    English words, chosen by a hash of their id (deterministic)."""
    candidates = [u for u in test_units if all(l in u.text for l in LANGS)
                  and 8 <= len(u.text["en"].split()) <= 60]
    candidates.sort(key=lambda u: hashlib.sha1(u.uid.encode()).hexdigest())
    rows, pages = [], set()
    for u in candidates:
        if u.key not in pages:
            pages.add(u.key)
            rows.append({"id": u.uid, "module": u.module, **{l: u.text[l] for l in LANGS}})
        if len(rows) == n:
            break
    return rows


def build_tables(splits: Splits, titles: dict, seed: int = 0) -> dict[str, list[dict]]:
    """Every dataset file's rows: ``{"<dataset>/<split>.<lang>": rows}``. The tasks and
    cka-samples come from the task pages (``splits.task``), the parallel and monolingual text
    from the pretraining pages (``splits.pretraining``) only."""
    files: dict[str, list[dict]] = {}
    for split in SPLITS:
        units = splits.task[split]
        task_langs = LANGS if split == "test" else ("en",)
        for lang in task_langs:
            files[f"mini-spans/{split}.{lang}"] = spans_records(units, lang)
            files[f"mini-topic/{split}.{lang}"] = topic_records(units, lang)
        for lang, rows in rank_records(units, titles, task_langs, seed).items():
            files[f"mini-rank/{split}.{lang}"] = rows
        units = splits.pretraining[split]
        for lang in LANGS[1:]:
            files[f"parallel/{split}.{lang}"] = [{"id": u.uid, "en": u.text["en"], lang: u.text[lang]}
                                                 for u in units if lang in u.text]
        if split != "test":
            for lang in LANGS:
                files[f"monolingual/{split}.{lang}"] = [{"id": u.uid, "text": u.text[lang]}
                                                        for u in units if lang in u.text]
    files["cka-samples/test.all"] = cka_records(splits.task["test"])
    return files


# --------------------------------------------------------------------------------------------
# Writing, and the whole build
# --------------------------------------------------------------------------------------------

def write_parquet(rows: list[dict], path: Path) -> None:
    """Write rows as a Parquet file (deterministic: no timestamps, fixed compression)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, compression="zstd", write_statistics=False)



def build_corpus(out: Path, source: Path | None = None, cache: Path | None = None, *,
                 workers: int = 2, seed: int = 0, force: bool = False, progress: bool = True,
                 min_records: dict[str, int] | None = None) -> dict:
    """Build the mini corpus into ``out``; returns the manifest.

    ``source`` is a folder of unpacked help trees; without it the Debian packages are
    downloaded into ``cache``. An existing complete corpus is kept unless ``force``; the new
    one is built in a temporary folder beside ``out`` and moved into place only when complete.
    ``min_records`` overrides the smallest acceptable sizes (MIN_RECORDS), for small test trees.
    """
    out = Path(out)
    if (out / "manifest.json").is_file() and not force:
        return json.loads((out / "manifest.json").read_text())
    if out.exists() and not force:
        raise MtnbError(f"{out} exists but has no manifest.json (an unfinished build?); remove it or pass --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".tmp-corpus-") as tmp:
        tmp = Path(tmp)
        if source is None:
            cache = Path(cache) if cache is not None else out.parent / "cache" / "apt"
            debs = fetch_packages(cache)
            sources = {lang: {"package": PACKAGES[lang], "version": deb_version(deb), "file": deb.name}
                       for lang, deb in debs.items()}
            help_root = unpack(debs, tmp / "tree")
        else:
            help_root = find_help_root(Path(source))
            sources = {lang: {"package": PACKAGES[lang], "version": "unknown", "from": str(source)}
                       for lang in LANGS}
        pages, failures = parse_all(help_root, workers=workers, progress=progress)
        units, titles, untranslated = align(pages)
        splits = split_units(units, titles)
        files = build_tables(splits, titles, seed=seed)
        _check_sizes(files, MIN_RECORDS if min_records is None else min_records)
        staging = tmp / "corpus"
        for name, rows in files.items():
            write_parquet(rows, staging / f"{name}.parquet")
        manifest = {
            "sources": sources,
            "seed": seed,
            "pages": {lang: {"parsed": len(pages[lang]), "failed": len(failures[lang]),
                             "failed_pages": sorted(k for k, _ in failures[lang])} for lang in LANGS},
            "aligned_paragraphs": len(units),
            "untranslated_dropped": {lang: untranslated[lang] for lang in LANGS[1:]},
            "held_out_dropped_as_training_duplicates": splits.dropped["task_dev_as_training_duplicates"]
            + splits.dropped["task_test_as_training_duplicates"],
            "page_split": page_split_record(sorted(pages["en"]), splits),
            "counts": {name: len(rows) for name, rows in files.items()},
            "topic_class_balance": {name: dict(sorted(Counter(r["label"] for r in rows).items()))
                                    for name, rows in files.items() if name.startswith("mini-topic/")},
            "span_tags": list(SPAN_TAGS),
            "topic_labels": list(TOPIC_MODULES),
            "files": {p.relative_to(staging).as_posix(): sha256_file(p) for p in sorted(staging.rglob("*.parquet"))},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    return manifest


def _check_sizes(files: dict[str, list[dict]], min_records: dict[str, int]) -> None:
    """Refuse an empty or too-small corpus (a wrong or partial source), naming the dataset."""
    for name, minimum in min_records.items():
        n = len(files.get(name, []))
        if n < minimum:
            raise MtnbError(f"{name} has {n} records (< {minimum}): the help trees look incomplete; "
                            "check the source packages or folder")
    for name, rows in files.items():
        if not rows:
            raise MtnbError(f"{name} came out empty: the help trees look incomplete; check the source")
