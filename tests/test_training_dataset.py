"""ManifestDataset and the inode block order: every row once per epoch, deterministic,
picklable for multiprocessing and (when installed) PyTorch's DataLoader."""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pandas as pd
import pytest
import tifffile
from dicomprep_testdata import synthetic

import dicomprep
from dicomprep.formats.manifest import scan_dataset, write_manifest
from dicomprep.formats.tiff import read_geometry
from dicomprep.options import Options
from dicomprep.pipeline import process_file

FILES = 14


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dataset")
    sources = tmp_path_factory.mktemp("sources")
    options = Options(crop=True, crop_max=True, size=(32, 40))
    for i in range(FILES):
        ds = synthetic.mammogram(rows=104, columns=80, seed=i, laterality="LR"[i % 2])
        source = synthetic.write(ds, sources / f"{i}.dcm")
        result = process_file(source, root, options)
        assert result.status == "ok", result.message
    write_manifest(scan_dataset(root), root / "manifest.csv")
    return root


@pytest.fixture(scope="module")
def manifest(dataset_root):
    return pd.read_csv(dataset_root / "manifest.csv", dtype=str)


def test_items_are_the_tiff_pixels_and_the_manifest_row(dataset_root, manifest):
    ds = dicomprep.ManifestDataset(dataset_root / "manifest.csv", dtype="uint16")
    assert len(ds) == FILES == len(manifest)
    for i, row in manifest.iterrows():
        array, record = ds[i]
        tiff = dataset_root / row["path"]
        np.testing.assert_array_equal(array[0, ..., 0], tifffile.imread(tiff))
        assert record["study_instance_uid"] == row["study_instance_uid"]
        assert record["sop_instance_uid"] == row["sop_instance_uid"]
        assert record["inode"] == int(row["inode"]) == tiff.stat().st_ino
        assert record["geometry"] == read_geometry(tiff)
        assert record["index"] == i


def test_float32_and_transform(dataset_root):
    ds = dicomprep.ManifestDataset(dataset_root / "manifest.csv", transform=np.transpose)
    array, _ = ds[0]
    raw = tifffile.imread(dataset_root / ds.record(0)["path"])
    np.testing.assert_array_equal(
        array, np.transpose((raw / 65535.0).astype(np.float32)[None, ..., None])
    )


def test_dataframe_manifest_needs_root(dataset_root, manifest):
    with pytest.raises(ValueError, match="root"):
        dicomprep.ManifestDataset(manifest)
    ds = dicomprep.ManifestDataset(manifest, root=dataset_root)
    assert ds[-1][1]["sop_instance_uid"] == manifest["sop_instance_uid"].iloc[-1]
    with pytest.raises(IndexError):
        ds[len(ds)]


def expected_blocks(inodes: list[int], block_size: int) -> list[list[int]]:
    """Indices sorted by inode (ties by index) cut into consecutive blocks."""
    ranked = sorted(range(len(inodes)), key=lambda i: (inodes[i], i))
    return [ranked[i : i + block_size] for i in range(0, len(ranked), block_size)]


def split_into_blocks(order: list[int], blocks: list[list[int]]) -> list[list[int]]:
    """``order`` cut where the expected blocks would end, in the order they appear."""
    by_first = {tuple(sorted(b)): b for b in blocks}
    out, position = [], 0
    while position < len(order):
        for size in {len(b) for b in blocks}:
            chunk = order[position : position + size]
            if tuple(sorted(chunk)) in by_first:
                out.append(chunk)
                position += size
                break
        else:
            raise AssertionError(f"no inode block starts at position {position} of {order}")
    return out


@pytest.mark.parametrize("shuffle_within", [False, True])
def test_sampler_reads_inode_blocks_once_per_epoch(dataset_root, shuffle_within):
    ds = dicomprep.ManifestDataset(dataset_root / "manifest.csv")
    inodes = [int(v) for v in pd.read_csv(dataset_root / "manifest.csv")["inode"]]
    blocks = expected_blocks(inodes, 4)
    sampler = ds.sampler(block_size=4, seed=7, shuffle_within=shuffle_within)
    assert len(sampler) == FILES
    orders = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(FILES))  # every row exactly once
        chunks = split_into_blocks(order, blocks)
        if not shuffle_within:
            assert all(chunk in blocks for chunk in chunks)  # inode order inside a block
        orders.append(order)
    assert len({tuple(o) for o in orders}) > 1  # the epochs differ
    sampler.set_epoch(2)
    again = dicomprep.ManifestDataset(dataset_root / "manifest.csv").sampler(
        4, seed=7, shuffle_within=shuffle_within
    )
    again.set_epoch(2)
    assert list(sampler) == list(again) == orders[2]  # fixed (seed, epoch), fixed order


