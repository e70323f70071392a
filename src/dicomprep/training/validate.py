"""Will a run convert these files?  ``dicom-validate INPUT... [options] [--format json]``.

The verdict of a file is the run's: its inputs (files, folders walked as the workflow
walks them, ``.txt`` lists) are catalogued by discovery's own function
(:func:`dicomprep.run.discover.build_catalog`: recognition, header, UIDs, duplicates),
then converted as dicom-preprocess converts them
(:func:`dicomprep.run.local.convert_catalog`, the workflow's shard and collect) with the
processing options given, into a temporary folder that is removed when the batch is
done.  So a file is

``ok``
    when the run writes its output, or it is a ``duplicate`` of a copy that does;
``skipped``
    when the run skips it (not DICOM, no pixel data), with the error type and message
    failures.csv gives;
``blocker``
    when the run fails it, with failures.csv's error type and message.

``--header-only`` runs discovery's checks alone (no decoding: a file whose pixel data
does not decode is ``ok`` there).  Warnings (:mod:`dicomprep.training.validate_warnings`)
never change a verdict.  Exit status: the worst verdict: 0 when every file is ok or
skipped, 1 when one is a blocker, 2 when an input does not exist or cannot be read
(and for usage errors).
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dicomprep.core.errors import ErrorType
from dicomprep.options import Options, OptionsError
from dicomprep.run.discover import (
    CATALOG_COLUMNS,
    DICOM,
    DUPLICATE,
    MISSING,
    SourceError,
    build_catalog,
    mark_duplicates,
    normalise,
)
from dicomprep.run.failures import NOT_DICOM_TYPES, catalog_failures, failures_frame
from dicomprep.training.validate_warnings import Finding, header_warnings

__all__ = ["Verdict", "main", "validate", "validate_file", "verdicts_of_catalog"]

OK, SKIPPED, BLOCKER = "ok", "skipped", "blocker"
#: Error types of an input that could not be examined at all (exit status 2).
UNREADABLE_TYPES = frozenset(
    {ErrorType.FILE_NOT_FOUND, ErrorType.ACCESS_DENIED, ErrorType.READ_ERROR}
)
#: Images converted per temporary folder: the folder holds at most this many outputs.
BATCH_FILES = 256


@dataclass
class Verdict:
    """What the run does with one input: ``verdict`` (ok, skipped, blocker), the
    ``status``, ``stage``, ``error_type`` and ``message`` its failures.csv row holds
    (empty for a file that becomes an output; a duplicate is ok with its row), and the
    ``warnings`` about its header."""

    path: str
    verdict: str
    status: str = ""
    stage: str = ""
    error_type: str = ""
    message: str = ""
    warnings: list[Finding] = field(default_factory=list)

    @property
    def unreadable(self) -> bool:
        """The input could not be examined (missing, unreadable)."""
        return self.verdict == BLOCKER and self.error_type in UNREADABLE_TYPES

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "verdict": self.verdict,
            "status": self.status,
            "stage": self.stage,
            "error_type": self.error_type,
            "message": self.message,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    def line(self) -> str:
        """``path: ok``, ``path: skipped: TYPE: message`` or ``path: blocker: TYPE: message``
        (a duplicate: ``path: ok: DuplicateSOPInstanceUID: message``)."""
        if self.verdict == OK and not self.error_type:
            return f"{self.path}: ok"
        return f"{self.path}: {self.verdict}: {self.error_type}: {self.message}"


def verdict_of_row(row: dict, strict: bool = False) -> Verdict:
    """The verdict of the file a failures table ``row`` names; with ``strict`` a file that
    is not DICOM is a blocker (the run refuses it)."""
    status = row["status"]
    if status == DUPLICATE:
        verdict = OK
    elif status == SKIPPED:
        verdict = BLOCKER if strict and row["error_type"] in NOT_DICOM_TYPES else SKIPPED
    else:
        verdict = BLOCKER
    fields = {k: row[k] for k in ("status", "stage", "error_type", "message")}
    return Verdict(row["path"], verdict, **fields)


def verdicts_of_catalog(
    catalog: pd.DataFrame,
    options: Options,
    *,
    threads: int = 1,
    header_only: bool = False,
    strict: bool = False,
) -> dict[str, Verdict]:
    """The verdict of every catalog row, by path: the failures table a run of ``options``
    gives (``header_only``: the catalog's own, without converting anything)."""
    if header_only:
        failures = failures_frame(catalog_failures(catalog) + _catalog_duplicates(catalog))
    else:
        failures = converted_failures(catalog, options, threads)
    verdicts = {path: Verdict(path, OK) for path in catalog["path"]}
    for row in failures.to_dict("records"):
        verdicts[row["path"]] = verdict_of_row(row, strict)
    return verdicts


def _catalog_duplicates(catalog: pd.DataFrame) -> list[dict]:
    """Failure rows of the copies discovery marks duplicate (their first copy converts, as
    far as discovery knows)."""
    rows = catalog[catalog["status"] == DUPLICATE]
    return [
        {
            "path": r.path,
            "status": DUPLICATE,
            "stage": "discover",
            "error_type": r.error_type,
            "message": r.reason,
        }
        for r in rows.itertuples(index=False)
    ]


def converted_failures(catalog: pd.DataFrame, options: Options, threads: int) -> pd.DataFrame:
    """The failures table of converting ``catalog`` with dicom-preprocess's own function,
    batch by batch (:func:`batches`), each into a temporary folder removed afterwards."""
    from dicomprep.run.local import convert_catalog  # the local run's, imported late

    parts = []
    for batch in batches(catalog, BATCH_FILES if options.series == "files" else None):
        with tempfile.TemporaryDirectory(prefix="dicom-validate-") as folder:
            failures, _ = convert_catalog(batch, Path(folder), options, threads)
        parts.append(failures)
    return failures_frame(pd.concat(parts).to_dict("records") if parts else [])


def batches(catalog: pd.DataFrame, size: int | None) -> Iterable[pd.DataFrame]:
    """``catalog`` in parts of about ``size`` images (None: one part) that keep every
    copy of a SOP Instance UID and every file of a study together, as a shard does; the
    rows that are not images go with the first part."""
    images = catalog["status"].isin([DICOM, DUPLICATE])
    if size is None or images.sum() <= size:
        yield catalog
        return
    from dicomprep.run.plan import bucket_keys

    keys = bucket_keys(catalog[images].assign(stack=""))
    part, count = [catalog[~images]], 0
    for _, rows in catalog[images].groupby(keys, sort=True):
        if count and count + len(rows) > size:
            yield pd.concat(part)
            part, count = [], 0
        part.append(rows)
        count += len(rows)
    yield pd.concat(part)


def catalog_of(
    inputs: Sequence[str], threads: int = 1, source_errors: list | None = None, **discovery
):
    """The catalog of every input (a file, a folder or a ``.txt`` list; each as the
    workflow's ``source``, walked with the ``discovery`` options of :func:`build_catalog`),
    duplicates marked across all of them, and the paths in the inputs' order (each input's
    in path order).  An input the run refuses (missing, or holding no file) raises
    :class:`SourceError`, or is left out with its message appended to ``source_errors``."""
    from dicomprep.run.guards import require_files

    parts, order = [], []
    for source in inputs:
        try:
            part = build_catalog(source, processes=threads, **discovery)
            require_files(source, int((part["status"] != MISSING).sum()))
        except SourceError as exc:
            if source_errors is None:
                raise
            source_errors.append(str(exc))
            continue
        parts.append(part)
        order += part["path"].tolist()
    if not parts:
        return normalise(pd.DataFrame(columns=CATALOG_COLUMNS)), []
    catalog = normalise(pd.concat(parts, ignore_index=True)).drop_duplicates("path")
    catalog = catalog.sort_values("path", kind="stable").reset_index(drop=True)
    return mark_duplicates(catalog), list(dict.fromkeys(order))


def validate(
    inputs: Sequence[str],
    options: Options | None = None,
    *,
    threads: int = 1,
    header_only: bool = False,
    strict: bool = False,
    source_errors: list | None = None,
    **discovery,
) -> list[Verdict]:
    """The verdict of every file of ``inputs`` (files, folders, ``.txt`` lists; walked with
    the ``discovery`` options of :func:`build_catalog`: ``follow_symlinks``...), in the
    inputs' order (each input's in path order), with the warnings about each image.  An
    input the run refuses (missing, holding no file) raises :class:`SourceError`, or with
    a ``source_errors`` list is left out and its message appended there."""
    options = options or Options()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        catalog, order = catalog_of(inputs, threads, source_errors, **discovery)
        verdicts = verdicts_of_catalog(
            catalog, options, threads=threads, header_only=header_only, strict=strict
        )
        images = set(catalog.loc[catalog["status"].isin([DICOM, DUPLICATE]), "path"])
        for path in images:
            verdicts[path].warnings = _warnings_of(path, options)
    return [verdicts[path] for path in order]


def validate_file(path, options: Options | None = None, **kwargs) -> Verdict:
    """The verdict of one file (``kwargs`` as :func:`validate` takes them)."""
    return validate([str(path)], options, **kwargs)[0]


def _warnings_of(path: str, options: Options) -> list[Finding]:
    """The header warnings of a local image (none for objects, or a header that no longer
    reads)."""
    from dicomprep.formats.decode import read_header
    from dicomprep.storage.urls import is_url

    if is_url(path):
        return []
    try:
        ds, _ = read_header(path)
        return header_warnings(ds, options.voi)
    except Exception:  # noqa: BLE001 - the verdict already says what the run does
        return []


def exit_status(verdicts: Iterable[Verdict]) -> int:
    """The worst verdict's: 2 when an input could not be examined, 1 for a blocker, else 0."""
    verdicts = list(verdicts)
    if any(v.unreadable for v in verdicts):
        return 2
    return 1 if any(v.verdict == BLOCKER for v in verdicts) else 0


# -- command line ---------------------------------------------------------------------------

EPILOG = """\
Every processing option is dicom-preprocess's (pass those of your run: the workflow's
config.yaml defaults are -c -m -s 512,640). Each file is converted into a temporary folder
that is removed; --header-only runs discovery's checks only. One line per file:
"PATH: ok", "PATH: skipped: TYPE: MESSAGE" or "PATH: blocker: TYPE: MESSAGE" (TYPE and
MESSAGE as failures.csv gives them). Exit status: 0 when no file is a blocker, 1 when one
is, 2 when an input does not exist or cannot be read. See docs/validate.md.
"""


def parser():
    """dicom-preprocess's parser without SOURCE and OUTPUT, with the inputs and the ways
    of reporting."""
    from dicomprep.run.arguments import preprocess_parser

    p = preprocess_parser(
        paths=False,
        prog="dicom-validate",
        description="Tell before a run which files it converts, skips or fails.",
        epilog=EPILOG,
    )
    p.add_argument("inputs", nargs="+", help="DICOM files, folders and .txt lists of paths")
    p.add_argument("--format", choices=("text", "json"), default="text", help="report format")
    p.add_argument(
        "--header-only",
        action="store_true",
        help="discovery's checks only (recognition, header, UIDs, duplicates): no decoding",
    )
    p.add_argument("--warnings", action="store_true", help="text: a line per header warning too")
    return p


def discovery_options(args) -> dict:
    """The options of :func:`build_catalog` that dicom-preprocess's parser gave
    (``follow_symlinks``...): whatever discovery options it takes, dicom-validate takes."""
    import inspect

    accepted = inspect.signature(build_catalog).parameters
    given = {name: value for name, value in vars(args).items() if name in accepted}
    return {k: v for k, v in given.items() if k not in ("source", "previous", "processes")}


def main(argv: list[str] | None = None) -> int:
    """Print the verdicts of the inputs; the exit status is the worst (see module doc)."""
    from dicomprep.run.arguments import options_from_args

    args = parser().parse_args(argv)
    try:
        options = options_from_args(args)
    except OptionsError as exc:
        print(f"dicom-validate: {exc}", file=sys.stderr)
        return 2
    source_errors: list[str] = []
    verdicts = validate(
        args.inputs,
        options,
        threads=max(1, args.threads),
        header_only=args.header_only,
        strict=args.strict,
        source_errors=source_errors,
        **discovery_options(args),
    )
    for message in source_errors:
        print(f"dicom-validate: {message}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps([v.to_dict() for v in verdicts], indent=1))
    else:
        for v in verdicts:
            print(v.line())
            for w in v.warnings if args.warnings else ():
                print(f"{v.path}: warning: {w.error_type}: {w.message}")
    return 2 if source_errors else exit_status(verdicts)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
