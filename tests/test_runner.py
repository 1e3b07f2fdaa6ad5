"""The batch runner: grid checks, job ids, dry runs, and real runs of a tiny grid (resumed after
a second run and after kill -9, and with a failing job)."""

from __future__ import annotations

import contextlib
import json
import re
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import torch
import transformers
import yaml

from mtnb.cli import main
from mtnb.core.errors import MtnbError
from mtnb.study.grids import load_grid, verdict_pairs
from mtnb.models.registry import load_registry
from mtnb.core import code_version
from mtnb.core.code_version import notebook_cells
from mtnb.study import runner
from mtnb.study.runner import expand, run, run_reasons, status

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A project root in tmp (MTNB_ROOT): a copy of params/ without grids, a link to notebooks/,
    and a registry params/tiny.yaml whose two models point at a folder set later."""
    shutil.copytree(ROOT / "params", tmp_path / "params", ignore=shutil.ignore_patterns("grids"))
    (tmp_path / "params" / "grids").mkdir()
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")
    write_registry(tmp_path, tmp_path / "no-checkpoint")
    monkeypatch.setenv("MTNB_ROOT", str(tmp_path))
    return tmp_path


def write_registry(root: Path, checkpoint: Path) -> None:
    entries = {name: {"source": str(checkpoint), "family": "bert", "role": "lm"} for name in ("tiny", "tiny-b")}
    (root / "params" / "tiny.yaml").write_text(yaml.safe_dump({"models": entries}))


def write_grid(root: Path, name: str, **fields) -> Path:
    """params/grids/<name>.yaml: models [tiny], tasks [mini-topic], seeds [0], registry
    params/tiny.yaml, overridden by ``fields`` (a None value drops the key)."""
    doc = {"registry": "params/tiny.yaml", "models": ["tiny"], "tasks": ["mini-topic"], "seeds": [0], **fields}
    path = root / "params" / "grids" / f"{name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in doc.items() if v is not None}, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------
# Checking the grid
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, key", [
    ({"modles": ["tiny"]}, "modles: unknown key"),
    ({"models": ["tiny", "huge"]}, "models: 'huge' is not in params/tiny.yaml"),
    ({"tasks": ["mini-topic", "mini-nope"]}, "tasks: 'mini-nope' is not in params/tasks.yaml"),
    ({"zeroshot": {"languages": ["en", "ja"]}}, "zeroshot.languages: 'ja' is not a language of task mini-topic"),
    ({"finetune": {"learnig_rate": 0.1}}, "finetune.learnig_rate: not a parameter of notebooks/finetune.ipynb (it has: "),
    ({"cka": {"n_sample": 3}}, "cka.n_sample: not a parameter of notebooks/cka.ipynb"),
    ({"finetune": {"output_dir": "x"}}, "finetune.output_dir: set by the runner"),
    ({"finetune": {"learning_rate": "1e-3"}}, "finetune.learning_rate: '1e-3' is a string to YAML"),
    ({"seeds": 0}, "seeds: expected a list"),
    ({"models": "tiny"}, "models: expected a list"),
    ({"zeroshot": {"splits": "test"}}, "zeroshot.splits: expected a list"),
    ({"cka": {"models": ["tiny", "huge"]}}, "cka.models: 'huge' is not in params/tiny.yaml"),
    ({"svd": {"models": ["tiny"]}}, "svd.base: missing"),
    ({"slurm": {"partitoin": "gpu"}}, "slurm.partitoin: not a submitit parameter"),
    ({"registry": "params/nope.yaml"}, "registry: no such file"),
    ({"tasks": None}, "tasks: missing"),
    ({"pretrain": {"budget": "huge"}}, "pretrain.budget: 'huge' is not a budget; use one of smoke, mini"),
    ({"pretrain": {"member": "x"}}, "pretrain.member: set by the runner"),
    ({"pretrain": {"seeds": 0}}, "pretrain.seeds: expected a list"),
    ({"pretrain": {"seeds": [0, 0]}}, "pretrain.seeds: a seed is listed twice"),
    ({"pretrain": {"seeds": []}}, "pretrain.seeds: empty"),
    ({"pretrain": {"seed": 1, "seeds": [0, 1]}}, "pretrain.seed: give either seed or seeds"),
    ({"finetune": {"per_model": {"huge": {"mode": "probe"}}}}, "finetune.per_model.huge: not a model of this grid"),
    ({"finetune": {"per_model": {"tiny": {"mdoe": "probe"}}}}, "finetune.per_model.tiny.mdoe: not a parameter"),
    ({"zeroshot": {"per_model": {"tiny": {"max_evl": 3}}}}, "zeroshot.per_model.tiny.max_evl: not a parameter"),
    ({"finetune": {"per_task": {"mini-rank": {"probe_layer": 3}}}}, "finetune.per_task.mini-rank: not a task of this grid"),
    ({"finetune": {"per_task": {"mini-topic": {"probe_layr": 3}}}}, "finetune.per_task.mini-topic.probe_layr: not a parameter"),
    ({"zeroshot": {"per_task": ["mini-topic"]}}, "zeroshot.per_task: expected a mapping of task -> parameters"),
    ({"layer_sweep": {"layers": [0, 1]}}, "layer_sweep.model: missing"),
    ({"layer_sweep": {"model": "tiny", "tasks": ["mini-spans"]}}, "layer_sweep.tasks: 'mini-spans' is not in the grid's tasks"),
    ({"layer_sweep": {"model": "tiny", "layer": [0]}}, "layer_sweep.layer: not a parameter of notebooks/layer_sweep.ipynb"),
    ({"svd": [{"base": "tiny"}, {"models": ["tiny"]}]}, "svd[1].base: missing"),
])
def test_grid_errors_name_the_file_and_the_key(root, fields, key):
    write_grid(root, "bad", **fields)
    with pytest.raises(MtnbError) as err:
        load_grid("bad")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"params/grids/bad.yaml: {key}"), message


def test_cli_reports_a_bad_grid_in_one_line_and_runs_nothing(root, capsys):
    write_grid(root, "bad", finetune={"learnig_rate": 0.1})
    assert main(["run", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "finetune.learnig_rate" in err
    assert not (root / "runs").exists()
    assert main(["run", "no-such-grid"]) == 2
    assert "known grids: bad" in capsys.readouterr().err


def test_the_smoke_grid_is_valid(monkeypatch):
    """The study's smoke grid checks against the repository's registry (not run here)."""
    monkeypatch.delenv("MTNB_ROOT", raising=False)
    monkeypatch.chdir(ROOT)
    if not any(name.startswith("mini-") for name in load_registry()):
        pytest.skip("the mini zoo is not in params/models.yaml yet")
    for name in ("smoke", "mini-zoo", "mini-quick", "mini"):
        grid = load_grid(name)
        jobs = expand(grid)
        kinds = [job.kind for job in jobs]
        runs = sum(len(grid.replicas(m)) * len(spec["tasks"]) for spec in grid.protocols.values() for m in spec["models"])
        assert kinds.count("finetune") == kinds.count("zeroshot") == runs
        assert {"pretrain", "cka", "svd"} <= set(kinds)
        assert kinds.count("pretrain") == len(grid.zoo_members) * len(grid.pretrain_seeds)
    quick = load_grid("mini-quick")
    family = ["me5-small", "me5-mlm", "me5-m2o", "me5-o2m", "me5-m2m", "me5-align"]
    assert len(quick.seeds) >= 3 and quick.models == family and quick.book["family"] == family
    assert quick.sections["finetune"]["mode"] == "probe" and "quick look" in quick.book["note"]
    assert quick.zoo_members == ["me5-m2o", "me5-mlm", "me5-align", "me5-o2m", "me5-m2m"], \
        "the member that warms the shared decoder up first, those that load it last"
    # the default study is the verdict: both protocols, three pretraining seeds, the plan
    mini = load_grid("mini")
    assert set(mini.protocols) == {"finetune", "probe"} and mini.protocols["finetune"]["replica_seeds"] == "paired"
    assert mini.pretrain_seeds == [0, 1, 2] and mini.tasks == ["mini-topic", "ud-pos"]
    assert mini.verdict["translation"] == ["me5-m2o"] and mini.verdict["alignment"] == "me5-align"
    assert [j.kind for j in expand(mini)][-1] == "verdict"
    zoo = load_grid("mini-zoo")
    assert not any(m.startswith("me5") for m in zoo.models) and len(zoo.models) == 8
    paper = load_grid("paper")
    jobs = expand(paper)
    assert len(paper.models) == 7 and len(paper.tasks) == 8 and not paper.zoo_members
    assert [j.kind for j in jobs].count("finetune") == 56 and "pretrain" not in {j.kind for j in jobs}
    assert paper.sections["finetune"] == {"epochs": 10, "max_length": 256, "batch_size": 32}, \
        "the paper's settings; the learning rate comes from the task table"
    assert paper.sections["cka"]["n_samples"] == 80 and paper.sections["svd"][0]["base"] == "mbart"
    full = load_grid("mini-finetune")
    jobs = expand(full)
    finetune = [j for j in jobs if j.kind == "finetune"]
    assert len(finetune) == 3 + 5 * 3 * 3 and all("mode" not in j.parameters for j in finetune), \
        "the family fine-tuned whole, each member once per pretraining seed"
    assert full.pretrain_seeds == [0, 1, 2] and quick.pretrain_seeds == [0], "mini-finetune: 3 seeds; mini-quick: 1"
    assert sorted(j.parameters["member"] for j in jobs if j.kind == "pretrain") == sorted(family[1:] * 3)


def test_per_task_parameters_sit_between_the_section_and_per_model(root):
    """A task's parameters override the section's for that task's jobs only, and a model's
    override both; the zero-shot jobs take theirs the same way."""
    path = write_grid(root, "layers", models=["tiny", "tiny-b"], tasks=["mini-topic", "mini-spans"],
                      finetune={"mode": "probe", "probe_layer": -1, "max_train": 50,
                                "per_task": {"mini-spans": {"probe_layer": 2, "max_train": 20}},
                                "per_model": {"tiny-b": {"max_train": 10}}},
                      zeroshot={"max_eval": 30, "per_task": {"mini-spans": {"max_eval": 40}}})
    jobs = expand(load_grid(path))
    finetune = {(j.parameters["model"], j.parameters["task"]): j for j in jobs if j.kind == "finetune"}
    assert {key: (j.parameters["probe_layer"], j.parameters["max_train"]) for key, j in finetune.items()} == {
        ("tiny", "mini-topic"): (-1, 50), ("tiny", "mini-spans"): (2, 20),
        ("tiny-b", "mini-topic"): (-1, 10), ("tiny-b", "mini-spans"): (2, 10)}
    evals = {j.deps[0]: j.parameters["max_eval"] for j in jobs if j.kind == "zeroshot"}
    assert {key: evals[j.id] for key, j in finetune.items()} == {
        ("tiny", "mini-topic"): 30, ("tiny", "mini-spans"): 40, ("tiny-b", "mini-topic"): 30, ("tiny-b", "mini-spans"): 40}


def test_a_layer_sweep_section_makes_one_job_after_its_models_pretraining(root):
    path = write_grid(root, "sweep", registry=None, models=["me5-small", "me5-mlm"], tasks=["mini-topic", "mini-spans"],
                      layer_sweep={"model": "me5-mlm", "layers": [0, 6, 12]})
    grid = load_grid(path)
    assert grid.sections["layer_sweep"]["tasks"] == ["mini-topic", "mini-spans"], "default: the grid's tasks"
    jobs = expand(grid)
    [sweep] = [j for j in jobs if j.kind == "layer_sweep"]
    [pretrain] = [j for j in jobs if j.kind == "pretrain"]
    assert sweep.deps == [pretrain.id] and sweep.parameters["layers"] == [0, 6, 12]
    assert sweep.parameters["registry"] == "runs/sweep/models.yaml"
    assert sweep.notebook.name == "layer_sweep.ipynb"


VERDICT_PLAN = {"base": "me5-small", "control": "me5-mlm", "translation": ["me5-m2o"], "alignment": "me5-align"}


def test_a_grid_runs_both_protocols_with_paired_replica_seeds(root):
    path = write_grid(root, "both", registry=None, models=["me5-small", "me5-mlm", "me5-m2o", "me5-align"],
                      tasks=["mini-topic", "mini-spans"], seeds=[0, 1, 2], pretrain={"budget": "smoke", "seeds": [0, 1, 2]},
                      finetune={"replica_seeds": "paired", "tasks": ["mini-topic"], "max_train": 64},
                      probe={"max_train": 32, "models": ["me5-small", "me5-mlm"], "per_task": {"mini-spans": {"probe_layer": 6}}},
                      verdict=VERDICT_PLAN)
    grid = load_grid(path)
    jobs = [j for j in expand(grid) if j.kind == "finetune"]
    tuned = {j.parameters["model"]: j.parameters for j in jobs if j.parameters.get("mode") != "probe"}
    probed = {(j.parameters["model"], j.parameters["task"]): j.parameters for j in jobs if j.parameters.get("mode") == "probe"}
    assert tuned["me5-small"]["seeds"] == [0, 1, 2], "the base has no replicas: every seed"
    assert [tuned[f"me5-m2o@p{k}"]["seeds"] for k in (0, 1, 2)] == [[0], [1], [2]], "replica k, seed k"
    assert {p["task"] for p in tuned.values()} == {"mini-topic"} and len(tuned) == 1 + 3 * 3
    assert {m for m, _ in probed} == {"me5-small", "me5-mlm@p0", "me5-mlm@p1", "me5-mlm@p2"}
    assert all(p["seeds"] == [0, 1, 2] and p["max_train"] == 32 for p in probed.values())
    assert probed[("me5-small", "mini-spans")]["probe_layer"] == 6 and "probe_layer" not in probed[("me5-small", "mini-topic")]
    assert sum(j.kind == "zeroshot" for j in expand(grid)) == len(jobs)
    verdict = expand(grid)[-1]
    assert verdict.kind == "verdict" and verdict.parameters["base"] == "me5-small"
    compared = [j for j in expand(grid) if j.kind == "zeroshot"]
    assert set(verdict.deps) == {j.id for j in compared} and len(verdict.paths["zeroshot_dirs"]) == len(compared)
    assert verdict_pairs(grid.verdict) == [
        ("me5-mlm", "me5-small", "member − base"), ("me5-m2o", "me5-small", "member − base"),
        ("me5-align", "me5-small", "member − base"), ("me5-m2o", "me5-mlm", "translation − masked LM"),
        ("me5-align", "me5-mlm", "alignment − masked LM"), ("me5-align", "me5-m2o", "alignment − translation")]
    assert grid.verdict["alpha"] == 0.05 and grid.verdict["tasks"] == ["mini-topic", "mini-spans"]


@pytest.mark.parametrize("fields, message", [
    ({"probe": {"mode": "finetune"}}, "probe.mode: 'finetune'"),
    ({"probe": {"models": ["tiny", "nope"]}}, "probe.models: 'nope' is not in the grid's models"),
    ({"finetune": {"replica_seeds": "some"}}, "finetune.replica_seeds: 'some'; use all or paired"),
    ({"verdict": {"control": "tiny"}}, "verdict.base: missing"),
    ({"verdict": {"base": "tiny", "translation": ["huge"]}}, "verdict: 'huge' is not in the grid's models"),
    ({"verdict": {"base": "tiny", "n_boot": 2000}}, "verdict.n_boot: 2000; give at least 10000 draws"),
    ({"verdict": {"base": "tiny", "alfa": 0.05}}, "verdict.alfa: unknown key"),
])
def test_protocol_and_verdict_sections_are_checked(root, fields, message):
    path = write_grid(root, "bad", **fields)
    with pytest.raises(MtnbError, match=re.escape(message)):
        load_grid(path)


def test_zoo_members_are_pretrained_by_the_grid_before_their_users(root):
    """Members the grid names get pretrain jobs, with the members they start from; every job
    using one waits for it; the grid's registry points them at the jobs' folders."""
    path = write_grid(root, "zoo", registry=None, models=["mini-mbart-m2o", "mini-random", "me5-o2m"],
                      pretrain={"budget": "smoke"}, svd={"base": "mini-mbart", "models": ["mini-mbart-m2o"]},
                      finetune={"per_model": {"me5-o2m": {"mode": "probe"}}},
                      zeroshot={"max_eval": 30, "per_model": {"me5-o2m": {"max_eval": 10}}})
    grid = load_grid(path)
    assert grid.zoo_members == ["mini-mbart", "mini-mbart-m2o", "mini-xlmr", "mini-random", "me5-o2m"]
    jobs = expand(grid)
    pre = {job.parameters["member"]: job for job in jobs if job.kind == "pretrain"}
    assert list(pre) == grid.zoo_members and all(j.parameters["budget"] == "smoke" for j in pre.values())
    assert pre["mini-mbart-m2o"].deps == [pre["mini-mbart"].id]
    assert pre["mini-mbart-m2o"].paths["base_dir"] == pre["mini-mbart"].paths["output_dir"]
    assert pre["mini-random"].deps == [pre["mini-xlmr"].id] and pre["me5-o2m"].deps == []
    finetune = {job.parameters["model"]: job for job in jobs if job.kind == "finetune"}
    assert finetune["mini-mbart-m2o"].deps == [pre["mini-mbart-m2o"].id]
    assert finetune["me5-o2m"].parameters["mode"] == "probe" and "mode" not in finetune["mini-random"].parameters
    evals = {job.deps[0]: job.parameters["max_eval"] for job in jobs if job.kind == "zeroshot"}
    assert evals[finetune["me5-o2m"].id] == 10 and evals[finetune["mini-random"].id] == 30
    svd = next(job for job in jobs if job.kind == "svd")
    assert set(svd.deps) == {pre["mini-mbart"].id, pre["mini-mbart-m2o"].id}
    assert {job.parameters["registry"] for job in jobs if "registry" in job.parameters} == {"runs/zoo/models.yaml"}

    from mtnb.study.runner import pretrain_jobs, write_grid_registry

    written = load_registry(write_grid_registry(grid, pretrain_jobs(grid)))
    for member, job in pre.items():
        assert root / written[member].source == Path(job.paths["output_dir"]) / member
    assert written["me5-small"].source == "runs/models/me5-small" and written["me5-o2m"].inputs == "e5"
    pre_budget = pre["mini-mbart"].id
    write_grid(root, "zoo", registry=None, models=["mini-mbart-m2o", "mini-random", "me5-o2m"],
               pretrain={"budget": "mini"}, svd={"base": "mini-mbart", "models": ["mini-mbart-m2o"]})
    again = {job.parameters["member"]: job for job in expand(load_grid(path)) if job.kind == "pretrain"}
    assert again["mini-mbart"].id != pre_budget, "another budget is another job (its own folder)"


def test_pretraining_seeds_train_one_replica_per_seed_and_each_is_fine_tuned(root):
    """pretrain.seeds: [0, 3] trains every member twice (a continued member from its base's
    replica of the same seed), fine-tunes both replicas, registers both and keeps the member's
    own name on seed 0's checkpoint (for CKA and SVD); one seed leaves names and job ids as they
    were without the key."""
    from mtnb.study.runner import pretrain_jobs, write_grid_registry

    fields = dict(registry=None, models=["me5-small", "mini-mbart-m2o"], svd={"base": "mini-mbart",
                  "models": ["mini-mbart-m2o"]})
    path = write_grid(root, "seeds", pretrain={"budget": "smoke", "seeds": [0, 3]}, **fields)
    grid = load_grid(path)
    assert grid.pretrain_seeds == [0, 3] and grid.replicas("me5-small") == ["me5-small"]
    assert grid.replicas("mini-mbart-m2o") == ["mini-mbart-m2o@p0", "mini-mbart-m2o@p3"]
    jobs = expand(grid)
    pre = pretrain_jobs(grid)
    assert sorted(pre) == ["mini-mbart-m2o@p0", "mini-mbart-m2o@p3", "mini-mbart@p0", "mini-mbart@p3"]
    assert pre["mini-mbart-m2o@p3"].parameters["seed"] == 3 and "seed" not in pre["mini-mbart-m2o@p0"].parameters
    assert pre["mini-mbart-m2o@p3"].deps == [pre["mini-mbart@p3"].id]
    assert pre["mini-mbart-m2o@p3"].paths["base_dir"] == pre["mini-mbart@p3"].paths["output_dir"]
    finetuned = sorted(job.parameters["model"] for job in jobs if job.kind == "finetune")
    assert finetuned == ["me5-small", "mini-mbart-m2o@p0", "mini-mbart-m2o@p3"]
    svd = next(job for job in jobs if job.kind == "svd")
    assert set(svd.deps) == {pre["mini-mbart@p0"].id, pre["mini-mbart-m2o@p0"].id}
    written = load_registry(write_grid_registry(grid, pre))
    for name, job in pre.items():
        assert root / written[name].source == Path(job.paths["output_dir"]) / job.parameters["member"]
    assert written["mini-mbart-m2o"].source == written["mini-mbart-m2o@p0"].source
    assert "pretraining seed 3" in written["mini-mbart-m2o@p3"].note

    write_grid(root, "seeds", pretrain={"budget": "smoke", "seeds": [0]}, **fields)
    single = expand(load_grid(path))
    write_grid(root, "seeds", pretrain={"budget": "smoke"}, **fields)
    assert [j.id for j in single] == [j.id for j in expand(load_grid(path))]
    assert sorted(j.parameters["model"] for j in single if j.kind == "finetune") == ["me5-small", "mini-mbart-m2o"]


# --------------------------------------------------------------------------------------------
# Jobs, ids and the dry run
# --------------------------------------------------------------------------------------------

def test_dry_run_lists_every_job_with_its_deps_and_runs_nothing(root, capsys):
    write_grid(root, "dry", models=["tiny", "tiny-b"], seeds=[0, 1], cka={"n_samples": 4},
               svd={"base": "tiny"})
    # the registry's folders hold no checkpoint yet: the dry run lists the jobs, then its preflight says so
    assert main(["run", "dry", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "checkpoint folder(s) without a checkpoint: tiny" in captured.err and captured.err.count("\n") == 1
    lines = captured.out.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("6 jobs"))
    rows = [line.split() for line in lines[2:end]]
    # one finetune job per (model, task) trains both seeds; one zeroshot job after each
    assert [r[0] for r in rows].count("finetune") == 2 and [r[0] for r in rows].count("zeroshot") == 2
    assert len(rows) == 6 and lines[end].startswith("6 jobs (2 finetune, 2 zeroshot, 1 cka, 1 svd)")
    assert lines[end + 1].startswith("sizing") and "mini-topic" in lines[end + 2]
    assert all("seeds=[0, 1]" in line for line in lines[2:end] if line.startswith("finetune"))
    finetune_ids = {r[1] for r in rows if r[0] == "finetune"}
    assert {r[3] for r in rows if r[0] == "zeroshot"} == finetune_ids, "each zeroshot needs its own finetune"
    assert all(r[2] == "pending" for r in rows)
    assert not (root / "runs").exists()


def finish(job) -> None:
    """Make ``job`` look finished, as a real run leaves it: job.json as the runner writes it, and
    done.json with the code the job ran."""
    job.folder.mkdir(parents=True, exist_ok=True)
    (job.folder / "job.json").write_text(json.dumps({"kind": job.kind, "id": job.id, "parameters": job.notebook_parameters(),
                                                     "deps": job.deps, "code": job.code}))
    (job.folder / "done.json").write_text(json.dumps({"status": "done", "finished": "2026-01-01T00:00:00",
                                                      "code": job.code}))


@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the mtnb package that the job ids read (``code_version.PACKAGE_DIR``), to edit."""
    copy = tmp_path / "package" / "mtnb"
    shutil.copytree(ROOT / "mtnb", copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(code_version, "PACKAGE_DIR", copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


ANALYSIS_GRID = dict(finetune={"max_steps": 3}, cka={"models": ["tiny", "tiny-b"], "n_samples": 4},
                     svd={"base": "tiny", "models": ["tiny-b"]})


def test_job_ids_follow_the_code_each_job_runs(root, package_copy):
    path = write_grid(root, "code", **ANALYSIS_GRID)
    before = {job.kind: job.id for job in expand(load_grid(path))}
    assert set(before) == {"finetune", "zeroshot", "cka", "svd"}
    cka = package_copy / "analysis" / "cka.py"
    edit(cka, "    return float(", "    return 1.0 * float(")           # a function body in the CKA notebook's closure
    after = {job.kind: job.id for job in expand(load_grid(path))}
    assert [k for k in before if after[k] != before[k]] == ["cka"], (before, after)
    shutil.copyfile(ROOT / "mtnb" / "analysis" / "cka.py", cka)
    assert {job.kind: job.id for job in expand(load_grid(path))} == before, "reverted: the ids come back"
    # a docstring and a comment change no id, not even in the modules every notebook runs
    for module in ("pretraining/e5_family.py", "core/errors.py"):
        text = (package_copy / module).read_text()
        head, sep, rest = text.partition('"""')
        (package_copy / module).write_text(head + sep + "Reworded. " + rest.replace("\n", "  # a comment\n", 1))
    assert {job.kind: job.id for job in expand(load_grid(path))} == before
    # a body edit in a module every notebook imports changes every id
    edit(package_copy / "core" / "errors.py", "class MtnbError(Exception):", "class MtnbError(ValueError):")
    after = {job.kind: job.id for job in expand(load_grid(path))}
    assert all(after[k] != before[k] for k in before)


def test_a_rebuilt_data_set_makes_new_jobs_of_the_jobs_that_read_it(root):
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "manifest.json").write_text(json.dumps({"files": {"mini-topic/train.en.parquet": "aaaa"}}))
    path = write_grid(root, "data", mini_root=str(corpus), **ANALYSIS_GRID)
    before = {job.kind: job for job in expand(load_grid(path))}
    assert before["finetune"].code["data"] == {"mini": runner.manifest_hash(corpus)}
    assert before["svd"].code["data"] == {}, "SVD reads weights only"
    (corpus / "manifest.json").write_text(json.dumps({"files": {"mini-topic/train.en.parquet": "bbbb"},
                                                      "built": "another day"}))
    after = {job.kind: job.id for job in expand(load_grid(path))}
    assert {k for k in before if after[k] != before[k].id} == {"finetune", "zeroshot", "cka"}
    finish(before["finetune"])
    job = next(j for j in expand(load_grid(path)) if j.kind == "finetune")
    assert runner.why_rerun(job, json.loads((before["finetune"].folder / "job.json").read_text())) == "data: mini"


def test_the_closure_follows_imports_anywhere_and_only_mtnb(tmp_path):
    package = tmp_path / "mtnb"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "a.py").write_text("import json\nfrom mtnb.sub import b\ndef f():\n    return b.g()\n")
    (package / "sub" / "b.py").write_text("def g():\n    from mtnb import c\n    return c.X\n")
    (package / "c.py").write_text('"""Doc."""\nX = 1  # one\n')
    (package / "d.py").write_text("Y = 2\n")
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n",
                                                                                 "from mtnb.sub.a import f\n"]},
                                              {"cell_type": "markdown", "source": "import mtnb.d"}]}))
    assert code_version.notebook_closure(notebook, package) == ["mtnb", "mtnb.c", "mtnb.sub", "mtnb.sub.a", "mtnb.sub.b"]
    hashes = code_version.module_hashes(notebook, package)
    (package / "c.py").write_text('"""Another doc."""\n\n\nX = 1    # another comment\n')
    assert code_version.module_hashes(notebook, package) == hashes
    (package / "c.py").write_text('X = 2\n')
    assert code_version.changed_modules(hashes, code_version.module_hashes(notebook, package)) == ["mtnb.c"]
    (package / "d.py").write_text("Y = 3\n")
    assert code_version.changed_modules(hashes, code_version.module_hashes(notebook, package)) == ["mtnb.c"]


