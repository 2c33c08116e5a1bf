"""Data-parallel training: rank-table checks, the Ascend launch (stubbed), shards, and two real
CPU workers through msrun compared with one process on the same global batch."""
import json
import os
import re
import stat

import numpy as np
import pytest

from src.config import namespace
from src.data.dataset import build_source, create_train_dataset
from src.train.distributed import RankTableError, launch_kind, parse_rank_table
from src.utils.errors import CPCError
from tests.conftest import REPO, TINY, checkpoint_arrays, error_lines, run_entry

SCRIPT = "scripts/run_distribute_train.sh"
EXAMPLE_TABLE = "scripts/rank_table_8pcs.example.json"
# Two workers x batch 16 = global batch 32; 2 epochs of 20 steps keep the run to ~30 s on 2 cores.
# No representation monitor: nothing here looks at it (tests/test_multinode.py checks it under msrun).
SHORT = ["--epoch_size", "2", "--steps_per_epoch", "20", "--val_steps", "2", "--log_interval", "10",
         "--repr_eval", "False"]
# The single process cannot see the very same sequences: a batch is a pure function of
# (seed, index, batch_size), so one batch of 32 differs from batches 2k and 2k+1 of 16, and
# BatchNorm normalises over 32 sequences instead of 16 per rank. Both draw from the same
# distribution, so the per-epoch mean losses agree only statistically: measured 0.001 and 0.007
# apart (docs/distributed.md, Tests); 0.02 allows for that noise while still smaller than the 0.04 the loss falls.
LOSS_TOLERANCE = 0.02


def _table(devices=8, servers=1):
    return {"version": "1.0", "server_count": str(servers), "status": "completed",
            "server_list": [{"server_id": f"10.0.0.{s + 1}", "container_ip": f"10.0.0.{s + 1}",
                             "device": [{"device_id": str(d), "device_ip": f"192.168.{d}.{s + 10}",
                                         "rank_id": str(s * devices + d)} for d in range(devices)]}
                            for s in range(servers)]}


def _write(tmp_path, table, name="table.json"):
    path = tmp_path / name
    path.write_text(table if isinstance(table, str) else json.dumps(table), encoding="utf-8")
    return str(path)


def test_rank_table_parser_accepts_good_tables(tmp_path):
    assert parse_rank_table(_write(tmp_path, _table())) == [[(d, d) for d in range(8)]]
    two = parse_rank_table(_write(tmp_path, _table(devices=2, servers=2)))
    assert two == [[(0, 0), (1, 1)], [(0, 2), (1, 3)]]
    example = parse_rank_table(EXAMPLE_TABLE)
    assert len(example) == 1 and len(example[0]) == 8


def _broken(change):
    table = _table()
    change(table)
    return table


@pytest.mark.parametrize("table, message", [
    ("{not json", "not valid JSON"),
    (_broken(lambda t: t.pop("server_count")), "no 'server_count'"),
    ({"server_count": "1", "server_list": []}, "non-empty list"),
    ("[]", "has no 'server_list'"),
    (_broken(lambda t: t.update(server_count="2")), "server_count is 2 but server_list has 1"),
    (_broken(lambda t: t["server_list"][0]["device"][3].pop("device_ip")), "no 'device_ip'"),
    (_broken(lambda t: t["server_list"][0]["device"][3].update(device_ip="not-an-ip")), "not an IP"),
    (_broken(lambda t: t["server_list"][0]["device"][3].update(rank_id="5")), "rank_id values"),
    (_broken(lambda t: t["server_list"][0]["device"][3].update(device_id="x")), "must be an integer"),
    (_broken(lambda t: t["server_list"][0]["device"][3].update(device_id="0")), "device_id twice"),
    (_broken(lambda t: t["server_list"][0].update(device=[])), "non-empty list"),
])
def test_rank_table_parser_rejects_bad_tables(tmp_path, table, message):
    with pytest.raises(RankTableError, match=message):
        parse_rank_table(_write(tmp_path, table))


def test_launch_kind_from_environment():
    assert launch_kind({}) is None
    assert launch_kind({"RANK_TABLE_FILE": "t.json", "RANK_SIZE": "1"}) is None
    assert launch_kind({"RANK_TABLE_FILE": "t.json", "RANK_SIZE": "8"}) == "rank_table"
    assert launch_kind({"MS_ROLE": "MS_WORKER", "RANK_SIZE": "2"}) == "msrun"
    assert launch_kind({"MS_ROLE": "MS_SCHED"}) == "msrun"  # msrun's scheduler runs train.py too
    with pytest.raises(CPCError, match="RANK_SIZE must be a number"):
        launch_kind({"RANK_TABLE_FILE": "t.json", "RANK_SIZE": "eight"})


