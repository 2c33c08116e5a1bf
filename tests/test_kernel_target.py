"""src/model/cpu/target.py: the kernels' compiler target from the processor's features, the
features in the build's cache key, and the same numerics as the portable build."""
import os

import numpy as np
import pytest

from src.model.cpu import kernels, target
from tests.conftest import TINY, checkpoint_arrays, run_entry

V2 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}
V3 = V2 | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "xsave", "abm"}
V4 = V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


@pytest.mark.parametrize("features, expected", [
    (V4, "x86-64-v4"), (V4 - {"avx512bw"}, "x86-64-v3"), (V3 - {"fma"}, "x86-64-v2"), (V2 - {"popcnt"}, None),
    (V4 - {"cx16"}, None),  # a level needs every lower level's features too
])
def test_level_from_features(features, expected):
    assert target.level(frozenset(features), machine="x86_64") == expected


def test_off_x86_the_build_is_portable():
    assert target.target_flags(frozenset(V4), machine="aarch64") == ([], "portable")


def test_flags_keep_the_baseline_rounding():
    flags, key = target.target_flags(frozenset(V3), machine="x86_64")
    assert flags == ["-march=x86-64-v3", "-ffp-contract=off"] and key.startswith("x86-64-v3:")


def test_cpuinfo_is_read(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n\nprocessor\t: 1\nflags\t\t: other\n")
    assert target.cpu_features(str(info)) == {"fpu", "sse2", "avx2"}
    assert target.cpu_features(str(tmp_path / "absent")) == frozenset()


@pytest.mark.slow
def test_two_feature_sets_give_two_cache_entries(tmp_path, monkeypatch):
    """A shared cache folder holds one build per processor target: a v3 machine never loads the
    v4 build, and a compiler that refuses the target falls back to the portable build."""
    compiler = kernels._compiler()
    if compiler is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("CPC_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(target.platform, "machine", lambda: "x86_64")
    paths = []
    for features in (V3, V4, V3):
        monkeypatch.setattr(kernels, "cpu_features", lambda f=features: frozenset(f))
        paths.append(kernels._build(compiler))
    assert paths[0] == paths[2] and paths[0] != paths[1]
    assert sorted(os.listdir(tmp_path)) == sorted({os.path.basename(p) for p in paths})
    monkeypatch.setattr(target, "level", lambda features, machine=None: "no-such-level")
    fallback = kernels._build(compiler)
    assert fallback not in paths and os.path.isfile(fallback)


@pytest.mark.slow
def test_target_build_trains_bit_identically_to_the_portable_build(tmp_path):
    """The same tiny run with the processor's build and with the portable one: every parameter equal
    bit for bit (-ffp-contract=off keeps each operation's rounding)."""
    if target.level(target.cpu_features()) is None:
        pytest.skip("this processor gets the portable build anyway")
    params = {}
    for name in ("auto", "portable"):
        out = tmp_path / name
        env = {"CPC_KERNEL_TARGET": name, "CPC_KERNEL_CACHE": str(tmp_path / f"cache_{name}")}
        proc = run_entry(["train.py", "--config_path", TINY, "--output_path", str(out), "--epoch_size", "1",
                          "--steps_per_epoch", "30", "--repr_eval", "False"], env=env)  # training only
        assert proc.returncode == 0, proc.stderr[-2000:]
        params[name], _ = checkpoint_arrays(str(out / "cpc_last.ckpt"))
    assert params["auto"].keys() == params["portable"].keys()
    for key, value in params["auto"].items():
        np.testing.assert_array_equal(value, params["portable"][key], err_msg=key)
