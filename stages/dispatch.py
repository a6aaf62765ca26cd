"""The study's stale stage instances as submitit jobs (SLURM or local), wave by wave; then `dvc repro` here."""

from __future__ import annotations

import argparse

HELP = "run the study's stale stage instances as jobs on a cluster (SLURM) or local processes, sharing one DVC cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", metavar="FILE", help="checked before anything is sent")
    parser.add_argument("--queries", default="queries", metavar="DIR", help="where report.print's tables are defined")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="the dispatch config (default: dispatch.yaml when present, else every default; README)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (waves, jobs) and send nothing")
    parser.add_argument("--no-final", action="store_true",
                        help="leave out the coordinator's closing `dvc repro` (ingest, report)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from expertlab.dispatch.config import DEFAULT_PATH, load_config
    from expertlab.dispatch.coordinator import dispatch, preflight
    from expertlab.dispatch.plan import jobs, plan

    from expertlab.study import check_study

    check_study(args.params, args.queries)
    config = load_config(args.config or (DEFAULT_PATH if Path(DEFAULT_PATH).exists() else None))
    if args.dry_run:  # the checks a dispatch makes before it sends anything, then its plan
        preflight(Path.cwd().resolve(), config)
        the_plan = plan(Path.cwd(), config.coordinator)
        for index, wave in enumerate(the_plan.waves, start=1):
            wave_jobs = jobs(wave, config.group_stages, config.batch)
            print(f"wave {index}: {len(wave)} instances in {len(wave_jobs)} jobs")
            for job in wave_jobs:
                gpus = config.gpus_for(job.stage)
                print(f"  {' '.join(job.targets)}" + (f"  [{gpus} GPU]" if gpus else ""))
        print(f"then here: {' '.join(the_plan.coordinator) or 'nothing'}; {the_plan.up_to_date} up to date")
        return 0
    report = dispatch(Path.cwd(), config, final=not args.no_final)
    return report.returncode