def test_shards_are_disjoint_and_equal(tmp_path):
    cfg = namespace(image_size=28, color=False, padding="same", batch_size=4, terms=2, predict_terms=2)
    size, steps = 2, 6
    source = build_source(cfg, "train", steps * size)
    seen = []
    for rank in range(size):  # the training dataset: passes of 3 steps, as Model.train reads them
        iterator = create_train_dataset(source, 3, rank, size).create_tuple_iterator(num_epochs=2, output_numpy=True)
        rows = [x for _ in range(2) for x, _, _ in iterator]
        assert len(rows) == steps  # every rank takes the same number of steps
        for k, x in enumerate(rows):  # rank r gets batches r, r + size, ...
            np.testing.assert_array_equal(x, source.make_batch(rank + k * size).x)
        seen.append({rank + k * size for k in range(steps)})
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(steps * size))


def _stub(tmp_path):
    """A stand-in for python: records its environment and arguments, one file per RANK_ID."""
    record = tmp_path / "records"
    record.mkdir()
    stub = tmp_path / "stub.sh"
    stub.write_text(f'#!/bin/bash\n{{ env; echo "CWD=$(pwd -P)"; echo "ARGS=$*"; }} > "{record}/rank_$RANK_ID.env"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    return str(stub), record


def _stub_launch(tmp_path, table, env):
    """Run the Ascend form with the stub; (run folder, {rank file name: recorded environment}, proc)."""
    stub, record = _stub(tmp_path)
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT, "Ascend", _write(tmp_path, table), TINY],
                     env=dict(env, RUNS_DIR=str(runs), TRAIN_PYTHON=stub))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = runs.iterdir()
    envs = {}
    for path in record.iterdir():
        lines = path.read_text().splitlines()
        envs[path.name] = dict(line.split("=", 1) for line in lines if "=" in line)
    return run_dir, envs, proc


@pytest.mark.slow  # starts bash
def test_ascend_form_starts_one_process_per_device(tmp_path):
    table = str(tmp_path / "table.json")
    run_dir, envs, proc = _stub_launch(tmp_path, _table(), {"HCCL_CONNECT_TIMEOUT": ""})
    assert sorted(envs) == sorted(f"rank_{r}.env" for r in range(8))
    for rank in range(8):
        env = envs[f"rank_{rank}.env"]
        assert env["DEVICE_ID"] == str(rank) and env["RANK_SIZE"] == "8"
        assert env["RANK_TABLE_FILE"] == table
        assert f"--device_id {rank}" in env["ARGS"] and "--device_target Ascend" in env["ARGS"]
        # each rank runs in its own folder (kernel_meta/, rank_*/ and graph dumps land there),
        # train.py by absolute path, with the default HCCL connect timeout
        assert env["CWD"] == str((run_dir / f"device{rank}").resolve())
        assert env["ARGS"].split()[0] == os.path.join(REPO, "train.py")
        assert env["HCCL_CONNECT_TIMEOUT"] == "600"
        assert (run_dir / f"device{rank}" / "env.log").read_text().count(f"RANK_ID={rank}\n") == 1
        assert (run_dir / f"device{rank}" / "train.log").exists()
    assert f"{run_dir}/device7/train.log" in proc.stdout


@pytest.mark.slow  # starts bash
def test_ascend_form_keeps_a_users_hccl_timeout(tmp_path):
    run_dir, envs, _ = _stub_launch(tmp_path, _table(devices=2), {"HCCL_CONNECT_TIMEOUT": "1800"})
    assert sorted(envs) == ["rank_0.env", "rank_1.env"]
    assert all(env["HCCL_CONNECT_TIMEOUT"] == "1800" for env in envs.values())
    assert {env["CWD"] for env in envs.values()} == {str((run_dir / f"device{d}").resolve()) for d in range(2)}


