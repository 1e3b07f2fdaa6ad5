"""The mini corpus: alignment, tagging, splits, determinism, errors (on a small synthetic help
tree in the real HTML structure), and the properties of the real corpus built from Debian's
LibreOffice help packages."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mtnb.data.mini import corpus as mc
from mtnb.core.errors import MtnbError
from mtnb.data.mini.datasets import load_mini

ROOT = Path(__file__).resolve().parent.parent
MODULE_DIRS = {"calc": "scalc", "writer": "swriter", "impress": "simpress", "basic": "sbasic"}
WORDS = {"en": "the cell value sheet row column chart formula text page".split(),
         "de": "die Zelle Wert Tabelle Zeile Spalte Diagramm Formel Text Seite".split(),
         "es": "la celda valor hoja fila columna gráfico fórmula texto página".split(),
         "fr": "la cellule valeur feuille ligne colonne diagramme formule texte page".split(),
         "ru": "ячейка значение лист строка столбец диаграмма формула текст страница поле".split()}


def page_html(lang: str, title: str, module_dir: str, paragraphs: list[tuple[str, str]]) -> str:
    """A help page in the structure of the Debian packages' HTML (our own words)."""
    body = "\n".join(f'<p id="{pid}" class="paragraph" dir="auto">{html}</p>' for pid, html in paragraphs)
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title></head><body>
<header id="TopLeftHeader"><p dir="auto">LibreOffice Help</p></header>
<div id="DisplayArea" itemprop="softwareHelp">
<h1 id="hd_id1" dir="auto">{title}</h1>
{body}
</div>
<footer><div id="DEBUG" class="debug"><p dir="auto">This page is: <a href="x">/text/{module_dir}/01/page.xhp</a></p></div></footer>
</body></html>"""


def sentence(lang: str, seed: int, n: int = 7) -> str:
    words = WORDS[lang]
    return " ".join(words[(seed * 7 + i * 3) % len(words)] for i in range(n)) + f" {seed}"


def make_tree(root: Path, n_pages: int = 60) -> Path:
    """Five languages x n_pages pages x 4 paragraphs; de copies paragraph p3 untranslated, ru
    leaves p4 in Latin letters; every page shares one boilerplate paragraph."""
    help_root = root / "usr" / "share" / "libreoffice" / "help"
    for lang, folder in mc.HELP_DIRS.items():
        for i in range(n_pages):
            module = list(MODULE_DIRS)[i % 4]
            p1 = f'Choose <span class="menuitem">{sentence(lang, i, 2)}</span> and press <span class="keycode">F{i % 9}</span> {sentence(lang, i + 1)}.'
            p2 = f'{sentence(lang, i + 2)} <span class="emph">{sentence(lang, i + 3, 3)}</span> end.'
            p3 = sentence("en" if lang == "de" else lang, i + 4)
            p4 = f"Latin only {i} words here now" if lang in ("en", "ru") else sentence(lang, i + 5)
            boiler = {"en": "Related topics here", "de": "Verwandte Themen hier", "es": "Temas relacionados aquí",
                      "fr": "Sujets connexes ici", "ru": "Связанные темы здесь"}[lang]
            html = page_html(lang, f"{sentence(lang, i, 3)} title", MODULE_DIRS[module],
                             [("par_id1", p1), ("par_id2", p2), ("par_id3", p3), ("par_id4", p4),
                              ("par_id5", boiler)])
            path = help_root / folder / "text" / MODULE_DIRS[module] / "01" / f"page{i:03d}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(html, encoding="utf-8")
    return root


SMALL = {"mini-topic/train.en": 10}


def test_words_and_tags():
    text = "Choose View - Styles (F11) and Ctrl + F now."
    spans = [(7, 20, "menu"), (21, 26, "key"), (0, 44, "link"), (31, 35, "key"), (36, 39, "key")]
    words, tags = mc.words_and_tags(text, spans)
    assert words == ["Choose", "View", "-", "Styles", "(", "F11", ")", "and", "Ctrl", "+", "F", "now", "."]
    assert tags == ["O", "B-menu", "I-menu", "I-menu", "B-key", "I-key", "I-key", "O", "B-key", "B-key", "I-key", "O", "O"]


def test_translation_filter():
    assert mc.is_translated("de", "Die Zelle", "The cell")
    assert not mc.is_translated("de", "The cell", "The cell")
    assert not mc.is_translated("ru", "Cell (translated badly)", "The cell")
    assert mc.is_translated("ru", "Ячейка", "The cell")


def test_split_is_stable_and_proportioned():
    keys = [f"text/scalc/01/{i:05d}.html" for i in range(5000)]
    counts = Counter(mc.split_of(k) for k in keys)
    assert [mc.split_of(k) for k in keys[:50]] == [mc.split_of(k) for k in keys[:50]]
    assert 0.77 < counts["train"] / 5000 < 0.83 and 0.08 < counts["test"] / 5000 < 0.12


def test_page_role_is_a_pure_function_of_the_page():
    keys = [f"text/{d}/01/{i:05d}.html" for i in range(4000) for d in ("scalc", "swriter")]
    roles = {k: mc.page_role(k) for k in keys}
    assert {k: mc.page_role(k) for k in reversed(keys)} == roles
    # the same in a fresh interpreter with another string-hash seed (no hash(), no set order)
    script = "import json, sys; from mtnb.data.mini.corpus import page_role; " \
             "print(json.dumps([page_role(k) for k in json.load(sys.stdin)]))"
    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(keys[:500]), capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "123"}, cwd=ROOT)
    assert [tuple(r) for r in json.loads(out.stdout)] == [roles[k] for k in keys[:500]]
    # dev and test pages are task pages; the training pages split about PRETRAINING_SHARE : rest
    assert all(role == ("task", mc.split_of(k)) for k, role in roles.items() if mc.split_of(k) != "train")
    train = [role for k, role in roles.items() if mc.split_of(k) == "train"]
    share = sum(side == "pretraining" for side, _ in train) / len(train)
    assert abs(share - mc.PRETRAINING_SHARE) < 0.03
    held = Counter(split for side, split in train if side == "pretraining")
    assert abs(held["test"] / sum(held.values()) - mc.PRETRAINING_HELD_OUT["test"]) < 0.02


def test_split_units_does_not_depend_on_the_order_of_units(tmp_path):
    tree = make_tree(tmp_path / "tree")
    pages, _ = mc.parse_all(mc.find_help_root(tree), workers=1, progress=False)
    units, titles, _ = mc.align(pages)
    forward, backward = mc.split_units(units, titles), mc.split_units(units[::-1], titles)
    for side in ("task", "pretraining"):
        for split in mc.SPLITS:
            assert ({u.uid for u in getattr(forward, side)[split]}
                    == {u.uid for u in getattr(backward, side)[split]}), (side, split)
    assert forward.dropped == backward.dropped


def corpus_pages_and_texts(root: Path) -> dict[str, tuple[set, set]]:
    """{"pretraining" | "task": (pages, texts up to spacing)} of a built corpus: parallel and
    monolingual files (every split) on the pretraining side; the tasks and cka-samples on the task
    side. Every file the manifest lists is read."""
    manifest = json.loads((root / "manifest.json").read_text())
    sides = {"pretraining": (set(), set()), "task": (set(), set())}
    for name in manifest["files"]:
        dataset, rest = name.split("/")
        split, lang = rest.split(".")[:2]
        table = load_mini(dataset, lang if lang != "all" else "en", split, root=root)
        pages, texts = sides["pretraining" if dataset in ("parallel", "monolingual") else "task"]
        pages.update(_page(uid) for uid in table["id"])
        for column in ("text", "query", *mc.LANGS):
            if column in table.column_names:
                texts.update(map(mc.text_key, table[column]))
        if "words" in table.column_names:
            texts.update(" ".join(w) for w in table["words"])
    return sides


def check_pretraining_text_holds_no_task_paragraph(root: Path) -> None:
    """No page of the parallel or monolingual text is a page of a task split or of cka-samples,
    and no text of theirs (any language, up to spacing) occurs in a task file or cka-samples."""
    sides = corpus_pages_and_texts(root)
    (pre_pages, pre_texts), (task_pages, task_texts) = sides["pretraining"], sides["task"]
    assert pre_pages and task_pages and pre_pages.isdisjoint(task_pages)
    assert {mc.page_role(p)[0] for p in pre_pages} == {"pretraining"}
    assert {mc.page_role(p)[0] for p in task_pages} == {"task"}
    assert pre_texts and task_texts
    # a task's paragraph or its translation in the pretraining text
    assert pre_texts.isdisjoint(task_texts), sorted(pre_texts & task_texts)[:5]


def check_manifest_records_both_sides(root: Path) -> dict:
    """The manifest's page_split, after checking it: the page counts of both sides add up to
    every English page, and the training text's sizes (before the split, the pretraining side,
    the task side) agree with the files."""
    manifest = json.loads((root / "manifest.json").read_text())
    record = manifest["page_split"]
    n_pages = manifest["pages"]["en"]["parsed"]
    assert sum(n for side in record["pages"].values() for n in side.values()) == n_pages
    assert record["pretraining_share"] == mc.PRETRAINING_SHARE
    sizes = record["training_text"]
    before, pre, task = sizes["before_split"], sizes["pretraining"], sizes["task"]
    for lang in mc.LANGS[1:]:
        parallel = load_mini("parallel", lang, "train", root=root)
        assert pre["parallel_pairs"][lang] == len(parallel) == manifest["counts"][f"parallel/train.{lang}"]
        assert before["parallel_pairs"][lang] >= pre["parallel_pairs"][lang] + task["parallel_pairs"][lang]
    for lang in mc.LANGS:
        mono = load_mini("monolingual", lang, "train", root=root)["text"]
        assert pre["characters"][lang] == sum(map(len, mono)) > 0
        assert before["characters"][lang] >= pre["characters"][lang] + task["characters"][lang]
    assert pre["paragraphs"] == manifest["counts"]["monolingual/train.en"]
    assert task["paragraphs"] >= manifest["counts"]["mini-topic/train.en"]
    assert before["pages"] >= pre["pages"] + task["pages"] and pre["pages"] > 0 and task["pages"] > 0
    return record


def test_pretraining_text_never_holds_a_task_paragraph(tmp_path):
    tree = make_tree(tmp_path / "tree")
    mc.build_corpus(tmp_path / "c", source=tree, progress=False, min_records=SMALL)
    check_pretraining_text_holds_no_task_paragraph(tmp_path / "c")
    record = check_manifest_records_both_sides(tmp_path / "c")
    keys = mc.page_keys(mc.find_help_root(tree))
    for side in mc.SIDES:
        listed = "".join(k + "\n" for k in sorted(keys) if mc.page_role(k)[0] == side)
        assert record["page_list_sha256"][side] == hashlib.sha256(listed.encode()).hexdigest()
    # the boilerplate paragraph of every page is on task pages, so the pretraining text drops it
    assert "Related topics here" not in load_mini("monolingual", "en", "train", root=tmp_path / "c")["text"]
    assert record["dropped"]["pretraining_train_as_task_duplicates"] > 0


def test_synthetic_build(tmp_path):
    tree = make_tree(tmp_path / "tree")
    manifest = mc.build_corpus(tmp_path / "a", source=tree, progress=False, min_records=SMALL)
    out = tmp_path / "a"
    # untranslated copies are dropped: de p3 on every page, ru p4 on every page
    assert manifest["untranslated_dropped"]["de"] == 60 and manifest["untranslated_dropped"]["ru"] == 60
    assert manifest["untranslated_dropped"]["fr"] == 0
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    parallel_de = load_mini("parallel", "de", "train", root=out)
    assert all(row["en"] != row["de"] for row in parallel_de)
    # the boilerplate paragraph occurs on training pages, so no held-out split keeps it
    for split in ("dev", "test"):
        assert "Related topics here" not in load_mini("monolingual", "en", "dev", root=out)["text"]
    spans = load_mini("mini-spans", "en", "train", root=out)
    names = spans.features["tags"].feature.names
    assert "B-menu" in {names[t] for row in spans["tags"] for t in row}
    topic = load_mini("mini-topic", "en", "train", root=out)
    assert set(topic.features["label"].names) == set(mc.TOPIC_MODULES)
    # the same source twice gives byte-identical files
    mc.build_corpus(tmp_path / "b", source=tree, progress=False, min_records=SMALL)
    for name in list(manifest["files"]) + ["manifest.json"]:
        if name != "manifest.json":
            assert (out / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    a = json.loads((out / "manifest.json").read_text())
    b = json.loads((tmp_path / "b" / "manifest.json").read_text())
    a["sources"] = b["sources"] = None
    assert a == b


def test_too_small_or_incomplete_sources_are_errors(tmp_path):
    tree = make_tree(tmp_path / "tree", n_pages=12)
    with pytest.raises(MtnbError, match=r"mini-topic/train.en has \d+ records \(< 1000\)"):
        mc.build_corpus(tmp_path / "out", source=tree, progress=False)
    assert not (tmp_path / "out").exists(), "a failed build leaves nothing behind"
    import shutil
    shutil.rmtree(tree / "usr/share/libreoffice/help/ru")
    with pytest.raises(MtnbError, match="no help pages for ru; install or unpack libreoffice-help-ru"):
        mc.build_corpus(tmp_path / "out", source=tree, progress=False)
    with pytest.raises(MtnbError, match="no LibreOffice help tree"):
        mc.build_corpus(tmp_path / "out", source=tmp_path / "nothing-here", progress=False)


def test_existing_corpus_is_kept(tmp_path):
    tree = make_tree(tmp_path / "tree")
    mc.build_corpus(tmp_path / "c", source=tree, progress=False, min_records=SMALL)
    marker = (tmp_path / "c" / "manifest.json").stat().st_mtime_ns
    mc.build_corpus(tmp_path / "c", source=tree, progress=False, min_records=SMALL)
    assert (tmp_path / "c" / "manifest.json").stat().st_mtime_ns == marker
    (tmp_path / "half").mkdir()
    with pytest.raises(MtnbError, match="has no manifest.json"):
        mc.build_corpus(tmp_path / "half", source=tree, progress=False, min_records=SMALL)


def test_unreachable_registry_is_one_line(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 100, "", "Err:1 http://x\nE: Failed to fetch http://x/y.deb  Could not connect\n")
    monkeypatch.setattr(mc, "apt_download", lambda packages, cache: failed)
    with pytest.raises(MtnbError) as info:
        mc.fetch_packages(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "--from DIR" in message
    assert all(pkg in message for pkg in mc.PACKAGES.values())


def test_missing_package_lists_ask_for_apt_update(tmp_path, monkeypatch):
    missing = subprocess.CompletedProcess([], 100, "", "E: Unable to locate package libreoffice-help-de\n")
    monkeypatch.setattr(mc, "apt_download", lambda packages, cache: missing)
    monkeypatch.setattr(mc.os, "geteuid", lambda: 1000)
    with pytest.raises(MtnbError, match="run 'sudo apt-get update'"):
        mc.fetch_packages(tmp_path)


def test_load_mini_errors(tmp_path):
    tree = make_tree(tmp_path / "tree")
    mc.build_corpus(tmp_path / "c", source=tree, progress=False, min_records=SMALL)
    with pytest.raises(MtnbError, match="no mini-topic train split in 'de'"):
        load_mini("mini-topic", "de", "train", root=tmp_path / "c")
    with pytest.raises(MtnbError, match="unknown mini dataset"):
        load_mini("mini-ner", "en", "train", root=tmp_path / "c")
    with pytest.raises(MtnbError, match="build it with 'mtnb data mini'"):
        load_mini("mini-topic", "en", "train", root=tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# The real corpus, from the Debian packages (downloaded once into runs/data/cache/apt)
# ---------------------------------------------------------------------------------------------

def _page(uid: str) -> str:
    return uid.split("#", 1)[0]


def test_real_corpus_has_no_leak_from_held_out_pages(real_corpus):
    manifest = json.loads((real_corpus / "manifest.json").read_text())
    assert all(s["version"].startswith("4:") for s in manifest["sources"].values())
    train_pages, train_texts = set(), set()
    held_pages, held_texts = set(), set()
    for name in manifest["files"]:
        dataset, rest = name.split("/")
        split = rest.split(".")[0]
        lang = rest.split(".")[1]
        table = load_mini(dataset, lang if lang != "all" else "en", split, root=real_corpus)
        texts = set()  # compared up to spacing around punctuation
        for column in ("text", "en", "de", "es", "fr", "ru"):
            if column in table.column_names:
                texts.update(map(mc.text_key, table[column]))
        if "words" in table.column_names:
            texts.update(" ".join(w) for w in table["words"])
        pages = {_page(uid) for uid in table["id"]}
        if split == "train":
            train_pages |= pages
            train_texts |= texts
        else:
            held_pages |= pages
            held_texts |= texts
    assert train_pages and held_pages and train_pages.isdisjoint(held_pages)
    assert train_texts.isdisjoint(held_texts)


def test_real_corpus_tasks_and_samples(real_corpus):
    manifest = json.loads((real_corpus / "manifest.json").read_text())
    assert manifest["counts"]["mini-topic/train.en"] > 5000
    for lang in mc.LANGS:
        assert manifest["counts"][f"mini-topic/test.{lang}"] > 500
        assert manifest["counts"][f"mini-spans/test.{lang}"] > 500
    samples = load_mini("cka-samples", root=real_corpus)
    assert len(samples) == 80 and len(set(samples["id"])) == 80
    assert all(mc.CYRILLIC.search(t) for t in samples["ru"])
    assert all(role == ("task", "test") for role in map(mc.page_role, map(_page, samples["id"])))
    rank = load_mini("mini-rank", "de", "test", root=real_corpus)
    by_query = {}
    for row in rank:
        by_query.setdefault(row["query_id"], []).append(row["label"])
    assert all(max(labels) == 2 and min(labels) == 0 for labels in by_query.values())
    assert load_mini("mini-rank", "en", "test", root=real_corpus)["id"] == rank["id"]
    balance = manifest["topic_class_balance"]["mini-topic/test.en"]
    assert set(balance) <= set(mc.TOPIC_MODULES) and len(balance) == len(mc.TOPIC_MODULES)


def test_real_pretraining_text_never_holds_a_task_paragraph(real_corpus):
    check_pretraining_text_holds_no_task_paragraph(real_corpus)
    record = check_manifest_records_both_sides(real_corpus)
    # every grid draws less than this (see PRETRAINING_SHARE): the split leaves enough of both
    assert min(record["training_text"]["pretraining"]["parallel_pairs"].values()) > 5000
    assert record["training_text"]["task"]["paragraphs"] > 10000


def test_task_table_matches_the_corpus_and_load_task(tmp_path):
    from mtnb.data.loading import load_task
    from mtnb.data.tasks import get_task

    assert get_task("mini-spans").labels == mc.SPAN_TAGS
    assert get_task("mini-topic").labels == mc.TOPIC_MODULES
    assert get_task("mini-rank").labels == mc.RANK_GRADES
    tree = make_tree(tmp_path / "tree")
    mc.build_corpus(tmp_path / "c", source=tree, progress=False, min_records=SMALL)
    for name in ("mini-spans", "mini-topic", "mini-rank"):
        spec = get_task(name)
        records = load_task(name, "fr", "test", mini_root=tmp_path / "c")
        assert set(spec.text_fields) | {spec.label_field} <= set(records.column_names)
        feature = records.features[spec.label_field]
        names = feature.feature.names if spec.head == "token" else feature.names
        assert tuple(names) == spec.labels
        assert len(spec.segments(records[0])) == (2 if spec.head == "ranking" else 1)
    with pytest.raises(MtnbError, match="trains on English only"):
        load_task("mini-topic", "de", "train", mini_root=tmp_path / "c")
    with pytest.raises(MtnbError, match="has no language 'zh'"):
        load_task("mini-topic", "zh", "test", mini_root=tmp_path / "c")
    with pytest.raises(MtnbError, match="unknown task"):
        load_task("mini-ner", "en", "test", mini_root=tmp_path / "c")


def test_load_task_reads_xglue_from_a_local_release():
    from mtnb.data.loading import load_task

    records = load_task("nc", "de", "dev", xglue_dir=ROOT / "tests" / "fixtures" / "xglue")
    assert {"news_title", "news_body", "news_category"} <= set(records.column_names) and len(records) > 0
