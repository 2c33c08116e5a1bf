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
    """Keras ReduceLROnPlateau on the validation loss: multiply by `factor` after `patience`
    epochs without improvement, never below `minimum` (the original: 1/3, 2 epochs, 1e-4)."""

    def __init__(self, lr, factor, patience, minimum):
        self.lr, self.factor, self.patience, self.minimum = lr, factor, patience, minimum
        self.best, self.wait = math.inf, 0

    def update(self, val_loss):
        """Feed one epoch's validation loss; returns the learning rate for the next epoch."""
        if val_loss < self.best:
            self.best, self.wait = val_loss, 0
        else:
            self.wait += 1
            if self.wait >= self.patience and self.lr > self.minimum:
                self.lr, self.wait = max(self.lr * self.factor, self.minimum), 0
        return self.lr

    def reason(self):
        return f"validation loss has not improved for {self.patience} epochs"

    def state(self):
        return {"lr": self.lr, "best": self.best, "wait": self.wait}

    def load_state(self, state):
        self.lr, self.best, self.wait = (state[k] for k in ("lr", "best", "wait"))


def build_schedule(cfg):
    """The run's schedule, from the config's lr_* keys."""
    return PlateauLR(cfg.learning_rate, cfg.lr_factor, cfg.lr_patience, cfg.lr_min)
