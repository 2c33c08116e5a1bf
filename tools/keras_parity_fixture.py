"""Write tests/data/keras/keras_parity.npz: Keras's own outputs of the original's released models.

Run with TensorFlow, which is not part of this project's requirements (nor of CI), e.g.:

    python -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install "tensorflow-cpu==2.16.*" "tf-keras==2.16.*" "numpy<2" h5py scipy pillow
    # the original's resources/ (lena.jpg, t10k-*-idx*-ubyte.gz): any checkout of
    # https://github.com/davidtellez/contrastive-predictive-coding
    /tmp/tfvenv/bin/python tools/keras_parity_fixture.py --resources_dir ORIGINAL/resources

For each released file (tests/data/keras/*.h5) the script builds the original's network in tf-keras
(Keras 2 API) layer by layer as the original's train_model.py / benchmark_model.py define it (4 convs
of 64 + Dense 256 for 64x64; 3 convs of 32 + Dense 128 for the older 28x28 model; head Dense 128 ->
BatchNormalization -> LeakyReLU -> Dense 10 softmax), gives each layer the file's weights as stored
(read with h5py, set with Keras's layer.set_weights in Keras's own layouts: tf-keras 2.16's
load_weights misreads the 2.0.6 nested-model files, "axes don't match array"), and runs it in
inference mode on a few test digits rendered with the original's
pixel pipeline (data_utils.MnistHandler.process_batch, color=True, rescale=True), reproduced here:
pixels / 256, for 64x64 scipy.ndimage.zoom(digit, 2.3, order=1); grey -> 3 channels; binarised at
0.5; a random crop of Lena (/255), each channel (crop + U(0, 1)) / 2; the crop inverted where the
digit is; * 2 - 1; channels last. It stores, per model, the input images (NHWC float32), the labels
and the Keras outputs: codes (encoder output) and, for the classifiers, logits (the last Dense before
its softmax) and probabilities (the softmax). tests/test_keras_import.py compares the imported
MindSpore networks with these arrays; the images are stored, so the tests need neither Lena nor
TensorFlow. Deterministic for a given --seed.
"""
import gzip
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # run as a script in a TensorFlow environment: src.utils.errors is pure Python
from src.utils.errors import ArgParser, CPCError, run_main  # noqa: E402

DATA = os.path.join(REPO, "tests", "data", "keras")
# file -> (image size, conv blocks, filters, dense units, classifier?)
MODELS = {"64x64_encoder": (64, 4, 64, 256, False),
          "64x64_supervised": (64, 4, 64, 256, True),
          "28x28_supervised": (28, 3, 32, 128, True)}
CODE_SIZE, HEAD_HIDDEN = 128, 128


def read_idx(path, offset):
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), np.uint8, offset=offset)


def original_pixels(digits, image_size, lena, rng):
    """The original's colour pipeline on [N, 28, 28] digits in [0, 255/256]: NHWC float32 in [-1, 1]."""
    import scipy.ndimage
    if image_size == 64:
        digits = np.stack([scipy.ndimage.zoom(d, 2.3, order=1) for d in digits])
    if digits.shape[1:] != (image_size, image_size):
        raise SystemExit(f"resized digits are {digits.shape[1:]}, expected {image_size}")
    batch = np.repeat(digits[:, None], 3, axis=1)                    # [N, 3, S, S]
    batch = (batch >= 0.5).astype(np.float64)
    for i in range(len(batch)):
        x = rng.randint(0, lena.size[0] - image_size)
        y = rng.randint(0, lena.size[1] - image_size)
        crop = np.asarray(lena.crop((x, y, x + image_size, y + image_size))).transpose(2, 0, 1) / 255.0
        for c in range(3):
            crop[c] = (crop[c] + rng.uniform(0, 1)) / 2.0
        ink = batch[i] == 1
        crop[ink] = 1 - crop[ink]
        batch[i] = crop
    return (batch * 2 - 1).transpose(0, 2, 3, 1).astype(np.float32)


