"""Data-parallel training: launch detection, communication set-up, BatchNorm-stat sync,
and the HCCL rank-table check used by scripts/run_distribute_train.sh.

Two launchers, one code path:
- Ascend, rank table: the script exports RANK_TABLE_FILE and RANK_SIZE and starts one process per
  device with DEVICE_ID and RANK_ID; init() reads the table (HCCL).
- CPU/GPU, msrun: msrun runs the script N + 1 times, as N workers (MS_ROLE=MS_WORKER, RANK_ID,
  MS_WORKER_NUM, MS_SCHED_HOST/PORT) and once as the scheduler (MS_ROLE=MS_SCHED); init() joins
  the cluster (gloo on CPU, NCCL on GPU), and in the scheduler serves it and exits when it ends.

Every rank builds the network with the same seed, so all start from identical parameters;
nn.TrainOneStepCell sees the DATA_PARALLEL context and AllReduce-averages the gradients
(gradients_mean=True), so the trainable parameters stay identical. BatchNorm moving statistics are
not gradients: each rank updates them from its own batches, so BufferSync (built once per run)
averages them across ranks at every epoch end, before validation and checkpoints.

    python -m tools.check_rank_table FILE [--server-index K]

prints the table's RANK_SIZE, then one "DEVICE_ID RANK_ID" line per device of server K, or one
line "error: ..." and exit code 2.
"""
import contextlib
import ipaddress
import json
import os
import re

import numpy as np

from src.utils.errors import CPCError, PeerStopped, first_line

MSRUN_ROLES = ("MS_WORKER", "MS_SCHED")  # msrun runs the script as its scheduler too: init() serves there


class RankTableError(CPCError):
    """A rank-table file is missing, not JSON, or not in the HCCL format."""


def _field(obj, key, where):
    if not isinstance(obj, dict) or key not in obj:
        raise RankTableError(f"{where} has no '{key}'")
    return obj[key]


def _int(value, what):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RankTableError(f"{what} must be an integer, got {value!r}") from None
    if number < 0 or str(number) != str(value).strip():
        raise RankTableError(f"{what} must be a non-negative integer, got {value!r}")
    return number


