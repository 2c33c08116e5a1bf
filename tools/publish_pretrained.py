"""Publish a trained model into pretrained/: the CPC net without its optimizer state and its digit
classifier, each with a .sha256 beside it, and one JSON of the figures they give, measured here on
the published files, with the commands and the commit that made them.

    python -m tools.publish_pretrained --run_dir RUN --eval_dir EVAL [--output_dir pretrained]

RUN: a train.py output folder (cpc_best.ckpt, metrics.json); EVAL: eval.py --task classify on
RUN/cpc_best.ckpt (classifier.ckpt). eval.py and export.py take the published files as they are and
check each against its .sha256 when loading (src/checkpoint.py).

All or nothing: everything is read, checked and measured first; the five files are then written into
a copy of the output folder made beside it, which replaces the folder in two renames. A failure
leaves the output folder as it was, its card matching its files. Only the sequence task's model is
published (the card's figures are the sequence task's); an image-task run is refused up front.
"""
import json
import os
import shutil
import subprocess

import numpy as np
from mindspore import Tensor

from src import checkpoint
from src.config import namespace
from src.data.dataset import build_source, render_digits
from src.data.mnist import load_split
from src.eval.evaluate import evaluate
from src.model.build import build_cpc
from src.model.classifier import build_classifier
from src.utils.atomic import WriteError, private_folder
from src.utils.errors import ArgParser, CheckpointError, ConfigError, DataError, first_line, run_main
from src.utils.paths import expand, require_file, require_folder_target
from src.utils.runlog import write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "cpc_mnist64_color"


def _load_checked(path, kind, needs):
    """(params, meta) of a checkpoint of `kind` with hyper-parameters of the sequence task, or one line."""
    params, meta = checkpoint.load(require_file(path, "checkpoint", CheckpointError))
    if meta is None or "hparams" not in meta:
        raise CheckpointError(f"checkpoint {path} carries no hyper-parameters: not written by this project")
    checkpoint.require_kind(meta, path, (kind,), needs)
    task = meta["hparams"].get("task", "sequence")
    if task != "sequence":
        raise ConfigError(f"checkpoint {path} is of the {task} task; tools.publish_pretrained publishes the "
                          f"sequence task's model ({NAME}), whose card holds the sequence task's figures")
    return params, meta


def _build(params, meta, path, build):
    net = build(meta)
    checkpoint.load_into(net, params, path)
    net.set_train(False)
    return net


def _read_json(path, what):
    path = require_file(path, what, DataError)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{what} {path} is not JSON: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise DataError(f"{what} {path} holds no JSON object")
    return data


def _publish(net, meta, path):
    """The net's own parameters (no optimizer moments) and meta, then path.sha256 in sha256sum's format."""
    checkpoint.save(net, path, meta)
    digest = checkpoint.sha256_of(path)
    with open(path + checkpoint.DIGEST_SUFFIX, "w", encoding="utf-8") as handle:
        handle.write(f"{digest}  {os.path.basename(path)}\n")
    return {"file": os.path.basename(path), "bytes": os.path.getsize(path), "sha256": digest}


def contrastive_figures(net, hparams):
    """The test figures eval.py --task contrastive gives on the default config (same source)."""
    cfg = namespace(**hparams)
    result = evaluate(net, build_source(cfg, "test", cfg.test_steps, data=load_split("", "test")))
    return {"test_accuracy": result["accuracy"], "test_loss": result["loss"],
            "chance_accuracy": result["chance_accuracy"], "num_sequences": result["num_sequences"]}


def classifier_accuracy(net, hparams, seed=0):
    """Test digit accuracy on the embedded test digits, rendered as eval.py --task classify does."""
    images, labels = load_split("", "test")
    inputs = render_digits(images, hparams["image_size"], hparams["color"], seed, "test")
    predicted = np.concatenate([net(Tensor(inputs[i:i + 250])).asnumpy().argmax(-1)
                                for i in range(0, len(inputs), 250)])
    return float((predicted == labels).mean()), int(len(labels))


def _commit():
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


def parse_args(argv):
    parser = ArgParser(prog="python -m tools.publish_pretrained", description=__doc__.split("\n")[0])
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--eval_dir", required=True)
    parser.add_argument("--output_dir", default=os.path.join(REPO, "pretrained"))
    parser.add_argument("--commit", default="",
                        help="the commit RUN and EVAL were made at (default: this checkout's HEAD)")
    args = parser.parse_args(argv)
    args.run_dir, args.eval_dir = expand(args.run_dir), expand(args.eval_dir)
    args.output_dir = os.path.abspath(require_folder_target(args.output_dir, "--output_dir", ConfigError))
    if not os.path.isdir(os.path.dirname(args.output_dir)):
        raise ConfigError(f"folder of --output_dir does not exist: {os.path.dirname(args.output_dir)}")
    return args


