"""bench.task_sanity: the small CNN bound learns what can be learned."""

import torch

from bench.task_sanity import train_and_score


def test_the_sanity_cnn_learns_a_separable_task_and_not_a_random_one():
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (96,))
    clips = torch.rand(96, 6, 16, 16) * 0.2
    clips[labels == 1, :, :8] += 0.8  # class 1: a bright top half in every frame
    train, val = (clips[:64], labels[:64]), (clips[64:], labels[64:])
    assert train_and_score(train, val, num_classes=2, seed=0, epochs=8, batch_size=16) > 90
    shuffled = (clips[:64], labels[:64][torch.randperm(64)])
    assert train_and_score(shuffled, val, num_classes=2, seed=0, epochs=8, batch_size=16) < 80
