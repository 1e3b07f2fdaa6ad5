"""The repository's set-up: layout, README commands, CI script, conda environment."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def readme_test_command() -> str:
    """The command in the fenced block right after ``<!-- test-command -->`` in the README."""
    text = (ROOT / "README.md").read_text()
    after = text.split("<!-- test-command -->", 1)[1]
    block = re.search(r"```bash\n(.*?)\n```", after, re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert len(lines) == 1, "the README's test command is one line"
    return lines[0].strip()


def test_layout():
    for name in ("book", "notebooks", "mtnb", "params", "tests", "_config.yml", "_toc.yml",
                 "environment.yml", "README.md", "pyproject.toml", ".ci/run"):
        assert (ROOT / name).exists(), name


def test_ci_runs_the_readme_test_command_verbatim():
    command = readme_test_command()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert command in ci_lines


def test_cpu_install_pins_the_local_torch_wheel():
    command = readme_test_command()
    assert "torch==2.13.0" in command.split()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if re.match(r"torch\b", d))
    assert ">=" in torch_req and "==" not in torch_req and "<" not in torch_req


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_has_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(d): d for d in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted.update({_name(d): d for d in extra})
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for dep in env["dependencies"] + [d for d in pip_section if not d.startswith("-e")]:
        if isinstance(dep, str) and _name(dep) not in ("python", "pip"):
            conda[{"pytorch": "torch"}.get(_name(dep), _name(dep))] = dep
    assert set(conda) == set(wanted)
    for name, dep in conda.items():
        spec_conda = dep.split(_name(dep), 1)[1] if not dep.startswith("pytorch") else dep[len("pytorch"):]
        assert spec_conda.replace(" ", "") == wanted[name][len(name):].replace(" ", ""), name


def test_readme_main_command_runs_the_mini_study_and_builds_its_book():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- main-command -->", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = [line for line in block.strip().splitlines() if line.strip()]
    assert len(lines) == 1, "the README's main command is one line"
    steps = [step.strip() for step in lines[0].split("&&")]
    assert "torch==2.13.0" in steps[1].split() and ".[docs,e5]" in steps[1]
    assert steps[-4:] == [".venv/bin/mtnb data mini", ".venv/bin/mtnb data ud --from ../shared/data/ud",
                          ".venv/bin/mtnb run mini --jobs 2", ".venv/bin/mtnb book mini"]
    assert (ROOT / "params" / "grids" / "mini.yaml").is_file()
    assert "runs/mini/book/_build/html/index.html" in text