def build_encoder(keras, image_size, blocks, filters, dense):
    inp = keras.layers.Input((image_size, image_size, 3))
    x = inp
    for _ in range(blocks):
        x = keras.layers.Conv2D(filters=filters, kernel_size=3, strides=2, padding="valid")(x)
        x = keras.layers.BatchNormalization(epsilon=1e-3)(x)
        x = keras.layers.LeakyReLU(alpha=0.3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(dense)(x)
    x = keras.layers.BatchNormalization(epsilon=1e-3)(x)
    x = keras.layers.LeakyReLU(alpha=0.3)(x)
    x = keras.layers.Dense(CODE_SIZE, name="encoder_embedding")(x)
    return keras.models.Model(inp, x, name="encoder")


def build_classifier(keras, encoder, image_size, activation):
    inp = keras.layers.Input((image_size, image_size, 3))
    x = keras.layers.Dense(HEAD_HIDDEN)(encoder(inp))
    x = keras.layers.BatchNormalization(epsilon=1e-3)(x)
    x = keras.layers.LeakyReLU(alpha=0.3)(x)
    x = keras.layers.Dense(10, activation=activation)(x)
    return keras.models.Model(inp, x)


def h5_layer_weights(path):
    """[(scope, [arrays in file order])] of every weighted layer in a Keras 2.0.6 model file, in
    the file's order, the nested encoder's layers expanded in place (h5py only: no converter code)."""
    import h5py
    out = []
    with h5py.File(path, "r") as h5:
        group = h5["model_weights"]
        for layer in group.attrs["layer_names"]:
            names = [n.decode() for n in group[layer].attrs["weight_names"]]
            for n in names:
                scope = n.rsplit("/", 1)[0]
                if not out or out[-1][0] != (layer.decode(), scope):
                    out.append(((layer.decode(), scope), []))
                out[-1][1].append(np.array(group[layer][n]))
    return out


def set_file_weights(model, path):
    """Give each weighted Keras layer (in build order, the nested encoder first) its file weights."""
    layers = []
    for layer in model.layers:
        layers.extend(sub for sub in getattr(layer, "layers", [layer]) if sub.weights)
    stored = h5_layer_weights(path)
    if len(layers) != len(stored):
        raise SystemExit(f"{path}: {len(stored)} weighted layers in the file, {len(layers)} built")
    for layer, (_, arrays) in zip(layers, stored):
        layer.set_weights(arrays)  # Keras checks every shape


def main(argv=None):
    parser = ArgParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources_dir", required=True, help="the original's resources/ (lena.jpg, t10k-*)")
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join(DATA, "keras_parity.npz"))
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    try:
        import tensorflow as tf
        import tf_keras as keras
        from PIL import Image
    except ImportError as exc:
        raise CPCError(f"tools/keras_parity_fixture.py needs TensorFlow and tf-keras ({exc}); see its docstring "
                       f"for the environment") from None

    images = read_idx(os.path.join(args.resources_dir, "t10k-images-idx3-ubyte.gz"), 16).reshape(-1, 28, 28)
    labels = read_idx(os.path.join(args.resources_dir, "t10k-labels-idx1-ubyte.gz"), 8)
    lena = Image.open(os.path.join(args.resources_dir, "lena.jpg"))
    rng = np.random.RandomState(args.seed)
    out = {"tf_version": np.array(tf.__version__), "tf_keras_version": np.array(keras.__version__)}
    for name, (size, blocks, filters, dense, classifier) in MODELS.items():
        pick = rng.choice(len(images), args.num_images, replace=False)
        x = original_pixels(images[pick] / np.float32(256), size, lena, rng)
        path = os.path.join(DATA, f"{name}.h5")
        encoder = build_encoder(keras, size, blocks, filters, dense)
        if classifier:
            model = build_classifier(keras, encoder, size, "softmax")
            set_file_weights(model, path)
            logits_model = build_classifier(keras, build_encoder(keras, size, blocks, filters, dense), size, "linear")
            logits_model.set_weights(model.get_weights())
            out[f"{name}/probs"] = model.predict(x, verbose=0)
            out[f"{name}/logits"] = logits_model.predict(x, verbose=0)
        else:
            set_file_weights(encoder, path)
        out[f"{name}/images"] = x
        out[f"{name}/labels"] = labels[pick].astype(np.int64)
        out[f"{name}/codes"] = encoder.predict(x, verbose=0)
        print(f"{name}: {len(x)} images, codes {out[f'{name}/codes'].shape}", file=sys.stderr)
    np.savez_compressed(args.output, **out)
    print(f"wrote {args.output} (TensorFlow {tf.__version__}, tf-keras {keras.__version__})")


if __name__ == "__main__":
    run_main(main)
