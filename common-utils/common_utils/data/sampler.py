"""Batch sampler that draws every subgroup equally often, deterministic per (seed, epoch) and sharded by rank."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class SubgroupBalancedBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; each batch holds ``batch_size // G`` samples of each of the G subgroups present
    (the ``batch_size % G`` remaining slots go to distinct subgroups drawn at random per batch).

    Each subgroup is consumed as a shuffled stream that is reshuffled when exhausted, so small subgroups are repeated
    (sampled with replacement across passes) and large ones are not repeated within an epoch unless needed.
    All ranks build the same ``num_batches * world_size`` batches from a generator seeded by (seed, epoch); rank r
    takes batches r, r + world_size, ... Call ``set_epoch(e)`` before each epoch, as with DistributedSampler.

    groups: one hashable subgroup id per dataset index (e.g. FairnessRow.subgroup).
    num_batches: batches per rank per epoch; default ceil(len(groups) / (batch_size * world_size)).
    """

    def __init__(
        self,
        groups: Sequence[Hashable],
        batch_size: int,
        num_batches: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        groups = [g.item() if hasattr(g, "item") else g for g in groups]
        if not groups:
            raise ValueError("groups is empty")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        by_group: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        self.group_ids = sorted(by_group, key=repr)
        if batch_size < len(self.group_ids):
            raise ValueError(f"batch_size {batch_size} is smaller than the number of subgroups ({len(self.group_ids)})")
        self.members = [np.asarray(by_group[g], dtype=np.int64) for g in self.group_ids]
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.num_batches = num_batches or math.ceil(len(groups) / (batch_size * world_size))
        if self.num_batches < 1:
            raise ValueError(f"num_batches must be >= 1, got {num_batches}")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n_groups = len(self.group_ids)
        per_group, extra = divmod(self.batch_size, n_groups)
        streams = [_Stream(m, rng) for m in self.members]
        for b in range(self.num_batches * self.world_size):
            counts = np.full(n_groups, per_group)
            counts[rng.choice(n_groups, size=extra, replace=False)] += 1
            batch = np.concatenate([s.take(c) for s, c in zip(streams, counts)])
            rng.shuffle(batch)
            if b % self.world_size == self.rank:
                yield batch.tolist()


class _Stream:
    """Endless shuffled pass over one subgroup's indices, reshuffled at every pass."""

    def __init__(self, indices: np.ndarray, rng: np.random.Generator):
        self.indices, self.rng, self.order, self.pos = indices, rng, rng.permutation(indices), 0

    def take(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            if self.pos == len(self.order):
                self.order, self.pos = self.rng.permutation(self.indices), 0
            k = min(n, len(self.order) - self.pos)
            out.append(self.order[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)
