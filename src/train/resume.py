"""Rolling checkpoints and exact resume of an interrupted training run.

Besides cpc_last/cpc_best/encoder_best, training writes rolling checkpoints
cpc_e{epoch}_s{global step}.ckpt of the train cell (network + Adam moments and step counters),
every `save_checkpoint_steps` steps and after each epoch's validation, keeping the newest
`keep_checkpoint_max`. Their metadata holds everything else a run needs to go on as if it had never
stopped: epoch, step within the epoch, global step, whether the epoch's validation is done, the
learning-rate schedule's state (src/train/schedule.py), the best validation accuracy, the history and the losses so far.
The sequence data is random access (batch i is a function of seed, split and i), so the data
position is just the global step. `--resume True` loads the newest complete one (temporary files of
an interrupted save never match the name pattern; a file that cannot be read is skipped).
"""
import logging
import os
import re

import mindspore as ms

from src import checkpoint
from src.config import stored_hparams
from src.utils.errors import CheckpointError, CPCError

log = logging.getLogger("cpc")

ROLLING = re.compile(r"^cpc_e(\d+)_s(\d+)\.ckpt$")
RUN_KEYS = ("seed", "batch_size", "steps_per_epoch", "num_negatives", "negatives_across_steps", "amp_level")
# keys that change the training data or what validation measures: changed on resume, the history would
# mix two experiments. Checkpoints written before they were recorded are not checked on them.
DATA_KEYS = ("patch_jitter", "color_drop", "val_steps", "precise_bn_batches", "repr_eval", "repr_train_digits",
             "repr_val_digits", "knn_k", "probe_alpha")
RUN_KEYS += DATA_KEYS
RUN_DEFAULTS = {"amp_level": "O0"}  # what checkpoints written before a key was checked were trained with
STEP_LOSSES_KEPT = 100  # metrics.json keeps the first this many step losses (determinism checks)


def rolling(out):
    """Paths of the rolling checkpoints in `out`, oldest first."""
    found = []
    for name in os.listdir(out) if os.path.isdir(out) else ():
        match = ROLLING.match(name)
        if match:
            found.append((int(match.group(2)), int(match.group(1)), os.path.join(out, name)))
    return [path for _, _, path in sorted(found)]


class RunState:
    """Where training stands: the next step to run and everything the epoch loop accumulates.
    Changed only through its methods (add_loss, record_epoch, end_epoch, save, restore)."""

    def __init__(self, cfg, hparams, schedule, train_cell):
        self.cfg, self.hparams, self.schedule, self.train_cell = cfg, hparams, schedule, train_cell
        self.epoch, self.step = 1, 0  # the epoch to run next and the steps of it already done
        self.epoch_losses, self.history, self.step_losses = [], [], []
        self.best_acc, self.last_path, self.resumed_from = -1.0, None, None

    @property
    def global_step(self):
        return (self.epoch - 1) * self.cfg.steps_per_epoch + self.step

    def add_loss(self, loss, steps=1):
        """Record the mean loss of the next `steps` steps (1 when fed step by step, a sink's length)."""
        self.step += steps
        self.epoch_losses.append(loss)
        if len(self.step_losses) < STEP_LOSSES_KEPT:
            self.step_losses.append(loss)

    def record_epoch(self, record):
        """Append one epoch's history record; True when its validation accuracy is the best so far."""
        self.history.append(record)
        if record["val_accuracy"] > self.best_acc:
            self.best_acc = record["val_accuracy"]
            return True
        return False

    def end_epoch(self):
        self.epoch, self.step, self.epoch_losses = self.epoch + 1, 0, []

    def meta(self):
        return {"kind": "cpc", "hparams": self.hparams, "run": {k: getattr(self.cfg, k) for k in RUN_KEYS},
                "learning_rate": self.cfg.learning_rate,
                "epoch": self.epoch, "step": self.step, "global_step": self.global_step,
                "schedule": self.schedule.state(),
                "best_val_accuracy": self.best_acc, "history": self.history,
                "epoch_losses": self.epoch_losses, "step_losses": self.step_losses}

    def current_path(self):
        """The rolling checkpoint name of the current state."""
        return os.path.join(self.cfg.output_path, f"cpc_e{self.epoch}_s{self.global_step}.ckpt")

    def save(self, train_cell):
        """Write a rolling checkpoint of the current state; drop the oldest beyond keep_checkpoint_max.
        Returns its path."""
        path = self.current_path()
        checkpoint.save(train_cell, path, self.meta())
        self.last_path = path
        for old in rolling(self.cfg.output_path)[:-self.cfg.keep_checkpoint_max]:
            os.remove(old)
        return path

    def restore(self, meta, path):
        run_then = dict(RUN_DEFAULTS, **(meta.get("run") or {}))
        # checkpoints written before a model key existed were trained with its old value
        hparams_then = stored_hparams(meta.get("hparams") or {})
        run_then.update({k: getattr(self.cfg, k) for k in DATA_KEYS if k not in run_then})  # not recorded then
        if hparams_then != self.hparams or run_then != {k: getattr(self.cfg, k) for k in RUN_KEYS}:
            now = dict(self.hparams, **{k: getattr(self.cfg, k) for k in RUN_KEYS})
            then = dict(hparams_then, **run_then)
            diff = ", ".join(f"{k} {then.get(k)!r} != {v!r}" for k, v in now.items() if then.get(k) != v)
            raise CPCError(f"cannot resume from {path}: it was trained with other settings "
                           f"(checkpoint vs config: {diff}); use the same command, or another output_path")
        self.epoch, self.step = meta["epoch"], meta["step"]
        self.schedule.load_state(meta["schedule"])
        self.best_acc, self.history = meta["best_val_accuracy"], meta["history"]
        self.epoch_losses, self.step_losses = meta["epoch_losses"], meta["step_losses"]
        self.last_path = self.resumed_from = path