def test_inode_block_order_on_known_inodes():
    inodes = [50, 10, 40, 20, 30, 60, 70]
    order = dicomprep.inode_block_order(inodes, block_size=3, seed=1, epoch=0).tolist()
    blocks = [[1, 3, 4], [2, 0, 5], [6]]  # inodes 10,20,30 | 40,50,60 | 70
    assert sorted(map(tuple, split_into_blocks(order, blocks))) == sorted(map(tuple, blocks))
    epochs = {tuple(dicomprep.inode_block_order(inodes, 3, seed=1, epoch=e)) for e in range(8)}
    assert len(epochs) > 1
    assert dicomprep.inode_block_order(inodes, len(inodes), seed=5, epoch=9).tolist() == [
        1,
        3,
        4,
        2,
        0,
        5,
        6,
    ]
    with pytest.raises(ValueError):
        dicomprep.inode_block_order(inodes, 0)


def test_different_seeds_give_different_orders():
    inodes = list(range(1000, 0, -1))
    orders = {tuple(dicomprep.inode_block_order(inodes, 10, seed=s).tolist()) for s in range(5)}
    assert len(orders) == 5


def sop_of(item) -> str:
    return item[1]["sop_instance_uid"]


def test_works_in_a_spawned_multiprocessing_pool(dataset_root):
    ds = dicomprep.ManifestDataset(dataset_root / "manifest.csv", dtype="uint8")
    restored = pickle.loads(pickle.dumps(ds))
    assert len(restored) == len(ds)
    order = list(ds.sampler(block_size=4, seed=3))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        items = pool.map(ds.__getitem__, order)
    assert [sop_of(item) for item in items] == [sop_of(ds[i]) for i in order]
    for item, i in zip(items, order, strict=True):
        np.testing.assert_array_equal(item[0], ds[i][0])


def test_collate_stacks_same_shaped_items(dataset_root):
    ds = dicomprep.ManifestDataset(dataset_root / "manifest.csv")
    batch, records = dicomprep.collate([ds[0], ds[1], ds[2]])
    assert batch.shape == (3, 1, 40, 32, 1)
    assert [r["index"] for r in records] == [0, 1, 2]


def test_torch_dataloader_with_workers(dataset_root):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    ds = dicomprep.ManifestDataset(dataset_root / "manifest.csv")
    sampler = ds.sampler(block_size=4, seed=0)
    sampler.set_epoch(1)
    loader = DataLoader(
        ds, batch_size=4, sampler=sampler, num_workers=2, collate_fn=dicomprep.collate
    )
    seen = []
    for batch, records in loader:
        tensor = torch.from_numpy(batch)
        assert tensor.shape[1:] == (1, 40, 32, 1)
        seen.extend(r["index"] for r in records)
    assert seen == list(sampler)


def test_records_keep_extra_columns_missing_values_and_parquet(dataset_root, manifest, tmp_path):
    table = manifest.copy()
    table["inode"] = table["inode"].astype("float64")
    table.loc[1, "inode"] = np.nan  # e.g. an object-storage output
    table["note"] = ["é" * i if i % 3 else None for i in range(len(table))]
    ds = dicomprep.ManifestDataset(table, root=dataset_root)
    restored = pickle.loads(pickle.dumps(ds))
    for i in range(len(table)):
        record = restored.record(i)
        note = table.loc[i, "note"]
        assert record["note"] == (None if pd.isna(note) else note)
        assert record["sop_instance_uid"] == table.loc[i, "sop_instance_uid"]
        if i == 1:
            assert record["inode"] is None
        else:
            assert record["inode"] == int(table.loc[i, "inode"])
            assert isinstance(record["inode"], int)
    assert sorted(restored.sampler(3)) == list(range(len(table)))  # unknown inode included

    write_manifest(scan_dataset(dataset_root), tmp_path / "manifest.parquet")
    from_parquet = dicomprep.ManifestDataset(tmp_path / "manifest.parquet", root=dataset_root)
    csv = dicomprep.ManifestDataset(dataset_root / "manifest.csv")
    assert [from_parquet.record(i)["file"] for i in range(FILES)] == [
        csv.record(i)["file"] for i in range(FILES)
    ]
