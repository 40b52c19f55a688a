"""Mini-batches as slices of an epoch's permutation, with no per-sample Python."""

from __future__ import annotations

import torch

SHUFFLE_CHUNK = 8192  # images gathered per shuffled block: mini-batches are then views, not a gather each


def mini_batches(permutation: torch.Tensor, batch_size: int, *tensors: torch.Tensor):
    """(start, end, *batches) of each mini-batch of the epoch's ``permutation``, one batch from each of
    ``tensors`` (rows aligned: images, labels, …). The rows are gathered a block at a time (a multiple of the
    batch size) into reused buffers, so a tiny batch costs a slice, not an index operation, and no fresh
    memory is touched. A batch is a view: valid until the next one is drawn."""
    block = batch_size * max(1, SHUFFLE_CHUNK // batch_size)
    buffers = [t.new_empty((min(block, len(permutation)), *t.shape[1:])) for t in tensors]
    for block_start in range(0, len(permutation), block):
        indices = permutation[block_start : block_start + block]
        count = indices.shape[0]
        blocks = [buffer[:count] for buffer in buffers]
        for source, gathered in zip(tensors, blocks):
            torch.index_select(source, 0, indices, out=gathered)
        for start in range(0, count, batch_size):
            end = min(start + batch_size, count)
            yield (block_start + start, block_start + end, *[gathered[start:end] for gathered in blocks])