def start(cfg, hparams, schedule, train_cell, optimizer, newest_common=None):
    """The RunState to train from: the newest readable rolling checkpoint with --resume True
    (weights, Adam state and learning rate loaded into the train cell), else a fresh start. Every
    refusal comes before anything is written: a fresh start into a folder holding rolling
    checkpoints (the resumable state of an earlier run is never deleted unasked), a checkpoint of
    other settings, an epoch_size below the epochs already done. Data parallel: newest_common
    (distributed.NewestCommonStep) turns the global steps this rank holds into the newest all ranks hold."""
    newest_common = newest_common or (lambda steps: max(steps, default=-1))
    state = RunState(cfg, hparams, schedule, train_cell)
    found = rolling(cfg.output_path)
    if not cfg.resume:
        if found:
            raise CPCError(f"output_path {cfg.output_path} holds {len(found)} rolling checkpoints of an earlier run "
                           f"(newest {os.path.basename(found[-1])}): continue it with --resume True, or start "
                           f"afresh in another output_path (or delete its cpc_e*_s*.ckpt files)")
        return state
    readable = list(_readable(found))
    mine = readable[0][0] if readable else -1
    if readable:  # refusals first, on every rank alike (settings changed, epoch_size below the epochs done)
        state.restore(readable[0][3], readable[0][1])
        _check_epochs(cfg, state, readable[0][1])
    common = newest_common([entry[0] for entry in readable])
    if common != mine:  # another rank lacks this rank's newest checkpoint (killed during a save)
        if common < 0:
            raise CPCError(f"cannot resume in {cfg.output_path}: no checkpoint step is held by every rank "
                           f"(this rank holds {[entry[0] for entry in readable] or 'none'}); every rank needs "
                           f"the same state")
        log.info("resume: global step %d is the newest every rank holds (this rank also has %d)", common, mine)
    newest = next((entry for entry in readable if entry[0] == common), None)
    if newest is None and common >= 0:
        raise CPCError(f"cannot resume in {cfg.output_path}: the ranks agreed on global step {common}, which this "
                       f"rank has no readable checkpoint of")
    if newest is None:
        log.info("resume: no checkpoint to resume from in %s: starting fresh", cfg.output_path)
        return state
    _, path, params, meta = newest
    state.restore(meta, path)
    _check_epochs(cfg, state, path)
    checkpoint.load_into(train_cell, params, path)
    _apply_new_learning_rate(cfg, meta, schedule)
    optimizer.learning_rate.set_data(ms.Tensor(schedule.lr, ms.float32))
    log.info("resuming from %s: epoch %d, step %d of %d (global step %d), lr %.2e",
             path, state.epoch, state.step, cfg.steps_per_epoch, state.global_step, schedule.lr)
    if state.step == cfg.steps_per_epoch:  # saved after the last step, before validation
        log.info("epoch %d's steps are done: validating it", state.epoch)
    return state


def _readable(found):
    """(global step, path, params, meta) of each rolling checkpoint that loads and holds a resume
    state, newest first (a file that cannot be read, or has no state, is skipped and said)."""
    for path in reversed(found):
        try:
            params, meta = checkpoint.load(path)
        except CheckpointError as exc:
            log.info("skipping unreadable checkpoint: %s", exc)
            continue
        if not meta or "schedule" not in meta:
            log.info("skipping %s: no resume state in its metadata", path)
            continue
        yield int(ROLLING.match(os.path.basename(path)).group(2)), path, params, meta


def _check_epochs(cfg, state, path):
    """Refuse an epoch_size below the epochs the checkpoint has already trained (metrics.json would
    count epochs the run says it never had)."""
    if state.global_step > cfg.epoch_size * cfg.steps_per_epoch:
        done = state.epoch - 1 + (state.step > 0)
        raise CPCError(f"cannot resume from {path}: it has trained {done} epochs, more than epoch_size "
                       f"{cfg.epoch_size}; resume with --epoch_size {done} or more")


def _apply_new_learning_rate(cfg, meta, schedule):
    """A learning_rate other than the one the run was started with (e.g. lowered after a NaN, as
    docs/troubleshooting.md advises) replaces the checkpoint's scheduled rate, and says so."""
    history = meta.get("history") or [{}]
    started = meta.get("learning_rate", history[0].get("learning_rate"))  # older checkpoints: epoch 1's rate
    if started is None or started == cfg.learning_rate:
        return
    log.info("learning_rate %.2e given (the run started at %.2e): continuing at %.2e instead of the "
             "checkpoint's scheduled %.2e", cfg.learning_rate, started, cfg.learning_rate, schedule.lr)
    schedule.lr = cfg.learning_rate
