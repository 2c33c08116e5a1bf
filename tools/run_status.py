"""Read the run_status.json files train.py writes (src/utils/runstatus.py), for the scripts.

    python -m tools.run_status why RUN_DIR [--since T] [--msrun-log F] [--scheduler-log F] [LOG...]
    python -m tools.run_status summary FOLDER [--since T]

why: one `error: ...` line on stderr naming the rank that made a data-parallel job fail
(src/utils/jobstatus.py), exit 0; exit 1 when nothing says. summary: 'run status: STATE (exit N):
ERROR; last checkpoint P' of the run in FOLDER, exit 1 when there is none. T: the launch time in
seconds since the epoch; a status written by an earlier launch into the same folder is not read.
"""
import sys

from src.utils import jobstatus, runstatus
from src.utils.errors import ArgParser, ConfigError, run_main


def _parser(command):
    parser = ArgParser(prog=f"python -m tools.run_status {command}", description=__doc__.split("\n")[0])
    if command == "why":
        parser.add_argument("run_dir")
        parser.add_argument("logs", nargs="*", help="the launcher's per-rank logs")
        parser.add_argument("--msrun-log")
        parser.add_argument("--scheduler-log")
    else:
        parser.add_argument("folder")
    parser.add_argument("--since", type=float, default=0.0, help="launch time (seconds since the epoch)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("why", "summary"):
        given = repr(argv[0]) if argv else "nothing"
        raise ConfigError(f"the first argument must be the command why or summary, got {given}")
    args = _parser(argv[0]).parse_intermixed_args(argv[1:])  # argparse's subcommands cannot intermix
    if argv[0] == "why":
        line = jobstatus.explain(args.run_dir, args.logs, args.since, args.msrun_log, args.scheduler_log)
        if line is None:
            return 1
        print(f"error: {line}", file=sys.stderr)
        return 0
    status = runstatus.read(args.folder, args.since)
    if status is None:
        return 1
    print(f"run status: {runstatus.summary(status)}")
    return 0


if __name__ == "__main__":
    run_main(main)
