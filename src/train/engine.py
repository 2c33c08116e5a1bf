"""The training engine: one run of a pre-training method, epoch by epoch.

    train(cfg, target, data) -> metrics

Set-up (Engine.__init__): the method (src/methods, by the config key `task`), its network, the
train cell (src/train/trainer.py), the schedule (src/train/schedule.py) and the run state, fresh or
resumed (src/train/resume.py); everything that can refuse does so before anything is written.
Then each epoch is one Model.train(dataset_sink_mode=True) call over the epoch's remaining steps,
in passes of `sink_size` steps (one sink on a device; per-step feeding on CPU), followed by the end
of the epoch: the named steps of src/train/epoch_end.py. Around the step the callbacks of
src/train/callbacks.py log, save rolling checkpoints and stop on a signal. The engine never
branches on the method.
"""
import logging
import os
import time

import mindspore as ms
from mindspore.train import Model

from src.config import model_hparams, save_config
from src.data.dataset import create_train_dataset
from src.eval.precise_bn import PreciseBatchNorm
from src.eval.represent import DIGIT_CHANCE, RepresentationMonitor
from src.methods import create_method
from src.model.backend import backend_for
from src.train import epoch_end, resume
from src.train.callbacks import EpochClock, LossSum, StepMonitor, StopOnSignal
from src.train.distributed import AnyRank, BufferSync, NewestCommonStep, collective_guard, rank_and_size
from src.train.schedule import build_schedule
from src.train.trainer import build_train_cell, load_training_data, network_subject, sink_size, sinks_data
from src.utils.errors import CPCError, batch_guard, memory_guard
from src.utils.plots import plot_training_curves
from src.utils.runlog import write_json

log = logging.getLogger("cpc")


def train(cfg, target, data=None):
    """Train as configured; writes checkpoints, config.yaml, metrics.json and training_curves.png;
    returns the metrics. data: optional (train, val) from load_training_data."""
    method = create_method(cfg.task)
    engine = Engine(cfg, target, method, data if data is not None else load_training_data(cfg))
    save_config(cfg, os.path.join(cfg.output_path, "config.yaml"))
    with batch_guard("batch_size", cfg.batch_size, method.describe_batch(cfg)):
        engine.prepare()
        return engine.fit()


