"""``mtnb compare``: two runs of a grid matched job by job through their parameters, not their ids."""

import json
import subprocess
import sys
from pathlib import Path

from mtnb.study.compare import compare_runs

ROOT = Path(__file__).resolve().parent.parent


def write_job(grid: Path, kind: str, job_id: str, parameters: dict, files: dict[str, str]) -> Path:
    folder = grid / kind / job_id
    (folder / "out").mkdir(parents=True)
    params = {**parameters, "output_dir": str(folder / "out")}
    (folder / "job.json").write_text(json.dumps({"kind": kind, "id": job_id, "parameters": params}))
    for name, text in files.items():
        (folder / "out" / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / "out" / name).write_text(text)
    return folder


def write_grid(root: Path, ids: tuple[str, str], score: str = "0.5", loss: float = 1.0) -> Path:
    """A two-job run folder: a fine-tuning job and the zero-shot job that reads its output by path."""
    grid = root / "runs" / "g"
    write_job(grid, "finetune", ids[0], {"model": "m", "task": "t", "seeds": [0]},
              {"seed-0/curve.json": json.dumps({"loss": [loss], "seconds": float(len(root.name))})})
    write_job(grid, "zeroshot", ids[1], {"run_dir": f"{grid}/finetune/{ids[0]}/out", "max_eval": 10},
              {"results.csv": f"language,value\nen,0.9\nde,{score}\n"})
    return grid


def test_runs_with_other_job_ids_and_timings_but_the_same_results_are_identical(tmp_path):
    a = write_grid(tmp_path / "a", ("aaaaaaaaaaaa", "bbbbbbbbbbbb"))
    b = write_grid(tmp_path / "bee", ("cccccccccccc", "dddddddddddd"))
    result = compare_runs(a, b)
    assert result.identical, result.differences
    assert (result.jobs, result.files) == (2, 2)


def test_a_changed_cell_a_changed_curve_and_a_missing_job_are_each_named(tmp_path):
    a = write_grid(tmp_path / "a", ("aaaaaaaaaaaa", "bbbbbbbbbbbb"))
    b = write_grid(tmp_path / "b", ("cccccccccccc", "dddddddddddd"), score="0.6", loss=2.0)
    write_job(a, "svd", "eeeeeeeeeeee", {"base": "m"}, {"svd.csv": "x\n1\n"})
    result = compare_runs(a, b)
    assert any("results.csv: 1 of 3 lines differ, first line 3: 'de,0.5' against 'de,0.6'" in d
               for d in result.differences), result.differences
    assert any("curve.json: loss differ" in d for d in result.differences), result.differences
    assert any(d.startswith("svd m (eeeeeeeeeeee): no such job") for d in result.differences), result.differences
    assert len(result.differences) == 3


def test_the_command_exits_1_on_a_difference_and_2_on_a_folder_without_jobs(tmp_path):
    a = write_grid(tmp_path / "a", ("aaaaaaaaaaaa", "bbbbbbbbbbbb"))
    b = write_grid(tmp_path / "b", ("cccccccccccc", "dddddddddddd"), score="0.7")
    run = [sys.executable, "-m", "mtnb.cli", "compare"]
    same = subprocess.run([*run, str(a), str(a)], capture_output=True, text=True, cwd=ROOT)
    assert same.returncode == 0 and "2 jobs matched, 2 result files compared: identical" in same.stdout
    differ = subprocess.run([*run, str(a), str(b)], capture_output=True, text=True, cwd=ROOT)
    assert differ.returncode == 1 and "1 difference\n" in differ.stdout
    empty = subprocess.run([*run, str(a), str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert empty.returncode == 2 and "holds no job folders" in empty.stderr
