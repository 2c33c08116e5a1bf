"""The README documents every config key, and its commands name files that exist."""
import os
import re

from src.config import SCHEMA
from tests.conftest import REPO


def _readme():
    with open(f"{REPO}/README.md", encoding="utf-8") as handle:
        return handle.read()


def test_parameter_table_lists_every_key_and_nothing_else():
    table = set(re.findall(r"^\| `(\w+)` \| (?:str|int|float|bool) \|", _readme(), flags=re.M))
    assert table == set(SCHEMA)


def test_first_lines_give_the_two_fresh_machine_commands():
    block = _readme().split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    assert block[0].startswith("pip install -r requirements.txt && bash scripts/run_standalone_train.sh")
    assert block[1] == "pip install -r requirements-test.txt && python -m pytest -q tests"
    ci = open(f"{REPO}/.ci/run", encoding="utf-8").read()
    assert "python -m pytest -q tests" in ci and "requirements-test.txt" in ci


def test_referenced_files_exist():
    paths = set(re.findall(r"\b((?:config|scripts|src|tools|tests)/[\w./]+\.(?:yaml|sh|py|json))\b", _readme()))
    # the pattern finds them
    assert {"config/cpc_tiny.yaml", "scripts/run_standalone_train.sh", "src/eval/downstream.py"} <= paths
    missing = sorted(p for p in paths if not os.path.isfile(os.path.join(REPO, p)))
    assert not missing, missing
