"""One table and one plot of several pre-training methods' downstream studies.

    python -m tools.compare_methods --study NAME=EVAL_DIR [--study NAME=EVAL_DIR ...] --output_path DIR
                                    [--plot_head logistic]

EVAL_DIR: the output folder of `eval.py --eval_mode classify` on one pre-trained checkpoint (its
downstream_metrics.json names the checkpoint; the training run's metrics.json beside it gives the
task, loss, steps and the epochs' training times). Writes DIR/methods_table.md (one row per pre-training method
and head: mean +- sample std over the seeds per label fraction), DIR/methods_summary.json and
DIR/methods_accuracy.png (one line per method with --plot_head, error bars: the std). A method
whose loss uses labels (SupCon) is marked so in every row. Everything is read and checked first.
"""
import os

from src.eval.downstream import summarise
from src.utils.atomic import atomic_write
from src.utils.errors import ArgParser, ConfigError, DataError, run_main
from src.utils.paths import expand, require_folder_target
from src.utils.plots import plot_accuracy
from src.utils.runlog import read_json, write_json

HEADS = ("linear", "logistic", "mlp")
LABELLED_LOSSES = ("supcon",)  # pre-training losses that read the digit labels


def parse_args(argv):
    parser = ArgParser(prog="python -m tools.compare_methods", description=__doc__.split("\n")[0])
    parser.add_argument("--study", action="append", required=True, metavar="NAME=EVAL_DIR",
                        help="a pre-training method's name and its eval.py --eval_mode classify folder")
    parser.add_argument("--output_path", type=expand, required=True, help="folder for the table and plot")
    parser.add_argument("--plot_head", default="logistic", choices=HEADS, help="the head each plotted line uses")
    return parser.parse_args(argv)


def parse_studies(given):
    """[(name, folder)] of the NAME=EVAL_DIR arguments; ConfigError for a malformed or repeated name."""
    studies = []
    for text in given:
        name, sep, folder = text.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise ConfigError(f"--study must be NAME=EVAL_DIR, got {text!r}")
        if name in dict(studies):
            raise ConfigError(f"--study name {name!r} is given twice")
        studies.append((name.strip(), expand(folder.strip())))
    return studies


def read_study(name, folder):
    """{name, training: (task, loss, steps, minutes, labels), summary rows} of one study folder."""
    downstream = read_json(os.path.join(folder, "downstream_metrics.json"), f"downstream metrics of {name!r}")
    if not isinstance(downstream.get("results"), list) or "ckpt_path" not in downstream:
        raise DataError(f"downstream metrics of {name!r} in {folder} hold no results: not eval.py's output")
    run_dir = os.path.dirname(downstream["ckpt_path"])
    metrics = read_json(os.path.join(run_dir, "metrics.json"), f"training metrics of {name!r}")
    loss = metrics.get("loss", "")
    history = metrics.get("history") or [{}]
    # the epochs' own times: a run resumed to write its metrics (or continued) keeps its whole history
    seconds = sum(epoch.get("epoch_seconds", 0.0) for epoch in history)
    training = {"task": metrics.get("task", "sequence"), "loss": loss, "steps": metrics.get("steps"),
                "minutes": round(seconds / 60, 1), "labels": any(term in loss for term in LABELLED_LOSSES),
                "knn_accuracy": history[-1].get("knn_accuracy"), "probe_accuracy": history[-1].get("probe_accuracy")}
    return {"name": name, "training": training, "summary": summarise(downstream["results"]),
            "seeds": downstream.get("seeds")}


def row_name(study, method):
    """The table's name of a downstream method of a study: 'NAME + head', or the random encoder's."""
    source, _, head = method.partition("_")
    if source == "cpc":
        return f"{study['name']} + {head}" + (" (uses all training labels)" if study["training"]["labels"] else "")
    return f"{source} encoder ({study['name']}'s architecture) + {head}"


def table(studies, fractions):
    """The markdown table: one row per study and downstream method, one column per label fraction."""
    head = "| pre-training + head | steps | wall minutes | " + " | ".join(f"{100 * f:g}% labels" for f in fractions)
    lines = [head + " |", "| --- " * (3 + len(fractions)) + "|"]
    for study in studies:
        cells = {(c["method"], c["label_fraction"]): c for c in study["summary"]}
        for method in dict.fromkeys(c["method"] for c in study["summary"]):
            values = [cells.get((method, f)) for f in fractions]
            text = [f"{c['mean']:.3f} +- {c['std']:.3f}" if c else "-" for c in values]
            own = method.startswith("cpc_")
            steps, minutes = (study["training"]["steps"], study["training"]["minutes"]) if own else ("-", "-")
            lines.append(f"| {row_name(study, method)} | {steps} | {minutes} | " + " | ".join(text) + " |")
    return "\n".join(lines) + "\n"


def plot_rows(studies, head):
    """summarise()-style rows of each study's `cpc_<head>` method, renamed to the study's name."""
    return [dict(c, method=s["name"]) for s in studies for c in s["summary"] if c["method"] == f"cpc_{head}"]


def main(argv=None):
    args = parse_args(argv)
    studies = [read_study(name, folder) for name, folder in parse_studies(args.study)]
    require_folder_target(args.output_path, "--output_path", ConfigError)
    fractions = sorted({c["label_fraction"] for s in studies for c in s["summary"]})
    os.makedirs(args.output_path, exist_ok=True)
    path = os.path.join(args.output_path, "methods_table.md")
    with atomic_write(path, "table") as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(table(studies, fractions))
    write_json(os.path.join(args.output_path, "methods_summary.json"), {"studies": studies})
    plot_accuracy(plot_rows(studies, args.plot_head), [s["name"] for s in studies],
                  os.path.join(args.output_path, "methods_accuracy.png"))
    print(table(studies, fractions), end="")
    return 0


if __name__ == "__main__":
    run_main(main)
