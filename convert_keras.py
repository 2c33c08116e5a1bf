"""Import a Keras weight file of D. Tellez's original CPC (Keras 2, HDF5) as this project's checkpoint.

    python convert_keras.py --h5_path models/64x64/encoder.h5 --kind encoder --output_path KERAS64
    python convert_keras.py --h5_path models/64x64/supervised.h5 --kind classifier --output_path KERAS64

--kind encoder writes OUTPUT/encoder.ckpt (from an encoder.h5, or the encoder inside a supervised.h5):
usable by eval.py --eval_mode classify and export.py --net encoder. --kind classifier writes
OUTPUT/classifier.ckpt (from a supervised.h5): usable by export.py --net classifier. The network's
hyper-parameters (image size, channels, encoder depth and widths, code size) are read from the file's
model_config and stored in the checkpoint; the mapping is documented in src/deploy/keras_import.py.
A file that is not one of these models stops with one error line; nothing is written then.
"""
from src.config import ArgParser
from src.deploy.keras_import import KINDS, write_checkpoint
from src.utils.errors import run_main
from src.utils.paths import expand


def parse_args(argv):
    parser = ArgParser(description="Import a Keras CPC encoder or classifier (Keras 2 HDF5) as a checkpoint")
    parser.add_argument("--h5_path", type=expand, required=True, help="Keras model file (model.save, Keras 2.x HDF5)")
    parser.add_argument("--kind", required=True, choices=list(KINDS),
                        help="encoder: OUTPUT/encoder.ckpt; classifier: OUTPUT/classifier.ckpt (supervised.h5)")
    parser.add_argument("--output_path", type=expand, required=True,
                        help="folder for the checkpoint (created if needed)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path, meta = write_checkpoint(args.h5_path, args.kind, args.output_path)
    h = meta["hparams"]
    print(f"imported {args.kind} ({meta['source']['keras_model']} file, Keras {meta['source']['keras_version']}: "
          f"{h['image_size']}x{h['image_size']}x{3 if h['color'] else 1} input, {h['encoder_layers']} convs of "
          f"{h['encoder_channels']}, dense {h['encoder_hidden']}, code {h['code_size']}) to {path}")


if __name__ == "__main__":
    run_main(main)
