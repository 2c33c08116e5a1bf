"""The few-label protocol of the downstream study: labelled subsets, data, heads and their fits.

Every trained head takes the same number of Adam steps on the same batch size, whatever the label
fraction; after them each trained net's BatchNorm statistics are re-estimated on its training
inputs (PreciseBN), as in CPC training. The `logistic` head is scikit-learn's LogisticRegression on
standardised frozen codes, its L2 strength C chosen by stratified cross-validation on the labelled
subset alone (as the few-label linear protocols do); it sees nothing of the test split.
"""
import logging
import time
from typing import NamedTuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from src.config import model_hparams
from src.data.dataset import render_digits
from src.eval.precise_bn import PreciseBatchNorm, array_batches, batch_norm_layers
from src.eval.represent import ENCODE_BATCH, encode, images_per_call
from src.model.autoencoder import build_autoencoder
from src.model.optim import adam
from src.utils.errors import CPCError
from src.utils.streams import stream_rng

log = logging.getLogger("cpc")

# lbfgs iterations of each logistic fit: enough for the weakest penalty of the grid on a few
# thousand standardised codes (scikit-learn's default of 100 stops short there)
LOGISTIC_MAX_ITER = 1000
LOGISTIC_C_RANGE = (-4, 4)  # log10 of the smallest and largest C of the grid (LogisticRegressionCV's)


