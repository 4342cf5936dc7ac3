"""``cryosegnet relion-external`` (also ``cryosegnet-relion-external``): a RELION External job.

Takes RELION's own command line (``--o External/jobNNN/ --in_mics STAR --j N`` and the
job's user parameters as ``--label value``); see picking/relion_job.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from cryosegnet.picking.relion_job import parse_job_command, run_external_job

USAGE = """\
usage: cryosegnet-relion-external --o External/jobNNN/ --in_mics MICROGRAPHS.star [--j N]
                                  [--LABEL VALUE ...]

Run by RELION as an External job (External executable: cryosegnet-relion-external). Picks
the micrographs of --in_mics into --o as `cryosegnet pick` does; every --LABEL VALUE (the
job's Params tab) is a `cryosegnet pick` option, e.g. --diameter 120A, --threshold 0.1,
--model ft_run/best.pt, --device cuda. Writes autopick.star, RELION_OUTPUT_NODES.star and
RELION_JOB_EXIT_SUCCESS / RELION_JOB_EXIT_FAILURE; stops on RELION_JOB_ABORT_NOW.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    # RELION's arguments are taken as they come ('--o', '--in_mics', any '--label'): with
    # '+' as the only prefix, argparse treats every one of them as a plain value.
    p = subparsers.add_parser(
        "relion-external",
        prefix_chars="+",
        add_help=False,
        help="run as a RELION External job (--o, --in_mics, --j as RELION passes them)",
        description=USAGE,
    )
    p.add_argument("relion_args", nargs="*", metavar="--o JOB/ --in_mics STAR ...")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    argv = list(args.relion_args)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    job = parse_job_command(argv)
    return run_external_job(job, _pick)


def _pick(argv: list[str], should_stop: Callable[[], bool]) -> int:
    """``cryosegnet pick ARGV``, stopping when ``should_stop()`` between micrographs."""
    from cryosegnet.cli import pick

    parser = argparse.ArgumentParser(prog="cryosegnet-relion-external")
    pick.add_parser(parser.add_subparsers())
    args = parser.parse_args(["pick", *argv])
    return int(pick.run(args, should_stop) or 0)


def main() -> int:
    """Console script ``cryosegnet-relion-external``: what RELION's External job calls."""
    from cryosegnet.cli.main import main as cryosegnet_main

    return cryosegnet_main(["relion-external", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
