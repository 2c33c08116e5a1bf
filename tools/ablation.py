"""Ablation of the sequence lengths: train a grid of terms x predict_terms, one table of the results.

    python -m tools.ablation --config_path config/cpc_mnist28_gray.yaml --grid_terms 2,4 \\
        --grid_predict_terms 1,2,4 --epoch_size 1 --output_path OUT [other train.py flags...]

Each cell is one train.py run in a process of its own (the command that reproduces it is in
OUT/ablation.json), into OUT/t<terms>_p<predict_terms>; every other flag goes to each run as given.
Prints one Markdown table: the last epoch's contrastive validation accuracy (with its chance) and
its per-step accuracies, the kNN and linear-probe digit accuracy of the codes (chance 0.10,
src/eval/represent.py) and the training time; writes it to OUT/ablation.md and the rows to
OUT/ablation.json. The contrastive accuracy of different predict_terms answers different
questions (more future digits to score); the digit accuracies compare the codes themselves.
"""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

from src.config import REPO_ROOT, parse_config, validate
from src.train.resume import rolling
from src.utils.atomic import atomic_write
from src.utils.errors import ConfigError, CPCError, run_main
from src.utils.runlog import prepare_output, write_json

GRID_FLAGS = ("--grid_terms", "--grid_predict_terms")


def _extra(parser):
    parser.add_argument("--grid_terms", default="2,4", help="comma-separated context lengths to train")
    parser.add_argument("--grid_predict_terms", default="1,2,4", help="comma-separated numbers of future steps")


def parse_grid(text, flag):
    """Distinct positive integers of a comma-separated flag value, in order, or ConfigError (a repeated
    value would train its cell twice into one folder)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise ConfigError(f"{flag} must be comma-separated integers >= 1, got {text!r}")
    repeated = next((v for i, v in enumerate(values) if v in values[:i]), None)
    if repeated is not None:
        raise ConfigError(f"{flag} names {repeated} twice ({text!r}): each value is one cell of the grid")
    return values


def check_grid(cfg, grid):
    """Every cell's configuration is valid before the first one trains (a cell is the config with its
    terms and predict_terms); the grid varies the sequence task's keys, so an image config is refused."""
    if cfg.task != "sequence":
        raise ConfigError(f"tools.ablation varies terms and predict_terms, keys of the sequence task; "
                          f"{cfg.config_path} is task: {cfg.task}, which does not read them")
    for terms, predict_terms in grid:
        cell = SimpleNamespace(**dict(vars(cfg), terms=terms, predict_terms=predict_terms))
        try:
            validate(cell)
        except ConfigError as exc:
            raise ConfigError(f"grid cell terms {terms} predict_terms {predict_terms}: {exc}") from None
        out = cell_folder(cfg, terms, predict_terms)
        if not cfg.resume and rolling(out):  # train.py would refuse it, after the cells before it trained
            raise ConfigError(f"{out} holds rolling checkpoints of an earlier run: use another output_path, "
                              f"or --resume True to continue the grid")


def cell_folder(cfg, terms, predict_terms):
    return os.path.join(os.path.abspath(cfg.output_path), f"t{terms}_p{predict_terms}")


def forwarded(argv):
    """The command-line flags for each train.py run: argv without the grid's own flags."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GRID_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f + "=" for f in GRID_FLAGS)):
            out.append(arg)
    return out


def run_cell(argv, terms, predict_terms, out):
    """Train one cell (later flags win in argparse); returns (command, metrics.json) or CPCError."""
    command = [sys.executable, "train.py", *argv, "--terms", str(terms), "--predict_terms", str(predict_terms),
               "--output_path", out]
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CPCError(f"terms {terms} predict_terms {predict_terms} failed (exit {proc.returncode}): {last}")
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
        return command, json.load(handle)


def summary(terms, predict_terms, command, metrics):
    """One row of the table from a run's metrics.json (its last epoch)."""
    last = metrics["history"][-1]
    return {"terms": terms, "predict_terms": predict_terms, "val_accuracy": last["val_accuracy"],
            "chance_accuracy": metrics["chance_accuracy"], "val_accuracy_per_step": last["val_accuracy_per_step"],
            "knn_accuracy": last.get("knn_accuracy"), "probe_accuracy": last.get("probe_accuracy"),
            "epochs": metrics["epochs"], "steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
            "command": " ".join(command[1:])}


def _cell(value):
    return "-" if value is None else f"{value:.3f}"


def table(rows):
    """The Markdown table of the rows."""
    lines = ["| terms | predict_terms | contrastive acc (chance) | per step k=1.. | kNN acc | probe acc | train s |",
             "|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        steps = " ".join(f"{a:.3f}" for a in r["val_accuracy_per_step"])
        lines.append(f"| {r['terms']} | {r['predict_terms']} | {r['val_accuracy']:.3f} ({r['chance_accuracy']:.2f}) "
                     f"| {steps} | {_cell(r['knn_accuracy'])} | {_cell(r['probe_accuracy'])} "
                     f"| {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(argv, description="Train a grid of terms x predict_terms; print one table",
                       extra_args=_extra)
    grid = [(t, p) for t in parse_grid(cfg.grid_terms, "--grid_terms")
            for p in parse_grid(cfg.grid_predict_terms, "--grid_predict_terms")]
    check_grid(cfg, grid)
    prepare_output(cfg.output_path)
    rows, flags = [], forwarded(argv)
    for terms, predict_terms in grid:
        out = cell_folder(cfg, terms, predict_terms)
        rows.append(summary(terms, predict_terms, *run_cell(flags, terms, predict_terms, out)))
        print(f"terms {terms} predict_terms {predict_terms}: contrastive {rows[-1]['val_accuracy']:.3f} "
              f"kNN {_cell(rows[-1]['knn_accuracy'])} probe {_cell(rows[-1]['probe_accuracy'])}",
              file=sys.stderr, flush=True)
    text = table(rows)
    write_json(os.path.join(cfg.output_path, "ablation.json"), {"rows": rows})
    with atomic_write(os.path.join(cfg.output_path, "ablation.md"), "table") as tmp, \
            open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(text)


if __name__ == "__main__":
    run_main(main)
