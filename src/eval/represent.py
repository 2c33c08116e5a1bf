"""What the encoder's codes say about the digits, each epoch: kNN accuracy and a linear probe.

The contrastive accuracy is near 1 after the first epoch and says little about the codes; the
self-supervised libraries score the codes as digit features during training instead (lightly's
kNN monitor, solo-learn's online probe). Ours is simpler than theirs: their kNN weights each of
its 200 neighbours' votes by exp(similarity / temperature); this one takes an unweighted majority of
`knn_k` neighbours, so its figures are not comparable with theirs. Here, after each validation:
the codes of a fixed class-balanced subset of the training digits (`repr_train_digits`) and of the validation digits
(`repr_val_digits`), computed in inference mode, then

  knn_accuracy    majority vote of the `knn_k` nearest training codes (cosine distance)
  probe_accuracy  a ridge classifier (closed form, `probe_alpha`) on standardised codes

both scored on the validation codes; chance is DIGIT_CHANCE (balanced subsets). scikit-learn does
both (brute-force cosine kNN; RidgeClassifier solves one linear system: deterministic, no iteration
budget, milliseconds on a thousand codes). Training is untouched: the subsets and their
renderings use random streams of their own, the encoder runs in inference mode (BatchNorm reads its
statistics, updates nothing) and the codes are numpy arrays no gradient reaches.
"""
import time

import numpy as np
from mindspore import Tensor

from src.data.dataset import render_digits
from src.model.image_cpc import ImageEncoder
from src.utils.streams import stream_rng

DIGIT_CHANCE = 0.1  # ten balanced digit classes
ENCODE_BATCH = 500  # images per encoder call (one compiled shape for subsets of multiples of it)
# images per call of an image-task encoder: each is 49 patch encodings (64x64), so 500 images took a
# 6.9 GB peak on CPU to encode 3,500 digits; 100 take 2.0 GB and are faster (14.5 s against 22.2 s).
# The codes differ from 500's by float rounding only (max 1.5e-7): one image's codes never depend on
# the others' in inference mode.
IMAGE_ENCODE_BATCH = 100
# images per call of the monitor's encoder: at most the 256 a training step encodes (32 sequences of
# 8), so the monitor runs in memory the step has already taken from MindSpore's pool; 500 took 0.2 GB
# more at each epoch's end. The codes are the same bit for bit on CPU (one image's codes never depend
# on the others' in inference mode), and 250 divides both subsets (one compiled shape).
MONITOR_BATCH = 250


def images_per_call(net):
    """IMAGE_ENCODE_BATCH when net is (or its .encoder is) an image-task encoder, else ENCODE_BATCH."""
    return IMAGE_ENCODE_BATCH if isinstance(getattr(net, "encoder", net), ImageEncoder) else ENCODE_BATCH


def encode(encoder, images, batch=None):
    """Codes [N, code_size] of float32 images, encoder in inference mode (nothing is updated);
    batch images per call (default: images_per_call(encoder))."""
    encoder.set_train(False)
    batch = batch or images_per_call(encoder)
    return np.concatenate([encoder(Tensor(images[i:i + batch])).asnumpy() for i in range(0, len(images), batch)])


def fixed_subset(labels, count, seed, split_id):
    """Sorted indices of a class-balanced subset of `labels`: count // 10 of each digit (all of a
    digit's images when it has fewer), drawn with a stream of its own: a pure function of its
    arguments, so every epoch and every run with this seed sees the same digits."""
    rng = stream_rng("fixed_subset", seed, split=split_id)
    per_class = max(1, count // 10)
    chosen = [rng.permutation(np.flatnonzero(labels == digit))[:per_class] for digit in range(10)]
    return np.sort(np.concatenate(chosen))


def knn_accuracy(train_codes, train_labels, codes, labels, k):
    """Accuracy on (codes, labels) of the majority vote of the k nearest training codes (cosine)."""
    from sklearn.neighbors import KNeighborsClassifier
    knn = KNeighborsClassifier(n_neighbors=min(k, len(train_labels)), metric="cosine", algorithm="brute")
    return float(knn.fit(train_codes, train_labels).score(codes, labels))


def probe_accuracy(train_codes, train_labels, codes, labels, alpha):
    """Accuracy on (codes, labels) of a ridge classifier fitted on standardised training codes."""
    from sklearn.linear_model import RidgeClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    probe = make_pipeline(StandardScaler(), RidgeClassifier(alpha=alpha))
    return float(probe.fit(train_codes, train_labels).score(codes, labels))


def code_scores(train_codes, train_labels, codes, labels, cfg):
    """{knn_accuracy, probe_accuracy} of the codes with the config's k and alpha."""
    return {"knn_accuracy": knn_accuracy(train_codes, train_labels, codes, labels, cfg.knn_k),
            "probe_accuracy": probe_accuracy(train_codes, train_labels, codes, labels, cfg.probe_alpha)}


class RepresentationMonitor:
    """Called after each validation: scores the encoder's current codes of the fixed subsets.

    encoder: the CPC net's encoder Cell (its train/inference mode is restored after each call);
    train, val: (images uint8 [N, 28, 28], labels) of the splits training already holds."""

    def __init__(self, encoder, train, val, cfg):
        self.encoder, self.cfg = encoder, cfg
        self.inputs, self.labels = [], []
        for split_id, (split, (images, labels)) in enumerate((("train", train), ("val", val))):
            count = cfg.repr_train_digits if split == "train" else cfg.repr_val_digits
            pick = fixed_subset(labels, count, cfg.seed, split_id)
            self.inputs.append(render_digits(images[pick], cfg.image_size, cfg.color, cfg.seed, split))
            self.labels.append(np.asarray(labels)[pick])

    def __call__(self):
        """{knn_accuracy, probe_accuracy, repr_seconds} of the encoder as it is now."""
        start, mode = time.perf_counter(), self.encoder.training
        try:
            batch = min(MONITOR_BATCH, images_per_call(self.encoder))
            train_codes, val_codes = (encode(self.encoder, x, batch) for x in self.inputs)
        finally:
            self.encoder.set_train(mode)
        result = code_scores(train_codes, self.labels[0], val_codes, self.labels[1], self.cfg)
        result["repr_seconds"] = round(time.perf_counter() - start, 3)
        return result

    def sizes(self):
        """(training digits, validation digits) in the subsets."""
        return len(self.labels[0]), len(self.labels[1])