def test_dry_run_says_why_each_job_runs(root, package_copy, capsys):
    path = write_grid(root, "why", **ANALYSIS_GRID)
    jobs = expand(load_grid(path))
    reasons = run_reasons(load_grid(path), jobs)
    assert set(reasons.values()) == {"new"}
    for job in jobs:
        finish(job)
    assert set(run_reasons(load_grid(path), expand(load_grid(path))).values()) == {"done"}
    edit(package_copy / "analysis" / "cka.py", "    return float(", "    return 1.0 * float(")
    write_grid(root, "why", **{**ANALYSIS_GRID, "finetune": {"max_steps": 4}})
    jobs = expand(load_grid(path))
    reasons = {job.kind: run_reasons(load_grid(path), jobs)[job.id] for job in jobs}
    assert reasons == {"finetune": "parameters: max_steps", "zeroshot": "a dependency",
                       "cka": "code: mtnb.analysis.cka", "svd": "done"}, reasons
    # the dry run prints them (before its preflight stops on the missing checkpoint)
    assert main(["run", "why", "--dry-run"]) == 2
    out = capsys.readouterr().out
    assert "code: mtnb.analysis.cka" in out and "parameters: max_steps" in out


def test_reuse_finished_keeps_older_results_and_a_plain_run_drops_them(root, package_copy, capsys):
    path = write_grid(root, "reuse", **ANALYSIS_GRID)
    old = expand(load_grid(path))
    for job in old:
        finish(job)
    edit(package_copy / "analysis" / "cka.py", "    return float(", "    return 1.0 * float(")
    edit(package_copy / "transfer" / "probe.py", "import numpy as np", "import numpy as np\nEDITED = True")
    grid = load_grid(path)
    changed = {job.id for job, new in zip(old, expand(grid)) if new.id != job.id}
    assert {job.kind for job in old if job.id in changed} >= {"cka", "finetune", "zeroshot"}
    kept = runner.keep_finished(grid)
    assert set(kept.values()) == changed
    now = expand(grid)
    assert [j.id for j in now] == [j.id for j in old], "the finished jobs stand in for the new ones"
    assert all((j.folder / "done.json").is_file() for j in now)
    assert run_reasons(grid, now)[now[2].id] == "reused (other code)"
    assert "are kept (--reuse-finished)" in runner.reused_note(grid, now)
    # the book marks them with the modules that differ
    from mtnb.study.book.collect import collect

    study = collect(path)
    cka = next(j for j in now if j.kind == "cka")
    finetune = next(j for j in now if j.kind == "finetune")
    assert study.other_code[cka.id].startswith("modules mtnb.analysis.cka")
    assert "mtnb.transfer.probe" in study.other_code[finetune.id] and "cka" not in study.other_code[finetune.id]
    assert set(study.other_code) == set(kept.values())
    # a run without the flag drops them, before it runs anything
    assert runner.drop_reused(grid) == len(changed)
    assert f"dropping the {len(changed)} finished job(s)" in capsys.readouterr().out
    assert [j.id for j in expand(grid)] != [j.id for j in old]
    assert all((j.folder / "done.json").is_file() for j in old), "nothing computed is lost"