@pytest.mark.slow  # starts bash
@pytest.mark.parametrize("args, env, message", [
    ([], {}, "DEVICE_TARGET (Ascend, GPU or CPU) is required"),
    (["TPU"], {}, "DEVICE_TARGET must be Ascend, GPU or CPU, got 'TPU' (the first argument)"),
    (["GOOD_TABLE"], {}, "the first argument is DEVICE_TARGET: bash scripts/run_distribute_train.sh Ascend "),
    (["Ascend"], {}, "RANK_TABLE_FILE is required"),
    (["Ascend", "missing.json"], {}, "RANK_TABLE_FILE not found"),
    (["Ascend", "BAD_TABLE"], {}, "server_count is 3"),
    (["CPU", "two"], {}, "WORKER_NUM must be a positive number"),
    # several machines: every machine must be told the master's address and port, and a usable one
    (["CPU", "2"], {"NODE_NUM": "2", "MASTER_PORT": "29500"}, "NODE_NUM 2: set MASTER_ADDR"),
    (["CPU", "2"], {"NODE_NUM": "2", "MASTER_ADDR": "127.0.0.1"}, "NODE_NUM 2: set MASTER_PORT"),
    (["CPU", "2"], {"NODE_NUM": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "65536"},
     "MASTER_PORT must be a port number from 1 to 65535, got '65536'"),
    (["CPU", "2"], {"MASTER_PORT": "0"}, "MASTER_PORT must be a port number from 1 to 65535, got '0'"),
    (["CPU", "2"], {"MASTER_PORT": "29500x"}, "got '29500x'"),
    (["CPU", "2"], {"MASTER_PORT": "-1"}, "got '-1'"),
    (["CPU", "2"], {"NODE_NUM": "2", "MASTER_ADDR": "no-such-host.invalid", "MASTER_PORT": "29500"},
     "MASTER_ADDR 'no-such-host.invalid' is neither an IP address nor a host name"),
])
def test_bad_launches_fail_before_anything_starts(tmp_path, args, env, message):
    stub, record = _stub(tmp_path)
    msrun = tmp_path / "msrun"  # a stand-in msrun that records being started
    msrun.write_text(f'#!/bin/bash\ntouch "{record}/msrun_started"\n')
    msrun.chmod(msrun.stat().st_mode | stat.S_IXUSR)
    tables = {"BAD_TABLE": _write(tmp_path, _broken(lambda t: t.update(server_count="3")), "bad.json"),
              "GOOD_TABLE": _write(tmp_path, _table(devices=2))}
    args = [tables.get(a, a) for a in args]
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT] + args + ([TINY] if args[:1] == ["CPU"] else []),
                     env=dict(env, RUNS_DIR=str(runs), TRAIN_PYTHON=stub, MSRUN=str(msrun)))
    assert proc.returncode == 2
    lines = error_lines(proc.stderr)
    assert len(lines) == 1 or lines[0].startswith("usage:"), lines
    assert lines[-1].startswith("error: ") and message in lines[-1], lines
    assert not runs.exists() and not any(record.iterdir())


@pytest.mark.slow
def test_missing_msrun_is_a_clear_error(tmp_path):
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT, "CPU", "2", TINY],
                     env={"RUNS_DIR": str(runs), "MSRUN": str(tmp_path / "no-msrun")})
    assert proc.returncode == 2 and "msrun not found" in error_lines(proc.stderr)[-1]
    assert not runs.exists()


