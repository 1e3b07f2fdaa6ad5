"""The Jupyter Book builds, without executing any notebook: the project's book, and the book of
a grid's runs (``mtnb book``), checked in its source, in headless Chromium, and with its executed
notebooks re-executed under nbval; the numbers behind its tables and its family paragraph."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from selenium.webdriver.support.ui import WebDriverWait

from mtnb.study import paper
from mtnb.cli import main
from mtnb.core.errors import MtnbError
from mtnb.study.grids import load_grid

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "runs" / "test-artifacts"   # screenshots (runs/ is ignored by git)


def test_config_never_executes_notebooks():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book" and (ROOT / f"{toc['root']}.md").is_file()


def test_book_builds(tmp_path):
    jb = Path(sys.executable).parent / "jupyter-book"
    exe = str(jb) if jb.exists() else shutil.which("jupyter-book")
    out = subprocess.run([exe, "build", str(ROOT), "--path-output", str(tmp_path), "-W", "-n", "--keep-going"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    html = tmp_path / "_build" / "html"
    intro = (html / "book" / "intro.html").read_text()
    assert "Introduction" in intro and "zero-shot" in intro
    assert (html / "index.html").is_file()


# --------------------------------------------------------------------------------------------
# mtnb book: the book of a grid's runs
# --------------------------------------------------------------------------------------------

def build(run) -> Path:
    """``mtnb book GRID`` of a grid run: its index.html."""
    start = time.perf_counter()
    out = run.mtnb("book", run.name)
    seconds = time.perf_counter() - start
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    index = run.runs / "book" / "_build" / "html" / "index.html"
    assert f"open {index}" in out.stdout, out.stdout
    print(f"\n{run.name} grid: run in {run.seconds:.0f} s, book built in {seconds:.0f} s")
    return index


@pytest.fixture(scope="module")
def small_book(small_grid_run) -> Path:
    """``mtnb book small`` built once from the session's small grid run: its index.html."""
    return build(small_grid_run)


@pytest.fixture(scope="module")
def smoke_book(smoke_grid_run) -> Path:
    """``mtnb book smoke`` built once from the session's smoke grid run: its index.html."""
    return build(smoke_grid_run)


@pytest.fixture(params=["smoke", "small"])
def book(request) -> Path:
    """The smoke grid's book, then the small grid's (its family section)."""
    return request.getfixturevalue(f"{request.param}_book")


def results_tables(runs: Path):
    """Every results.csv of the run's zero-shot jobs, concatenated."""
    return pd.concat([pd.read_csv(p) for p in sorted(runs.glob("zeroshot/*/out/**/results.csv"))], ignore_index=True)


