"""cryosegnet as a RELION External job: RELION's command line in, a RELION job folder out.

RELION runs the job's "External executable" in the project folder as
``EXECUTABLE --o External/jobNNN/ --in_mics CtfFind/job003/micrographs_ctf.star
[--label value ...] --j N`` (see :mod:`cryosegnet.io.relion` for what this follows). The job
picks the micrographs of ``--in_mics`` into ``--o`` the way ``cryosegnet pick`` does (one
``<stem>_autopick.star`` per micrograph, mirroring the folders below the micrographs' job
folder, as RELION's AutoPick), with every user parameter passed on as a ``cryosegnet pick``
option, then declares the coordinates as the job's output node and leaves the exit marker
RELION waits for. "Continue" runs the same command again: finished micrographs are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from cryosegnet.io.layout import INDEX_STAR, OUTPUT_SUFFIX
from cryosegnet.io.relion import (
    DEFAULT_RELION_VERSION,
    ExternalJobArgs,
    RelionError,
    abort_requested,
    clear_exit_markers,
    detect_relion_version,
    mark_job_finished,
    parse_external_job_args,
    write_coordinates_node,
)

log = logging.getLogger("cryosegnet")

#: Exit code of ``cryosegnet pick`` when it stopped early (Ctrl-C, SIGTERM, abort request).
INTERRUPTED_EXIT_CODE = 130

PickCommand = Callable[[list[str], Callable[[], bool]], int]


def external_job_pick_args(job: ExternalJobArgs) -> list[str]:
    """The ``cryosegnet pick`` arguments for an External job.

    ``--in_mics`` is the input, ``--o`` the output folder, ``--j`` the read-ahead threads
    (``--workers``); each user parameter ``--label value`` is passed on unchanged, so any
    ``pick`` option taking a value can be set in the job's Params tab.

    Raises
    ------
    RelionError
        Without ``--in_mics``.
    """
    if not job.in_mics:
        raise RelionError(
            "no --in_mics: set 'Input micrographs' (Input tab) to a micrographs STAR, e.g. "
            "CtfFind/job003/micrographs_ctf.star"
        )
    argv = [
        job.in_mics,
        "-o",
        str(job.output),
        "--workers",
        str(max(1, job.threads)),
        "--no-progress",
    ]
    for label, value in job.params.items():
        argv += [f"--{label}", value]
    return argv


def parse_job_command(argv: list[str]) -> ExternalJobArgs:
    """RELION's arguments parsed; a command line that cannot be parsed but names its job
    folder (``--o``) leaves ``RELION_JOB_EXIT_FAILURE`` there, so RELION does not wait.

    Raises
    ------
    RelionError
        As :func:`cryosegnet.io.relion.parse_external_job_args`.
    """
    try:
        return parse_external_job_args(argv)
    except RelionError:
        for i, option in enumerate(argv[:-1]):
            if option == "--o" and not argv[i + 1].startswith("--"):
                mark_job_finished(argv[i + 1], success=False)
        raise


def run_external_job(job: ExternalJobArgs, pick: PickCommand, project_dir: str | Path = ".") -> int:
    """Run one External job: pick, write the output node, leave the exit marker.

    Parameters
    ----------
    job : ExternalJobArgs
        RELION's arguments (:func:`cryosegnet.io.relion.parse_external_job_args`).
    pick : callable
        ``pick(argv, should_stop) -> exit code``: ``cryosegnet pick`` with ``argv``, asking
        ``should_stop()`` between micrographs.
    project_dir : str or pathlib.Path
        The RELION project folder (RELION runs jobs there: the working folder).

    Returns
    -------
    int
        ``pick``'s exit code. ``RELION_JOB_EXIT_SUCCESS`` is left when it is 0,
        ``RELION_JOB_EXIT_ABORTED`` when the job stopped on ``RELION_JOB_ABORT_NOW``, else
        ``RELION_JOB_EXIT_FAILURE`` (also when ``pick`` raises, which is re-raised).
    """
    out = job.output
    out.mkdir(parents=True, exist_ok=True)
    clear_exit_markers(out)  # a continued job is running again
    version = detect_relion_version(project_dir) or DEFAULT_RELION_VERSION
    try:
        code = pick(external_job_pick_args(job), lambda: abort_requested(out))
        aborted = code == INTERRUPTED_EXIT_CODE and abort_requested(out)
        if (out / INDEX_STAR).is_file():
            node = write_coordinates_node(
                out,
                INDEX_STAR,
                relion_version=version,
                micrographs_star=job.in_mics,
                suffix=OUTPUT_SUFFIX.lstrip("_"),
                project_dir=project_dir,
            )
            log.info("RELION %d output node: %s", version, node)
    except BaseException:
        mark_job_finished(out, success=False)
        raise
    marker = mark_job_finished(out, success=code == 0, aborted=aborted)
    log.info("%s", marker)
    return code
