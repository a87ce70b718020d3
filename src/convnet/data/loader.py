"""Feeding batches to the trainer, from memory or from disk, in an order it controls.

The trainer draws each epoch's sample order from its own generator (whose state is in every
checkpoint) and hands it here with the batch to start from, so the order and the position in
the epoch survive a crash whichever path feeds the data:

* in memory, a batch is one index into the preprocessed tensors (the whole global batch; under
  torchrun the trainer slices it after augmentation, so N processes follow one process);
* from disk, a :class:`torch.utils.data.DataLoader` with worker processes decodes and
  preprocesses the samples of this rank's slice of every global batch (sharding: each sample is
  seen exactly once per epoch across ranks), with pinned memory for a GPU and persistent
  workers. Nothing random happens in the workers, so their seeds cannot change a run; they are
  seeded from the run's seed anyway, for user transforms.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .samples import Batch, Collate, Sample, Samples


def rank_slice(n: int, rank: int, world: int) -> tuple[int, int]:
    """This rank's contiguous share [lo, hi) of n items (the first ranks get the remainder)."""
    return (n * rank) // world, (n * (rank + 1)) // world


class EpochBatchSampler(Sampler[list[int]]):
    """This rank's slice of every global batch of one epoch, in the trainer's order, from batch
    ``start`` on. Set :attr:`order` and :attr:`start` before iterating."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world
        self.order: torch.Tensor = torch.arange(n)
        self.start = 0

    def num_batches(self) -> int:
        return max(1, -(-self.n // self.batch_size)) if self.n else 0

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        bs = self.batch_size
        for b in range(self.start, self.num_batches()):
            idx = self.order[b * bs:(b + 1) * bs]
            lo, hi = rank_slice(len(idx), self.rank, self.world)
            yield idx[lo:hi].tolist()


class ShardSampler(Sampler[list[int]]):
    """Evaluation: this rank's contiguous shard of the split, in order, in batches."""

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1):
        self.lo, self.hi = rank_slice(n, rank, world)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-(self.hi - self.lo) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(self.lo, self.hi, self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.hi)))


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds torch and random in each worker from its generator; numpy is ours to seed.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)  # decoding runs one sample per worker; the model has the cores


class BatchStream:
    """The batches of one split.

    Args:
        samples: the split.
        collate: the task's collate (samples -> batch); failed samples are filtered first.
        batch_size: the global batch size (training) or the evaluation batch size.
        workers: DataLoader worker processes for streamed samples (0: decode in this process).
        pin_memory: page-locked batches for fast copies to a GPU.
        rank, world: this process and the number of processes (torchrun).
        seed: seeds the workers (through a generator of its own, so the global RNG is untouched).
    """

    def __init__(self, samples: Samples, collate: Callable[[list[Sample]], Batch], batch_size: int, *,
                 workers: int = 0, pin_memory: bool = False, rank: int = 0, world: int = 1, seed: int = 0):
        self.samples = samples
        self.collate = Collate(collate)
        self.batch_size = batch_size
        self.workers, self.pin_memory, self.rank, self.world, self.seed = workers, pin_memory, rank, world, seed
        self.sampler = EpochBatchSampler(len(samples), batch_size, rank, world)
        self._train_loader: DataLoader | None = None

    @property
    def in_memory(self) -> bool:
        return self.samples.in_memory

    def __len__(self) -> int:
        """Global batches per epoch."""
        return self.sampler.num_batches()

    def _loader(self, sampler: Sampler, persistent: bool) -> DataLoader:
        return DataLoader(self.samples, batch_sampler=sampler, collate_fn=self.collate, num_workers=self.workers,
                          pin_memory=self.pin_memory, persistent_workers=persistent and self.workers > 0,
                          worker_init_fn=_seed_worker if self.workers else None,
                          generator=torch.Generator().manual_seed(self.seed),
                          prefetch_factor=4 if self.workers else None)

    def epoch(self, order: torch.Tensor, start: int = 0) -> Iterator[Batch]:
        """The batches of an epoch in ``order``, from global batch ``start`` on. In memory: whole
        global batches; streamed: this rank's slice of each."""
        if self.in_memory:
            bs = self.batch_size
            for b in range(start, len(self)):
                yield self.samples.batch(order[b * bs:(b + 1) * bs])
            return
        self.sampler.order, self.sampler.start = order, start
        if self._train_loader is None:
            self._train_loader = self._loader(self.sampler, persistent=True)
        yield from self._train_loader

    def shard(self) -> Iterator[Batch]:
        """This rank's shard of the split, in order (evaluation)."""
        sampler = ShardSampler(len(self.samples), self.batch_size, self.rank, self.world)
        if self.in_memory:
            for idx in sampler:
                yield self.samples.batch(torch.tensor(idx, dtype=torch.long))
            return
        yield from self._loader(sampler, persistent=False)


__all__ = ["BatchStream", "EpochBatchSampler", "ShardSampler", "rank_slice"]