def test_book_of_a_grid_run_shows_its_results_and_notebooks(small_grid_run, small_book):
    src = small_book.parent.parent.parent
    log = (src / "build.log").read_text()
    assert "WARNING" not in log, log[-3000:]
    for page in ("overview", "results", "cka", "svd", "performance", "about"):
        assert (small_book.parent / f"{page}.html").is_file(), page
    config = yaml.safe_load((src / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off" and "(grid small)" in config["title"]

    results = (src / "results.md").read_text()
    family, tables = results.split("## Average over languages", 1)
    assert "## The tiny family" in family and "### CKA against tiny, per layer" in family
    assert "### What this says about the paper's finding" in family and "tiny-o2m" in family
    # a cell recomputed here from the results tables: tiny's English mean and t-interval over seeds
    raw = results_tables(small_grid_run.runs)
    english = raw[(raw.system == "model") & (raw.model == "tiny") & (raw.language == "en") & (raw.split == "test")].value
    assert len(english) == 2
    half = stats.t.ppf(0.975, 1) * stats.sem(english)          # the t-interval's half-width (0 for equal seeds)
    cell = f"{english.mean():.1f}\u00a0±\u00a0{half:.1f}"
    row = next(line for line in tables.split("### mini-topic")[1].splitlines() if line.startswith("| tiny |"))
    assert row.split(" | ")[1] == cell, (row, cell)
    assert "| majority |" in tables and "| bag-of-subwords |" in tables and "paper" not in tables

    overview = (src / "overview.md").read_text()
    assert "| finetune | 2 | 2 | 0 | 0 | 0 | 0 |" in overview and "| zeroshot | 2 | 2 |" in overview
    performance = (src / "performance.md").read_text()
    assert "From `benchmarks/bench_finetune.py`" in performance and "| batching.speedup | 3.294 |" in performance
    assert "of the job time" in performance
    notebooks = sorted((src / "notebooks").glob("*/*.ipynb"))
    assert len(notebooks) == 7 == len(list(small_grid_run.runs.glob("*/*/done.json")))
    finetune = (src / "notebooks" / "finetune.md").read_text()
    assert "Fine-tuning: tiny on mini-topic, seeds 0, 1" in finetune or "Fine-tuning: tiny on mini-topic, seed 0" in finetune
    for notebook in notebooks:
        assert (small_book.parent / "notebooks" / notebook.parent.name / f"{notebook.stem}.html").is_file()


def test_the_smoke_grids_book_shows_every_job_and_both_modes(smoke_grid_run, smoke_book):
    src = smoke_book.parent.parent.parent
    log = (src / "build.log").read_text()
    assert "WARNING" not in log, log[-3000:]
    for page in ("overview", "results", "pretraining", "cka", "svd", "performance", "about"):
        assert (smoke_book.parent / f"{page}.html").is_file(), page
    pretraining = (src / "pretraining.md").read_text()
    assert "| mini-xlmr | mlm |" in pretraining and "| mini-random | none | 0 |" in pretraining
    assert "chrF" not in pretraining, "no smoke member translates"
    overview = (src / "overview.md").read_text()
    for kind, n in (("pretrain", 2), ("finetune", 6), ("zeroshot", 6), ("layer_sweep", 1), ("cka", 1), ("svd", 1)):
        assert f"| {kind} | {n} | {n} | 0 | 0 | 0 | 0 |" in overview, kind
    assert "| modes | finetune, probe |" in overview and "jobs are not done" not in overview
    results = (src / "results.md").read_text()
    assert "## The" not in results.split("## Average over languages")[0], "the smoke grid names no family"
    layers = results.split("## Which layer is probed")[1].split("## Average over languages")[0]
    assert re.search(r"\*\*mini-spans\*\*: English dev picks layer [024]; the grid probes mini-spans at layer 2", layers)
    assert "| English dev | English test | other languages, test |" in layers
    assert (src / "figures" / "layer_sweep.png").is_file()
    for task in ("mini-topic", "mini-spans", "mini-rank"):
        table = results.split(f"### {task}")[1].split("###")[0]
        assert "| mini-xlmr (finetune) |" in table and "| mini-random (probe) |" in table, task
        assert "| majority |" in table and "| bag-of-subwords |" in table, task
        assert (src / "figures" / f"results-{task}.png").is_file()
    assert "mini-random against mini-xlmr" in (src / "svd.md").read_text()
    assert "mini-random" in (src / "cka.md").read_text()
    notebooks = sorted((src / "notebooks").glob("*/*.ipynb"))
    assert len(notebooks) == 17 == len(list(smoke_grid_run.runs.glob("*/*/done.json")))
    assert {n.parent.name for n in notebooks} == {"pretrain", "finetune", "zeroshot", "layer_sweep", "cka", "svd"}
    assert "Layer sweep: mini-random on mini-spans" in (src / "notebooks" / "layer_sweep.md").read_text()
    pretrain = (src / "notebooks" / "pretrain.md").read_text()
    assert "Pretraining: mini-xlmr (smoke budget)" in pretrain and "Pretraining: mini-random (smoke budget)" in pretrain
    assert "mini-random on mini-topic, seed 0, probe" in (src / "notebooks" / "finetune.md").read_text()
    for notebook in notebooks:
        assert (smoke_book.parent / "notebooks" / notebook.parent.name / f"{notebook.stem}.html").is_file()


def test_the_book_opens_on_the_verdict_computed_by_the_plan(small_grid_run, small_book):
    """The small grid's plan (tiny-o2m − tiny on mini-topic): the answer page is the book's root,
    names its protocol, prints the plan above the table, and its numbers are the verdict job's,
    which agree with the zero-shot units they came from."""
    src = small_book.parent.parent.parent
    toc = yaml.safe_load((src / "_toc.yml").read_text())
    assert toc["root"] == "answer" and (small_book.parent / "answer.html").is_file()
    answer = (src / "answer.md").read_text()
    assert answer.startswith("# Does continued pretraining on machine translation help")
    assert "## By fine-tuning" in answer and "By fine-tuning, the paper's protocol" in answer
    assert answer.index("## The plan") < answer.index("## The comparisons")
    assert "a task enters when the base beats the bag-of-subwords control on English dev" in answer
    assert "verdict.png" in answer and (src / "figures" / "verdict.png").is_file()
    verdict = pd.read_csv(next(small_grid_run.runs.glob("verdict/*/out/verdict.csv")))
    assert list(zip(verdict.a, verdict.b, verdict.task)) == [("tiny-o2m", "tiny", "mini-topic")]
    row = verdict.iloc[0]
    assert row.n_boot >= 10_000 and row.low <= row.difference <= row.high and row.runs_a == row.runs_b == 2
    assert f"{row.difference:+.1f} [{row.low:+.1f}, {row.high:+.1f}]" in answer
    units = pd.concat([pd.read_csv(p, dtype={"unit": str}) for p in small_grid_run.runs.glob("zeroshot/*/out/units.csv.gz")])
    test = units[(units.split == "test") & (units.system == "model") & (units.language != "en")]
    score = {m: float(np.mean([100 * g.num.sum() / g.den.sum() for _, g in sub.groupby(["seed", "language"])]))
             for m, sub in test.groupby("model")}
    assert row.difference == pytest.approx(score["tiny-o2m"] - score["tiny"], abs=1e-6)
    filtered = pd.read_csv(next(small_grid_run.runs.glob("verdict/*/out/verdict_filter.csv")))
    assert filtered.enters.all() and set(filtered.task) == {"mini-topic"}
    dev = units[(units.split == "dev")]
    assert set(dev.language) == {"en"}, "dev is scored in English alone"


def test_missing_pieces_give_notes_and_an_unrun_grid_one_line(small_grid_run, tmp_path, monkeypatch, capsys):
    from mtnb.study.book.build import build_book

    root = tmp_path / "root"
    shutil.copytree(small_grid_run.root, root, symlinks=True, ignore=shutil.ignore_patterns("book"))
    for kind in ("cka", "svd"):
        for done in (root / "runs" / "small" / kind).glob("*/done.json"):
            done.unlink()
    shutil.rmtree(root / "runs" / "benchmarks")
    monkeypatch.setenv("MTNB_ROOT", str(root))
    src = build_book("small", build=False, quiet=True)
    overview = (src / "overview.md").read_text()
    assert "computed by code other than this checkout" not in overview, "one code version: nothing marked"
    assert "## Provenance" in overview and "flags:" in overview
    # jobs computed by other code: a finetune job by older module code, another from before jobs
    # recorded their code, and the zero-shot jobs by another notebook version
    older, unrecorded = sorted((root / "runs" / "small" / "finetune").glob("*/done.json"))
    record = json.loads(older.read_text())
    record["code"]["modules"] = {**record["code"]["modules"], "mtnb.transfer.probe": "0123456789ab"}
    older.write_text(json.dumps(record))
    unrecorded.write_text(json.dumps({k: v for k, v in json.loads(unrecorded.read_text()).items() if k != "code"}))
    for path in (root / "runs" / "small" / "zeroshot").glob("*/done.json"):
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "code": {**record["code"], "notebook": "fedcba987654"}}))
    src = build_book("small", build=False, quiet=True)
    assert "No finished CKA job" in (src / "cka.md").read_text()
    assert "No finished SVD job" in (src / "svd.md").read_text()
    results = (src / "results.md").read_text()
    assert "No finished CKA job: nothing to show" in results and "No finished SVD job" in results
    overview = (src / "overview.md").read_text()
    assert "2 of 7 jobs are not done" in overview
    marked = re.findall(r"^\| (\w+) \| `([0-9a-f]{12})` \| (.+) \|$", overview, re.M)
    assert sorted((kind, what) for kind, _, what in marked) == [
        ("finetune", "code not recorded"), ("finetune", "modules mtnb.transfer.probe"),
        ("zeroshot", "notebook cells"), ("zeroshot", "notebook cells")], marked
    assert "```{warning}" in results and "computed by code other than this checkout" in results
    assert "modules mtnb.transfer.probe" in results, "the results page names the modules beside its tables"
    assert "computed by code other than" not in (src / "svd.md").read_text()
    assert "No benchmark results" in (src / "performance.md").read_text()

    grid = yaml.safe_load((root / "params" / "grids" / "small.yaml").read_text())
    (root / "params" / "grids" / "unrun.yaml").write_text(yaml.safe_dump({**grid, "name": "unrun"}))
    assert main(["book", "unrun"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grid unrun: nothing has run yet" in err and "mtnb run unrun" in err


# --------------------------------------------------------------------------------------------
# The book as a reader sees it: headless Chromium
# --------------------------------------------------------------------------------------------

class Anchors(HTMLParser):
    """The ids and names of an HTML file's elements."""

    def __init__(self):
        super().__init__()
        self.found = set()

    def handle_starttag(self, tag, attrs):
        self.found.update(value for key, value in attrs if key in ("id", "name") and value)


def anchors(path: Path) -> set[str]:
    parser = Anchors()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.found


def chromium():
    """A headless Chromium driven by selenium through the Debian chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("headless Chromium is needed: apt-get install -y chromium chromium-driver (as .ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_results_page_in_headless_chromium(book):
    html = book.parent
    browser = chromium()
    try:
        browser.get((html / "results.html").as_uri())
        WebDriverWait(browser, 30).until(lambda b: b.execute_script("return document.readyState") == "complete")
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert len(images) >= 2, images   # the per-language bars of each task (and the family's CKA plot)
        assert all(complete and width > 0 for _, complete, width in images), images
        text = browser.find_element("css selector", "main").text
        assert "Average over languages (Table 1 analog)" in text and "±" in text

        hrefs = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
        internal = sorted({h for h in hrefs if h.startswith("file://")})
        assert {f"{p}.html" for p in ("overview", "cka", "svd", "performance")} <= {Path(urlparse(h).path).name for h in internal}
        assert any("/notebooks/" in h for h in internal)
        broken = []
        for href in internal:
            url = urlparse(href)
            target = Path(unquote(url.path))
            if not target.is_file():
                broken.append(href)
            elif url.fragment and unquote(url.fragment) not in anchors(target):
                broken.append(href)
        assert not broken, broken
        assert sum(bool(urlparse(h).fragment) for h in internal) >= 5, "the page's own section links"

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(int(height), 12000))
        shot = ARTIFACTS / f"book-results-{book.parents[3].name}.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    finally:
        browser.quit()


# --------------------------------------------------------------------------------------------
# The executed notebooks under nbval
# --------------------------------------------------------------------------------------------

def nbval_copy(run, copy: Path) -> list[dict]:
    """A fresh project root ``copy`` in which ``run``'s executed notebooks can be executed again:
    the same params/, the grid's registry runs/<grid>/models.yaml (its zoo members point at their
    pretrain jobs' folders relative to the root: in the copy, at the checkpoints re-trained there),
    the corpus link runs/data/mini, and each executed notebook at the top (nbval runs a notebook
    in its own folder, papermill ran them in the root), numbered in the order the jobs started,
    with the root in its injected parameters (output_dir, run_dir, base_dir: job folders)
    replaced by the copy. Returns, in that order, each notebook's file name, kind, job id, the
    job's dependencies and its papermill time."""
    shutil.copytree(run.root / "params", copy / "params")
    (copy / "runs" / "data").mkdir(parents=True)
    if (run.runs / "models.yaml").is_file():
        (copy / "runs" / run.name).mkdir()
        shutil.copyfile(run.runs / "models.yaml", copy / "runs" / run.name / "models.yaml")
    if (run.root / "runs" / "data" / "mini").is_symlink():
        (copy / "runs" / "data" / "mini").symlink_to((run.root / "runs" / "data" / "mini").readlink())
    done = sorted(run.runs.glob("*/*/done.json"), key=lambda p: json.loads(p.read_text())["started"])
    notebooks = []
    for i, record in enumerate(done):
        kind, job = record.parent.parent.name, record.parent.name
        nb = json.loads((record.parent / f"{kind}.ipynb").read_text())
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1
        source = "".join(injected[0]["source"])
        assert str(run.root) in source
        injected[0]["source"] = source.replace(str(run.root), str(copy))
        name = f"{i:02d}-{kind}-{job}.ipynb"
        (copy / name).write_text(json.dumps(nb))
        notebooks.append({"name": name, "kind": kind, "id": job, "seconds": json.loads(record.read_text())["seconds"],
                          "deps": json.loads((record.parent / "job.json").read_text())["deps"]})
    return notebooks


def lanes(notebooks: list[dict], n: int = 2) -> list[list[str]]:
    """The notebooks in ``n`` lanes to re-execute side by side, as the runner ran them (--jobs 2):
    each after its dependency among them, in that one's lane; the others in the lane with the
    least papermill time so far."""
    lane_of, out, load = {}, [[] for _ in range(n)], [0.0] * n
    for nb in notebooks:
        lane = next((lane_of[d] for d in nb["deps"] if d in lane_of), None)
        lane = load.index(min(load)) if lane is None else lane
        lane_of[nb["id"]] = lane
        out[lane].append(nb["name"])
        load[lane] += nb["seconds"]
    return [lane for lane in out if lane]


def run_nbval(run, copy: Path, lanes: list[list[str]]) -> list[tuple[int, str]]:
    """nbval over each lane of notebooks, the lanes side by side, in ``copy`` (the project root,
    MTNB_ROOT, so the features cache starts empty as it did for the jobs: a cached
    re-execution prints fewer progress bars), with tests/nbval_sanitize.cfg and the jobs' thread
    count (OMP_NUM_THREADS); (exit status, output) per lane."""
    procs = []
    for notebooks in lanes:
        log = open(copy / f"nbval-{notebooks[0][:2]}.log", "w+")
        procs.append((log, subprocess.Popen(
            [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider",
             "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"), "-c", "/dev/null",
             "--rootdir", str(copy), "-q", *notebooks],
            cwd=copy, env={**os.environ, "MTNB_ROOT": str(copy), "OMP_NUM_THREADS": run.threads},
            stdout=log, stderr=subprocess.STDOUT, text=True)))
    results = []
    for log, proc in procs:
        with log:
            proc.wait()
            log.seek(0)
            results.append((proc.returncode, log.read()))
    return results


def test_the_smoke_grids_notebooks_reproduce_under_nbval(smoke_grid_run, tmp_path, capsys):
    """Re-executes every executed notebook of the smoke run (pretrain, finetune in both modes,
    zeroshot, layer sweep, cka, svd) with nbval on a copy (``nbval_copy``) and compares its outputs, sanitized
    by tests/nbval_sanitize.cfg: the zoo members are pretrained again, the fine-tuning and probe
    runs trained again on them, and the zero-shot, CKA and SVD jobs score and compare those. Same
    seeds and thread count as the jobs: on the CPU, the same numbers. The pretraining first, then
    the rest in two lanes side by side (``lanes``), as the runner ran them."""
    copy = tmp_path / "nbval"
    notebooks = nbval_copy(smoke_grid_run, copy)
    assert len(notebooks) == 17 and {nb["kind"] for nb in notebooks} == {"pretrain", "finetune", "zeroshot",
                                                                         "layer_sweep", "cka", "svd"}
    pretrain = [nb["name"] for nb in notebooks if nb["kind"] == "pretrain"]
    rest = lanes([nb for nb in notebooks if nb["kind"] != "pretrain"])
    assert sorted(pretrain + [name for lane in rest for name in lane]) == [nb["name"] for nb in notebooks]
    start = time.perf_counter()
    results = run_nbval(smoke_grid_run, copy, [pretrain]) + run_nbval(smoke_grid_run, copy, rest)
    with capsys.disabled():
        print(f"\nsmoke grid under nbval: {len(notebooks)} notebooks re-executed in {time.perf_counter() - start:.0f} s")
    for status, output in results:
        assert status == 0, output[-8000:]
        assert re.search(r"\b\d+ passed\b", output) and "failed" not in output.strip().splitlines()[-1]
    cells = sum(c["cell_type"] == "code" for nb in notebooks for c in json.loads((copy / nb["name"]).read_text())["cells"])
    assert sum(int(re.search(r"\b(\d+) passed\b", output)[1]) for _, output in results) == cells, "every code cell"


def test_the_sanitizers_mask_noise_and_keep_numbers():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((ROOT / "tests" / "nbval_sanitize.cfg").read_text())

    def clean(text):
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    a = ("tiny fine-tuned on mini-topic: 32 English examples, best English dev accuracy 31.2, 26.0 examples/s; "
         "run saved in /tmp/pytest-of-root/small-grid0/runs/small/finetune/5d2733bb9527/out\n"
         "training:  50%|█████     | 1/2 [00:01<00:01,  1.52s/it]  took 4.2 s; CKA 0.874187\n"
         "mini-xlmr: mlm for 39 steps, 6,112 input tokens in 2 s (2,756 tokens/s)")
    b = ("tiny fine-tuned on mini-topic: 32 English examples, best English dev accuracy 31.2, 38.9 examples/s; "
         "run saved in /tmp/pytest-of-root/nbval0/runs/small/finetune/5d2733bb9527/out\n"
         "training: 100%|██████████| 2/2 [00:03<00:00,  1.60s/it]  took 11.0 s; CKA 0.874191\n"
         "mini-xlmr: mlm for 39 steps, 6,112 input tokens in 3 s (1,839 tokens/s)")
    assert clean(a) == clean(b)
    assert "accuracy 31.2" in clean(a) and "CKA 0.87" in clean(a) and "32 English examples" in clean(a)
    assert "39 steps, 6,112 input tokens" in clean(a)
    assert clean(a.replace("accuracy 31.2", "accuracy 31.3")) != clean(b)
    assert clean(a.replace("CKA 0.874187", "CKA 0.884187")) != clean(b)


# --------------------------------------------------------------------------------------------
# The numbers: intervals, the paper's columns, the family paragraph
# --------------------------------------------------------------------------------------------

def test_mean_ci_is_the_student_t_interval():
    from mtnb.study.summary import mean_ci

    values = [61.0, 64.5, 59.25, 63.0, 60.5]
    ci = mean_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert ci.n == 5 and ci.mean == pytest.approx(61.65)
    assert (ci.low, ci.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    # by hand: two seeds 10 and 12: mean 11, s = sqrt(2), t(0.975, 1) = 12.7062 -> 11 ± 12.7062
    two = mean_ci([10.0, 12.0])
    assert two.half == pytest.approx(12.7062047, abs=1e-6) and two.text() == "11.0 ± 12.7"
    one = mean_ci([42.0, float("nan")])
    assert one.n == 1 and np.isnan(one.half) and one.text() == "42.0"
    assert mean_ci([1.0, 2.0], level=0.9).half == pytest.approx(stats.t.ppf(0.95, 1) * 0.5)


def fake_results(rows: dict[tuple[str, str], dict[str, list[float]]], seeds=(0, 1, 2)):
    """A results.csv-like table: {(model, task): {language: [value per seed]}} plus controls."""
    records = []
    for (model, task), langs in rows.items():
        for lang, values in langs.items():
            for seed, value in zip(seeds, values):
                records.append(dict(model=model, task=task, seed=seed, system="model", language=lang,
                                    split="test", metric="accuracy", value=value, n=100))
                records.append(dict(model=model, task=task, seed=seed, system="majority", language=lang,
                                    split="test", metric="accuracy", value=20.0 + seed, n=100))
    return pd.DataFrame(records)


def test_a_paper_grid_table_shows_the_papers_numbers_beside_ours():
    from mtnb.study.summary import normalize, table1, table4

    wpr = {lang: [60.0, 62.0, 64.0] for lang in ("de", "en", "es", "fr", "it", "pt")} | {"zh": [0.0, 0.0, 0.0]}
    nc = {lang: [80.0, 81.0, 82.0] for lang in ("de", "en", "es", "fr", "ru")}
    table = normalize(fake_results({("mbert", "wpr"): wpr, ("mbert", "nc"): nc, ("mini-xlmr", "mini-topic"): nc}))
    first = table1(table, ["mbert", "mini-xlmr"], paper.table1())
    published = paper.table1().set_index(["task", "model"])["score"]
    assert first.loc["mbert", "wpr paper"] == f"{published['wpr', 'mbert']:.1f}" == "74.4"
    assert first.loc["mbert", "nc paper"] == f"{published['nc', 'mbert']:.1f}"
    # ours leaves zh out of the WPR average as the paper does: 62 ± t(0.975, 2)·2/sqrt(3)
    assert first.loc["mbert", "wpr"] == f"62.0 ± {stats.t.ppf(0.975, 2) * 2 / np.sqrt(3):.1f}"
    assert "mini-topic paper" not in first.columns and first.loc["mini-xlmr", "wpr paper"] == ""
    assert first.loc["majority", "wpr paper"] == ""

    fourth = table4(table, "wpr", ["mbert"], paper.table4())
    assert list(fourth.columns[:4]) == ["de", "de paper", "en", "en paper"]
    assert fourth.loc["mbert", "de paper"] == "76.6" and fourth.loc["mbert", "zh paper"] == "62.7"
    assert fourth.loc["mbert", "avg paper"] == "74.4" and fourth.loc["mbert", "avg"].startswith("62.0 ")
    assert fourth.loc["mbert", "zh"].startswith("0.0")
    mini = table4(table, "mini-topic", ["mini-xlmr"], paper.table4())
    assert not any("paper" in c for c in mini.columns)


def family_table(scores: dict[str, list[float]]):
    """Two tasks; per model, its non-English scores per seed (English fixed at 70)."""
    from mtnb.study.summary import normalize

    rows = {}
    for model, values in scores.items():
        for task in ("mini-topic", "mini-spans"):
            rows[(model, task)] = {"en": [70.0, 70.0, 70.0], "de": values, "fr": values}
    return normalize(fake_results(rows))


def test_the_family_paragraph_follows_the_numbers():
    from mtnb.study.findings import family_finding

    mt = ["m-m2o", "m-o2m", "m-m2m"]
    as_in_paper = family_table({"m": [50.0, 51.0, 52.0], "m-mlm": [50.5, 51.0, 51.5], "m-m2o": [49.0, 51.0, 53.0],
                                "m-o2m": [40.0, 41.0, 42.0], "m-m2m": [49.5, 50.5, 51.5]})
    text = family_finding(as_in_paper, "m", mt, ["m-mlm"])
    assert "No translation variant scores above m beyond the intervals, as the paper found" in text
    assert "does not hold" not in text and "holds" not in text
    assert "no difference we can resolve (intervals up to ±" in text
    assert "Overlapping intervals do not show that there is no effect" in text
    assert "As in the paper, one-to-many hurts most: m-o2m loses 10.0 points" in text
    assert "its interval lies below m's on 2 of 2 tasks" in text
    assert "m-o2m 41.0 [38.5, 43.5] against m 51.0 [48.5, 53.5]" in text
    assert "Against m-mlm" in text and "lower in 2" in text
    assert "m-mlm keeps m's transfer on every task" in text
    damaged = family_table({"m": [50.0, 51.0, 52.0], "m-mlm": [37.0, 38.0, 39.0], "m-m2o": [49.0, 51.0, 53.0]})
    assert "m-mlm falls below m's interval on 2 tasks of 2 (on mini-topic, m-mlm 38.0" in \
        family_finding(damaged, "m", ["m-m2o"], ["m-mlm"])

    flipped = family_table({"m": [50.0, 51.0, 52.0], "m-mlm": [50.5, 51.0, 51.5], "m-m2o": [60.0, 61.0, 62.0],
                            "m-o2m": [49.0, 51.0, 53.0], "m-m2m": [40.0, 41.0, 42.0]})
    text = family_finding(flipped, "m", mt, ["m-mlm"])
    assert "The paper's first finding does not hold here" in text and "holds here" not in text
    assert "m-m2o 61.0 [58.5, 63.5] against m 51.0 [48.5, 53.5]" in text
    assert "Unlike the paper, one-to-many does not hurt most here: m-m2m loses 10.0 points" in text

    unresolved = family_table({"m": [45.0, 51.0, 57.0], "m-o2m": [44.0, 50.0, 56.0]})
    text = family_finding(unresolved, "m", ["m-o2m"])
    assert "as the paper found" in text and "overlap m's on every task, so this is not a drop we can resolve" in text


def test_pretraining_replicas_pool_into_their_member_over_pretraining_seeds():
    """Replicas m-mlm@p0, m-mlm@p1 (grids.replica_name) become m-mlm: each replica's mean over
    its fine-tuning seeds is one seed of m-mlm, so its interval is over the two pretraining
    seeds; the controls keep the first replica's rows; the paragraph says how it pooled."""
    from mtnb.study.summary import cross_lingual, normalize
    from mtnb.study.findings import family_finding

    rows = {("m", "mini-topic"): {"en": [70.0] * 3, "de": [50.0, 51.0, 52.0]},
            ("m-mlm@p0", "mini-topic"): {"en": [70.0] * 3, "de": [40.0, 41.0, 45.0]},   # mean 42
            ("m-mlm@p1", "mini-topic"): {"en": [70.0] * 3, "de": [46.0, 48.0, 50.0]},   # mean 48
            ("m-m2o@p0", "mini-topic"): {"en": [70.0] * 3, "de": [50.0] * 3},
            ("m-m2o@p1", "mini-topic"): {"en": [70.0] * 3, "de": [52.0] * 3}}
    table = normalize(fake_results(rows))
    assert sorted(set(table["model"]) - {""}) == ["m", "m-m2o", "m-mlm"]
    mlm = table[(table["model"] == "m-mlm") & (table["language"] == "de")]
    assert sorted(mlm["seed"]) == [0, 1] and sorted(mlm["value"]) == [42.0, 48.0]
    assert set(mlm["pretraining_seeds"]) == {2}
    ci = cross_lingual(table).set_index("system").loc["m-mlm", "ci"]
    assert ci.n == 2 and ci.mean == 45.0 and ci.low < 42.0
    majority = table[table["control"] & (table["language"] == "de")]
    assert sorted(majority["seed"]) == [0, 1, 2], "controls keep their fine-tuning seeds"
    text = family_finding(table, "m", ["m-m2o"], ["m-mlm"])
    assert "pretrained with 2 seeds" in text
    assert "pretrained with" not in family_finding(family_table({"m": [50.0, 51.0, 52.0], "m-m2o": [50.0, 51.0, 52.0]}),
                                                   "m", ["m-m2o"])


@pytest.mark.parametrize("book, key", [
    ({"family": ["mbert", "nope"], "base": "mbert"}, "book.family: 'nope' is not a model of this grid"),
    ({"family": ["mbert", "xlmr"], "base": "mbart"}, "book.base: 'mbart' is not a model of this grid"),
    ({"family": ["mbert", "xlmr"]}, "book.base: missing"),
    ({"family": ["mbert"], "base": "xlmr"}, "book.base: 'xlmr' is not in book.family"),
    ({"famliy": ["mbert"]}, "book.famliy: unknown key"),
    ({"family": "mbert", "base": "mbert"}, "book.family: expected a list"),
])
def test_the_book_key_is_checked(project, book, key):
    for name in ("models.yaml", "tasks.yaml"):
        (project / "params" / name).write_text((ROOT / "params" / name).read_text())
    (project / "params" / "grids").mkdir()
    (project / "notebooks").symlink_to(ROOT / "notebooks")
    grid = {"models": ["mbert", "xlmr"], "tasks": ["mini-topic"], "seeds": [0], "book": book}
    (project / "params" / "grids" / "g.yaml").write_text(yaml.safe_dump(grid))
    with pytest.raises(MtnbError) as err:
        load_grid("g")
    assert str(err.value).startswith(f"params/grids/g.yaml: {key}") and "\n" not in str(err.value)


def test_the_pretraining_page_shows_chrf_beside_its_bars(tmp_path):
    from types import SimpleNamespace

    from mtnb.study.book.pretraining import pretraining_page
    from mtnb.study.runner import Job

    chrf = {"de-en": 31.5, "en-de": 12.0}
    records = {
        "me5-m2o": {"objective": "translate", "directions": "m2o", "chrf": chrf,
                    "chrf_copy_source": {"de-en": 25.0, "en-de": 24.0},
                    "chrf_mismatched_source": {"de-en": 14.25, "en-de": 9.0},
                    "retrieval_before": {"de-en": 80.0, "en-de": 75.0}, "retrieval_after": {"de-en": 85.0, "en-de": 70.0},
                    "stages": {"warmup": {"frozen": "the whole encoder", "steps": 600, "tokens": 9000, "seconds": 100.0,
                                          "heldout_loss_before": 11.0, "heldout_loss_after": 4.25},
                               "joint": {"frozen": "the word embeddings", "steps": 10, "tokens": 500, "seconds": 5.0,
                                         "heldout_loss_before": 4.25, "heldout_loss_after": 4.0}}},
        "me5-mlm": {"objective": "mlm", "directions": None, "chrf": None},
    }
    jobs = []
    for i, (member, record) in enumerate(records.items()):
        folder = tmp_path / f"job{i}"
        (folder / "out" / member).mkdir(parents=True)
        record.update(budget={"eval_pairs": 60}, trained={"steps": 10, "tokens": 500, "seconds": 5.0}, tokens_per_second=100.0,
                      heldout_loss_before=9.0, heldout_loss_after=6.5)
        (folder / "out" / member / "continued.json").write_text(json.dumps(record))
        jobs.append(Job("pretrain", Path("pretrain.ipynb"), {"member": member}, [], f"id{i}", folder))
    study = SimpleNamespace(done=lambda kind=None: [j for j in jobs if kind in (None, j.kind)])
    page = pretraining_page(study)
    assert "| me5-m2o | translate (m2o) | 10 | 500 | 5 | 100 | 9 | 6.5 |" in page
    assert "| me5-m2o | 31.5 | 12 |" in page
    assert "| me5-m2o, mismatched source | 14.2 | 9 |" in page or "| me5-m2o, mismatched source | 14.3 | 9 |" in page
    assert "| copy the source | 25 | 24 |" in page
    zoo = tmp_path / "zoo"
    (zoo / "out" / "mini-mbart-o2m").mkdir(parents=True)
    (zoo / "out" / "mini-mbart-o2m" / "pretrain.json").write_text(json.dumps({
        **records["me5-m2o"], "objective": "translate", "directions": "o2m", "budget": {"eval_pairs": 100},
        "chrf_copy_source": {"de-en": 26.0, "en-de": 22.0}, "chrf_mismatched_source": None}))
    jobs.append(Job("pretrain", Path("pretrain.ipynb"), {"member": "mini-mbart-o2m"}, [], "zoo", zoo))
    page = pretraining_page(study)
    assert "| copy the source (first 60 pairs) | 25 | 24 |" in page
    assert "| copy the source (first 100 pairs) | 26 | 22 |" in page, "each bar on the pairs its members were scored on"
    assert "me5-mlm |" in page.split("## Translation")[0] and "| me5-mlm |" not in page.split("## Translation")[1]
    assert "| me5-m2o | copy yes, mismatched + 10 yes |" in page, "de-en: 31.5 >= 25 and >= 14.25 + 10"
    assert "| me5-m2o | 1: head alone | the whole encoder | 600 | 9000 | 100 | 11 | 4.25 |" in page
    assert "| me5-m2o | 2: encoder and head | the word embeddings | 10 | 500 | 5 | 4.25 | 4 |" in page
    assert "| base (before) | 80 | 75 |" in page and "| me5-m2o | 85 | 70 |" in page


def test_the_family_paragraph_says_whether_the_variants_translate():
    from mtnb.study.findings import translation_evidence

    def record(directions, ours, copy, blind):
        dirs = ["de-en", "en-de"]
        return {"directions": directions, "chrf": dict(zip(dirs, ours)), "chrf_copy_source": dict(zip(dirs, copy)),
                "chrf_mismatched_source": dict(zip(dirs, blind))}

    weak = {"me5-m2o": record("m2o", [6.0, 40.0], [27.0, 1.0], [4.0, 1.0])}
    text = translation_evidence(weak, ["me5-m2o"])
    assert ("me5-m2o 6.0 (copying the source 27.0, a mismatched source 4.0; reads its source in 0 and beats copying "
            "in 0 of 1 direction)") in text, "only its trained direction"
    assert "in 0 of 1 (the decoder reads its source)" in text and "without learning to translate" in text
    strong = {"me5-o2m": record("o2m", [1.0, 30.0], [50.0, 20.0], [1.0, 5.0])}
    assert "Every variant translates" in translation_evidence(strong, ["me5-o2m"])
    # m2m: the mean beats both bars, but en-de is 8 points over its mismatched source, not 10
    uneven = {"me5-m2m": record("m2m", [40.0, 25.0], [27.0, 20.0], [4.0, 17.0])}
    text = translation_evidence(uneven, ["me5-m2m"])
    assert "reads its source in 1 and beats copying in 2 of 2 directions" in text
    assert "in 1 of 2 (the decoder reads its source) and at least that of copying the source in 2 of 2" in text
    assert "work, weakly." in text, "half the directions read the source; copying is beaten everywhere"
    reading = {"me5-m2o": record("m2m", [25.0, 30.0], [28.0, 20.0], [12.0, 14.0])}
    text = translation_evidence(reading, ["me5-m2o"])
    assert "work, weakly: where copying scores higher" in text and "beats copying in 1 of 2" in text
    assert translation_evidence({"me5-mlm": {"chrf": None}}, ["me5-mlm"]) == ""


def test_retrieval_evidence_names_the_members_that_lowered_it():
    from mtnb.study.findings import retrieval_evidence

    def record(after):
        return {"retrieval_before": {"de-en": 90.0, "en-de": 88.0}, "retrieval_after": dict(zip(("de-en", "en-de"), after))}

    records = {"m-mlm": record([86.0, 84.0]), "m-m2o": record([92.0, 94.0]), "m-base": {}}
    text = retrieval_evidence(records, ["m-base", "m-mlm", "m-m2o"])
    assert "the base 89.0 before, then m-mlm 85.0, m-m2o 93.0." in text and "Only m-mlm lowered it" in text
    assert "No continued objective lowered it" in retrieval_evidence({"m-m2o": record([92.0, 94.0])}, ["m-m2o"])
    assert retrieval_evidence({"m-base": {}}, ["m-base"]) == ""


def _per_sample(scores: dict[tuple[str, str], np.ndarray], layers: int = 2):
    """A separability_samples.csv table: the given scores at the last layer, noise below it."""
    import pandas as pd

    rows = []
    for (model, measure), values in scores.items():
        for layer in range(layers):
            vals = values if layer == layers - 1 else np.zeros_like(values)
            rows += [dict(model=model, layer=layer, measure=measure, sample=i, score=float(v))
                     for i, v in enumerate(vals)]
    return pd.DataFrame(rows)


def test_separability_comparisons_are_paired_holm_corrected_and_read_the_last_layer():
    from mtnb.study.book.family import separability_comparisons
    from mtnb.study.findings import separability_finding

    rng = np.random.default_rng(0)
    base_lid, base_ret = rng.uniform(20, 60, 80), rng.uniform(60, 100, 80)
    scores = {("base", "language-id"): base_lid, ("base", "retrieval"): base_ret,
              ("mt", "language-id"): base_lid + 8 + rng.normal(0, 2, 80),       # clearly more separable
              ("mt", "retrieval"): base_ret - 6 + rng.normal(0, 2, 80),
              ("same", "language-id"): base_lid + rng.normal(0, 2, 80),         # no resolvable difference
              ("same", "retrieval"): base_ret + rng.normal(0, 2, 80),
              ("mlm", "language-id"): base_lid + rng.normal(0, 2, 80),
              ("mlm", "retrieval"): base_ret + rng.normal(0, 2, 80)}
    table = separability_comparisons(_per_sample(scores), "base", ["mt", "same"], ["mlm"], n_boot=1000)
    # 3 members against the base and 2 translation members against the control, two measures each
    assert len(table) == (3 + 2) * 2
    assert (table["p_holm"] >= table["p"]).all()
    mt_lid = table[(table.comparison == "mt − base") & (table.measure == "language-id")].iloc[0]
    assert mt_lid.difference == pytest.approx(8, abs=1) and mt_lid.low > 0 and mt_lid.p_holm < 0.05
    text = separability_finding(table, "base", ["mt", "same"])
    assert "by language ID, more separable: mt; no difference resolved: same (within ±" in text
    assert "by retrieval, more separable: mt" in text
    from mtnb.study.findings import ceiling_note

    assert ceiling_note(_per_sample(scores), ["base", "mt"]) == ""
    saturated = _per_sample({("base", "language-id"): np.full(80, 100.0), ("mt", "language-id"): np.full(80, 99.5)})
    assert "at its ceiling (≥ 99%) at the last layer of 2 of 2 of these models (base 100.0, mt 99.5)" in \
        ceiling_note(saturated, ["base", "mt"])
    assert "holds" not in text


def test_the_cka_page_shows_intervals_chance_and_separability(tmp_path):
    import pandas as pd

    from mtnb.study.book.cka import cka_uncertainty_section, language_pair_intervals, separability_section

    pairs = pd.DataFrame([dict(model_a="a", model_b="b", lang=lang, layer=layer, cka=0.9, debiased=0.8, biased=0.9,
                               low=0.7, high=0.85, null_debiased=0.05, null_biased=0.45)
                          for lang in ("de", "en") for layer in (0, 1)])
    text = cka_uncertainty_section(pairs, {"n_samples": 80}, tmp_path, tmp_path)
    assert "At n = 80 samples, biased CKA between *unrelated* representations" in text and "reaches 0.45" in text
    assert "0.80 [0.70, 0.85]" in text
    assert "ran without `uncertainty`" in cka_uncertainty_section(pairs.drop(columns=["null_biased"]), {}, tmp_path,
                                                                    tmp_path)
    languages = pd.DataFrame([dict(model="a", lang_a="de", lang_b="en", layer=layer, cka=0.9, debiased=0.6 + layer / 10,
                                   biased=0.9, low=0.5, high=0.75, null_debiased=0.02, null_biased=0.4)
                              for layer in (0, 1)])
    text = language_pair_intervals(languages)
    assert "0.70 [0.50, 0.75]" in text and "0.60 [" not in text, "the last layer's interval, not the first's"
    assert "| a | 0.70 [0.50, 0.75] | 0.4 |" in text
    assert language_pair_intervals(languages.drop(columns=["low"])) == ""
    languages.loc[:, ["low", "high"]] = float("nan")   # too few samples for any interval
    assert "0.70 (no interval)" in language_pair_intervals(languages) and "nan" not in language_pair_intervals(languages)
    languages.loc[:, ["low", "high"]] = [0.76, 2.75]   # the smoke grid's n = 20: an interval that excludes its estimate
    assert "0.70 (unstable interval)" in language_pair_intervals(languages)
    languages.loc[:, ["low", "high"]] = [-0.5, 1.2]    # or one wider than CKA's whole range
    assert "0.70 (unstable interval)" in language_pair_intervals(languages)
    pd.DataFrame([dict(model=m, layer=1, measure=ms, value=50.0, low=45.0, high=55.0)
                  for m in ("a", "b") for ms in ("language-id", "retrieval")]).to_csv(tmp_path / "separability.csv",
                                                                                   index=False)
    text = separability_section(tmp_path, tmp_path)
    assert "50.0 [45.0, 55.0]" in text and "language ID (%)" in text


def _units(spec: dict[str, float], tasks=("mini-topic", "mini-spans"), langs=("en", "de", "fr"), seeds=(0, 1, 2),
           n=150, seed=0):
    """A zero-shot units table (zeroshot.UNIT_COLUMNS): per model its probability of getting an
    example right; examples are shared, so a model's errors follow the examples' difficulty."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in tasks:
        for lang in langs:
            difficulty = rng.uniform(-0.25, 0.25, n)                 # shared by every model: pairs them
            for model, p in spec.items():
                for s in seeds:
                    right = rng.random(n) < np.clip(p + difficulty, 0, 1)
                    rows += [dict(model=model, task=task, seed=s, mode="probe", system="model", language=lang,
                                  split="test", unit=str(i), num=float(r), den=1.0) for i, r in enumerate(right)]
    return pd.DataFrame(rows)


def test_paired_comparisons_resolve_a_drop_and_bound_what_they_do_not_resolve():
    from mtnb.study.summary import family_pairs, paired_comparisons
    from mtnb.study.findings import paired_finding

    units = _units({"m": 0.6, "m-m2o": 0.6, "m-o2m": 0.45, "m-mlm": 0.6})
    pairs = family_pairs("m", ["m-m2o", "m-o2m"], ["m-mlm"])
    assert pairs == [("m-m2o", "m"), ("m-o2m", "m"), ("m-mlm", "m"), ("m-m2o", "m-mlm"), ("m-o2m", "m-mlm")]
    table = paired_comparisons(units, pairs, n_boot=1000)
    assert len(table) == 2 * len(pairs)
    o2m = table[(table.a == "m-o2m") & (table.b == "m")]
    assert (o2m.high < 0).all() and (o2m.p_holm < 0.05).all()
    assert o2m.difference.between(-20, -10).all()
    m2o = table[(table.a == "m-m2o") & (table.b == "m")]
    assert (m2o.low < 0).all() and (m2o.high > 0).all()
    # English is not part of transfer: the scores are the non-English means
    de_fr = units[(units.model == "m") & (units.task == "mini-topic") & units.language.isin(["de", "fr"])]
    assert table[(table.a == "m-m2o") & (table.task == "mini-topic")].b_score.iloc[0] == \
        pytest.approx(100 * de_fr.num.mean())
    text = paired_finding(table, "m", ["m-m2o", "m-o2m"], ["m-mlm"])
    assert "No translation member transfers better than m" in text
    assert "2 lower and 2 without a resolved difference (their intervals exclude differences beyond ±" in text
    assert "As in the paper, one-to-many hurts most: m-o2m" in text and "m-o2m lies resolvably below m on 2 of 2 tasks" in text
    assert "m-mlm keeps m's transfer (no resolved difference on any task)" in text
    assert "Holm p = 0.0" in text           # resolved, and never printed as 0
    assert "holds" not in text
    raised = paired_comparisons(_units({"m": 0.5, "m-m2o": 0.5, "m-mlm": 0.7}), [("m-mlm", "m")], n_boot=500)
    assert "m-mlm raises m's transfer (no resolved drop on any task): m-mlm − m on" in \
        paired_finding(raised, "m", ["m-m2o"], ["m-mlm"])


def test_the_resolution_sentence_gives_each_tasks_half_widths_against_the_bar():
    from mtnb.study.findings import resolution

    table = pd.DataFrame([dict(task="t1", low=-2.0, high=2.0), dict(task="t1", low=0.0, high=5.0),
                          dict(task="t2", low=-1.0, high=1.0)])
    text = resolution(table)
    assert "t1 ±2.2 (at most ±2.5); t2 ±1.0 (at most ±1.0) points" in text
    assert "the comparisons meet the bar of ±3 on every task" in text
    table.loc[1, "high"] = 7.0
    assert "the bar for the comparisons is ±3, which t1 misses" in resolution(table)
    assert "t2 misses" not in resolution(table)
    # the bar applies to the comparisons with the base; others are reported beside them
    table["b"] = ["m", "c", "m"]
    text = resolution(table, "m")
    assert "t1 ±2.8 (at most ±3.5; against m at most ±2.0)" in text
    assert "the comparisons with m meet the bar of ±3 on every task" in text
    table.loc[0, ["low", "high"]] = [-3.04, 3.04]      # printed ±3.0: within the bar as shown
    assert "meet the bar" in resolution(table, "m")
    assert resolution(table.iloc[:0]) == ""


def test_paired_comparisons_agree_with_scipy_and_pool_replicas():
    from mtnb.study.summary import paired_comparisons

    units = _units({"m": 0.6, "m-x": 0.7}, tasks=("mini-topic",), langs=("de",), seeds=(0,), n=300, seed=1)
    [row] = paired_comparisons(units, [("m-x", "m")], n_boot=4000).itertuples()
    a = units[units.model == "m-x"].num.to_numpy()
    b = units[units.model == "m"].num.to_numpy()
    assert row.difference == pytest.approx(100 * (a - b).mean())
    ci = stats.bootstrap((100 * (a - b),), np.mean, n_resamples=4000, method="percentile",
                         random_state=np.random.default_rng(2)).confidence_interval
    assert row.low == pytest.approx(ci.low, abs=0.8) and row.high == pytest.approx(ci.high, abs=0.8)
    # two pretraining replicas of m-x are two runs of m-x
    replicas = pd.concat([units.assign(model=units.model.replace({"m-x": "m-x@p0"})),
                          units[units.model == "m-x"].assign(model="m-x@p1", num=0.0)])
    [pooled] = paired_comparisons(replicas, [("m-x", "m")], n_boot=500).itertuples()
    assert pooled.a_score == pytest.approx(100 * a.mean() / 2)


def test_paired_intervals_widen_with_the_spread_over_seeds():
    """Seeds that disagree: over examples alone the difference looks resolved; drawing the runs
    as well shows that another seed could reverse it."""
    from mtnb.study.summary import paired_comparisons

    parts = [_units({"m": 0.5, "m-x": p}, tasks=("mini-topic",), langs=("de",), seeds=(s,), n=300, seed=3)
             for s, p in ((0, 0.45), (1, 0.75), (2, 0.65))]
    units = pd.concat(parts, ignore_index=True)
    examples = paired_comparisons(units, [("m-x", "m")], n_boot=2000, runs=False).iloc[0]
    both = paired_comparisons(units, [("m-x", "m")], n_boot=2000).iloc[0]
    assert examples.difference == both.difference
    assert examples.low > 0 and both.low < 0 < both.high
    assert both.high - both.low > 2 * (examples.high - examples.low)


def test_a_seed_that_moves_both_models_alike_leaves_the_paired_interval_narrow():
    """Fine-tuning seed k trains every model on the same English subset: when a seed lifts or
    sinks both models together, drawing the seeds jointly keeps that out of the difference, and
    the interval is far narrower than when the seeds are paired wrongly (m's runs relabelled,
    so that draw k takes m-x's seed k beside another seed of m)."""
    from mtnb.study.summary import paired_comparisons

    parts = [_units({"m": p, "m-x": p + 0.05}, tasks=("mini-topic",), langs=("de",), seeds=(s,), n=300, seed=5 + s)
             for s, p in ((0, 0.35), (1, 0.65), (2, 0.5))]
    units = pd.concat(parts, ignore_index=True)
    joint = paired_comparisons(units, [("m-x", "m")], n_boot=2000).iloc[0]
    mispaired = units.assign(seed=np.where(units.model == "m", (units.seed + 1) % 3, units.seed))
    apart = paired_comparisons(mispaired, [("m-x", "m")], n_boot=2000).iloc[0]
    assert joint.difference == pytest.approx(apart.difference)
    assert joint.high - joint.low < 0.6 * (apart.high - apart.low), (joint, apart)
    with pytest.raises(MtnbError, match=r"^mini-topic: m-x lacks fine-tuning seed\(s\) 10, 11, 12 that m has \(m-x: 0, 1, 2; m: 10"):
        paired_comparisons(units.assign(seed=units.seed + 10 * (units.model == "m")), [("m-x", "m")], n_boot=100)


def test_the_verdict_leaves_out_tasks_where_the_base_barely_beats_the_bag_of_subwords_on_english_dev():
    from mtnb.study.summary import normalize, paired_comparisons
    from mtnb.study.findings import paired_finding, tasks_that_resolve

    scores = {("m", "mini-topic"): {"de": [50.0, 51.0, 52.0], "en": [70.0, 71.0, 72.0]},
              ("m", "mini-spans"): {"de": [50.0, 51.0, 52.0], "en": [60.0, 61.0, 62.0]},
              ("m-o2m", "mini-topic"): {"de": [40.0, 41.0, 42.0], "en": [70.0, 70.0, 70.0]},
              ("m-o2m", "mini-spans"): {"de": [40.0, 41.0, 42.0], "en": [60.0, 60.0, 60.0]}}
    test = fake_results(scores)
    dev = fake_results({key: {"en": langs["en"]} for key, langs in scores.items()}).assign(split="dev")

    def with_bag(raw, topic, spans):
        bag = raw[raw.system == "majority"].assign(system="bag-of-subwords")
        bag["value"] = np.where(bag["task"] == "mini-topic", topic, spans)
        return pd.concat([raw, bag], ignore_index=True)

    table = normalize(pd.concat([with_bag(test, 30.0, 48.0), with_bag(dev, 50.0, 58.0)], ignore_index=True))
    kept, dropped = tasks_that_resolve(table, "m", ["mini-topic", "mini-spans"])
    assert kept == ["mini-topic"]
    assert dropped.startswith("mini-spans is left out of this verdict: there m beats the bag-of-subwords control "
                              "on English dev by only +3.0 points (the bar is 10)")
    # test scores never enter: a bag-of-subwords far above the model on test changes nothing
    moved = normalize(pd.concat([with_bag(test, 99.0, 0.0), with_bag(dev, 50.0, 58.0)], ignore_index=True))
    assert tasks_that_resolve(moved, "m", ["mini-topic", "mini-spans"]) == (kept, dropped)
    # English dev does: the same bag-of-subwords on dev leaves mini-topic out too
    lowered = normalize(pd.concat([with_bag(test, 30.0, 48.0), with_bag(dev, 65.0, 58.0)], ignore_index=True))
    assert tasks_that_resolve(lowered, "m", ["mini-topic", "mini-spans"])[0] == []
    unjudged = tasks_that_resolve(normalize(with_bag(test, 30.0, 48.0)), "m", ["mini-topic"])
    assert unjudged[0] == ["mini-topic"] and "kept without the English dev check" in unjudged[1]
    paired = paired_comparisons(_units({"m": 0.6, "m-o2m": 0.45}), [("m-o2m", "m")], n_boot=500)
    assert set(paired.task) == {"mini-topic", "mini-spans"}
    text = paired_finding(paired, "m", ["m-o2m"], tasks=kept, dropped=dropped)
    assert "corrects the 2 comparisons together" in text and "mini-spans is left out" in text
    assert "of 1 member-task comparison," in text and "on mini-spans:" not in text
    probed = paired_finding(paired, "m", ["m-o2m"], tasks=kept, dropped=dropped, protocol="probe")
    assert "paper" not in probed.replace("The paper fine-tunes", "").replace("test its claim", ""), probed
    assert probed.startswith("These are linear probes on frozen encoders")


def test_the_oracle_summary_averages_languages_then_runs_per_model():
    from mtnb.study.verdict import oracle_summary

    plan = {"base": "b", "control": "c", "translation": ["t"], "alignment": "a"}
    rng = np.random.default_rng(0)
    rows = []
    for model in ("b", "t@p0", "t@p1", "other"):
        for seed in (0, 1):
            for lang in ("de", "ru"):
                chosen = float(rng.uniform(50, 90))
                rows += [dict(model=model, task="ud-pos", seed=seed, language=lang, selection="English dev", step=2,
                              dev=0.0, test=chosen),
                         dict(model=model, task="ud-pos", seed=seed, language=lang, selection="target dev", step=1,
                              dev=0.0, test=chosen + (1.0 if lang == "de" else 3.0))]
    oracle = pd.DataFrame(rows)
    table = oracle_summary(oracle, plan)
    assert list(table.model) == ["b", "t"], "the plan's models, in its order; others left out"
    assert list(table.runs) == [2, 4], "a member's replicas and seeds are its runs"
    english = oracle[(oracle.selection == "English dev") & oracle.model.str.startswith("t")]["test"].mean()
    assert table.loc[1, "english_dev"] == pytest.approx(english)   # equal runs x languages: the plain mean
    assert table["gain"].tolist() == pytest.approx([2.0, 2.0])
    assert oracle_summary(None, plan).empty and list(oracle_summary(None, plan).columns) == list(table.columns)


def test_the_answer_page_shows_the_oracle_beside_the_verdict_never_in_it(small_grid_run, tmp_path, monkeypatch):
    from mtnb.study.book.build import build_book
    from mtnb.study.outputs import write_table

    root = tmp_path / "root"
    shutil.copytree(small_grid_run.root, root, symlinks=True, ignore=shutil.ignore_patterns("book"))
    monkeypatch.setenv("MTNB_ROOT", str(root))
    before = (build_book("small", build=False, quiet=True) / "answer.md").read_text()
    assert "upper bound" not in before, "no oracle table: no section"
    out = next((root / "runs" / "small" / "verdict").glob("*/out"))
    write_table(out, "verdict_oracle", pd.DataFrame(dict(task=["mini-topic"] * 2, model=["tiny", "tiny-o2m"],
                                                         runs=[2, 2], english_dev=[41.24, 43.0],
                                                         target_dev=[44.1, 43.0], gain=[2.86, 0.0])))
    answer = (build_book("small", build=False, quiet=True) / "answer.md").read_text()
    assert answer.index("## The comparisons") < answer.index("## Model selection's upper bound (fine-tuning)")
    assert "Not part of the verdict." in answer
    assert "| mini-topic | tiny | 2 | 41.2 | 44.1 | +2.9 |" in answer, answer[answer.index("upper bound"):]
    assert before[:before.index("## The comparisons")] == answer[:answer.index("## The comparisons")], \
        "the verdict above the tables is unchanged by the oracle"
