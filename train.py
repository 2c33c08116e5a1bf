"""Train CPC on sequences of MNIST digits.

    python train.py --config_path config/cpc_mnist28_gray.yaml --device_target CPU --output_path OUT

Writes OUT/config.yaml, OUT/train.log, OUT/metrics.json, OUT/run_status.json and the checkpoints cpc_last.ckpt,
cpc_best.ckpt (full CPC net + optimizer state + hyper-parameters) and encoder_best.ckpt.
Launched by scripts/run_distribute_train.sh (msrun or a rank table) it trains data-parallel:
rank 0 writes into OUT, rank k > 0 into OUT/rank_k.
"""
from src.config import parse_config
from src.device import check_for_target, init_device
from src.train.distributed import init_distributed, rank_output_path
from src.train.engine import load_training_data, train
from src.train.resume import rolling
from src.utils.errors import run_main
from src.utils.modelarts import synced
from src.utils.runlog import lock_output, prepare_output, setup_logging
from src.utils.runstatus import run_status


def main(argv=None):
    cfg = parse_config(argv, description="Train CPC (MindSpore) on sequences of MNIST digits")
    run(cfg)


@synced  # enable_modelarts: data_url / checkpoint_url in first, output_path out to train_url last
def run(cfg):
    target = init_device(cfg)
    check_for_target(cfg, target, training=True)  # GRU size on Ascend, amp level; nothing is written yet
    rank, size = init_distributed()  # (0, 1) unless launched by msrun or a rank table
    cfg.output_path = rank_output_path(cfg.output_path, rank)
    data = load_training_data(cfg)  # bad data fails here, before anything is written
    prepare_output(cfg.output_path)
    # a second run into the same folder is refused; run_status.json says how this one stands or ended
    with lock_output(cfg.output_path), run_status(cfg.output_path, rank, size, rolling):
        setup_logging(cfg.output_path, "train.log")
        train(cfg, target, data)


if __name__ == "__main__":
    run_main(main)
