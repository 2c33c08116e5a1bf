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
import json
import os

import numpy as np

from src.config import ArgParser
from src.deploy import infer_io
from src.utils.errors import DataError, run_main
from src.utils.runlog import write_json


def parse_args(argv):
    parser = ArgParser(description="Accuracy of classifier inference results")
    parser.add_argument("--data_path", required=True, help="folder written by preprocess.py")
    parser.add_argument("--result_path", required=True, help="folder of <name>_0.bin results")
    parser.add_argument("--output_path", default="",
                        help="folder for infer_metrics.json (default: the parent of --result_path)")
    return parser.parse_args(argv)


def read_json(path, what):
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


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
    info = read_json(os.path.join(args.data_path, infer_io.INFO), "preprocess.py's record")
    labels_path = os.path.join(args.data_path, infer_io.LABELS)
    if not os.path.isfile(labels_path):
        raise DataError(f"labels not found: {labels_path} (run preprocess.py first)")
    labels = np.load(labels_path)
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
        metrics["latency"] = read_json(latency, "latency record")
    out = args.output_path or os.path.dirname(os.path.abspath(args.result_path))
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "infer_metrics.json")
    write_json(path, metrics)
    what = "test sequences" if cpc else "test digits"
    print(f"accuracy {metrics['accuracy']:.4f} ({correct} of {len(labels)} {what}) -> {path}")


if __name__ == "__main__":
    run_main(main)
