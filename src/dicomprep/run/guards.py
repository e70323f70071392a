"""Checks made before the first conversion, so that a user's mistake costs one line and
never a dataset: an empty source, an output folder that cannot be written, and an output
folder that another work folder keeps (docs/configuration.md, "Safety").

Each output folder belongs to one work folder (the journals that say which TIFFs are
done, and which to remove when their source goes): the first run writes the absolute
work path to ``{output}/.dicomprep-work`` (an object of that name in a bucket output),
and a run naming another work folder for the same output is refused.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dicomprep.storage.urls import is_url, join_url

OWNER_MARKER = ".dicomprep-work"


class OutputError(RuntimeError):
    """The output folder cannot be used by this run; the message says why and what to do."""


def require_files(source: str | os.PathLike, found: int) -> None:
    """Raise :class:`~dicomprep.run.discover.SourceError` when ``source`` holds no file
    (``found`` is how many discovery listed): an empty folder is as wrong as a missing
    one, and must not make a run remove every output as an orphan."""
    if found:
        return
    from dicomprep.run.discover import SourceError

    raise SourceError(
        f"source {str(source)!r} holds no files (an empty folder or list); nothing was "
        f"converted or removed"
    )


def probe_writable(output_root: str | os.PathLike) -> None:
    """Create the output folder if needed and write (and remove) a temporary file in it;
    :class:`OutputError` naming the folder and the system's reason when that fails."""
    root = Path(output_root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".dicomprep-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"output folder {str(root)!r} cannot be written: {reason}") from None


def _marker(output_root: str) -> str | Path:
    if is_url(output_root):
        return join_url(output_root, OWNER_MARKER)
    return Path(output_root) / OWNER_MARKER


def output_owner(output_root: str | os.PathLike) -> str | None:
    """The work folder named by the output's ownership marker (None when it has none)."""
    marker = _marker(str(output_root))
    try:
        if isinstance(marker, Path):
            text = marker.read_text(encoding="utf-8")
        else:
            from dicomprep.storage.objects import filesystem

            fs, path = filesystem(marker)
            text = fs.cat_file(path).decode("utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except Exception as exc:  # noqa: BLE001 - unreadable, unreachable: one line naming it
        reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        raise OutputError(f"cannot read {marker}: {reason}") from None
    return text.strip() or None


def check_owner(output_root: str | os.PathLike, work: str | os.PathLike) -> None:
    """:class:`OutputError` when the output belongs to another work folder than ``work``."""
    owner, mine = output_owner(output_root), str(Path(work).resolve())
    if owner is None or owner == mine:
        return
    marker = _marker(str(output_root))
    raise OutputError(
        f"output {str(output_root)!r} belongs to the work folder {owner!r} (named in "
        f"{marker}), not to {mine!r}: run with work: {owner}, or delete {marker} to hand "
        f"the dataset over to {mine} (its TIFFs are then converted again, none removed)"
    )


def claim_output(output_root: str | os.PathLike, work: str | os.PathLike) -> None:
    """Check that the output can be written (a probe file for a folder) and belongs to
    ``work``; write the ownership marker on the first run."""
    check_owner(output_root, work)
    mine = str(Path(work).resolve())
    if not is_url(output_root):
        probe_writable(output_root)
        try:  # created only if absent: of two first runs at once, one claims it
            with open(Path(output_root) / OWNER_MARKER, "x", encoding="utf-8") as marker:
                marker.write(mine + "\n")
        except FileExistsError:
            check_owner(output_root, work)
        return
    if output_owner(output_root) is None:
        from dicomprep.storage.objects import filesystem

        fs, path = filesystem(str(_marker(str(output_root))))
        try:
            fs.pipe_file(path, (mine + "\n").encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - refused, unreachable: one line naming it
            raise OutputError(
                f"output {str(output_root)!r} cannot be written: {type(exc).__name__}: {exc}"
            ) from None
