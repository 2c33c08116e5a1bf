"""Every command (the top-level entry points and every tools/*.py with a main) ends a refusal with the
project's one `error:` line and exit 2, argparse's own usage errors included: each main() runs here
through src.utils.errors.run_main, as its `python ...` line does, with a flag it does not have."""
import ast
import glob
import importlib
import logging
import os

import pytest

from src.utils.errors import run_main
from tests.conftest import REPO


def _entry_points():
    """Module names of the Python files at the top and in tools/ that define main()."""
    found = []
    for path in sorted(glob.glob(os.path.join(REPO, "*.py")) + glob.glob(os.path.join(REPO, "tools", "*.py"))):
        tree = ast.parse(open(path, encoding="utf-8").read())
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            found.append(os.path.relpath(path, REPO)[:-3].replace(os.sep, "."))
    return found


ENTRY_POINTS = _entry_points()


def test_the_known_commands_are_all_found():
    assert {"train", "eval", "export", "preprocess", "postprocess", "convert_keras", "tools.benchmark",
            "tools.publish_pretrained", "tools.check_rank_table", "tools.keras_parity_fixture"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_main_is_run_through_run_main(module):
    """`python <file>` calls run_main(main): the one place a refusal becomes one line and an exit code."""
    tree = ast.parse(open(os.path.join(REPO, module.replace(".", os.sep) + ".py"), encoding="utf-8").read())
    (block,) = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    assert ast.unparse(block.body[0]).strip() == "run_main(main)", ast.unparse(block)


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_an_unknown_flag_is_one_error_line_and_exit_2(ms_cpu, module, capsys):
    try:
        main = importlib.import_module(module).main
    except SystemExit as stop:  # an optional tool whose own dependency is missing (torch) says so at import
        pytest.skip(str(stop))
    logging.getLogger("cpc").handlers.clear()
    with pytest.raises(SystemExit) as stop:
        run_main(main, ["--no_such_flag", "1"])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert stop.value.code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    # argparse names the unknown flag, or first the required arguments the command lacks
    assert "no_such_flag" in lines[0] or "arguments are required" in lines[0], lines[0]
    assert "usage:" not in captured.out + captured.err
