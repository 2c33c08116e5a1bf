"""The network builders: a net from the hyper-parameter dict stored in checkpoints
(config.model_hparams), the sequence task's (src/model/cpc.py) or the image task's
(src/model/image_cpc.py), with the layers of `backend` ('cpu' or 'device', src/model/backend.py).
One module above both, so neither imports the other back. A checkpoint's dict may predate some
model keys: config.stored_hparams fills them in with the values such checkpoints were trained with."""
from src.config import stored_hparams
from src.model.cpc import CPC, Encoder, encoder_shape
from src.model.image_cpc import build_image_cpc, build_image_encoder
from src.model.twoview import CMCEncoder


def build_encoder(hparams, backend):
    """An Encoder from the hyper-parameter dict stored in checkpoints (config.model_hparams); for
    the image task the ImageEncoder (src/model/image_cpc.py)."""
    hparams = stored_hparams(hparams)
    if hparams.get("task") == "image":
        return build_image_encoder(hparams, backend)
    if hparams.get("task") == "cmc":  # one encoder for L, one for ab of Lab (src/model/twoview.py)
        return CMCEncoder(view_encoder(hparams, backend, 1), view_encoder(hparams, backend, 2))
    return view_encoder(hparams, backend, 3 if hparams["color"] else 1)


def view_encoder(hparams, backend, channels):
    """The sequence task's Encoder of `channels`-channel images."""
    return Encoder(hparams["image_size"], channels, hparams["code_size"], hparams["padding"],
                   backend, hparams["input_contrast"], *encoder_shape(hparams))


def feature_size(hparams):
    """Length of the vector build_encoder's encoder gives each image (the downstream heads' input)."""
    if hparams.get("task") == "image":
        return hparams["code_size"] * hparams["pool_grid"] ** 2
    if hparams.get("task") == "cmc":
        return 2 * hparams["code_size"]
    return hparams["code_size"]


def build_cpc(hparams, backend):
    """A CPC net from the hyper-parameter dict stored in checkpoints (config.model_hparams; keys
    that do not shape the network, such as the loss, are ignored); for the image task the ImageCPC."""
    hparams = stored_hparams(hparams)
    if hparams.get("task") == "image":
        return build_image_cpc(hparams, backend)
    return CPC(build_encoder(hparams, backend), hparams["terms"], hparams["predict_terms"], hparams["code_size"],
               hparams["hidden_size"])