def test_job_ids_are_stable_and_follow_parameters_and_deps(root):
    path = write_grid(root, "ids", seeds=[0, 1], finetune={"max_steps": 3}, zeroshot={"max_eval": 8},
                      svd={"base": "tiny", "models": ["tiny-b"]})
    first = expand(load_grid(path))
    again = expand(load_grid(path))
    assert [j.id for j in first] == [j.id for j in again]
    assert len({j.id for j in first}) == len(first) == 3
    finetune, zeroshot, svd = first[0], first[1], first[-1]
    assert finetune.folder == root / "runs" / "ids" / "finetune" / finetune.id
    assert zeroshot.deps == [finetune.id]
    assert zeroshot.notebook_parameters()["run_dir"] == finetune.notebook_parameters()["output_dir"]
    assert Path(zeroshot.notebook_parameters()["output_dir"]).parent == zeroshot.folder

    write_grid(root, "ids", seeds=[0, 1], finetune={"max_steps": 4}, zeroshot={"max_eval": 8},
               svd={"base": "tiny", "models": ["tiny-b"]})
    changed = expand(load_grid(path))
    assert changed[0].id != finetune.id, "a finetune parameter changes the finetune id"
    assert changed[1].id != zeroshot.id, "and the id of the zeroshot job that depends on it"
    assert changed[-1].id == svd.id, "but not an unrelated job's"
    write_grid(root, "ids", seeds=[0, 1], finetune={"max_steps": 3}, zeroshot={"max_eval": 9},
               svd={"base": "tiny", "models": ["tiny-b"]})
    changed = expand(load_grid(path))
    assert changed[0].id == finetune.id and changed[1].id != zeroshot.id
    write_grid(root, "ids", seeds=[0], finetune={"max_steps": 3}, zeroshot={"max_eval": 8},
               svd={"base": "tiny", "models": ["tiny-b"]})
    changed = expand(load_grid(path))
    assert changed[0].id != finetune.id and changed[0].parameters["seeds"] == [0], "the seeds are the job's"


