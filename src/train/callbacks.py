"""What training does around the step, as mindspore.train callbacks of Model.train.

The engine (src/train/engine.py) calls Model.train once per epoch; Model's own "epoch" is one pass
of `sink_size` steps (one sink on a device), so on_train_epoch_end here means the end of a pass.
The train step is one call of the train cell per batch with per-step feeding (CPU), or one call per
sink of `sink_size` batches on Ascend/GPU, where the device runs the steps and the host sees only
the last step's output. LossSum therefore adds every step's loss into a Parameter on the device,
and StepMonitor reads (and clears) it at each callback: the mean of the steps since the last one,
the same number on every device.

- StepMonitor (each step, or each sink): loss, NaN stop, log line, rolling checkpoint.
- StopOnSignal (SIGTERM/SIGINT): a resumable checkpoint at the next pass end, then a clean stop.
The end of an epoch is the engine's, not a callback's (src/train/epoch_end.py).

Hand-written rather than MindSpore's own, each for one reason: LossMonitor/TimeMonitor print
the last step's loss, not the mean, in their own format; ModelCheckpoint cannot put the run state
(schedule, history, losses) into each file's metadata, which exact resume needs.
"""
import logging
import math
import os
import shlex
import signal
import sys
import threading
import time

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.train import Callback

from src.utils.errors import CPCError

log = logging.getLogger("cpc")


class LossSum(nn.Cell):
    """The train cell, plus the running sum of its losses in the Parameter `loss_sum` (added on the
    device, so a sunk epoch's steps all count). Checkpoints hold the train cell, not this."""

    def __init__(self, train_cell):
        super().__init__(auto_prefix=False)
        self.train_cell = train_cell
        self.scaled = isinstance(train_cell, nn.TrainOneStepWithLossScaleCell)  # (loss, overflow, scale)
        self.loss_sum = Parameter(Tensor(0.0, ms.float32), name="loss_sum", requires_grad=False)

    def construct(self, *inputs):
        out = self.train_cell(*inputs)
        loss = out[0] if self.scaled else out
        return ops.depend(out, ops.assign_add(self.loss_sum, loss))


def take_loss(loss_sum):
    """The summed loss since the last call, and the sum set back to zero."""
    value = float(loss_sum.loss_sum.asnumpy())
    loss_sum.loss_sum.set_data(Tensor(0.0, ms.float32))
    return value


class EpochClock:
    """Wall time of the current epoch's training steps (validation excluded), shared by the callbacks."""

    def __init__(self):
        self.start, self.first_step = None, 0

    def begin(self, step):
        if self.start is None:
            self.start, self.first_step = time.perf_counter(), step

    def end(self, steps):
        """(first step, seconds) of the epoch's training now ending; (steps, 0.0) when no step ran
        (a resumed epoch whose steps were all done)."""
        if self.start is None:
            return steps, 0.0
        seconds, self.start = time.perf_counter() - self.start, None
        return self.first_step, seconds


class StepMonitor(Callback):
    """After each step (each sink on a device): the mean loss of its steps into the run state, the
    NaN stop, a log line every `log_interval` steps and a rolling checkpoint every
    `save_checkpoint_steps`. The sink size divides both, so they land on sink ends."""

    def __init__(self, cfg, run, loss_sum, clock):
        super().__init__()
        self.cfg, self.run, self.loss_sum, self.clock = cfg, run, loss_sum, clock
        self.seen, self.window = 0, None

    def on_train_begin(self, run_context):
        self.seen = 0  # Model counts steps from 0 in each Model.train call (one per epoch)

    def on_train_epoch_begin(self, run_context):
        self.clock.begin(self.run.step)
        if self.window is None:
            self.window = (time.perf_counter(), self.run.step, len(self.run.epoch_losses))

    def on_train_step_end(self, run_context):
        cfg, run = self.cfg, self.run
        done = run_context.original_args().cur_step_num
        count, self.seen = done - self.seen, done  # 1 per step fed; sink_size per sink
        run.add_loss(take_loss(self.loss_sum) / count, count)
        loss, step, steps = run.epoch_losses[-1], run.step, cfg.steps_per_epoch
        if not math.isfinite(loss):
            kept = f"the last good checkpoint is {run.last_path}" if run.last_path else \
                "no checkpoint was written before it"
            raise CPCError(f"loss became {loss} at epoch {run.epoch} step {step}; {kept}")
        if cfg.save_checkpoint_steps and step % cfg.save_checkpoint_steps == 0:
            run.save(run.train_cell)
        if step % cfg.log_interval == 0 or step == steps:
            start, first, entries = self.window
            elapsed, stepped = time.perf_counter() - start, step - first
            log.info("epoch %d/%d step %d/%d loss %.4f step %.1f ms %.1f seq/s", run.epoch, cfg.epoch_size,
                     step, steps, float(np.mean(run.epoch_losses[entries:])), 1000 * elapsed / stepped,
                     stepped * cfg.batch_size / elapsed)
            self.window = None if step == steps else (time.perf_counter(), step, len(run.epoch_losses))


class StopRequested(CPCError):
    """Training stopped on a signal; exit code 128 + the signal number, as a shell reports it."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class StopOnSignal(Callback):
    """SIGTERM (a scheduler's preemption) or SIGINT during training: at the end of the current Model
    pass (a sink on a device; at most sink_size - 1 more steps on CPU, so the step is one a resume
    can start from) write the rolling checkpoint of the current step, log the path and the resume
    command, and stop with StopRequested. A second signal ends the process at once.
    MindSpore's runtime turns a SIGINT that arrives while a graph runs into SIGTERM (its own C++
    handler, installed at each graph run), so Ctrl-C is mostly reported as SIGTERM; both stop alike.
    With data parallelism every rank asks at each pass end whether any rank was signalled
    (any_rank), so all stop at the same step and each saves its own state.

    MindSpore's OnRequestExit is not used: it accepts only SIGTERM, writes a plain Net.ckpt without
    the run state exact resume needs (and not atomically), and ends training with exit code 0.
    Use as a context manager around Model.train: it installs the handlers and restores the old ones."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, run, any_rank):
        super().__init__()
        self.run, self.any_rank = run, any_rank
        self.signum, self.previous = None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():  # handlers live in the main thread only
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.signum is not None:
            sys.stderr.write(f"error: {name} again: stopped at once; the last checkpoint is "
                             f"{self.run.last_path or 'none'}\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        log.info("%s received: saving a checkpoint at the end of this pass, then stopping "
                 "(send it again to stop at once)", name)

    def on_train_epoch_end(self, run_context):
        if not self.any_rank(self.signum is not None):
            return
        run = self.run
        path = run.current_path()
        if run.last_path != path:
            path = run.save(run.train_cell)
        command = " ".join(shlex.quote(a) for a in ["python"] + sys.argv) + " --resume True"
        name = signal.Signals(self.signum).name if self.signum else "another rank's stop request"
        log.info("stopped by %s at epoch %d step %d: checkpoint %s; to continue: %s", name, run.epoch, run.step,
                 path, command)
        raise StopRequested(f"stopped by {name} at epoch {run.epoch} step {run.step}; resume from {path} with "
                            f"the same command and --resume True", self.signum or signal.SIGTERM)
