"""Publish a trained model into pretrained/: the CPC net without its optimizer state and its digit
classifier, each with a .sha256 beside it, and one JSON of the figures they give, measured here on
the published files, with the commands and the commit that made them.

    python -m tools.publish_pretrained --run_dir RUN --eval_dir EVAL [--output_dir pretrained]

RUN: a train.py output folder (cpc_best.ckpt, metrics.json); EVAL: eval.py --task classify on
RUN/cpc_best.ckpt (classifier.ckpt). eval.py and export.py take the published files as they are and
check each against its .sha256 when loading (src/checkpoint.py).
"""
import argparse
import json
import os
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
from src.utils.errors import CheckpointError, run_main
from src.utils.paths import expand, require_file
from src.utils.runlog import prepare_output, write_json

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "cpc_mnist64_color"


def _load_net(path, build):
    params, meta = checkpoint.load(require_file(path, "checkpoint", CheckpointError))
    if meta is None or "hparams" not in meta:
        raise CheckpointError(f"checkpoint {path} carries no hyper-parameters: not written by this project")
    net = build(meta)
    checkpoint.load_into(net, params, path)
    net.set_train(False)
    return net, meta


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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.publish_pretrained", description=__doc__.split("\n")[0])
    parser.add_argument("--run_dir", required=True)
    parser.add_argument("--eval_dir", required=True)
    parser.add_argument("--output_dir", default=os.path.join(REPO, "pretrained"))
    parser.add_argument("--commit", default="",
                        help="the commit RUN and EVAL were made at (default: this checkout's HEAD)")
    args = parser.parse_args(argv)
    run_dir, eval_dir, out = expand(args.run_dir), expand(args.eval_dir), expand(args.output_dir)
    cpc, cpc_meta = _load_net(os.path.join(run_dir, "cpc_best.ckpt"), lambda m: build_cpc(m["hparams"], "cpu"))
    clf, clf_meta = _load_net(os.path.join(eval_dir, "classifier.ckpt"),
                              lambda m: build_classifier(m["hparams"], m.get("head", "mlp"), "cpu"))
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as handle:
        history = json.load(handle)["history"]
    with open(os.path.join(eval_dir, "downstream_metrics.json"), encoding="utf-8") as handle:
        downstream = json.load(handle)
    seeds = downstream.get("seeds") or [0]
    seeds_flag = "" if seeds == [0] else " --seeds " + ",".join(map(str, seeds))
    prepare_output(out)
    files = {"cpc": _publish(cpc, {k: cpc_meta[k] for k in ("kind", "hparams") if k in cpc_meta},
                             os.path.join(out, f"{NAME}.ckpt")),
             "classifier": _publish(clf, {k: v for k, v in clf_meta.items() if k != "source_ckpt"},
                                    os.path.join(out, f"{NAME}_classifier.ckpt"))}
    accuracy, count = classifier_accuracy(clf, clf_meta["hparams"])
    card = {
        "files": files, "commit": args.commit or _commit(), "published_at": _commit(),
        "figures": {"contrastive": contrastive_figures(cpc, cpc_meta["hparams"]),
                    "classifier": {"test_digit_accuracy": accuracy, "num_digits": count,
                                   "label_fraction": clf_meta.get("label_fraction"), "head": clf_meta.get("head")},
                    "training": {"best_val_accuracy": max(r["val_accuracy"] for r in history),
                                 "epochs": len(history), "last_epoch": history[-1]},
                    # eval.py --task classify's table (test digit accuracy per method and label
                    # fraction, mean and std over the seeds), as it measured it
                    "downstream": {"seeds": seeds, "summary": downstream.get("summary")}},
        "made_by": ["python train.py --device_target CPU --output_path RUN",
                    "python eval.py --task classify --device_target CPU --ckpt_path RUN/cpc_best.ckpt "
                    f"--output_path EVAL{seeds_flag}",
                    "python -m tools.publish_pretrained --run_dir RUN --eval_dir EVAL"],
        "reproduce": [f"python eval.py --device_target CPU --ckpt_path pretrained/{NAME}.ckpt --output_path OUT",
                      f"python export.py --ckpt_path pretrained/{NAME}_classifier.ckpt --net classifier "
                      f"--file_format MINDIR --file_name OUT/classifier"],
    }
    write_json(os.path.join(out, f"{NAME}.json"), card)
    print(json.dumps(card["figures"], indent=1))


if __name__ == "__main__":
    run_main(main)