def parse_rank_table(path):
    """Read and check an HCCL rank table; returns a list of servers, each a list of
    (device_id, rank_id) pairs. RankTableError (one line) on anything malformed."""
    try:
        with open(path, encoding="utf-8") as handle:
            table = json.load(handle)
    except OSError as exc:
        raise RankTableError(f"rank table {path} cannot be read: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RankTableError(f"rank table {path} is not valid JSON: {exc}") from None
    where = f"rank table {path}"
    servers = _field(table, "server_list", where)
    if not isinstance(servers, list) or not servers:
        raise RankTableError(f"{where}: server_list must be a non-empty list")
    count = _int(_field(table, "server_count", where), f"{where}: server_count")
    if count != len(servers):
        raise RankTableError(f"{where}: server_count is {count} but server_list has {len(servers)} servers")
    result, ranks = [], []
    for s, server in enumerate(servers):
        devices = _field(server, "device", f"{where}: server_list[{s}]")
        if not isinstance(devices, list) or not devices:
            raise RankTableError(f"{where}: server_list[{s}].device must be a non-empty list")
        pairs = []
        for d, device in enumerate(devices):
            at = f"{where}: server_list[{s}].device[{d}]"
            device_id = _int(_field(device, "device_id", at), f"{at}.device_id")
            rank_id = _int(_field(device, "rank_id", at), f"{at}.rank_id")
            ip = _field(device, "device_ip", at)
            try:
                ipaddress.ip_address(str(ip))
            except ValueError:
                raise RankTableError(f"{at}.device_ip is not an IP address: {ip!r}") from None
            pairs.append((device_id, rank_id))
            ranks.append(rank_id)
        if len({dev for dev, _ in pairs}) != len(pairs):
            raise RankTableError(f"{where}: server_list[{s}] lists a device_id twice")
        result.append(pairs)
    if sorted(ranks) != list(range(len(ranks))):
        raise RankTableError(f"{where}: rank_id values must be 0..{len(ranks) - 1}, each once; "
                             f"got {sorted(ranks)}")
    return result


def launch_kind(environ=None):
    """'msrun', 'rank_table' or None (a single process), from the launcher's environment."""
    env = os.environ if environ is None else environ
    if env.get("MS_ROLE") in MSRUN_ROLES:
        return "msrun"
    if env.get("RANK_TABLE_FILE"):
        size = env.get("RANK_SIZE", "1") or "1"
        if not size.isdigit():
            raise CPCError(f"RANK_SIZE must be a number, got {size!r}")
        if int(size) > 1:
            return "rank_table"
    return None


LAUNCHER_VARIABLES = {"rank_table": ("RANK_TABLE_FILE", "RANK_SIZE", "RANK_ID"),
                      "msrun": ("MS_ROLE", "MS_WORKER_NUM", "MS_SCHED_HOST", "MS_SCHED_PORT")}


def launcher_environment(kind, environ=None):
    """Why this process tried to join a job: the launcher's variables it found set, named as the
    likely cause when communication fails (a shell left with a launcher's exports starts a single
    run as one rank of a job that does not exist)."""
    env = os.environ if environ is None else environ
    found = " ".join(f"{name}={env[name]}" for name in LAUNCHER_VARIABLES[kind] if env.get(name))
    launcher = "a rank table (scripts/run_distribute_train.sh)" if kind == "rank_table" else "msrun"
    return (f"the environment ({found}) says this process is one rank of a job launched by {launcher}; "
            f"if it is not, they are stale: unset {' '.join(LAUNCHER_VARIABLES[kind][:2])}")


def collective_failure(exc):
    """The collective a MindSpore error says failed ('AllReduce', ...); 'a collective' when MindSpore
    says instead that the cluster is abnormal (a rank's step met the lost peer in the cluster's state
    before its kernel did: seen under load, the step's AllReduce failing beside it); None otherwise."""
    text = str(exc)
    match = re.search(r"Launch kernel failed: \S*?(AllReduce|AllGather|Broadcast|ReduceScatter)", text)
    if match:
        return match.group(1)
    return "a collective" if "The state of the cluster is error" in text else None


@contextlib.contextmanager
def collective_guard(rank, size):
    """A collective that fails in training (a peer rank is gone: killed, out of memory, or its machine
    lost) becomes one line naming this rank; the cause is in the lost rank's log, not here."""
    try:
        yield
    except RuntimeError as exc:
        op = collective_failure(exc) if size > 1 else None
        if op is None:
            raise
        raise PeerStopped(f"rank {rank} of {size}: {op} with the other ranks failed: a rank of the job stopped "
                          f"(lost process or machine), so this one stops too; the first rank to stop is the cause "
                          f"(scripts/run_distribute_train.sh names it)") from None


def scheduler_failure(exc):
    """One line for msrun's scheduler whose job ended abnormally: the ranks it lost, as MindSpore
    reports them ('... Timed out node list is: ...{3}, worker 3 is the first one timed out ...')."""
    text = str(exc)
    lost = re.search(r"Timed out node list is: [^{]*\{([\d, ]+)\}", text)
    if not lost:
        return None
    ranks = ", ".join(r.strip() for r in lost.group(1).split(","))
    return (f"msrun's scheduler: the job lost rank(s) {ranks}: their heartbeat stopped (process ended or machine "
            f"lost); the launcher on their machine names the rank that stopped first")


def init_distributed():
    """Join the job if this process was launched by msrun or a rank table; returns (rank, size),
    (0, 1) for a single process. Call after the device is set and before building the network."""
    kind = launch_kind()
    if kind is None:
        return 0, 1
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init
    try:
        init()
    except (RuntimeError, ValueError) as exc:
        lost = scheduler_failure(exc) if os.environ.get("MS_ROLE") == "MS_SCHED" else None
        if lost:  # the scheduler serves the whole job inside init(): it ends there when the job fails
            raise CPCError(lost) from None
        raise CPCError(f"cannot initialise distributed communication: {launcher_environment(kind)}; "
                       f"MindSpore says: {first_line(exc)}") from None
    rank, size = get_rank(), get_group_size()
    # MindSpore 2.10's docstring says set/get_auto_parallel_context will be deprecated for
    # mindspore.parallel.auto_parallel.AutoParallel, but AutoParallel offers only the semi_auto,
    # sharding_propagation and recursive_programming modes, and the CPU supports data parallel only:
    # there is no replacement for this mode yet (and neither call logs a warning)
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=size)
    return rank, size


