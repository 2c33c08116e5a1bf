"""The learning-rate schedule: the one place to replace it.

The engine asks `build_schedule(cfg)` for an object with
- `lr`: the rate to train the next epoch with (resume may set it: a new learning_rate on the command line),
- `update(val_loss)`: feed one epoch's validation loss, get the rate for the next epoch,
- `reason()`: why the rate changed, for the log line,
- `state()` / `load_state(state)`: a JSON-able dict in every rolling checkpoint, for exact resume.

Hand-written rather than MindSpore's ReduceLROnPlateau callback: that one reads Model.fit's eval
results per Model epoch and keeps its (best, wait) state private, which resume must restore.
"""
import math


class PlateauLR:
    """Keras 2.2.5's ReduceLROnPlateau on the validation loss ('min' mode), which the original ran:
    an epoch improves only if its loss is below the best by more than `min_delta`; after `patience`
    epochs without improvement the rate is multiplied by `factor`, never below `minimum`, and the
    next `cooldown` epochs count no waiting (the original: 1/3, 2 epochs, 1e-4, min_delta 1e-4,
    cooldown 0). The order of the checks is Keras's: the cooldown first, then the improvement.
    One difference: Keras holds the rate in a float32 variable, this in a Python float (the optimizer
    gets it as float32, as Keras's does)."""

    def __init__(self, lr, factor, patience, minimum, min_delta=0.0, cooldown=0):
        self.lr, self.factor, self.patience, self.minimum = lr, factor, patience, minimum
        self.min_delta, self.cooldown = min_delta, cooldown
        self.best, self.wait, self.cooldown_left = math.inf, 0, 0

    def update(self, val_loss):
        """Feed one epoch's validation loss; returns the learning rate for the next epoch."""
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if val_loss < self.best - self.min_delta:
            self.best, self.wait = val_loss, 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience and self.lr > self.minimum:
                self.lr = max(self.lr * self.factor, self.minimum)
                self.cooldown_left, self.wait = self.cooldown, 0
        return self.lr

    def reason(self):
        return f"validation loss has not improved by more than {self.min_delta:g} for {self.patience} epochs"

    def state(self):
        return {"lr": self.lr, "best": self.best, "wait": self.wait, "cooldown": self.cooldown_left}

    def load_state(self, state):
        self.lr, self.best, self.wait = (state[k] for k in ("lr", "best", "wait"))
        self.cooldown_left = state.get("cooldown", 0)  # checkpoints written before the cooldown was kept


def build_schedule(cfg):
    """The run's schedule, from the config's lr_* keys."""
    return PlateauLR(cfg.learning_rate, cfg.lr_factor, cfg.lr_patience, cfg.lr_min, cfg.lr_min_delta, cfg.lr_cooldown)
