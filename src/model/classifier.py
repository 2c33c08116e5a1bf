"""The downstream digit classifier: the CPC encoder followed by a small head, as one Cell.

The published probe (D. Tellez's Keras CPC) is an MLP on the frozen encoder's codes:
Dense 128 -> BatchNorm -> LeakyReLU -> Dense 10. `Classifier` keeps encoder and head together
(image in -> 10 logits), so the trained probe is exported as one network for inference; its
parameter names are `encoder.*` (the same names as in a CPC checkpoint) and `head.*`.
"""
from mindspore import nn

from src.model.build import build_encoder, feature_size
from src.model.cpc import BN_EPS, BN_MOMENTUM, LEAKY_ALPHA

NUM_CLASSES = 10
HEAD_HIDDEN = 128
HEADS = ("mlp", "linear")


class DigitHead(nn.Cell):
    """Codes [N, code_size] -> digit logits [N, 10]; kind 'mlp' (published) or 'linear' (probe)."""

    def __init__(self, code_size, kind="mlp"):
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {kind!r}")
        if kind == "mlp":
            self.layers = nn.SequentialCell([
                nn.Dense(code_size, HEAD_HIDDEN, weight_init="XavierUniform"),
                nn.BatchNorm1d(HEAD_HIDDEN, eps=BN_EPS, momentum=BN_MOMENTUM),
                nn.LeakyReLU(LEAKY_ALPHA),
                nn.Dense(HEAD_HIDDEN, NUM_CLASSES, weight_init="XavierUniform")])
        else:
            self.layers = nn.Dense(code_size, NUM_CLASSES, weight_init="XavierUniform")

    def construct(self, codes):
        return self.layers(codes)


class Classifier(nn.Cell):
    """Images [N, C, S, S] in [-1, 1] -> digit logits [N, 10]: encoder, then head."""

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def construct(self, x):
        return self.head(self.encoder(x))


def build_classifier(hparams, head, backend):
    """A Classifier whose encoder is built from the CPC hyper-parameters stored in checkpoints."""
    encoder = build_encoder(hparams, backend)
    return Classifier(encoder, DigitHead(feature_size(hparams), head))
