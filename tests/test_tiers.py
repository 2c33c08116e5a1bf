"""The fast tier starts no process: a test of it that does fails, naming the command (the guard in
tests/conftest.py), so a test that needs one must be marked slow."""
import subprocess

import pytest

from tests.conftest import run_entry


def test_a_fast_test_cannot_start_an_entry_point_or_a_script():
    with pytest.raises(pytest.fail.Exception, match=r"started a process \(\[.*train\.py.*mark it @pytest.mark.slow"):
        run_entry(["train.py", "--help"])
    with pytest.raises(pytest.fail.Exception, match="scripts/run_eval.sh"):
        run_entry(["bash", "scripts/run_eval.sh", "--help"])
    with pytest.raises(pytest.fail.Exception, match="mark it"):
        subprocess.run("echo hello", shell=True, check=False)
    with pytest.raises(pytest.fail.Exception, match="mark it"):
        subprocess.Popen(["msrun", "--help"])


@pytest.mark.slow
def test_a_slow_test_may():
    assert run_entry(["bash", "-c", "echo started"]).stdout == "started\n"
