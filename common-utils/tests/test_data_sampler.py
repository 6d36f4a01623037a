"""SubgroupBalancedBatchSampler: balance, determinism per (seed, epoch), rank sharding, small-group replacement."""

from collections import Counter

import numpy as np
import pytest
import torch
from common_utils.data import SubgroupBalancedBatchSampler
from torch.utils.data import DataLoader, TensorDataset

# imbalanced: group 0 has 200 members, group 5 has 3, group 7 has 40; groups 1-4, 6 absent
GROUPS = [0] * 200 + [5] * 3 + [7] * 40


def test_each_batch_draws_every_present_group_equally():
    s = SubgroupBalancedBatchSampler(GROUPS, batch_size=12, num_batches=30)
    batches = list(s)
    assert len(batches) == len(s) == 30
    for b in batches:
        assert len(b) == 12
        assert Counter(GROUPS[i] for i in b) == {0: 4, 5: 4, 7: 4}


def test_remainder_slots_spread_over_distinct_groups():
    s = SubgroupBalancedBatchSampler(GROUPS, batch_size=8, num_batches=50)
    totals = Counter()
    for b in s:
        counts = Counter(GROUPS[i] for i in b)
        assert len(b) == 8 and sorted(counts.values()) == [2, 3, 3]
        totals.update(counts)
    assert all(abs(totals[g] - 50 * 8 / 3) < 40 for g in (0, 5, 7))  # remainder rotates among groups


def test_small_group_is_repeated_evenly_large_group_not_repeated():
    s = SubgroupBalancedBatchSampler(GROUPS, batch_size=6, num_batches=15)  # 30 draws per group
    drawn = [i for b in s for i in b]
    small = Counter(i for i in drawn if GROUPS[i] == 5)
    assert set(small) == {200, 201, 202} and set(small.values()) == {10}  # each pass uses every member once
    large = [i for i in drawn if GROUPS[i] == 0]
    assert len(large) == 30 and len(set(large)) == 30  # 30 < 200: no repeats


def test_deterministic_per_seed_and_epoch():
    def run(seed, epoch):
        s = SubgroupBalancedBatchSampler(GROUPS, batch_size=6, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert run(0, 0) == run(0, 0)
    assert run(0, 1) == run(0, 1)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)


def test_rank_sharding_partitions_the_global_batches():
    kw = dict(groups=GROUPS, batch_size=6, num_batches=10, seed=3)
    single = list(SubgroupBalancedBatchSampler(**{**kw, "num_batches": 20}))
    shards = [list(SubgroupBalancedBatchSampler(**kw, rank=r, world_size=2)) for r in range(2)]
    assert [len(x) for x in shards] == [10, 10]
    assert shards[0] == single[0::2] and shards[1] == single[1::2]
    # the first pass over the big group is split between ranks without overlap
    big = [set(i for b in sh for i in b if GROUPS[i] == 0) for sh in shards]
    assert not big[0] & big[1]


def test_default_num_batches_and_dataloader():
    s = SubgroupBalancedBatchSampler(torch.tensor(GROUPS), batch_size=10, world_size=2, rank=1)
    assert len(s) == int(np.ceil(len(GROUPS) / 20))
    ds = TensorDataset(torch.tensor(GROUPS))
    for (g,) in DataLoader(ds, batch_sampler=s):
        assert g.shape == (10,) and set(g.tolist()) == {0, 5, 7}


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(groups=[], batch_size=4), "groups is empty"),
        (dict(groups=GROUPS, batch_size=2), "smaller than the number of subgroups"),
        (dict(groups=GROUPS, batch_size=6, rank=2, world_size=2), "rank"),
    ],
)
def test_invalid_arguments(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        SubgroupBalancedBatchSampler(**kw)