def test_job_ids_survive_running_and_saving_a_notebook_in_jupyter(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    shutil.copytree(ROOT / "params", tmp_path / "params")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    monkeypatch.setenv("MTNB_ROOT", str(tmp_path))
    before = [(job.kind, job.id) for job in expand(load_grid("smoke"))]
    path = tmp_path / "notebooks" / "svd.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=600,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()   # as a researcher runs it
    nbformat.write(nb, path)                                                      # and saves it
    saved = json.loads(path.read_text())
    assert any(cell.get("outputs") for cell in saved["cells"] if cell["cell_type"] == "code"), "it ran"
    assert [(job.kind, job.id) for job in expand(load_grid("smoke"))] == before
    code = next(cell for cell in nb.cells if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []))
    code.source += "\nprint('an edit')"
    nbformat.write(nb, path)
    after = [(job.kind, job.id) for job in expand(load_grid("smoke"))]
    changed = {kind for (kind, old), (_, new) in zip(before, after) if old != new}
    assert changed == {"svd"}, "an edit of a notebook's code makes new jobs of that notebook only"


def test_committed_notebooks_carry_no_outputs():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


def test_a_jobs_process_imports_papermill_and_none_of_the_studys_heavy_modules():
    """Every job pays its process's imports: unpickling ``execute_job`` (as submitit does, in a
    fresh interpreter) and importing papermill must not load torch, transformers, datasets or
    the runner, nor jsonschema's IRI checker."""
    from mtnb.study.runner import execute_job

    probe = ("import pickle, sys\n"
             "job = pickle.loads(sys.stdin.buffer.read())\n"
             "sys.modules[job.__module__].import_papermill()\n"
             "print(job.__module__, *sorted(name for name, module in sys.modules.items() if module))\n")
    out = subprocess.run([sys.executable, "-c", probe], input=pickle.dumps(execute_job), capture_output=True,
                         cwd=ROOT, check=True)
    module, *loaded = out.stdout.decode().split()
    assert module == "mtnb.study.job_process"
    assert "papermill" in loaded and "jsonschema" in loaded
    for heavy in ("torch", "transformers", "datasets", "evaluate", "matplotlib", "mtnb.study.runner",
                  "mtnb.study.grids", "rfc3987_syntax", "lark"):
        assert heavy not in loaded, heavy