def rank_and_size():
    """(rank, group size) of this process; (0, 1) outside a distributed job."""
    import mindspore as ms
    if ms.get_auto_parallel_context("parallel_mode") != ms.ParallelMode.DATA_PARALLEL:
        return 0, 1
    from mindspore.communication import get_group_size, get_rank
    return get_rank(), get_group_size()


def rank_output_path(output_path, rank):
    """Rank 0 writes into output_path itself; rank k > 0 into output_path/rank_k (never the same file)."""
    return output_path if rank == 0 else os.path.join(output_path, f"rank_{rank}")


def _build_reducer():
    """A Cell summing one tensor over every rank (ops.AllReduce). Graph mode compiles it on its first
    call and reuses the graph while the input's shape stays the same, so BufferSync builds it once."""
    from mindspore import nn, ops

    class _AllReduce(nn.Cell):
        def __init__(self):
            super().__init__()
            self.reduce = ops.AllReduce()

        def construct(self, value):
            return self.reduce(value)

    return _AllReduce()


class AnyRank:
    """Whether a flag is set on any rank (one AllReduce of one number; its Cell built once). A single
    process answers its own flag without communication."""

    def __init__(self, size, reducer=None):
        self.size = int(size)
        self.reducer = (reducer or _build_reducer()) if self.size > 1 else None

    def __call__(self, flag):
        if self.reducer is None:
            return bool(flag)
        import mindspore as ms
        return float(self.reducer(ms.Tensor(np.array([float(bool(flag))], np.float32))).asnumpy()[0]) > 0


class NewestCommonStep:
    """The newest of the given global steps that every rank holds, -1 if none (one AllReduce). Resume
    asks it which rolling checkpoint to load: a worker killed during a save has one checkpoint fewer
    than the others, and ranks resuming from different steps would diverge (or hang in their
    collectives). Each rank marks the steps it holds in a vector of 0/1 over steps 0 .. `last`; the
    sum says which all hold (MindSpore's CPU AllReduce sums only). A single process answers its own newest."""

    def __init__(self, size, last, reducer=None):
        self.size, self.last = int(size), int(last)
        self.reducer = (reducer or _build_reducer()) if self.size > 1 else None

    def __call__(self, steps):
        steps = sorted(int(s) for s in steps)
        if self.reducer is None:
            return steps[-1] if steps else -1
        import mindspore as ms
        held = np.zeros(self.last + 1, np.float32)
        held[[s for s in steps if 0 <= s <= self.last]] = 1.0
        everywhere = np.flatnonzero(self.reducer(ms.Tensor(held)).asnumpy() == self.size)
        return int(everywhere[-1]) if everywhere.size else -1


class BufferSync:
    """Average the non-trainable parameters (BatchNorm moving mean/variance) across ranks, so every
    rank validates and saves the same network. Build it once per run, call it at every epoch end:

        sync = BufferSync(net, size)
        ...
        sync()

    One AllReduce over one flat float32 tensor (the parameters concatenated), then split back into
    the parameters' shapes and dtypes. For a single process (size 1) it is a no-op that imports no
    communication module and builds no Cell."""

    def __init__(self, net, size, reducer=None):
        self.size = int(size)
        self.params = list(net.untrainable_params()) if self.size > 1 else []
        self.reducer = None
        if self.params:
            self.reducer = reducer if reducer is not None else _build_reducer()

    def flatten(self):
        """The parameters as one flat float32 array."""
        return np.concatenate([p.asnumpy().astype(np.float32).ravel() for p in self.params])

    def unflatten(self, flat):
        """Write a flat array (flatten()'s layout) back into the parameters, in their own shapes and dtypes."""
        import mindspore as ms
        offset = 0
        for param in self.params:
            count = int(np.prod(param.shape, dtype=np.int64))
            value = flat[offset:offset + count].reshape(param.shape)
            param.set_data(ms.Tensor(value, param.dtype))
            offset += count
        if offset != flat.size:
            raise ValueError(f"flat buffer holds {flat.size} values, the parameters {offset}")

    def __call__(self):
        if self.reducer is None:
            return
        import mindspore as ms
        total = self.reducer(ms.Tensor(self.flatten())).asnumpy()
        self.unflatten(total / np.float32(self.size))

    sync = __call__