def balanced_subset(labels, fraction, seed):
    """Sorted indices of a class-balanced subset: round(fraction * n_c) (at least 1) of each class
    c, chosen at random; a pure function of (labels, fraction, seed). Nested: a smaller fraction's
    subset is part of a larger one's."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    rng = stream_rng("label_subset", seed)
    chosen = []
    for digit in range(10):
        members = np.flatnonzero(labels == digit)
        if len(members):
            chosen.append(rng.permutation(members)[:max(1, int(fraction * len(members) + 0.5))])
    return np.sort(np.concatenate(chosen))


def copy_weights(source, target):
    """Set every parameter of `target` (BatchNorm statistics included) to a copy of the same
    parameter of `source`, a Cell of the same structure; source is left as it was."""
    def names(cell):
        return [p.name.removeprefix("encoder.") for p in cell.get_parameters()]
    if names(source) != names(target):
        raise ValueError("copy_weights needs two Cells of the same structure")
    pairs = zip(source.get_parameters(), target.get_parameters())
    for a, b in pairs:
        b.set_data(Tensor(a.asnumpy().copy()))


def predict(net, inputs):
    """Argmax digit of `net` (inference mode) over inputs, in batches."""
    net.set_train(False)
    batch = images_per_call(net)
    return np.concatenate([net(Tensor(inputs[i:i + batch])).asnumpy().argmax(-1) for i in range(0, len(inputs), batch)])


class TrainStep(nn.Cell):
    """One optimizer step on (inputs, labels), returning the loss: nn.TrainOneStepCell's computation
    without a loss scale or gradient reducer. Its construct names its two inputs because a Cell
    whose construct takes *inputs (as TrainOneStepCell's does) stays referenced by MindSpore 2.10's
    graph executor after its first call, with the network and every graph compiled for it: each fit
    of an image-task classifier then kept about a gigabyte."""

    def __init__(self, loss_net, optimizer):
        super().__init__(auto_prefix=False)
        self.network = loss_net
        self.network.set_grad()
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True)

    def construct(self, inputs, labels):
        loss = self.network(inputs, labels)
        grads = self.grad(self.network, self.weights)(inputs, labels)
        return ops.depend(loss, self.optimizer(grads))


class Budget(NamedTuple):
    """What one fit may spend: Adam steps, examples per step, learning rate, and the seed of its
    batch order."""
    steps: int
    batch_size: int
    learning_rate: float
    seed: int

    @classmethod
    def heads(cls, config, steps=None, seed=None):
        """The study's budget for a head (config's head_* keys; steps and seed overridable)."""
        return cls(config.head_steps if steps is None else steps, config.head_batch_size,
                   config.head_learning_rate, config.seed if seed is None else seed)


def fit(net, inputs, labels, budget, loss_fn=None):
    """Adam on `loss_fn` (default: softmax cross-entropy on integer labels; the autoencoder's: MSE
    against labels = the inputs) for budget.steps steps over reshuffled passes of (inputs, labels),
    then net's BatchNorm statistics re-estimated on its training inputs with the final weights
    (calibrate: PreciseBN, src/eval/precise_bn.py); returns the mean loss of the last 10% of the steps."""
    if loss_fn is None:
        loss_fn, labels = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"), labels.astype(np.int32)
    steps = budget.steps
    step = TrainStep(nn.WithLossCell(net, loss_fn), adam(net.trainable_params(), budget.learning_rate))
    step.set_train()
    rng = stream_rng("head_batches", budget.seed, count=len(labels))
    batch = min(budget.batch_size, len(labels))
    order, pos, losses = rng.permutation(len(labels)), 0, []
    for _ in range(steps):
        if pos + batch > len(order):
            order, pos = rng.permutation(len(labels)), 0
        idx = np.sort(order[pos:pos + batch])
        pos += batch
        losses.append(float(step(Tensor(inputs[idx]), Tensor(labels[idx])).asnumpy()))
    if not np.isfinite(losses[-1]):  # a user-facing error (eval.py: one line), e.g. on huge codes
        raise CPCError(f"a downstream classifier diverged (loss {losses[-1]} after {steps} steps, largest "
                       f"|input| {float(np.abs(inputs).max()):.3g}); try a smaller --head_learning_rate")
    calibrate(net, inputs)
    return float(np.mean(losses[-max(1, steps // 10):]))


def calibrate(net, inputs):
    """PreciseBN of a fitted net on its training inputs, ENCODE_BATCH of them per batch. A net of an
    encoder without BatchNorm and a head (a Classifier on the image task's layer- or group-normed
    encoder) hands its head the same batches of codes instead, computed images_per_call at a time in
    inference mode: without batch statistics the encoder's codes do not depend on the batch or the
    mode (on CPU the same bits at 100 and 350 images per call), while the whole net's training-mode
    forward took 4.6 GB more for 350 images of 49 patches each."""
    encoder, head = getattr(net, "encoder", None), getattr(net, "head", None)
    if encoder is not None and head is not None and not batch_norm_layers(encoder):
        net, inputs = head, encode(encoder, inputs)
    PreciseBatchNorm(net, array_batches(inputs, ENCODE_BATCH))()


def logistic_folds(labels, max_folds):
    """Cross-validation folds for the logistic head on these labels: max_folds, or fewer when a
    class has fewer labelled examples (each fold must hold one of every class); below 2, none."""
    smallest = int(np.unique(labels, return_counts=True)[1].min())
    return min(max_folds, smallest) if smallest >= 2 else 0


def fit_logistic(codes, labels, num_c, max_folds):
    """(pipeline, chosen C, training log-loss): StandardScaler + L2 LogisticRegression fitted on
    (codes, labels), C the best of num_c values log-spaced over LOGISTIC_C_RANGE by mean validation
    log-loss over stratified folds of these same labelled codes (log-loss: with one or two digits
    per class and fold, accuracy ties across most of the grid); the scaler is fitted inside each
    fold, then on all of them. Deterministic: unshuffled folds (the subset is already a random draw)
    and one BLAS thread (beside MindSpore's threads, a multi-threaded BLAS made the 50 small solves
    of a 40-digit subset take minutes instead of seconds on the 2-core CPU)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    folds = logistic_folds(labels, max_folds)
    if not folds:
        raise ValueError("the logistic head needs at least 2 labelled examples of every class")
    grid = {"logisticregression__C": np.logspace(*LOGISTIC_C_RANGE, num_c).tolist()}
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=LOGISTIC_MAX_ITER))
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1):
        search = GridSearchCV(model, grid, scoring="neg_log_loss", cv=StratifiedKFold(folds)).fit(codes, labels)
    best = search.best_estimator_
    return best, float(search.best_params_["logisticregression__C"]), float(log_loss(labels, best.predict_proba(codes)))


def train_autoencoder(images, cfg, backend):
    """(autoencoder, final training MSE): src/model/autoencoder.py trained on all the training images
    (no labels) for `ae_steps` Adam steps of MSE, head_batch_size images each at head_learning_rate,
    its BatchNorm statistics then re-estimated (PreciseBN)."""
    start = time.perf_counter()
    ms.set_seed(cfg.seed)
    net = build_autoencoder(model_hparams(cfg), backend)
    loss = fit(net, images, images, Budget.heads(cfg, steps=cfg.ae_steps), nn.MSELoss())
    log.info("autoencoder: %d steps on %d training images, final reconstruction MSE %.4f, %.1f s", cfg.ae_steps,
             len(images), loss, time.perf_counter() - start)
    return net, loss


class DownstreamData:
    """The rendered training and test digits (images as the CPC encoder sees them) and labels."""

    def __init__(self, train, test, hparams, seed):
        size, color = hparams["image_size"], hparams["color"]
        self.train_x = render_digits(train[0], size, color, seed, "train")
        self.train_y = train[1].astype(np.int64)
        self.test_x = render_digits(test[0], size, color, seed, "test")
        self.test_y = test[1].astype(np.int64)