def read_inputs(args):
    """Everything publishing needs, read and checked before anything is written."""
    cpc_path, clf_path = os.path.join(args.run_dir, "cpc_best.ckpt"), os.path.join(args.eval_dir, "classifier.ckpt")
    cpc_params, cpc_meta = _load_checked(cpc_path, "cpc", "--run_dir needs train.py's cpc_best.ckpt")
    clf_params, clf_meta = _load_checked(clf_path, "classifier", "--eval_dir needs eval.py --task classify's "
                                                                 "classifier.ckpt")
    history = _read_json(os.path.join(args.run_dir, "metrics.json"), "training metrics").get("history")
    if not history:
        raise DataError(f"{os.path.join(args.run_dir, 'metrics.json')} holds no epoch history")
    downstream = _read_json(os.path.join(args.eval_dir, "downstream_metrics.json"), "downstream metrics")
    cpc = _build(cpc_params, cpc_meta, cpc_path, lambda m: build_cpc(m["hparams"], True))
    clf = _build(clf_params, clf_meta, clf_path,
                 lambda m: build_classifier(m["hparams"], m.get("head", "mlp"), fast_conv=True))
    return cpc, cpc_meta, clf, clf_meta, history, downstream


def replace_folder(staged, out, private):
    """`staged` becomes `out` in two renames (the old folder moved aside first and put back if the
    second rename fails); the old folder ends in `private`, removed with it."""
    try:
        if os.path.exists(out):
            os.rename(out, os.path.join(private, "old"))
            try:
                os.rename(staged, out)
            except OSError:
                os.rename(os.path.join(private, "old"), out)
                raise
        else:
            os.rename(staged, out)
    except OSError as exc:
        raise WriteError(f"cannot replace {out}: {exc.strerror or exc}") from None


def main(argv=None):
    args = parse_args(argv)
    out = args.output_dir
    cpc, cpc_meta, clf, clf_meta, history, downstream = read_inputs(args)
    seeds = downstream.get("seeds") or [0]
    seeds_flag = "" if seeds == [0] else " --seeds " + ",".join(map(str, seeds))
    accuracy, count = classifier_accuracy(clf, clf_meta["hparams"])
    figures = {"contrastive": contrastive_figures(cpc, cpc_meta["hparams"]),
               "classifier": {"test_digit_accuracy": accuracy, "num_digits": count,
                              "label_fraction": clf_meta.get("label_fraction"), "head": clf_meta.get("head")},
               "training": {"best_val_accuracy": max(r["val_accuracy"] for r in history),
                            "epochs": len(history), "last_epoch": history[-1]},
               # eval.py --task classify's table (test digit accuracy per method and label
               # fraction, mean and std over the seeds), as it measured it
               "downstream": {"seeds": seeds, "summary": downstream.get("summary")}}
    with private_folder(out, "published folder") as private:
        staged = os.path.join(private, "new")
        if os.path.isdir(out):  # files of the folder that are not published here stay
            shutil.copytree(out, staged)
        else:
            os.makedirs(staged)
        files = {"cpc": _publish(cpc, {k: cpc_meta[k] for k in ("kind", "hparams") if k in cpc_meta},
                                 os.path.join(staged, f"{NAME}.ckpt")),
                 "classifier": _publish(clf, {k: v for k, v in clf_meta.items() if k != "source_ckpt"},
                                        os.path.join(staged, f"{NAME}_classifier.ckpt"))}
        card = {
            "files": files, "commit": args.commit or _commit(), "published_at": _commit(), "figures": figures,
            "made_by": ["python train.py --device_target CPU --output_path RUN",
                        "python eval.py --task classify --device_target CPU --ckpt_path RUN/cpc_best.ckpt "
                        f"--output_path EVAL{seeds_flag}",
                        "python -m tools.publish_pretrained --run_dir RUN --eval_dir EVAL"],
            "reproduce": [f"python eval.py --device_target CPU --ckpt_path pretrained/{NAME}.ckpt --output_path OUT",
                          f"python export.py --ckpt_path pretrained/{NAME}_classifier.ckpt --net classifier "
                          f"--file_format MINDIR --file_name OUT/classifier"],
        }
        write_json(os.path.join(staged, f"{NAME}.json"), card)
        replace_folder(staged, out, private)
    print(json.dumps(card["figures"], indent=1))


if __name__ == "__main__":
    run_main(main)
