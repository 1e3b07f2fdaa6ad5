"""Evaluation examples drawn once for every language, units named by their example and carrying its
cluster, and the paired comparisons that draw those clusters (``summary.paired_comparisons``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import Dataset

from mtnb.core.errors import MtnbError
from mtnb.data.loading import (EVAL_DRAW, aligned, aligned_eval_ids, eval_subset, load_task, record_ids,
                               subsample, ud_unit_sentences)
from mtnb.data.ud import PUD_TREEBANKS, build_ud
from mtnb.transfer.probe import ProbeConfig, probe_run
from mtnb.transfer.scoring import unit_clusters
from mtnb.transfer.zeroshot import evaluate_runs
from conftest import patch_everywhere
from test_ud import ud_tree

LANGS = ("en", "de", "es", "fr", "ru")
MODULES = ("calc", "writer", "impress", "draw")
PAGES = [f"text/{m}/page{k}.html" for m in MODULES for k in range(3)]   # 12 pages


def _paragraphs(n_per_page: int = 4) -> list[tuple[str, str, str]]:
    """(id, page, module) of every paragraph of the fake help."""
    return [(f"{page}#par_{j}#0", page, page.split("/")[1]) for page in PAGES for j in range(n_per_page)]


def _write(root: Path, name: str, rows: list[dict]) -> str:
    path = root / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return f"{name}.parquet"


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    """A fake mini corpus: 12 pages of 4 paragraphs; each test language lacks a few of them and
    lists the rest in its own order (as the real test sets differ in size per language)."""
    root, files = tmp_path / "corpus", {}
    rng = np.random.default_rng(0)
    paragraphs = _paragraphs()
    for split, langs in (("train", ("en",)), ("dev", ("en",)), ("test", LANGS)):
        for lang in langs:
            kept = [p for k, p in enumerate(paragraphs) if split != "test" or (k + LANGS.index(lang)) % 9 != 0]
            kept = [kept[k] for k in rng.permutation(len(kept))] if lang != "en" else kept
            topic = [dict(id=i, text=f"{lang} words of {page} paragraph {i[-6:]}", label=module)
                     for i, page, module in kept]
            spans = [dict(id=i, words=[lang, "Format", "Cells", module], tags=["O", "B-menu", "I-menu", "O"])
                     for i, page, module in kept]
            rank = []
            for q, page in enumerate(PAGES):
                same = [p for p in paragraphs if p[1] == page][:3]
                other = [p for p in paragraphs if p[2] != page.split("/")[1]][q:q + 2]
                rank += [dict(query_id=q, query=f"{lang} title {q}", text=f"{lang} {i}", label=grade, id=i)
                         for (i, _, _), grade in [*((p, "same-page") for p in same),
                                                  *((p, "other-module") for p in other)]]
            rank = [r for k, r in enumerate(rank) if split != "test" or (k + LANGS.index(lang)) % 9 != 0]
            for task, rows in (("mini-topic", topic), ("mini-spans", spans), ("mini-rank", rank)):
                files[_write(root, f"{task}/{split}.{lang}", rows)] = "sha"
    (root / "manifest.json").write_text(json.dumps({"files": files}))
    return root


@pytest.mark.parametrize("task", ["mini-topic", "mini-spans", "mini-rank"])
def test_evaluation_examples_are_drawn_once_for_every_language(tiny_corpus, task):
    assert aligned(task)
    full = {lang: load_task(task, lang, "test", mini_root=tiny_corpus) for lang in LANGS}
    shared = set.intersection(*(set(record_ids(r)) for r in full.values()))
    assert all(set(record_ids(r)) != shared for r in full.values() if len(r) > len(shared)), "the fixture's languages differ"
    for max_eval in (None, 10):
        ids = aligned_eval_ids(task, LANGS, "test", max_eval, mini_root=tiny_corpus)
        assert len(ids) == (len(shared) if max_eval is None else 10) and set(ids) <= shared
        assert ids == aligned_eval_ids(task, LANGS, "test", max_eval, mini_root=tiny_corpus)
        for lang, records in full.items():
            drawn = eval_subset(records, max_eval, ids)
            assert record_ids(drawn) == ids, lang
            # the cluster is the page: the paragraph's own, or for a ranking row its query's
            pages = [i.split("#")[0] for i in drawn["id"]]
            if task == "mini-rank":
                queries = dict(zip(drawn["query"], drawn["cluster"]))
                assert all(queries[f"{lang} title {q}"] == PAGES[q] for q in drawn["query_id"])
            else:
                assert drawn["cluster"] == pages
    assert aligned_eval_ids(task, LANGS, "test", 10**6, mini_root=tiny_corpus) == sorted(shared)
    with pytest.raises(MtnbError, match="missing in this language"):
        eval_subset(full["de"], None, sorted(set(record_ids(full["en"])) - set(record_ids(full["de"]))))


def test_tasks_without_shared_examples_draw_per_language_as_before():
    """XGLUE's languages hold different examples: no shared draw, each language its own subset,
    units their own clusters."""
    assert not aligned("nc") and aligned_eval_ids("nc", ["en", "de"], "test", 5) is None
    records = Dataset.from_dict({"news_title": [f"t{i}" for i in range(30)], "news_body": ["b"] * 30,
                                 "news_category": list(range(30))})
    assert eval_subset(records, 5)["news_title"] == subsample(records, 5, EVAL_DRAW)["news_title"]
    assert eval_subset(records, 5, None)["news_title"] == records.shuffle(seed=EVAL_DRAW)["news_title"][:5]
    from mtnb.data.tasks import get_task
    assert unit_clusters(get_task("nc"), records, ["0", "3"]) == (["0", "3"], ["0", "3"])


def test_ud_pos_draws_its_sentences_once_and_clusters_by_sentence(tmp_path):
    build_ud(tmp_path / "ud", ud_tree(tmp_path / "src", pud_sentences=40))
    for max_eval in (None, 7):
        ids = aligned_eval_ids("ud-pos", list(PUD_TREEBANKS), "test", max_eval, ud_root=tmp_path / "ud")
        assert ids == ud_unit_sentences("en", "test", max_eval, root=tmp_path / "ud")
        for lang in PUD_TREEBANKS:
            drawn = eval_subset(load_task("ud-pos", lang, "test", ud_root=tmp_path / "ud"), max_eval, ids)
            assert drawn["id"] == ids and drawn["cluster"] == ids
            assert [words[0] for words in drawn["words"]] == [f"{lang}{int(i[2:])}w0" for i in ids]
    # the dev split exists in English alone: the draw is English's
    dev = aligned_eval_ids("ud-pos", list(PUD_TREEBANKS), "dev", None, ud_root=tmp_path / "ud")
    assert dev == sorted(load_task("ud-pos", "en", "dev", ud_root=tmp_path / "ud")["id"])


def _no_weights(*args, **kwargs):
    raise AssertionError("the probe job should have computed every test feature already")


@pytest.mark.parametrize("task", ["mini-topic", "mini-spans", "mini-rank"])
def test_a_probe_run_scores_every_language_on_the_same_units_with_their_pages(tiny_checkpoint, tiny_corpus,
                                                                              tmp_path, task, monkeypatch):
    probe_run(str(tiny_checkpoint), task, tmp_path / "job", seeds=[0, 1], config=ProbeConfig(max_length=32),
              max_train=40, max_dev=16, max_eval=20, mini_root=tiny_corpus, cache_dir=tmp_path / "features",
              progress=False)
    patch_everywhere(monkeypatch, "mtnb.models.loading", "load_encoder", _no_weights)  # drawn as the job drew
    results, _, units, _ = evaluate_runs(tmp_path / "job", max_eval=20, progress=False)
    assert set(units.language) == set(LANGS) and set(units.seed) == {0, 1}
    drawn = aligned_eval_ids(task, LANGS, "test", 20, mini_root=tiny_corpus)
    for (system, seed), rows in units.groupby(["system", "seed"]):
        per_language = {lang: dict(zip(g.unit, g.cluster)) for lang, g in rows.groupby("language")}
        first = per_language["en"]
        assert all(p == first for p in per_language.values()), (system, seed, "same units, same clusters")
        for lang, g in rows.groupby("language"):
            value = results.query("system == @system and seed == @seed and language == @lang")["value"].item()
            assert 100 * g.num.sum() / max(g.den.sum(), 1e-12) == pytest.approx(value, abs=1e-9)
    if task == "mini-rank":
        queries = {d.split("|")[0] for d in drawn}
        assert set(units.unit) <= queries and all(units.cluster == [PAGES[int(q)] for q in units.unit])
    else:
        assert sorted(set(units.unit)) == sorted(drawn)
        assert (units.cluster == units.unit.str.split("#").str[0]).all()