@pytest.mark.slow
def test_two_cpu_workers_through_msrun(ms_cpu, tmp_path):
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT, "CPU", "2", TINY, ""] + SHORT, env={"RUNS_DIR": str(runs)}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = runs.iterdir()
    ranks = [run_dir, run_dir / "rank_1"]
    metrics = [json.loads((d / "metrics.json").read_text()) for d in ranks]
    assert [m["rank"] for m in metrics] == [0, 1] and all(m["group_size"] == 2 for m in metrics)

    # identical start, mean-reduced gradients and synchronised BatchNorm statistics: same parameters
    first, second = (checkpoint_arrays(d / "cpc_last.ckpt")[0] for d in ranks)
    assert sorted(first) == sorted(second) and any("moving_mean" in k for k in first)
    for name in first:
        np.testing.assert_allclose(first[name], second[name], rtol=0, atol=1e-6, err_msg=name)
    assert metrics[0]["val_accuracy"] == metrics[1]["val_accuracy"]

    # the global loss (mean over the ranks' shards) falls
    global_loss = [np.mean([m["history"][e]["loss"] for m in metrics]) for e in range(2)]
    assert global_loss[1] < global_loss[0]
    # the two ranks trained on different data
    assert metrics[0]["history"][0]["loss"] != metrics[1]["history"][0]["loss"]

    # one process with the same global batch (2 x 16) follows the same loss curve
    single = tmp_path / "single"
    proc = run_entry(["train.py", "--config_path", TINY, "--output_path", str(single), "--batch_size", "32"]
                     + SHORT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    single_loss = [h["loss"] for h in json.loads((single / "metrics.json").read_text())["history"]]
    np.testing.assert_allclose(single_loss, global_loss, rtol=0, atol=LOSS_TOLERANCE)


class _FakeNet:
    """Stands in for a network: untrainable_params() is all BufferSync reads."""

    def __init__(self, params):
        self.params = params

    def untrainable_params(self):
        return self.params


def _buffers(ms, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(4,), (2, 3), (), (1, 5, 1)]
    return [ms.Parameter(ms.Tensor(rng.standard_normal(shape).astype(np.float32)), name=f"buffer{i}",
                         requires_grad=False) for i, shape in enumerate(shapes)]


@pytest.mark.parametrize("size", [2, 4])
def test_buffer_sync_round_trip_restores_shapes_and_values(ms_cpu, size):
    from src.train.distributed import BufferSync
    params = _buffers(ms_cpu)
    before = [(p.shape, p.asnumpy().copy()) for p in params]
    calls = []

    def fake_reduce(flat):  # every rank holds the same values: the sum is size times them
        calls.append(flat.shape)
        return flat * size

    sync = BufferSync(_FakeNet(params), size, reducer=fake_reduce)
    sync()
    sync()
    assert calls == [(4 + 6 + 1 + 5,)] * 2  # one flat tensor, one reduce per call
    for param, (shape, value) in zip(params, before):
        assert param.shape == shape and param.dtype == ms_cpu.float32
        np.testing.assert_array_equal(param.asnumpy(), value)


def test_buffer_sync_averages_across_ranks(ms_cpu):
    from src.train.distributed import BufferSync
    mine, other = _buffers(ms_cpu, seed=1), _buffers(ms_cpu, seed=2)
    other_flat = BufferSync(_FakeNet(other), 2, reducer=lambda t: t).flatten()
    expected = [(a.asnumpy() + b.asnumpy()) / 2 for a, b in zip(mine, other)]
    BufferSync(_FakeNet(mine), 2, reducer=lambda t: t + ms_cpu.Tensor(other_flat))()
    for param, value in zip(mine, expected):
        np.testing.assert_allclose(param.asnumpy(), value, rtol=0, atol=1e-7)


def test_buffer_sync_builds_its_reducer_once(ms_cpu, monkeypatch):
    """The reducer Cell (and its AllReduce) is built once and reused, compiled in graph mode on CPU
    with a stand-in AllReduce that sums over two identical ranks (multiplies by 2)."""
    from mindspore import nn, ops

    import src.train.distributed as distributed

    built = {"reducers": 0, "all_reduce": 0}

    class _TimesTwo(nn.Cell):
        def construct(self, value):
            return value * 2

    def fake_all_reduce(*args, **kwargs):
        built["all_reduce"] += 1
        return _TimesTwo()

    real_build = distributed._build_reducer

    def counting_build():
        built["reducers"] += 1
        return real_build()

    monkeypatch.setattr(ops, "AllReduce", fake_all_reduce)
    monkeypatch.setattr(distributed, "_build_reducer", counting_build)
    net = nn.SequentialCell(nn.Dense(3, 4), nn.BatchNorm1d(4))
    moving = [p for p in net.untrainable_params()]
    assert len(moving) == 2  # moving_mean, moving_variance
    moving[0].set_data(ms_cpu.Tensor(np.arange(4, dtype=np.float32)))
    sync = distributed.BufferSync(net, 2)
    for _ in range(3):  # three epoch ends
        sync()
    assert built == {"reducers": 1, "all_reduce": 1}
    np.testing.assert_array_equal(moving[0].asnumpy(), np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(moving[1].asnumpy(), np.ones(4, np.float32))


def test_buffer_sync_single_process_is_a_no_op(monkeypatch):
    import src.train.distributed as distributed

    def forbidden():
        raise AssertionError("a single process must not build a reducer")

    monkeypatch.setattr(distributed, "_build_reducer", forbidden)

    class _Net:
        def untrainable_params(self):
            raise AssertionError("a single process must not read the parameters")

    sync = distributed.BufferSync(_Net(), 1)
    sync()
    assert sync.reducer is None and sync.params == []


@pytest.mark.slow
def test_the_first_failing_ranks_error_line_is_printed(tmp_path):
    """Rank 1 fails at once; rank 0 fails a second later because its peer is gone: the script names
    rank 1's line (the cause), not only the log folder."""
    stub = tmp_path / "failing.sh"
    stub.write_text('#!/bin/bash\nif [ "$RANK_ID" = 1 ]; then echo "error: rank 1 cannot open its device"; exit 2; fi\n'
                    'sleep 1; echo "error: lost the connection to rank 1"; exit 2\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT, "Ascend", _write(tmp_path, _table(devices=2)), TINY],
                     env={"RUNS_DIR": str(runs), "TRAIN_PYTHON": str(stub)})
    (run_dir,) = runs.iterdir()
    assert proc.returncode == 1
    assert error_lines(proc.stderr)[-1] == (f"error: first failing rank ({run_dir}/device1/train.log): "
                                            f"rank 1 cannot open its device")


def test_launcher_environment_names_the_stale_variables():
    from src.train.distributed import launcher_environment
    why = launcher_environment("rank_table", {"RANK_TABLE_FILE": "/old/hccl_8p.json", "RANK_SIZE": "8"})
    assert "RANK_TABLE_FILE=/old/hccl_8p.json RANK_SIZE=8" in why and "unset RANK_TABLE_FILE RANK_SIZE" in why


@pytest.mark.slow
def test_a_stale_rank_table_environment_is_named_as_the_cause(tmp_path):
    """A shell left with a rank-table launcher's exports: a single train.py tries to join a job;
    one line names the variables, and nothing is written."""
    out = tmp_path / "out"
    proc = run_entry(["train.py", "--config_path", TINY, "--output_path", str(out), "--epoch_size", "1",
                      "--steps_per_epoch", "2"],
                     env={"RANK_TABLE_FILE": _write(tmp_path, _table(devices=2)), "RANK_SIZE": "2"})
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[0].startswith("error: cannot initialise distributed communication: the environment "
                               "(RANK_TABLE_FILE=") and "RANK_SIZE=2" in lines[0]
    assert "unset RANK_TABLE_FILE RANK_SIZE" in lines[0] and not out.exists()


@pytest.mark.slow
def test_msrun_form_prints_a_failing_ranks_error_line(tmp_path):
    runs = tmp_path / "runs"
    proc = run_entry(["bash", SCRIPT, "CPU", "2", TINY, "", "--seed", "99999999999999"],
                     env={"RUNS_DIR": str(runs)}, timeout=300)
    (run_dir,) = runs.iterdir()
    assert proc.returncode != 0
    assert re.fullmatch(rf"error: first failing rank \({run_dir}/msrun_logs/worker_[01]\.log\): config key 'seed' "
                        r"must be <= 4294967295, got 99999999999999", error_lines(proc.stderr)[-1])


def test_newest_common_step_is_the_newest_every_rank_holds(ms_cpu):
    from src.train.distributed import NewestCommonStep
    others = np.zeros(41, np.float32)
    others[[20, 25, 30]] = 1  # the other rank was killed while saving step 35

    def two_ranks(held):
        return held + ms_cpu.Tensor(others)

    newest = NewestCommonStep(2, 40, reducer=two_ranks)
    assert newest([20, 25, 30, 35]) == 30 and newest([35, 40]) == -1 and newest([]) == -1
    assert NewestCommonStep(1, 40)([20, 35, 25]) == 35 and NewestCommonStep(1, 40)([]) == -1


def test_lost_peer_and_lost_ranks_become_one_line():
    from src.train.distributed import collective_failure, collective_guard, scheduler_failure
    from src.utils.errors import CPCError
    kernel = RuntimeError("\n----\n- Kernel error:\n----\nLaunch kernel failed: Default/AllReduce-op0\n----")
    assert collective_failure(kernel) == "AllReduce" and collective_failure(RuntimeError("other")) is None
    # MindSpore 2.10's words when the step finds the cluster abnormal before its collective fails
    cluster = RuntimeError("The state of the cluster is error, total nodes num: 4, abnormal nodes num: 1")
    assert collective_failure(cluster) == "a collective"
    with pytest.raises(CPCError, match=r"^rank 1 of 4: AllReduce with the other ranks failed: a rank of the job"):
        with collective_guard(1, 4):
            raise kernel
    with pytest.raises(RuntimeError):  # anything else, or a single process, is not a lost peer
        with collective_guard(0, 1):
            raise kernel
    said = scheduler_failure(RuntimeError("The total number of timed out node is 2. Timed out node list is: "
                                          "[const vector]{2, 3}, worker 2 is the first one timed out, please check"))
    assert said.startswith("msrun's scheduler: the job lost rank(s) 2, 3: ")
    assert scheduler_failure(RuntimeError("The total number of ... is not equal")) is None
