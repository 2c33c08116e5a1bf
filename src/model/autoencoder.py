"""The autoencoder baseline of the downstream study: the port's encoder and a small decoder.

The encoder is exactly the CPC encoder (build_encoder, the same hyper-parameters), so its frozen
codes compare with the CPC ones directly. The decoder is a two-layer MLP
(Dense encoder_hidden -> LeakyReLU -> Dense C*S*S -> tanh), which keeps the pixels in [-1, 1]
like the inputs. An MLP, not transposed convolutions: the encoder's sizes ('valid' 64 -> 31 -> 15
-> 7 -> 3, 'same' 28 -> 14 -> 7 -> 4 -> 2) have no exact inverse, and only the encoder is kept.
"""
from mindspore import nn

from src.config import stored_hparams
from src.model.build import build_encoder, feature_size
from src.model.cpc import LEAKY_ALPHA, encoder_shape


class Decoder(nn.Cell):
    """Codes [N, code_size] -> images [N, channels, size, size] in (-1, 1)."""

    def __init__(self, code_size, channels, size, hidden):
        super().__init__()
        self.shape = (channels, size, size)
        self.layers = nn.SequentialCell([
            nn.Dense(code_size, hidden, weight_init="XavierUniform"), nn.LeakyReLU(LEAKY_ALPHA),
            nn.Dense(hidden, channels * size * size, weight_init="XavierUniform"), nn.Tanh()])

    def construct(self, codes):
        return self.layers(codes).reshape((-1,) + self.shape)


class Autoencoder(nn.Cell):
    """Images -> reconstructed images: encoder (its parameters named encoder.*), then decoder."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def construct(self, x):
        return self.decoder(self.encoder(x))


def build_autoencoder(hparams, backend):
    """An Autoencoder whose encoder is built from the CPC hyper-parameters (config.model_hparams)."""
    channels, hidden = 3 if hparams["color"] else 1, encoder_shape(stored_hparams(hparams))[2]
    decoder = Decoder(feature_size(hparams), channels, hparams["image_size"], hidden)  # image task: pooled codes
    return Autoencoder(build_encoder(hparams, backend), decoder)
