"""ESPnet's statistics collection for several frontends in one process (s2t.sh stage 10).

    python -m espnet_ofa.bin.collect_stats --task asr --job 1 \\
        --args_file exp/asr_stats_raw_en_word/<key 1>/logdir/collect_stats.args \\
        --args_file exp/asr_stats_raw_en_word/<key 2>/logdir/collect_stats.args

Each args file holds the options of one ``python -m espnet2.bin.<task>_train
--collect_stats true`` run, one option or value per line, with ``JOB`` standing for the
``--job`` number (the part of the data this job reads: ``train.JOB.scp``). They run one
after another through the task's own ``main``, so ESPnet's start-up (seconds of imports) is
paid once per process instead of once per frontend; what each run writes is what the
separate command would write.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_ofa.bin import read_args_file, reports_errors
from espnet_ofa.espnet_tasks import get_task, task_names

def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=task_names())
    parser.add_argument("--job", type=int, default=1,
                        help="replaces JOB in the options (the data split this job reads)")
    parser.add_argument("--args_file", type=Path, action="append", required=True,
                        help="the options of one collect-stats run, one per line (repeat)")
    return parser


@reports_errors()
def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    # All checked before ESPnet starts.
    runs = [read_args_file(path, "collect-stats run", args.job) for path in args.args_file]
    task = get_task(args.task).train_cls()
    for options in runs:
        task.main(cmd=["--collect_stats", "true", *options])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
