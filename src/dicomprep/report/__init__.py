"""The QC report: one self-contained HTML page to look at before training.

:func:`build_report` reads what a workflow run leaves behind — the manifest, the failures
table, the run summary, the header catalog and the shard results — and writes
``{output}/report/index.html`` with

- the counts of processed / skipped / duplicate / failed inputs per modality, the output
  sizes, the bytes of the TIFFs and the time the conversions took;
- plots: the distribution of output sizes, of the crop fraction (cropped area / source area)
  and the intensity histogram of each modality (:mod:`.plots`);
- for a fixed sample of outputs per modality (the first ``samples_per_modality`` SOP
  Instance UIDs in the order of their SHA-256 hash, so the same run always shows the same
  files) the source image with its crop box beside the TIFF's central page with its active
  area and padding (:mod:`.images`);
- the failures table and one section per study with its series, frame counts and sizes.

The modules follow these concerns: :mod:`.build` puts the page together, :mod:`.data`
loads the run into tables and chooses the samples (the order in :mod:`.sampling`),
:mod:`.images` draws and encodes the thumbnails (Pillow), :mod:`.plots` computes the charts,
:mod:`.page` renders the page (Jinja2, ``templates/report.html.j2``).  Importing the package
is cheap: the shard jobs use :mod:`.sampling` and :mod:`.images` to render the thumbnails
of the files they convert that the report is going to show, so that the report itself
decodes nothing on a first run.

Thumbnails are PNG (or lossless WebP) files in ``report/img/`` named by SOP Instance UID;
the page has inline CSS and SVG, no scripts and no network references.  Beside each sample's
thumbnails a small JSON record says what they were made from; a rebuild reuses thumbnails
whose record still matches, so a rerun after new data only renders new samples.

Privacy: the page holds UIDs, modalities, sizes, counts, statuses and times only; no header
value that names or identifies a patient (names, IDs, dates) is read into it.  Inputs that
did not become a TIFF are listed by their path *relative to the common folder of all
inputs*, so the folders above it never appear; folder and file names below it do.
Thumbnails are pixels: text burned into an image stays visible, as it does in the TIFF.
"""

from __future__ import annotations

__all__ = ["build_report", "write_report"]


def __getattr__(name: str):
    """``build_report`` and ``write_report``, imported on first use (pandas, Jinja2)."""
    if name in __all__:
        from dicomprep.report import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
