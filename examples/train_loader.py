"""Feed dicomprep outputs to a training loop: dataset, inode-block order, annotations.

    python examples/train_loader.py [DATASET_ROOT] [--epochs 2] [--batch-size 4]

DATASET_ROOT is a folder written by dicomprep (it holds manifest.csv), e.g.
results/dataset after ``make run``.  Without it, the example first converts a few
synthetic mammograms (made by dicomprep_testdata, the development package ``make install``
installs) into a temporary dataset.  PyTorch is used when it is installed
(``DataLoader`` with worker processes); otherwise a ``multiprocessing`` pool plays the
loader.  Annotations given in source DICOM pixels are mapped to the output pixels the
network sees, and a prediction in output pixels is mapped back to the source.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

import dicomprep
from dicomprep.formats.manifest import scan_dataset, write_manifest
from dicomprep.options import Options
from dicomprep.pipeline import process_file


def make_demo_dataset(root: Path, files: int = 8) -> Path:
    """Convert ``files`` small synthetic mammograms into ``root`` (crop, resize, pad)."""
    from dicomprep_testdata import synthetic

    sources = root / "sources"
    options = Options(crop=True, crop_max=True, size=(256, 320))
    for i in range(files):
        ds = synthetic.mammogram(rows=832, columns=640, seed=i, laterality="LR"[i % 2])
        process_file(synthetic.write(ds, sources / f"{i}.dcm"), root / "dataset", options)
    write_manifest(scan_dataset(root / "dataset"), root / "dataset" / "manifest.csv")
    return root / "dataset"


def epoch_with_torch(dataset, sampler, batch_size: int) -> int:
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=2,
        collate_fn=dicomprep.collate,  # arrays stacked, records kept as a list
    )
    seen = 0
    for batch, records in loader:
        import torch

        images = torch.from_numpy(batch)  # (batch, frames, H, W, C) float32 in [0, 1]
        seen += len(records)
        assert images.shape[0] == len(records)
    return seen


def epoch_with_pool(dataset, sampler, batch_size: int) -> int:
    order = list(sampler)
    with multiprocessing.Pool(2) as pool:
        items = pool.imap(dataset.__getitem__, order, chunksize=batch_size)
        batch, seen = [], 0
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                images, records = dicomprep.collate(batch)
                seen += len(records)
                batch = []
        if batch:
            seen += len(dicomprep.collate(batch)[1])
    return seen


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("root", nargs="?", type=Path, help="dataset folder holding manifest.csv")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--block-size", type=int, default=4)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        root = args.root or make_demo_dataset(Path(scratch))
        dataset = dicomprep.ManifestDataset(root / "manifest.csv", dtype="float32")
        print(dataset)

        # Inode order in shuffled blocks: sequential disk reads, a new order every epoch.
        sampler = dataset.sampler(block_size=args.block_size, seed=42)
        try:
            import torch  # noqa: F401

            run_epoch, how = epoch_with_torch, "torch DataLoader"
        except ImportError:
            run_epoch, how = epoch_with_pool, "multiprocessing pool"
        for epoch in range(args.epochs):
            sampler.set_epoch(epoch)
            seen = run_epoch(dataset, sampler, args.batch_size)
            first = list(sampler)[:5]
            print(f"epoch {epoch}: {seen} images via {how}; order starts {first}")

        # An annotation in source pixels (e.g. from a radiologist's DICOM viewer) ...
        array, record = dataset[0]
        g = record["geometry"]
        x0, y0, x1, y1 = g.crop_box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        table = pd.DataFrame(
            [
                {
                    "sop_instance_uid": record["sop_instance_uid"],
                    "label": "finding",
                    "x0": cx - 40,
                    "y0": cy - 30,
                    "x1": cx + 40,
                    "y1": cy + 30,
                },
            ]
        )
        mapped = dicomprep.map_annotations(table, root).iloc[0]
        print(
            f"source box ({cx - 40:.0f}, {cy - 30:.0f}, {cx + 40:.0f}, {cy + 30:.0f}) -> "
            f"output box ({mapped.x0:.1f}, {mapped.y0:.1f}, {mapped.x1:.1f}, {mapped.y1:.1f}) "
            f"in a {array.shape[2]}x{array.shape[1]} image, clipped={mapped.clipped}"
        )
        # ... and a prediction in output pixels back to the source, with the same geometry.
        predicted = np.array([mapped.x0 + 1, mapped.y0 + 1, mapped.x1 - 1, mapped.y1 - 1])
        print(f"prediction in source pixels: {np.round(g.box_to_source(predicted), 1)}")


if __name__ == "__main__":
    main()