class Engine:
    """The parts of one run and its epoch loop. The run state (self.state) changes only through
    its own methods; the schedule only in src/train/schedule.py."""

    def __init__(self, cfg, target, method, data):
        self.cfg, self.target, self.method = cfg, target, method
        self.train_data, self.val_data = data
        hparams = model_hparams(cfg)
        with memory_guard(network_subject(hparams), "use smaller model keys"):
            self.net = method.build_net(hparams, backend_for(target))
            self.train_cell, self.optimizer = build_train_cell(self.net, cfg, target, method)
        self.schedule = build_schedule(cfg)
        # refuses before anything is written; data parallel: every rank from the same step
        self.rank, self.size = rank_and_size()
        with collective_guard(self.rank, self.size):
            self.state = resume.start(cfg, hparams, self.schedule, self.train_cell, self.optimizer,
                                      NewestCommonStep(self.size, cfg.epoch_size * cfg.steps_per_epoch))
        self.chunk = sink_size(cfg)
        if self.state.step % self.chunk:
            raise CPCError(f"{self.state.resumed_from} was saved at step {self.state.step} of an epoch, which is "
                           f"not a multiple of the sink size {self.chunk} (the common divisor of steps_per_epoch, "
                           f"log_interval and save_checkpoint_steps): resume with the settings it was written with")
        self.model, self.last_val, self.trained_steps, self.step_seconds = None, None, 0, 0.0

    def prepare(self):
        """What the end of an epoch needs: validation batches and scorer, PreciseBN's calibration
        batches (the same training batches on every rank), the representation monitor, the rank sync."""
        cfg, method, net = self.cfg, self.method, self.net
        self.val_source = method.build_source(cfg, "val", cfg.val_steps, data=self.val_data)
        scorer, self.clock = method.scorer(net, cfg), EpochClock()
        self.validate = lambda: method.evaluate(net, self.val_source, scorer)
        self.precise_bn = None
        if cfg.precise_bn_batches:
            calibration = method.build_source(cfg, "train", cfg.precise_bn_batches, data=self.train_data)
            self.precise_bn = PreciseBatchNorm(net, method.calibration_batches(calibration))
        # every method's net.encoder maps whole images to the vectors eval.py and export.py use
        self.represent = RepresentationMonitor(net.encoder, self.train_data, self.val_data, cfg) \
            if cfg.repr_eval else None
        self.buffer_sync = BufferSync(net, self.size)

    def fit(self):
        """The epochs still to run, each trained then ended; returns the metrics."""
        cfg, run = self.cfg, self.state
        start = time.perf_counter()
        with StopOnSignal(run, AnyRank(self.size)) as stop:  # from here SIGTERM/SIGINT save, then stop
            if run.step == cfg.steps_per_epoch:  # resumed from after an epoch's last step, before validation
                log.info("epoch %d's steps are done: validating it", run.epoch)
                self.end_epoch()
            self.log_start()
            while run.global_step < cfg.epoch_size * cfg.steps_per_epoch:
                self.train_epoch(stop)
                self.end_epoch()
        return self.report(time.perf_counter() - start)

    def train_epoch(self, stop):
        """The current epoch's remaining steps: one Model.train call of passes of `chunk` steps."""
        cfg, run, size = self.cfg, self.state, self.size
        if self.model is None:
            self.loss_sum = LossSum(self.train_cell)
            self.model = Model(self.loss_sum)
            self.callbacks = [StepMonitor(cfg, run, self.loss_sum, self.clock), stop]
        left = cfg.steps_per_epoch - run.step
        source = self.method.build_source(cfg, "train", left * size, start=run.global_step * size,
                                          data=self.train_data)
        dataset = create_train_dataset(source, self.chunk, self.rank, size, cfg.num_parallel_workers)
        with collective_guard(self.rank, size):
            self.model.train(left // self.chunk, dataset, callbacks=self.callbacks, dataset_sink_mode=True,
                             sink_size=self.chunk)

    def end_epoch(self):
        """Run the named steps of src/train/epoch_end.py on the epoch whose steps are done."""
        first, seconds = self.clock.end(self.cfg.steps_per_epoch)
        self.trained_steps += self.cfg.steps_per_epoch - first
        self.step_seconds += seconds
        epoch = epoch_end.EpochEnd(first, seconds, self.schedule.lr)
        for step in epoch_end.STEPS:
            step(self, epoch)
        self.last_val = epoch.val

    def sinks(self):
        """Whether MindSpore sinks the data (Ascend/GPU, graph or PyNative mode)."""
        return sinks_data(self.target)

    def feeding(self):
        """How the batches reach the step, in words (the start line of the log)."""
        if not self.sinks():
            return "per-step feeding"
        return f"data sinking, {self.chunk} steps per sink" if self.cfg.mode == "graph" else \
            "data sinking, one step per call (PyNative)"

    def log_start(self):
        cfg = self.cfg
        log.info("training %s CPC (%s loss) on %s (%s mode, %s): %d epochs x %d steps, batch %d, %d train / %d val "
                 "digits", cfg.task, self.method.loss_name(cfg), self.target, cfg.mode,
                 self.feeding(),
                 cfg.epoch_size, cfg.steps_per_epoch, cfg.batch_size, len(self.train_data[0]),
                 len(self.val_source.images))
        if self.size > 1:
            # the pid in the log lets a reader match a rank to the worker msrun reports (run_status.json has it too)
            log.info("data parallel: rank %d of %d, global batch %d, pid %d", self.rank, self.size,
                     cfg.batch_size * self.size, os.getpid())

    def report(self, seconds):
        """metrics.json and training_curves.png of the run; returns the metrics."""
        cfg, run = self.cfg, self.state
        val = self.last_val or self.validate()  # resuming a finished run: validate only
        trained, represent = self.trained_steps, self.represent
        metrics = {"val_accuracy": run.history[-1]["val_accuracy"], "best_val_accuracy": run.best_acc,
                   "chance_accuracy": val["chance_accuracy"], "task": cfg.task, "loss": self.method.loss_name(cfg),
                   "epochs": len(run.history), "digit_chance_accuracy": DIGIT_CHANCE if represent is not None else None,
                   "repr_digits": represent.sizes() if represent is not None else None,
                   "steps": cfg.epoch_size * cfg.steps_per_epoch, "resumed_from": run.resumed_from,
                   "train_seconds": round(seconds, 3),
                   "samples_per_second": round(trained * cfg.batch_size / self.step_seconds, 2)
                   if trained and self.step_seconds else None,
                   "device_target": self.target, "mode": cfg.mode, "dataset_sink_mode": self.sinks(),
                   "sink_size": self.chunk if self.sinks() else 1, "amp_level": cfg.amp_level, "rank": self.rank,
                   "group_size": self.size, "mindspore_version": ms.__version__, "history": run.history,
                   "step_losses": run.step_losses}
        write_json(os.path.join(cfg.output_path, "metrics.json"), metrics)
        plot_training_curves(run.history, metrics["chance_accuracy"],
                             os.path.join(cfg.output_path, "training_curves.png"), DIGIT_CHANCE)
        log.info("done: val_acc %.4f (best %.4f, chance %.3f) in %.1f s; checkpoints in %s", metrics["val_accuracy"],
                 run.best_acc, metrics["chance_accuracy"], metrics["train_seconds"], cfg.output_path)
        return metrics
