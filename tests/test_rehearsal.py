"""The paper grid rehearsed end to end, offline: ``mtnb run paper-rehearsal`` with HF_HUB_OFFLINE=1
against a Hugging Face cache of small stand-ins under the real Hub ids (``mtnb.study.rehearsal``), all
114 jobs, then its book, read in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from selenium.webdriver.support.ui import WebDriverWait

from test_book import chromium

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class Rehearsal:
    """The rehearsal's project root, cache and the output of its commands."""

    def __init__(self, root: Path, cache: Path):
        self.root, self.cache, self.seconds = root, cache, 0.0

    def mtnb(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "MTNB_ROOT": str(self.root), "HF_HUB_CACHE": str(self.cache), "HF_HUB_OFFLINE": "1",
               "OMP_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, "-m", "mtnb.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> Rehearsal:
    """The stand-in cache (``mtnb rehearsal-cache``), and the grid run on it, once."""
    root = tmp_path_factory.mktemp("rehearsal")
    shutil.copytree(ROOT / "params", root / "params")
    (root / "notebooks").symlink_to(ROOT / "notebooks")
    run = Rehearsal(root, root / "hub")
    made = run.mtnb("rehearsal-cache", str(run.cache))
    assert made.returncode == 0, made.stderr[-3000:]
    start = time.perf_counter()
    out = run.mtnb("run", "paper-rehearsal", "--jobs", "2")
    run.seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    print(f"\npaper-rehearsal: 114 jobs in {run.seconds / 60:.1f} min")
    return run


def test_every_job_of_the_rehearsal_is_done_through_hub_ids(rehearsal):
    status = rehearsal.mtnb("status", "paper-rehearsal")
    assert status.stdout.strip().endswith("114 jobs: 114 done"), status.stdout[-2000:]
    runs = rehearsal.root / "runs" / "paper-rehearsal"
    configs = [json.loads(p.read_text()) for p in runs.glob("finetune/*/out/seed-0/run.json")]
    assert len(configs) == 56
    # the checkpoints came from the cache's snapshots of the real Hub ids
    hub = yaml.safe_load((ROOT / "params" / "models.yaml").read_text())["models"]
    for name in ("mbert", "xlmr", "mbart", "mbart-m2o", "mbart-o2m", "mbart-m2m", "nllb-600m"):
        storage = rehearsal.cache / ("models--" + hub[name]["source"].replace("/", "--"))
        assert (storage / "snapshots").is_dir(), name


def test_the_rehearsal_fetch_dry_run_reports_nothing_missing(rehearsal):
    out = rehearsal.mtnb("fetch", "paper", "--dry-run")
    assert out.returncode == 0 and out.stdout.strip().endswith("is in the cache"), out.stdout + out.stderr


def test_the_rehearsals_book_has_all_eight_tasks_and_every_language(rehearsal):
    from mtnb.data.tasks import load_tasks

    book = rehearsal.mtnb("book", "paper-rehearsal")
    assert book.returncode == 0, book.stdout[-3000:] + book.stderr[-3000:]
    src = rehearsal.root / "runs" / "paper-rehearsal" / "book"
    results = (src / "results.md").read_text()
    tables = pd.concat([pd.read_csv(p) for p in (rehearsal.root / "runs" / "paper-rehearsal").glob(
        "zeroshot/*/out/**/results.csv")])
    tasks = load_tasks()
    per_language = results.split("## Per language (Table 4 analog)", 1)[1]
    for task in ("ner", "pos", "nc", "xnli", "paws-x", "qadsm", "wpr", "qam"):
        assert f"### {task} (" in per_language, task
        section = per_language.split(f"### {task} (", 1)[1].split("\n### ", 1)[0]
        header = next(line for line in section.splitlines() if line.startswith("| system |"))
        cells = [cell.strip() for cell in header.strip().strip("|").split("|")]
        assert set(tasks[task].languages) <= set(cells), (task, header)
        assert any(cell.endswith(" paper") for cell in cells), (task, header)   # the published numbers beside ours
        assert set(tables[tables.task == task].language) == set(tasks[task].languages)
    assert "Columns marked *paper* are the published numbers" in results
    assert "## mBART-50 and its three MT-continued checkpoints" in results

    html = src / "_build" / "html"
    browser = chromium()
    try:
        for page in ("results", "cka", "svd"):
            browser.get((html / f"{page}.html").as_uri())
            WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")
            images = browser.execute_script(
                "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
            assert images and all(done and width > 0 for _, done, width in images), (page, images)
            text = browser.find_element("css selector", "main").text
            if page == "results":
                assert all(re.search(rf"\b{re.escape(t)} \(", text) for t in ("ner", "pos", "wpr", "qam")), text[:2000]
    finally:
        browser.quit()
