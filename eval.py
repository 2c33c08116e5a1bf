"""Evaluate a CPC checkpoint on the test split.

    python eval.py --config_path config/cpc_mnist28_gray.yaml --ckpt_path OUT/cpc_best.ckpt --output_path EVAL
    python eval.py --eval_mode classify --config_path config/cpc_mnist64_color.yaml --ckpt_path OUT/cpc_best.ckpt \
        --output_path EVAL

--eval_mode contrastive (default): the checkpoint's own pre-training objective on the test split, scored
by its method (src/methods; sorted/unsorted accuracy for the original); writes EVAL/eval_metrics.json.
--eval_mode classify: digit classification on the frozen encoder with baselines and label fractions
(src/eval/downstream.py); writes EVAL/downstream_metrics.json, EVAL/classifier.ckpt (the frozen encoder
+ MLP head trained on all labels, exportable with export.py --net classifier) and three PNG plots
(accuracy, PCA and t-SNE of the codes); --seeds 0,1,2 repeats it per seed (mean and std per cell).
The network and its pre-training method (the config key `task`) are rebuilt from the
hyper-parameters stored in the checkpoint; the data keys
(data_path, batch_size, test_steps, head_*, seed) come from the config and the command line.
"""
from src import checkpoint
from src.config import parse_config
from src.eval import downstream
from src.eval.evaluate import evaluate_checkpoint
from src.methods import create_method, method_of_checkpoint
from src.utils.errors import ConfigError, batch_guard, run_main


def _extra(parser):
    parser.add_argument("--eval_mode", default="contrastive", choices=["contrastive", "classify"],
                        help="contrastive: sorted/unsorted accuracy of the CPC net on the test split; "
                             "classify: digit accuracy of classifiers on the frozen encoder and baselines")
    parser.add_argument("--methods", default=",".join(downstream.METHODS),
                        help="classify: comma-separated subset of " + ",".join(downstream.METHODS))
    parser.add_argument("--label_fractions", default=",".join(map(str, downstream.LABEL_FRACTIONS)),
                        help="classify: comma-separated fractions of the training labels, each in (0, 1]")
    parser.add_argument("--seeds", default="",
                        help="classify: comma-separated seeds, each a new draw of the labelled subsets and "
                             "of the heads (mean and standard deviation per cell); empty = --seed alone")


def main(argv=None):
    cfg = parse_config(argv, description="Evaluate a CPC checkpoint", extra_args=_extra)
    if not cfg.ckpt_path:
        raise ConfigError("config key 'ckpt_path' is required: the checkpoint to evaluate")
    create_method(cfg.task)  # a method name the registry lacks (e.g. an old "--task classify") is refused
    params, meta = checkpoint.load(cfg.ckpt_path)
    if cfg.eval_mode == "contrastive":  # a classifier or encoder: named by its kind, not its missing parameters
        checkpoint.require_kind(meta, cfg.ckpt_path, ("cpc",), "contrastive evaluation needs the full CPC "
                                "checkpoint (cpc_best.ckpt or cpc_last.ckpt); --eval_mode classify takes this one")
    if cfg.eval_mode == "classify":
        with batch_guard("head_batch_size", cfg.head_batch_size):
            return downstream.classify(cfg, params, meta)
    method = method_of_checkpoint(cfg, meta)  # an unknown method fails here, before anything is written
    with batch_guard("batch_size", cfg.batch_size):
        evaluate_checkpoint(cfg, params, meta, method)


if __name__ == "__main__":
    run_main(main)
