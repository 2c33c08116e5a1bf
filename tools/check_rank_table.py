"""Check an HCCL rank table for scripts/run_distribute_train.sh: print RANK_SIZE, then one
'DEVICE_ID RANK_ID' line per device of this server.

    python -m tools.check_rank_table FILE [--server-index K]
"""
from src.train.distributed import RankTableError, parse_rank_table
from src.utils.errors import ArgParser, run_main


def main(argv=None):
    parser = ArgParser(prog="python -m tools.check_rank_table", description=__doc__.split("\n")[0])
    parser.add_argument("path")
    parser.add_argument("--server-index", type=int, default=0, help="which server_list entry is this machine")
    args = parser.parse_args(argv)
    servers = parse_rank_table(args.path)
    if not 0 <= args.server_index < len(servers):
        raise RankTableError(f"server index {args.server_index} is outside the table's {len(servers)} servers")
    print(sum(len(devices) for devices in servers))
    for device_id, rank_id in servers[args.server_index]:
        print(device_id, rank_id)


if __name__ == "__main__":
    run_main(main)
