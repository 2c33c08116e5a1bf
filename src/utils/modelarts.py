"""ModelArts training jobs: data in before training, results out after, through moxing.

On ModelArts (enable_modelarts: true) the job's inputs and outputs live in OBS; the model zoo's
moxing adapter copies them to the container's local disk (/cache) first and the output folder back
last. Here that is one decorator, `synced`, around an entry point's run(cfg):

- before: data_url -> data_path (/cache/data when data_path is empty), checkpoint_url -> output_path
  (an earlier job's output, so resume: true continues from its rolling checkpoints);
- after, also when the run fails: output_path -> train_url.

Only the first device of each node copies (every rank of a node shares its /cache): it writes a sync
file when its copy-in is done and the node's other ranks wait for it. msrun's scheduler process
copies nothing. `moxing` (installed on ModelArts only) is imported only when enabled; missing, the
run is refused in one line before anything is written.
"""
import functools
import logging
import os
import time

from src.utils.errors import ConfigError, CPCError, first_line

log = logging.getLogger("cpc")

LOCAL_CACHE = "/cache"  # ModelArts' local disk, where the zoo's jobs put their data (/cache/data)
DEVICES_PER_NODE = 8  # a ModelArts Ascend node: the zoo takes DEVICE_ID modulo min(RANK_SIZE, 8)
SYNC_SUFFIX = ".modelarts_copied"  # beside the local copy: its presence lets the node's other ranks go on
SYNC_TIMEOUT = 3600.0  # seconds the other ranks wait for the first device's copy-in (an OBS copy is slow)
SYNC_POLL = 0.5


def first_device_of_node(environ=None):
    """Whether this process copies for its node: device 0 of the node (DEVICE_ID, which msrun sets to
    the local rank, modulo the devices a node runs); never msrun's scheduler."""
    env = os.environ if environ is None else environ
    if env.get("MS_ROLE") == "MS_SCHED":
        return False
    size = env.get("RANK_SIZE") or env.get("MS_WORKER_NUM") or "1"
    per_node = min(int(size) if size.isdigit() and int(size) > 0 else 1, DEVICES_PER_NODE)
    device = env.get("DEVICE_ID", "0").strip()
    return (int(device) if device.isdigit() else 0) % per_node == 0


def import_moxing():
    """The moxing package, or ConfigError in one line (nothing has been written yet)."""
    try:
        import moxing
    except ImportError:
        raise ConfigError("enable_modelarts needs the moxing package, which ModelArts' training images "
                          "provide; outside ModelArts set enable_modelarts: false") from None
    return moxing


def _copy_in(mox, url, local, first):
    """url -> local by the node's first device; the other ranks wait for its sync file."""
    done = local.rstrip(os.sep) + SYNC_SUFFIX
    if first:
        if os.path.exists(done):
            os.remove(done)  # left by an earlier run in the same container
        os.makedirs(local, exist_ok=True)
        _copy(mox, url, local)
        with open(done, "w", encoding="utf-8"):
            pass
        return
    deadline = time.monotonic() + SYNC_TIMEOUT
    while not os.path.exists(done):
        if time.monotonic() > deadline:
            raise CPCError(f"ModelArts: the node's first device did not finish copying {url} -> {local} "
                           f"within {SYNC_TIMEOUT:.0f} s")
        time.sleep(SYNC_POLL)


def _copy(mox, src, dst):
    """moxing's copy, its failure (of any type: OBS, network) as one line."""
    log.info("ModelArts: copying %s -> %s", src, dst)
    try:
        mox.file.copy_parallel(src, dst)
    except Exception as exc:
        raise CPCError(f"ModelArts: copying {src} -> {dst} failed: {type(exc).__name__}: {first_line(exc, '')}") \
            from None


def synced(run):
    """Decorate run(cfg, ...): with cfg.enable_modelarts, copy the inputs in before it and
    cfg.output_path (as it was on entry: every rank's folder is inside) to train_url after it."""
    @functools.wraps(run)
    def wrapper(cfg, *args, **kwargs):
        if not cfg.enable_modelarts:
            return run(cfg, *args, **kwargs)
        if not cfg.train_url:
            raise ConfigError("enable_modelarts needs train_url (the OBS folder that receives output_path): "
                              "without it the job's results stay in the container")
        mox = import_moxing()
        first = first_device_of_node()
        if cfg.data_url:
            cfg.data_path = cfg.data_path or os.path.join(LOCAL_CACHE, "data")
            _copy_in(mox, cfg.data_url, cfg.data_path, first)
        output = cfg.output_path
        if cfg.checkpoint_url:
            _copy_in(mox, cfg.checkpoint_url, output, first)
        try:
            result = run(cfg, *args, **kwargs)
        except BaseException:
            if first and os.path.isdir(output):  # what the failed run wrote (train.log says why)
                try:
                    _copy(mox, output, cfg.train_url)
                except CPCError as exc:  # the run's own error is the one to report
                    log.error("%s", exc)
            raise
        if first:
            _copy(mox, output, cfg.train_url)
        return result
    return wrapper
