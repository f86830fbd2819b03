import pytest
import torch

from data_helpers import toy_dataset
from vjm.data import build_dataset, build_loader
from vjm.data.samplers import ResumableDistributedSampler, SampleKey, WorkerSeeder, global_batch_positions


def keys(sampler):
    return list(iter(sampler))


def test_ranks_split_each_epoch_and_the_order_changes_with_the_epoch():
    samplers = [ResumableDistributedSampler(10, num_replicas=3, rank=r, seed=5) for r in range(3)]
    orders = {}
    for epoch in (0, 1):
        shares = []
        for sampler in samplers:
            sampler.set_epoch(epoch)
            shares.append([k.index for k in keys(sampler)])
        assert [len(s) for s in shares] == [4, 4, 4]  # padded to equal shares
        assert set(sum(shares, [])) == set(range(10))  # everything is covered
        orders[epoch] = shares
    assert orders[0] != orders[1]
    samplers[0].set_epoch(0)
    assert [k.index for k in keys(samplers[0])] == orders[0][0]  # same epoch, same order


def test_evaluation_sampling_visits_every_sample_once_in_order():
    shares = [[k.index for k in ResumableDistributedSampler(7, num_replicas=2, rank=r, shuffle=False, pad=False)]
              for r in range(2)]
    assert shares == [[0, 2, 4, 6], [1, 3, 5]]


def test_set_start_resumes_at_a_batch_and_set_epoch_resets_it():
    sampler = ResumableDistributedSampler(50, num_replicas=2, rank=1, seed=0, batch_size=4)
    sampler.set_epoch(3)
    full = keys(sampler)
    sampler.set_start(2)
    assert keys(sampler) == full[8:] and len(sampler) == len(full) - 8
    state = sampler.state_dict()
    other = ResumableDistributedSampler(50, num_replicas=2, rank=1, seed=0, batch_size=4)
    other.load_state_dict(state)
    assert keys(other) == full[8:]
    sampler.set_epoch(4)
    assert len(keys(sampler)) == len(full)
    with pytest.raises(ValueError, match="Cannot start at batch 99"):
        sampler.set_start(99)


def test_sample_seeds_do_not_depend_on_the_number_of_ranks():
    single = ResumableDistributedSampler(12, seed=1)
    pair = [ResumableDistributedSampler(12, num_replicas=2, rank=r, seed=1) for r in range(2)]
    assert sorted(keys(single)) == sorted(keys(pair[0]) + keys(pair[1]))
    assert len({k.seed for k in keys(single)}) == 12


@pytest.mark.parametrize("size, weighted", [(50, False), (13, False), (50, True)])
def test_a_global_batch_holds_the_same_samples_in_the_same_order_on_any_number_of_ranks(size, weighted):
    """Training's layout: the ranks' batches of a step, concatenated in rank order, are the batch one
    process gets at the same global batch size, with the same per-sample seeds and positions."""
    weights = [1.0 + (i % 3) for i in range(size)] if weighted else None

    def batches(world, batch_size):
        samplers = [ResumableDistributedSampler(size, num_replicas=world, rank=r, seed=4, batch_size=batch_size,
                                                drop_last=True, weights=weights) for r in range(world)]
        shares = []
        for sampler in samplers:
            sampler.set_epoch(1)
            shares.append(keys(sampler))
        assert len({len(share) for share in shares}) == 1 and len(shares[0]) == samplers[0].num_batches() * batch_size
        return [[key for share in shares for key in share[b * batch_size:(b + 1) * batch_size]]
                for b in range(samplers[0].num_batches())]

    one = batches(1, 12)
    assert len(one) == size // 12
    for world in (2, 3, 4):
        assert batches(world, 12 // world) == one, world
    assert [key.position for key in one[-1]] == list(range(12 * len(one) - 12, 12 * len(one)))
    assert global_batch_positions(17, 12) == range(12, 24)


def test_weights_mix_sources_in_proportion():
    weights = [0.5 / 10] * 10 + [0.5 / 90] * 90  # two lists of 10 and 90 samples, weighted 1:1
    sampler = ResumableDistributedSampler(100, weights=weights, num_samples=4000, seed=0)
    from_small = sum(k.index < 10 for k in sampler) / 4000
    assert 0.45 < from_small < 0.55


def test_bad_sampler_settings_are_rejected():
    with pytest.raises(ValueError, match="rank"):
        ResumableDistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="empty"):
        ResumableDistributedSampler(0)


def test_worker_seeds_depend_on_seed_rank_epoch_and_worker():
    sampler = ResumableDistributedSampler(10)

    def first_draw(seed=0, rank=0, epoch=0, worker=0):
        sampler.set_epoch(epoch)
        WorkerSeeder(seed, rank, sampler)(worker)
        return torch.rand(()).item()

    base = first_draw()
    assert first_draw() == base
    assert len({base, first_draw(seed=1), first_draw(rank=1), first_draw(epoch=1), first_draw(worker=1)}) == 5


@pytest.fixture(scope="module")
def dataset():
    return build_dataset(kind="video", paths=[toy_dataset()["train"]["digit"]], frames_per_clip=4, frame_step=2,
                         crop_size=16, random_erasing=0.5)


def run(loader, epoch, start=0):
    loader.sampler.set_epoch(epoch)
    loader.sampler.set_start(start)
    return [(b["index"], b["clips"]) for b in loader]


def test_loading_is_reproducible_across_worker_counts_and_resumes_exactly(dataset):
    in_process = build_loader(dataset, batch_size=4, num_workers=0, seed=7)
    workers = build_loader(dataset, batch_size=4, num_workers=2, seed=7)
    reference = run(in_process, epoch=1)
    assert len(reference) == len(dataset) // 4
    with_workers = run(workers, epoch=1)
    resumed = run(in_process, epoch=1, start=3)
    assert len(resumed) == len(reference) - 3
    for (index, clips), (other_index, other_clips) in zip(reference, with_workers):
        assert torch.equal(index, other_index) and torch.equal(clips, other_clips)
    for (index, clips), (other_index, other_clips) in zip(reference[3:], resumed):
        assert torch.equal(index, other_index) and torch.equal(clips, other_clips)
    next_epoch = run(in_process, epoch=2)
    assert not torch.equal(reference[0][0], next_epoch[0][0])


def test_evaluation_loader_keeps_order_and_every_sample(dataset):
    loader = build_loader(dataset, batch_size=5, training=False, drop_last=False, rank=1, world_size=2)
    indices = torch.cat([b["index"] for b in loader]).tolist()
    assert indices == list(range(1, len(dataset), 2))


def test_dataset_accepts_plain_indices_and_sample_keys(dataset):
    keyed = [dataset[SampleKey(2, 99)]["clips"] for _ in range(2)]
    assert torch.equal(keyed[0], keyed[1])
    assert dataset[SampleKey(2, 99, position=40)]["position"] == 40 and dataset[2]["position"] == 2
    assert dataset[2]["clips"].shape == keyed[0].shape
    with pytest.raises(IndexError):
        dataset[len(dataset)]
