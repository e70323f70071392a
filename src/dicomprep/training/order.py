"""Read orders that follow the disk: inode order in shuffled blocks.

Reading files in inode order keeps a spinning disk or a network file system reading
sequentially; training still needs a random order.  :func:`inode_block_order` gives
both: the files sorted by inode are cut into blocks of ``block_size`` consecutive files,
and the blocks (optionally also the files inside each block) are shuffled with a
generator seeded by ``(seed, epoch)``.  Every index appears exactly once per epoch; the
same seed and epoch always give the same order, another epoch another order.

:class:`InodeBlockSampler` wraps it in the sampler protocol of PyTorch's DataLoader
(``__iter__``, ``__len__``, ``set_epoch``) without importing torch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["InodeBlockSampler", "inode_block_order"]


def inode_block_order(
    inodes, block_size: int, seed: int = 0, epoch: int = 0, shuffle_within: bool = False
) -> np.ndarray:
    """Indices into ``inodes`` in inode order, cut into blocks that are then shuffled.

    ``inodes`` is a sequence of integers (negative or NaN for unknown, e.g. objects in
    storage: those sort first, by index).  Ties keep index order.  ``block_size`` files
    are read in inode order within a block unless ``shuffle_within`` is true.
    """
    if block_size < 1:
        raise ValueError(f"block_size must be at least 1, got {block_size}")
    if seed < 0 or epoch < 0:
        raise ValueError("seed and epoch must be non-negative")
    keys = np.asarray(inodes, dtype=np.float64)
    keys = np.where(np.isnan(keys), -1.0, keys)
    by_inode = np.argsort(keys, kind="stable")
    count = len(by_inode)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    blocks = -(-count // block_size)
    padded = np.full(blocks * block_size, -1, dtype=np.int64)  # the last block may be short
    padded[:count] = by_inode
    table = padded.reshape(blocks, block_size)
    rng = np.random.default_rng([int(seed), int(epoch)])
    table = table[rng.permutation(blocks)]
    if shuffle_within:
        table = rng.permuted(table, axis=1)
    order = table.reshape(-1)
    return order[order >= 0]


class InodeBlockSampler:
    """Yields dataset indices in :func:`inode_block_order`; call ``set_epoch`` each epoch.

    ``inodes`` is the sequence of inode numbers of the dataset's items (for a
    :class:`~dicomprep.training.dataset.ManifestDataset`, its ``inodes``).  Use it as
    ``DataLoader(dataset, sampler=InodeBlockSampler(dataset.inodes, 64, seed=1))``.
    """

    def __init__(self, inodes, block_size: int = 64, seed: int = 0, shuffle_within: bool = False):
        self.inodes = np.asarray(inodes, dtype=np.float64)
        self.block_size = int(block_size)
        self.seed = int(seed)
        self.shuffle_within = bool(shuffle_within)
        self.epoch = 0
        inode_block_order(self.inodes[:0], self.block_size, self.seed)  # validate arguments

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from now on."""
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """The indices of the current epoch."""
        return inode_block_order(
            self.inodes, self.block_size, self.seed, self.epoch, self.shuffle_within
        )

    def __iter__(self):
        return iter(self.order().tolist())

    def __len__(self) -> int:
        return len(self.inodes)
