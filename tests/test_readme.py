"""The README is short, starts with the two fresh-machine commands, and every link and path it or a
docs page names exists; no page restates the config defaults that live in src/config.py."""
import glob
import os
import re

from src.config import SCHEMA
from tests.conftest import REPO

README_MAX_BYTES = 15_000  # "at most 15 KB", read strictly
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
PATH = re.compile(r"(?<![\w/.~-])((?:config|scripts|src|tools|tests|docs|ascend310_infer)/[\w./-]*[\w])")
MODULE = re.compile(r"python -m (tools\.\w+)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _code(text):
    """The text of every code span and fenced block: where a user copies a command from."""
    return "\n".join(re.findall(r"```.*?\n(.*?)```", text, flags=re.S) + re.findall(r"`([^`\n]+)`", text))


def test_readme_is_short_and_first_gives_the_two_fresh_machine_commands():
    text = _read(PAGES[0])
    assert len(text.encode("utf-8")) <= README_MAX_BYTES
    block = text.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(block) == 2
    assert block[0].startswith("pip install -r requirements.txt && bash scripts/run_standalone_train.sh")
    assert block[1] == "pip install -r requirements-test.txt && python -m pytest -q tests"
    ci = _read(os.path.join(REPO, ".ci", "run"))
    assert "python -m pytest -q tests" in ci and "requirements-test.txt" in ci


def test_every_relative_link_exists():
    checked = 0
    for page in PAGES:
        for target in LINK.findall(_read(page)):
            if re.match(r"[a-z]+:", target):
                continue  # an address outside the repository
            checked += 1
            assert os.path.exists(os.path.normpath(os.path.join(os.path.dirname(page), target))), (page, target)
    assert checked >= 10  # the pattern finds the README's links to docs/


BUILT = "ascend310_infer/out/"  # ascend310_infer/build.sh's output (gitignored): not in a fresh checkout


def _built(path):
    """A program ascend310_infer/build.sh writes (its header names every one it builds)."""
    return path.startswith(BUILT) and path in _read(os.path.join(REPO, "ascend310_infer", "build.sh"))


def test_every_path_and_tool_in_a_command_exists():
    paths, modules = set(), set()
    for page in PAGES:
        code = _code(_read(page))
        paths |= {p.rstrip(".") for p in PATH.findall(code)}
        modules |= set(MODULE.findall(code))
    assert {"config/cpc_tiny.yaml", "scripts/run_standalone_train.sh"} <= paths  # the pattern finds them
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(REPO, p)) and not _built(p))
    assert not missing, missing
    missing = sorted(m for m in modules if not os.path.isfile(os.path.join(REPO, *m.split(".")) + ".py"))
    assert not missing, missing


def test_no_page_restates_the_config_defaults():
    """SCHEMA in src/config.py is the one home of every default: a table of keys elsewhere would drift."""
    for page in PAGES:
        rows = re.findall(r"^\|\s*`?(\w+)`?\s*\|", _read(page), flags=re.M)
        keys = sorted(set(rows) & set(SCHEMA))
        assert len(keys) < 3, f"{page} tabulates config keys {keys}: link to src/config.py instead"