def test_a_jobs_kernel_is_killed_after_its_last_cell_so_nothing_may_wait_on_its_exit(tmp_path):
    """``execute_job`` stops the kernel at once: an exit handler registered in a cell never runs,
    while the files the cells wrote, the executed notebook and done.json are all there."""
    import nbformat

    from mtnb.study.job_process import execute_job

    marker, written = tmp_path / "at-exit.txt", tmp_path / "in-cell.txt"
    cells = [nbformat.v4.new_code_cell("path = ''", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell(f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
                                       "with open(path, 'w') as f:\n    f.write('done')")]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"},
        "language_info": {"name": "python"}})
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "job.json").write_text("{}")
    record = execute_job(str(folder), str(tmp_path / "probe.ipynb"), "probe", {"path": str(written)},
                         str(tmp_path), {}, time.time())
    assert record["status"] == "done", record.get("traceback")
    assert json.loads((folder / "done.json").read_text())["import_seconds"] >= 0
    assert (folder / "probe.ipynb").is_file() and written.read_text() == "done"
    time.sleep(1.0)
    assert not marker.exists(), "the kernel exited normally: its exit handlers ran"


def test_no_notebook_leaves_work_to_its_kernels_exit():
    """What the immediate kill above relies on: the notebooks start no threads, processes or exit
    handlers, and no mtnb module registers one."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join(notebook_cells(path))
        for word in ("atexit", "threading", "multiprocessing", "subprocess", "Popen", "num_workers"):
            assert word not in code, f"{path.name} uses {word}"
    for path in sorted((ROOT / "mtnb").rglob("*.py")):
        assert "atexit" not in path.read_text(), path

# --------------------------------------------------------------------------------------------
# Real runs of a tiny grid
# --------------------------------------------------------------------------------------------

TINY_FINETUNE = {"learning_rate": 1.0e-3, "epochs": 1, "max_train": 32, "max_dev": 16, "max_length": 32,
                 "batch_size": 16, "max_steps": 3}


@pytest.fixture
def tiny_root(root, tiny_checkpoint) -> Path:
    """The tmp project root with params/tiny.yaml naming the tiny BERT (twice)."""
    write_registry(root, tiny_checkpoint)
    return root


def tiny_grid(root: Path, name: str, **fields) -> Path:
    return write_grid(root, name, finetune=TINY_FINETUNE, zeroshot={"max_eval": 16}, **fields)


def done_mtimes(root: Path, grid: str) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in (root / "runs" / grid).glob("*/*/done.json")}


def test_run_executes_the_grid_then_skips_what_is_done(tiny_root, real_corpus, capsys):
    path = tiny_grid(tiny_root, "e2e", mini_root=str(real_corpus))
    assert run(path) == 0
    out = capsys.readouterr().out
    finetune, zeroshot = expand(load_grid(path))
    for job in (finetune, zeroshot):
        record = json.loads((job.folder / "done.json").read_text())
        assert record["status"] == "done" and record["seconds"] > record["startup_seconds"] > 0
        assert (job.folder / f"{job.kind}.ipynb").is_file()
        assert record["torch"] == torch.__version__ and record["transformers"] == transformers.__version__
        assert record["omp_num_threads"] == os.environ.get("OMP_NUM_THREADS") and record["cpus"] == os.cpu_count()
        assert record["code"]["modules"] == job.code["modules"] and record["code"]["notebook"] == job.code["notebook"]
        assert record["git"].keys() <= {"commit", "dirty"} and "flags:" in record["machine"]["text"]
    assert (finetune.folder / "out" / "seed-0" / "model.safetensors").is_file()
    results = pd.read_csv(zeroshot.folder / "out" / "results.csv")
    assert set(results.language) == {"en", "de", "es", "fr", "ru"}
    assert "papermill wall time: total" in out and "2 done, 0 skipped" in out
    assert [row["status"] for row in status(path)] == ["done", "done"]

    before = done_mtimes(tiny_root, "e2e")
    assert run(path) == 0
    out = capsys.readouterr().out
    assert "2 jobs: 2 already done (skipped), 0 to run" in out and "0 done, 2 skipped" in out
    assert done_mtimes(tiny_root, "e2e") == before


def test_the_smoke_grid_runs_end_to_end(smoke_grid_run, monkeypatch, capsys):
    """params/grids/smoke.yaml as committed, run by ``mtnb run smoke --jobs 2`` (the session's
    fixture): every job done, the zoo members trained by its pretrain jobs and registered from
    their folders, results in five languages for every (model, task), ``mtnb status`` all done."""
    monkeypatch.setenv("MTNB_ROOT", str(smoke_grid_run.root))
    runs = smoke_grid_run.runs.resolve()
    assert (ROOT / "params" / "grids" / "smoke.yaml").read_text() == \
        (smoke_grid_run.root / "params" / "grids" / "smoke.yaml").read_text(), "the committed grid, unchanged"
    grid = load_grid("smoke")
    jobs = expand(grid)
    assert {job.folder for job in jobs} == {p.parent for p in runs.glob("*/*/job.json")}
    assert all((job.folder / "done.json").is_file() and (job.folder / f"{job.kind}.ipynb").is_file() for job in jobs)
    assert f"{grid.name}: {len(jobs)} done, 0 skipped (already done), 0 failed, 0 blocked" in smoke_grid_run.output

    pretrain = {job.parameters["member"]: job for job in jobs if job.kind == "pretrain"}
    assert list(pretrain) == ["mini-xlmr", "mini-random"]
    registry = load_registry(runs / "models.yaml")
    for member, job in pretrain.items():
        folder = runs.parent.parent / registry[member].source
        assert folder == job.folder / "out" / member and (folder / "config.json").is_file()
    users = [job for job in jobs if job.kind in ("finetune", "cka", "svd")]
    assert {job.parameters["registry"] for job in users} == {"runs/smoke/models.yaml"}

    finetune = [job for job in jobs if job.kind == "finetune"]
    modes = {(j.parameters["model"], j.parameters.get("mode", "finetune")) for j in finetune}
    assert modes == {("mini-xlmr", "finetune"), ("mini-random", "probe")}
    results = pd.concat([pd.read_csv(p) for p in runs.glob("zeroshot/*/out/**/results.csv")], ignore_index=True)
    assert len(list(runs.glob("zeroshot/*/out/**/results.csv"))) == len(grid.models) * len(grid.tasks)
    for (model, task), table in results[results.system == "model"].groupby(["model", "task"]):
        assert set(table.language) == {"en", "de", "es", "fr", "ru"}, (model, task)
    assert set(results[results.system == "model"].groupby(["model", "task"]).groups) == \
        {(m, t) for m in grid.models for t in grid.tasks}
    assert (runs / "cka" / next(j.id for j in jobs if j.kind == "cka") / "out" / "cka_model_pairs.csv").is_file()
    assert (runs / "svd" / next(j.id for j in jobs if j.kind == "svd") / "out" / "svd.csv").is_file()

    out = smoke_grid_run.mtnb("status", "smoke")
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == f"{len(jobs)} jobs: {len(jobs)} done", out.stdout
    records = [json.loads((job.folder / "done.json").read_text()) for job in jobs]
    assert {r["omp_num_threads"] for r in records} == {smoke_grid_run.threads}
    assert all(r["code"] == {**job.code} and r["torch"] == torch.__version__ for r, job in zip(records, jobs))
    with capsys.disabled():
        print(f"\nsmoke grid: {len(jobs)} jobs run end to end in {smoke_grid_run.seconds:.0f} s "
              f"(papermill time {sum(r['seconds'] for r in records):.0f} s)")


def test_a_killed_run_resumes_with_only_the_unfinished_jobs(tiny_root, real_corpus, capsys):
    path = tiny_grid(tiny_root, "kill", mini_root=str(real_corpus), models=["tiny", "tiny-b"])
    runs = tiny_root / "runs" / "kill"
    with open(tiny_root / "runner.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mtnb.cli", "run", str(path)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first = wait_for(lambda: next(iter(runs.glob("*/*/done.json")), None), 300, tiny_root)
        # the runner starts the next job: kill everything while it runs
        half = wait_for(lambda: next((f for f in runs.glob("*/*") if f.name != first.parent.name
                                      and (f / "job.json").is_file()), None), 60, tiny_root)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (half / "done.json").exists(), "a killed job never looks done"
    finished = first.stat().st_mtime_ns

    assert run(path) == 0
    assert "4 jobs: 1 already done (skipped), 3 to run" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == finished, "the finished job was not run again"
    assert (half / "done.json").is_file()
    assert [row["status"] for row in status(path)] == ["done"] * 4


def wait_for(probe, timeout: float, root: Path):
    """The first true value of ``probe()``, polled until ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    log = (root / "runner.log").read_text() if (root / "runner.log").is_file() else ""
    raise AssertionError(f"timed out; runner output:\n{log[-3000:]}")


