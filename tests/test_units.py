"""Evaluation examples drawn once for every language, units named by their example and carrying its
cluster, and the paired comparisons that draw those clusters (``summary.paired_comparisons``)."""

from __future__ import annotations

import json
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


def _clustered_units(models: dict, langs=("en", "de", "fr"), pages=40, per_page=8, seed=0, task="mini-topic"):
    """A units table with clusters: ``models`` maps a model name (a replica ``<member>@p<k>``
    too) to (probability of a right answer, its fine-tuning seeds, its page effect's scale). Each
    page has a difficulty shared by every model and language and, per member, a gain shared by
    the page's units in every language: the members' differences are correlated within a page."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(-0.2, 0.2, pages)
    gains = {}
    rows = []
    for model, (p, seeds, scale) in models.items():
        member = model.split("@")[0]
        gain = gains.setdefault(member, rng.normal(0, 1, pages) * scale)
        for s in seeds:
            for lang in langs:
                q = np.clip(p + np.repeat(difficulty + gain, per_page), 0.02, 0.98)
                right = rng.random(pages * per_page) < q
                rows += [dict(model=model, task=task, seed=s, mode="probe", system="model", language=lang,
                              split="test", unit=f"page{k // per_page}#par{k % per_page}", cluster=f"page{k // per_page}",
                              num=float(r), den=1.0) for k, r in enumerate(right)]
    return pd.DataFrame(rows)


def test_clusters_widen_the_interval_when_a_pages_units_move_together():
    from mtnb.study.summary import paired_comparisons

    langs = ("en", "de", "fr", "ru")
    units = _clustered_units({"m": (0.6, (0, 1), 0.0), "m-x": (0.6, (0, 1), 0.3)}, langs=langs, per_page=12)
    clustered = paired_comparisons(units, [("m-x", "m")], n_boot=2000).iloc[0]
    singletons = paired_comparisons(units.drop(columns="cluster"), [("m-x", "m")], n_boot=2000).iloc[0]
    assert clustered.difference == singletons.difference
    assert clustered.n_clusters == 40 and singletons.n_clusters == 480
    # 12 units a page in 3 languages: a design effect of about 2 on the width (seeds 0-5 give 2.2-2.5)
    assert clustered.high - clustered.low > 1.7 * (singletons.high - singletons.low), (clustered, singletons)
    # without a page effect, pages and single units give about the same interval
    flat = _clustered_units({"m": (0.6, (0, 1), 0.0), "m-x": (0.6, (0, 1), 0.0)})
    widths = [row.high - row.low for row in (paired_comparisons(table, [("m-x", "m")], n_boot=2000).iloc[0]
                                             for table in (flat, flat.drop(columns="cluster")))]
    assert widths[0] < 1.4 * widths[1], widths


def test_the_paired_diagonal_is_drawn_as_one_level_and_a_broken_layout_is_named():
    from mtnb.study.summary import paired_comparisons

    diagonal = {"m": (0.6, (0, 1, 2), 0.0), **{f"m-x@p{k}": (0.55 + 0.05 * k, (k,), 0.1) for k in range(3)}}
    units = _clustered_units(diagonal)
    [row] = paired_comparisons(units, [("m-x", "m")], n_boot=500).itertuples()
    assert (row.runs_a, row.runs_b) == (3, 3)
    de_fr = units[units.language.isin(["de", "fr"])]
    means = de_fr.groupby("model").num.mean()
    assert row.a_score == pytest.approx(100 * means[[f"m-x@p{k}" for k in range(3)]].mean())
    assert row.b_score == pytest.approx(100 * means["m"])
    # two members paired the same way pair run k with run k
    both = pd.concat([units, _clustered_units({f"m-y@p{k}": (0.6, (k,), 0.1) for k in range(3)}, seed=1)])
    assert paired_comparisons(both, [("m-x", "m-y")], n_boot=200)[["runs_a", "runs_b"]].values.tolist() == [[3, 3]]
    # a full grid: every replica with every seed, R x K runs
    grid = _clustered_units({"m": (0.6, (0, 1), 0.0), "m-x@p0": (0.6, (0, 1), 0.1), "m-x@p1": (0.6, (0, 1), 0.1)})
    assert paired_comparisons(grid, [("m-x", "m")], n_boot=200)[["runs_a", "runs_b"]].values.tolist() == [[4, 2]]
    # a replica lacking a seed of the grid
    broken = grid[~((grid.model == "m-x@p1") & (grid.seed == 1))]
    with pytest.raises(MtnbError, match=r"^mini-topic: m-x's runs are neither a full grid nor paired: m-x@p1 lacks "
                                        r"fine-tuning seed\(s\) 1 that m-x's other runs have") as err:
        paired_comparisons(broken, [("m-x", "m")], n_boot=200)
    assert "\n" not in str(err.value)
    # a paired member against a member whose replicas each have every seed
    mixed = pd.concat([units, _clustered_units({f"m-y@p{k}": (0.6, (0, 1, 2), 0.1) for k in range(2)}, seed=2)])
    with pytest.raises(MtnbError, match=r"m-y's replicas were each fine-tuned with every seed but m-x's with one"):
        paired_comparisons(mixed, [("m-x", "m-y")], n_boot=200)


def test_enough_draws_by_default_and_a_floor_that_is_said():
    from mtnb.analysis.paired_bootstrap import draws_needed, resampling_floor
    from mtnb.study.summary import PAIRED_COLUMNS, paired_comparisons

    units = _clustered_units({"m": (0.3, (0, 1), 0.0), "m-x": (0.9, (0, 1), 0.0), "m-y": (0.32, (0, 1), 0.0)},
                             pages=20, per_page=4)
    table = paired_comparisons(units, [("m-x", "m"), ("m-y", "m")])
    assert list(table.columns) == PAIRED_COLUMNS
    assert (table.n_boot == draws_needed(2)).all() and table.n_boot.iloc[0] >= 10_000
    huge, small = table.iloc[0], table.iloc[1]
    assert huge.at_floor and huge.p < huge.floor == pytest.approx(resampling_floor(huge.n_boot)), \
        "no draw crossed 0: the normal tail, below the floor"
    assert huge.p_holm == pytest.approx(2 * huge.p)
    assert not small.at_floor and small.p > huge.floor
    assert (table.n_clusters == 20).all() and (table.runs_a == 2).all()

