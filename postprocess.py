"""Accuracy of the inference results written by ascend310_infer (or tools/mindir_infer.py).

    python postprocess.py --data_path ./preprocess_Result --result_path ./result_Files [--output_path DIR]

Reads preprocess.py's folder (batch names, labels, batch size), the logits [B, 10] of each batch
from RESULT/<name>_0.bin, keeps the first N rows (the last batch was padded), prints the accuracy
and writes DIR/infer_metrics.json (accuracy, correct, num_images, batch_size and the latency
summary the inference program left in RESULT/latency.json). For the cpc net (preprocess.py's
record says net: cpc) each result holds one logit [B, 1] per sequence, and a sequence counts as
correct when logit > 0 matches its label (1 = sorted). DIR defaults to the parent of
--result_path. Needs only NumPy: it runs where the inference ran.
"""
import os

import numpy as np

from src.config import ArgParser
from src.deploy import infer_io
from src.utils.errors import DataError, first_line, run_main
from src.utils.paths import expand, require_file, require_folder_target
from src.utils.runlog import read_json, write_json

RERUN = "; run preprocess.py again"  # what to do about a missing or damaged record


def parse_args(argv):
    parser = ArgParser(description="Accuracy of classifier inference results")
    parser.add_argument("--data_path", type=expand, required=True, help="folder written by preprocess.py")
    parser.add_argument("--result_path", type=expand, required=True, help="folder of <name>_0.bin results")
    parser.add_argument("--output_path", type=expand, default="",
                        help="folder for infer_metrics.json (default: the parent of --result_path)")
    return parser.parse_args(argv)


def read_info(data_path):
    """preprocess.py's record, its batch_size and net checked (they decide how results are read)."""
    path = os.path.join(data_path, infer_io.INFO)
    info = read_json(path, "preprocess.py's record", RERUN)
    batch = info.get("batch_size")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise DataError(f"preprocess.py's record {path} has batch_size {batch!r}, expected a whole number >= 1; "
                        f"run preprocess.py again")
    if info.get("net", "classifier") not in ("classifier", "cpc"):
        raise DataError(f"preprocess.py's record {path} names net {info.get('net')!r}, expected classifier or cpc")
    return info


def read_labels(data_path):
    """labels.npy as a 1-D integer array; DataError when missing, damaged or not labels."""
    path = require_file(os.path.join(data_path, infer_io.LABELS), "labels", DataError)
    try:
        labels = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"labels {path} are damaged ({first_line(exc)}); run preprocess.py again") from None
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) \
            or not len(labels):
        raise DataError(f"labels {path} hold {getattr(labels, 'dtype', '?')} {getattr(labels, 'shape', '')}, "
                        f"expected a non-empty 1-D integer array; run preprocess.py again")
    return labels


def read_logits(data_path, result_path, batch, width=infer_io.NUM_CLASSES):
    """Logits [files * batch, width] in file order; DataError if a result is missing or of the wrong size."""
    what = "digit logits" if width == infer_io.NUM_CLASSES else "sequence logits"
    rows = []
    for name in infer_io.batch_names(data_path):
        result = os.path.join(result_path, infer_io.result_name(name, 0))
        values = infer_io.read_bin(result)
        if values.size != batch * width:
            raise DataError(f"{result} holds {values.size} values, expected {batch} x {width} "
                            f"{what}: was the MINDIR exported with the --net preprocess.py read?")
        rows.append(values.reshape(batch, width))
    return np.concatenate(rows)


def main(argv=None):
    args = parse_args(argv)
    info, labels = read_info(args.data_path), read_labels(args.data_path)
    cpc = info.get("net") == "cpc"
    logits = read_logits(args.data_path, args.result_path, info["batch_size"], 1 if cpc else infer_io.NUM_CLASSES)
    if len(logits) < len(labels):
        raise DataError(f"results hold {len(logits)} images, the labels {len(labels)}")
    guess = (logits[:len(labels), 0] > 0).astype(np.int64) if cpc else logits[:len(labels)].argmax(1)
    correct = int((guess == labels).sum())
    metrics = {"net": info.get("net", "classifier"), "accuracy": correct / len(labels), "correct": correct,
               "num_images": len(labels),
               "batch_size": info["batch_size"], "result_path": os.path.abspath(args.result_path)}
    latency = os.path.join(args.result_path, infer_io.LATENCY)
    if os.path.isfile(latency):
        metrics["latency"] = read_json(latency, "latency record", RERUN)
    out = require_folder_target(args.output_path or os.path.dirname(os.path.abspath(args.result_path)),
                                "output_path", DataError)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "infer_metrics.json")
    write_json(path, metrics)
    what = "test sequences" if cpc else "test digits"
    print(f"accuracy {metrics['accuracy']:.4f} ({correct} of {len(labels)} {what}) -> {path}")


if __name__ == "__main__":
    run_main(main)