def test_a_failing_job_is_recorded_and_the_others_go_on(tiny_root, capsys):
    # pooling 'bogus' passes the grid check (any value) and fails inside the notebook
    path = write_grid(tiny_root, "fail", finetune={**TINY_FINETUNE, "pooling": "bogus"},
                      svd={"base": "tiny", "models": ["tiny-b"]})
    assert run(path, jobs=1) == 1
    out = capsys.readouterr().out
    finetune, zeroshot, svd = expand(load_grid(path))
    failed = json.loads((finetune.folder / "failed.json").read_text())
    assert failed["error"].startswith("MtnbError: unknown pooling 'bogus'")
    assert "unknown pooling" in failed["traceback"] and not (finetune.folder / "done.json").exists()
    assert (finetune.folder / "finetune.ipynb").is_file()
    assert not zeroshot.folder.exists(), "a job whose dependency failed never starts"
    done = json.loads((svd.folder / "done.json").read_text())
    assert (svd.folder / "out" / "svd.csv").is_file()
    assert datetime.fromisoformat(done["started"]) >= datetime.fromisoformat(failed["finished"]), \
        "--jobs 1: the second job starts after the first ended"
    assert "1 done, 0 skipped (already done), 1 failed, 1 blocked" in out

    rows = {row["kind"]: row for row in status(path)}
    assert rows["finetune"]["status"] == "failed" and "unknown pooling" in rows["finetune"]["note"]
    assert rows["zeroshot"]["status"] == "blocked" and rows["svd"]["status"] == "done"
    assert main(["status", "fail"]) == 0
    printed = capsys.readouterr().out
    assert "failed" in printed and "blocked" in printed and "3 jobs: 1 failed, 1 blocked, 1 done" in printed


def test_jobs_that_outlive_their_runner_are_shown_running_and_left_alone(tiny_root):
    path = write_grid(tiny_root, "orphan", finetune={**TINY_FINETUNE, "pooling": "bogus"})
    finetune = expand(load_grid(path))[0]
    with open(tiny_root / "runner.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mtnb.cli", "run", str(path)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: status(path)[0]["status"] == "running", 120, tiny_root)
        os.kill(proc.pid, signal.SIGKILL)  # the runner alone: its job process goes on
        proc.wait()
        with pytest.raises(MtnbError, match="still run from an earlier 'mtnb run'"):
            run(path)
        wait_for(lambda: (finetune.folder / "failed.json").is_file(), 120, tiny_root)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert [row["status"] for row in status(path)] == ["failed", "blocked"]
