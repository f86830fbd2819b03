"""The attentive probe (vjm.eval, evals.attentive_probe): pooler, view aggregation, images as clips,
checkpoint loading, resume, the CLI."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from data_helpers import write_malicious_pickle
from evals import attentive_probe as ap
from vjm.config import Config, ConfigError, config_from_dict, load_config
from vjm.data.toy import ensure_toy_dataset
from vjm.eval import probe as probe_module
from vjm.eval.config import eval_config_from_dict, load_eval_config
from vjm.eval.data import build_eval_data, holdout_split
from vjm.eval.features import CachedFeatures, encode_clips, encoder_fingerprint, extract_features
from vjm.eval.frozen import EncoderInfo, load_frozen_encoder
from vjm.eval.pooler import AttentiveClassifier, AttentivePooler, average_predictions
from vjm.eval.probe import build_heads, build_probe_optimizer, default_output_dir, run_probe
from vjm.eval.probe_state import best_head, pick_head, read_record
from vjm.eval.tokens import TokenSource, group_tokens
from vjm.models import build, build_encoder, list_models, register_model
from vjm.train.checkpoint import save_checkpoint
from vjm.train.optim import warmup_cosine

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = "probe_test_videomamba"  # a 32-wide, 2-block VideoMamba that checkpoints can name

if TINY_MODEL not in list_models():
    @register_model
    def probe_test_videomamba(**kwargs):
        return build("videomamba_tiny", **{"embed_dim": 32, "depth": 2, **kwargs})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The probe's ops are tiny: on 2 shared cores, thread hand-offs cost more than the work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    ensure_toy_dataset(root, num_train=24, num_val=12, frames=8, size=32)
    return root


def tiny_encoder(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build(TINY_MODEL).eval().requires_grad_(False)


def probe_config(toy_root: Path, **sections) -> dict:
    """A small toy-video probe config as a dict; keyword sections update its sections."""
    cfg = {
        "run": {"name": "test_probe", "seed": 0},
        "data": {"dataset": "toy", "toy_root": str(toy_root), "toy_task": "direction", "num_classes": 8,
                 "toy_num_train": 24, "toy_num_val": 12, "toy_frames": 8, "toy_size": 32, "frames_per_clip": 4,
                 "frame_step": 2, "crop_size": 32, "augment": False, "batch_size": 8, "num_workers": 0},
        "probe": {"num_heads": 4},
        "optim": {"lr": [1e-3, 1e-2], "weight_decay": [0.01]},
        "train": {"epochs": 3, "cache_features": True, "log_every": 1},
    }
    for section, values in sections.items():
        cfg[section].update(values)
    return cfg


def info_of(encoder, which="random_init") -> EncoderInfo:
    return EncoderInfo(TINY_MODEL, encoder.embed_dim, None, "vjepa", which, None, encoder_fingerprint(encoder))


def pad_tokens(token_sets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sets N_i x D -> (B x N_max x D zero-padded, B x N_max mask, True = padding)."""
    tokens = torch.nn.utils.rnn.pad_sequence(token_sets, batch_first=True)
    lengths = torch.tensor([len(t) for t in token_sets])
    return tokens, torch.arange(tokens.shape[1])[None, :] >= lengths[:, None]


# ------------------------------------------------------------------------------------------ the pooler


@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("num_queries", [1, 4])
def test_pooler_and_classifier_shapes(depth, num_queries):
    pooler = AttentivePooler(32, num_queries=num_queries, num_heads=4, depth=depth)
    tokens = torch.randn(3, 17, 32)
    assert pooler(tokens).shape == (3, num_queries, 32)
    assert len(pooler.blocks) == depth - 1  # V-JEPA 2's deeper probe: self-attention before cross-attention
    classifier = AttentiveClassifier(32, num_classes=7, num_queries=num_queries, num_heads=4, depth=depth)
    logits = classifier(tokens)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()


@pytest.mark.parametrize("depth", [1, 2])
def test_key_padding_mask_makes_padding_invisible(depth):
    torch.manual_seed(0)
    classifier = AttentiveClassifier(32, num_classes=5, num_heads=4, depth=depth).eval()
    sets = [torch.randn(n, 32) for n in (5, 9, 2)]
    tokens, mask = pad_tokens(sets)
    assert tokens.shape == (3, 9, 32)
    assert mask.tolist()[2] == [False] * 2 + [True] * 7
    tokens[mask] = 1e3 * torch.randn(int(mask.sum()), 32)  # whatever the padding holds
    padded = classifier(tokens, key_padding_mask=mask)
    alone = torch.cat([classifier(s[None]) for s in sets])
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    # Without the mask the padding does change the result: the mask is what hides it.
    assert not torch.allclose(classifier(tokens), alone, rtol=1e-2, atol=0)


def test_pooler_rejects_bad_inputs():
    pooler = AttentivePooler(32, num_heads=4)
    with pytest.raises(ValueError, match="B x N x 32"):
        pooler(torch.randn(2, 5, 16))
    with pytest.raises(ValueError, match="does not match tokens"):
        pooler(torch.randn(2, 5, 32), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="every token of a sample"):
        pooler(torch.randn(2, 5, 32), key_padding_mask=torch.tensor([[False] * 5, [True] * 5]))
    with pytest.raises(ValueError, match="bool tensor"):
        pooler(torch.randn(2, 5, 32), key_padding_mask=torch.zeros(2, 5))
    with pytest.raises(ValueError, match="does not divide the encoder's width 192.*e.g. 12"):
        AttentivePooler(192, num_heads=11)


# ------------------------------------------------------------------------------------------ segments and views


class MarkEncoder(torch.nn.Module):
    """Stands in for an encoder: each clip becomes 2 tokens holding the clip's mean value."""

    embed_dim = 3

    def forward(self, clip):
        value = clip.mean(dim=(1, 2, 3, 4))
        return value[:, None, None].expand(-1, 2, 3).clone()


def test_encode_clips_is_segment_major():
    b, s, v = 2, 3, 2
    marks = torch.arange(b * s * v, dtype=torch.float32).view(b, s * v)  # clip k of sample i holds i*6 + k
    clips = marks[:, :, None, None, None, None].expand(b, s * v, 3, 2, 4, 4)
    tokens = encode_clips(MarkEncoder(), clips, num_segments=s)
    assert tokens.shape == (b, s, v, 2, 3)
    for i in range(b):
        for seg in range(s):
            for view in range(v):
                assert tokens[i, seg, view, 0, 0] == marks[i, seg * v + view]
    with pytest.raises(ValueError, match="not a multiple of num_segments"):
        encode_clips(MarkEncoder(), clips, num_segments=4)


def test_group_tokens_joint_and_separate():
    b, s, v, n, d = 2, 3, 2, 4, 5
    tokens = torch.arange(b * s * v * n * d, dtype=torch.float32).view(b, s, v, n, d)
    joint, groups = group_tokens(tokens, "joint")
    assert (joint.shape, groups) == ((b * v, s * n, d), v)
    # view 1 of sample 1 sees the tokens of its 3 segments, in segment order
    torch.testing.assert_close(joint[1 * v + 1], torch.cat([tokens[1, seg, 1] for seg in range(s)]))
    separate, groups = group_tokens(tokens, "separate")
    assert (separate.shape, groups) == ((b * s * v, n, d), s * v)
    torch.testing.assert_close(separate[(1 * s + 2) * v + 0], tokens[1, 2, 0])


def test_average_predictions_averages_probabilities_of_views():
    logits = torch.tensor([[[10.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]])  # 1 sample, 3 views
    probs = average_predictions(logits)
    expected = logits[0].softmax(-1).mean(0)
    torch.testing.assert_close(probs[0], expected)
    assert probs.argmax().item() == 0  # one confident view outweighs two hesitant ones
    assert math.isclose(probs.sum().item(), 1.0, rel_tol=1e-6)
    with pytest.raises(ValueError, match="B x G x C"):
        average_predictions(torch.zeros(2, 3))


def test_images_are_one_frame_clips():
    encoder = tiny_encoder()
    images = torch.randn(2, 1, 3, 1, 32, 48)  # B x K x C x T=1 x H x W
    tokens = encode_clips(encoder, images, num_segments=1)
    assert tokens.shape == (2, 1, 1, (32 // 16) * (48 // 16), 32)
    grouped, groups = group_tokens(tokens, "joint")
    logits = AttentiveClassifier(32, 4, num_heads=4)(grouped)
    assert logits.shape == (2, 4) and groups == 1


def test_probe_on_toy_images_end_to_end(toy_root, tmp_path):
    cfg = eval_config_from_dict(probe_config(
        toy_root, data={"dataset": "toy_image", "toy_task": "digit", "num_classes": 10, "frames_per_clip": 1},
        train={"epochs": 1}))
    encoder = tiny_encoder()
    result = run_probe(cfg, encoder, info_of(encoder), tmp_path / "out", "cpu")
    assert result.results["num_classes"] == 10 and result.results["num_train"] == 24
    assert 0 <= result.top1 <= result.top5 <= 100


# ------------------------------------------------------------------------------------------ schedule and sweep


def test_lr_warmup_then_cosine():
    """The probe's schedule is pre-training's (vjm.train.optim), as a factor of each head's peak."""
    assert warmup_cosine(0, 100, 10, 0.0, 1.0, 0.0) == 0.0
    assert warmup_cosine(5, 100, 10, 0.0, 1.0, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 10, 0.0, 1.0, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 0.0, 1.0, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10, 0.0, 1.0, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 100, 0, 0.0, 1.0, 0.0) == 1.0  # no warmup: the peak at once


def test_probe_optimizer_has_pretraining_groups_per_head():
    cfg = eval_config_from_dict({"data": {"dataset": "toy", "augment": False}, "probe": {"num_heads": 4},
                                 "optim": {"lr": [1e-3, 1e-2], "weight_decay": [0.05]}})
    heads = build_heads(cfg, 32, 5)
    groups = build_probe_optimizer(heads, cfg).param_groups
    assert [(g["base_lr"], g["weight_decay"], g["decay"]) for g in groups] == [
        (1e-3, 0.05, True), (1e-3, 0.0, False), (1e-2, 0.05, True), (1e-2, 0.0, False)]
    # Weight matrices and the query tokens decay; biases and norms do not.
    decayed = {id(p) for p in groups[0]["params"]}
    for name, param in heads[0].named_parameters():
        assert (id(param) in decayed) == (param.ndim > 1), name


def test_sweep_heads_train_independently(toy_root, tmp_path):
    """Heads of the sweep start equal; their learning rates alone make them differ."""
    cfg = eval_config_from_dict(probe_config(toy_root, optim={"lr": [1e-4, 3e-2], "weight_decay": [0.0]},
                                             train={"epochs": 2}))
    encoder = tiny_encoder()
    result = run_probe(cfg, encoder, info_of(encoder), tmp_path / "out", "cpu")
    heads = result.results["heads"]
    assert [(h["lr"], h["weight_decay"]) for h in heads] == [(1e-4, 0.0), (3e-2, 0.0)]
    assert heads[0]["train_loss"] != heads[1]["train_loss"]
    best = max(range(2), key=lambda i: heads[i]["top1"])
    assert result.results["best_head"] == best and result.top1 == heads[best]["top1"]
    state = torch.load(tmp_path / "out" / "latest.pt", weights_only=True)
    w0, w1 = (state["heads"][f"{i}.head.weight"] for i in range(2))
    assert not torch.equal(w0, w1)


# ------------------------------------------------------------------------------------------ picking the best head


def test_holdout_split_holds_out_a_share_of_each_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3])
    kept, held = holdout_split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(18))  # disjoint, together all of them
    # 2 of 10, 1 of 5, 1 of 2 (at least one), none of a class of one (it would leave training without it).
    assert [int((labels[held] == c).sum()) for c in range(4)] == [2, 1, 1, 0]
    assert holdout_split(labels, 0.2, seed=0)[1].tolist() == held.tolist()
    assert holdout_split(labels, 0.2, seed=1)[1].tolist() != held.tolist()
    # keep=0 may draw a whole class (the labelled share of a low-shot probe: each class keeps one at least).
    _, drawn = holdout_split(labels, 0.2, seed=0, keep=0)
    assert [int((labels[drawn] == c).sum()) for c in range(4)] == [2, 1, 1, 1]


def test_a_low_shot_probe_trains_its_heads_on_a_share_of_each_class(toy_root, tmp_path):
    cfg = eval_config_from_dict(probe_config(toy_root, data={"holdout_fraction": 0.25, "label_fraction": 0.5},
                                             train={"epochs": 1}))
    data = build_eval_data(cfg.data, seed=3)
    labels, held, labelled = np.asarray(data.train.labels), data.holdout_positions, data.train_positions
    assert not set(labelled.tolist()) & set(held.tolist())
    for c in range(8):  # of each class: one held out, half the rest (rounded, at least one) labelled
        left = int((labels == c).sum()) - int((labels[held] == c).sum())
        assert int((labels[labelled] == c).sum()) == max(1, round(0.5 * left))
    alone = build_eval_data(eval_config_from_dict(probe_config(toy_root, data={"label_fraction": 0.5})).data, seed=3)
    assert alone.holdout is None
    assert len(alone.train_positions) == sum(max(1, round(0.5 * int((labels == c).sum()))) for c in range(8))
    encoder = tiny_encoder()
    result = run_probe(cfg, encoder, info_of(encoder), tmp_path / "out", "cpu")
    assert (result.results["num_train"], result.results["num_holdout"]) == (len(labelled), len(held))
    with pytest.raises(ConfigError, match=r"'data.label_fraction' = 0.0 is out of range; allowed: \(0, 1\]"):
        eval_config_from_dict({"data": {"dataset": "toy", "label_fraction": 0.0}})


def test_token_sources_read_only_their_positions(toy_root):
    cfg = eval_config_from_dict(probe_config(toy_root, data={"holdout_fraction": 0.25}))
    data = build_eval_data(cfg.data, seed=3)
    kept, held = data.train_positions, data.holdout_positions
    assert len(held) == 8 and data.holdout is data.train  # one of the 3 videos of each of 8 classes
    common = dict(num_segments=1, batch_size=4, num_workers=0, device=torch.device("cpu"), dtype=torch.float32,
                  seed=0)
    # Cached tokens that name their sample: training batches draw only from the kept positions.
    marks = CachedFeatures(torch.arange(24.0).view(24, 1, 1, 1, 1), torch.arange(24))
    train = TokenSource(encoder=None, dataset=data.train, training=True, positions=kept, cached=marks, **common)
    seen = torch.cat([tokens.flatten() for tokens, _ in train.batches(0)]).long()
    assert len(seen) == len(train) * 4 == 16 and set(seen.tolist()) == set(kept.tolist())
    holdout = TokenSource(encoder=None, dataset=data.holdout, training=False, positions=held, cached=marks, **common)
    batches = list(holdout.batches(0))
    assert torch.cat([tokens.flatten() for tokens, _ in batches]).long().tolist() == held.tolist()
    labels = torch.cat([labels for _, labels in batches]).tolist()
    assert labels == data.train.labels[held].tolist()
    # Through the loader (no cache): the same samples, read from the videos.
    streamed = TokenSource(encoder=tiny_encoder(), dataset=data.holdout, training=False, positions=held, **common)
    assert torch.cat([labels for _, labels in streamed.batches(0)]).tolist() == labels


def test_pick_head_prefers_the_held_out_clips_to_the_validation_clips():
    record = {"val": [{"top1": 60.0}, {"top1": 40.0}], "holdout": [{"top1": 30.0}, {"top1": 50.0}]}
    assert pick_head(record) == 1
    assert pick_head({"val": record["val"]}) == 0


@pytest.mark.parametrize("cache", [True, False])
def test_the_best_head_is_picked_on_held_out_training_clips(toy_root, tmp_path, cache):
    cfg = eval_config_from_dict(probe_config(toy_root, data={"holdout_fraction": 0.25},
                                             optim={"lr": [1e-4, 3e-2], "weight_decay": [0.0]},
                                             train={"epochs": 2, "cache_features": cache}))
    encoder = tiny_encoder()
    result = run_probe(cfg, encoder, info_of(encoder), tmp_path / "out", "cpu")
    r, heads = result.results, result.results["heads"]
    assert r["picked_on"] == "held-out training clips" and (r["num_train"], r["num_holdout"]) == (16, 8)
    best = max(range(2), key=lambda i: heads[i]["holdout_top1"])
    assert r["best_head"] == best and result.top1 == heads[best]["top1"]  # read on the validation clips
    assert r["top1_picked_on_val"] == max(h["top1"] for h in heads)
    assert "holdout" in r["history"][-1] and r["history"][-1]["holdout"][best]["top1"] == heads[best]["holdout_top1"]


def test_early_stopping_reads_each_head_at_its_best_held_out_epoch():
    def record(epoch, holdout, val):
        return {"epoch": epoch, "train": [{"top1": 10.0 * epoch}] * 2, "holdout": [{"top1": h} for h in holdout],
                "val": [{"top1": v} for v in val]}

    history = [record(1, [40, 50], [41, 51]), {"epoch": 2, "train": [{"top1": 0.0}] * 2},  # not validated
               record(3, [60, 30], [61, 31]), record(4, [55, 50], [56, 52])]
    read, epochs = read_record(history, early_stopping=True)
    assert epochs == [3, 1]  # head 1 equals its epoch-1 best at epoch 4: the first of equals is read
    assert [v["top1"] for v in read["val"]] == [61, 51] and [t["top1"] for t in read["train"]] == [30.0, 10.0]
    assert read_record(history, early_stopping=False) == (history[-1], [4, 4])


def test_early_stopping_keeps_the_weights_it_reads_and_resumes_them(toy_root, tmp_path, monkeypatch):
    cfg = eval_config_from_dict(probe_config(toy_root, data={"holdout_fraction": 0.25},
                                             optim={"lr": [1e-3, 3e-1], "weight_decay": [0.0]},
                                             train={"epochs": 4, "early_stopping": True}))
    encoder = tiny_encoder()
    info = info_of(encoder)
    weights_by_epoch = []
    real_save = probe_module.save_state

    def save_and_die_after(epoch):
        def save(path, state):
            real_save(path, state)
            weights_by_epoch.append({k: v.clone() for k, v in state["heads"].items()})
            if len(state["history"]) == epoch:
                raise KeyboardInterrupt("preempted")
        return save

    monkeypatch.setattr(probe_module, "save_state", save_and_die_after(0))
    reference = run_probe(cfg, encoder, info, tmp_path / "reference", "cpu")
    r = reference.results
    _, epochs = read_record(r["history"], early_stopping=True)
    assert [h["epoch"] for h in r["heads"]] == epochs and r["best_head_epoch"] == epochs[r["best_head"]]
    for i, head in enumerate(r["heads"]):
        assert head["top1"] == r["history"][epochs[i] - 1]["val"][i]["top1"]
    assert r["best_head"] == max(range(2), key=lambda i: (r["heads"][i]["holdout_top1"], -i))
    assert r["best_head_epoch"] < 4  # else the kept weights would be the last epoch's anyway
    weights, _ = best_head(tmp_path / "reference")
    at_read_epoch = weights_by_epoch[r["best_head_epoch"] - 1]
    for name, value in weights.items():
        torch.testing.assert_close(value, at_read_epoch[f"{r['best_head']}.{name}"])

    # Preempted after epoch 2, resumed: the same readings and the same kept weights.
    monkeypatch.setattr(probe_module, "save_state", save_and_die_after(2))
    with pytest.raises(KeyboardInterrupt):
        run_probe(cfg, encoder, info, tmp_path / "resumed", "cpu")
    monkeypatch.setattr(probe_module, "save_state", real_save)
    resumed = run_probe(cfg, encoder, info, tmp_path / "resumed", "cpu")
    assert resumed.results["heads"] == r["heads"] and resumed.results["top1"] == reference.top1
    for name, value in best_head(tmp_path / "resumed")[0].items():
        torch.testing.assert_close(value, weights[name])


def test_early_stopping_needs_held_out_clips():
    with pytest.raises(ConfigError, match="'train.early_stopping'.*'data.holdout_fraction' is 0"):
        eval_config_from_dict({"data": {"dataset": "toy"}, "train": {"early_stopping": True}})


# ------------------------------------------------------------------------------------------ checkpoints


def save_pretrain_checkpoint(path: Path, *, model: str = TINY_MODEL, models: dict | None = None, **extra) -> Path:
    cfg = config_from_dict({"model": {"name": model}})
    if models is None:
        torch.manual_seed(1)
        target, context = build_encoder(cfg.model), build_encoder(cfg.model)
        models = {"encoder": context.state_dict(), "target_encoder": target.state_dict(), "predictor": {}}
    state = {"config": cfg.to_dict(), "objective": cfg.objective.name, "step": 7, "models": models, **extra}
    return save_checkpoint(state, path)


def test_load_target_and_context_encoders(tmp_path):
    path = save_pretrain_checkpoint(tmp_path / "latest.pt")
    saved = torch.load(path, weights_only=True)["models"]
    target, info = load_frozen_encoder(path)
    context, context_info = load_frozen_encoder(path, "encoder")
    for encoder, key in ((target, "target_encoder"), (context, "encoder")):
        for name, tensor in encoder.state_dict().items():
            assert torch.equal(tensor, saved[key][name])
        assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert (info.objective, info.which, info.step, info.model, info.embed_dim) == (
        "vjepa", "target_encoder", 7, TINY_MODEL, 32)
    assert info.checkpoint == str(path.resolve())
    assert info.fingerprint != context_info.fingerprint


def test_random_init_is_the_same_architecture_with_other_weights(tmp_path):
    path = save_pretrain_checkpoint(tmp_path / "latest.pt")
    trained, _ = load_frozen_encoder(path)
    random_a, info = load_frozen_encoder(path, random_init=True, seed=3)
    random_b, _ = load_frozen_encoder(path, random_init=True, seed=3)
    assert info.which == "random_init" and info.random_init
    assert trained.state_dict().keys() == random_a.state_dict().keys()
    assert encoder_fingerprint(random_a) == encoder_fingerprint(random_b)  # seeded: a resume rebuilds it
    assert encoder_fingerprint(random_a) != encoder_fingerprint(trained)
    # without a checkpoint, a pre-training config names the architecture
    config = tmp_path / "pretrain.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": TINY_MODEL}}))
    from_config, config_info = load_frozen_encoder(None, random_init=True, pretrain_config=config, seed=3)
    assert config_info.checkpoint is None and encoder_fingerprint(from_config) == info.fingerprint


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_frozen_encoder(tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        load_frozen_encoder(tmp_path)
    with pytest.raises(ValueError, match="--random-init with --pretrain-config"):
        load_frozen_encoder(None)
    # a plain state dict, not a vjm checkpoint
    torch.save(tiny_encoder().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a vjm checkpoint"):
        load_frozen_encoder(tmp_path / "plain.pt")
    # wrong keys: no models at all, or no target encoder
    save_checkpoint({"config": Config().to_dict(), "step": 1}, tmp_path / "nomodels.pt")
    with pytest.raises(ValueError, match=r"lacks \['objective', 'models'\]"):
        load_frozen_encoder(tmp_path / "nomodels.pt")
    context_only = save_pretrain_checkpoint(tmp_path / "context.pt", models={"encoder": {}})
    with pytest.raises(ValueError, match="holds no 'target_encoder'.*choose an encoder from: encoder"):
        load_frozen_encoder(context_only)
    # another model: weights of a ViT under a config that names the tiny VideoMamba
    vit = build("vit_tiny", embed_dim=32, depth=1, num_heads=2).state_dict()
    other = save_pretrain_checkpoint(tmp_path / "other.pt", models={"target_encoder": vit})
    with pytest.raises(ValueError, match=f"do not fit: .* as '{TINY_MODEL}'"):
        load_frozen_encoder(other)
    # same key names, other shapes: a wider encoder
    wider = build("videomamba_tiny", embed_dim=64, depth=2).state_dict()
    with pytest.raises(ValueError) as e:
        load_frozen_encoder(save_pretrain_checkpoint(tmp_path / "wider.pt", models={"target_encoder": wider}))
    assert "\n" not in str(e.value)  # one line, not a line per tensor
    assert re.search(r"do not fit: (\d+) of \1 tensors differ in shape \(e.g. 'patch_embed.proj.weight': "
                     r"\[64, 3, 2, 16, 16\] in the checkpoint, \[32, 3, 2, 16, 16\] here\)", str(e.value))


def test_an_encoder_with_nonfinite_weights_is_refused_naming_the_checkpoint(tmp_path, capsys):
    weights = tiny_encoder().state_dict()
    weights["stack.norm.weight"] = torch.full_like(weights["stack.norm.weight"], float("nan"))
    path = save_pretrain_checkpoint(tmp_path / "diverged.pt", models={"target_encoder": weights})
    with pytest.raises(ValueError) as e:
        load_frozen_encoder(path)
    assert str(e.value).startswith(f"checkpoint {path} (step 7): its 'target_encoder' weights are not finite "
                                   "(NaN or inf in 1 of ")
    assert "e.g. 'stack.norm.weight'" in str(e.value) and "\n" not in str(e.value)
    load_frozen_encoder(path, random_init=True)  # the control needs only the architecture
    config = tmp_path / "probe.yaml"
    config.write_text("data: {dataset: toy, augment: false}\n")
    with pytest.raises(SystemExit) as exit_:
        ap.main(["--fname", str(config), "--checkpoint", str(path), "--device", "cpu"])
    assert exit_.value.code == 2 and "weights are not finite" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ resume


def test_resume_continues_where_it_stopped(toy_root, tmp_path, monkeypatch):
    cfg = eval_config_from_dict(probe_config(toy_root))
    encoder = tiny_encoder()
    info = info_of(encoder)
    reference = run_probe(cfg, encoder, info, tmp_path / "reference", "cpu")

    # A run that dies right after saving epoch 2 ...
    real_save = probe_module.save_state

    def save_then_die(path, state):
        real_save(path, state)
        if len(state["history"]) == 2:
            raise KeyboardInterrupt("preempted")

    monkeypatch.setattr(probe_module, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_probe(cfg, encoder, info, tmp_path / "resumed", "cpu")
    monkeypatch.setattr(probe_module, "save_state", real_save)
    assert not (tmp_path / "resumed" / "results.json").exists()

    # ... resumes at epoch 3 and ends as the uninterrupted run did.
    epochs_trained = []
    real_train = probe_module.train_epoch

    def counting_train(heads, optimizer, source, cfg, epoch, total_steps):
        epochs_trained.append(epoch)
        return real_train(heads, optimizer, source, cfg, epoch, total_steps)

    monkeypatch.setattr(probe_module, "train_epoch", counting_train)
    resumed = run_probe(cfg, encoder, info, tmp_path / "resumed", "cpu")
    assert epochs_trained == [2]
    assert resumed.results["history"] == reference.results["history"]
    assert resumed.results["heads"] == reference.results["heads"]

    # A finished run reruns nothing; a rerun with --no-resume starts over.
    epochs_trained.clear()
    run_probe(cfg, encoder, info, tmp_path / "resumed", "cpu")
    assert epochs_trained == []
    run_probe(cfg, encoder, info, tmp_path / "resumed", "cpu", resume=False)
    assert epochs_trained == [0, 1, 2]


def test_resume_refuses_another_config_or_encoder(toy_root, tmp_path):
    cfg = eval_config_from_dict(probe_config(toy_root, train={"epochs": 1}))
    encoder = tiny_encoder()
    run_probe(cfg, encoder, info_of(encoder), tmp_path, "cpu")
    changed = eval_config_from_dict(probe_config(toy_root, train={"epochs": 1}, optim={"lr": [5e-4]}))
    with pytest.raises(ValueError, match="differs in optim.lr.*--no-resume"):
        run_probe(changed, encoder, info_of(encoder), tmp_path, "cpu")
    other = tiny_encoder(seed=1)
    with pytest.raises(ValueError, match="probe of another encoder"):
        run_probe(cfg, other, info_of(other), tmp_path, "cpu")
    # Keys that do not change the result may differ.
    workers = eval_config_from_dict(probe_config(toy_root, train={"epochs": 1, "log_every": 7}))
    run_probe(workers, encoder, info_of(encoder), tmp_path, "cpu")


# ------------------------------------------------------------------------------------------ features


def test_feature_cache_on_disk_is_shared_and_keyed_by_weights(toy_root, tmp_path, monkeypatch):
    cfg = eval_config_from_dict(probe_config(toy_root))
    data = build_eval_data(cfg.data)
    encoder = tiny_encoder()
    kwargs = dict(num_segments=1, batch_size=8, num_workers=0, device=torch.device("cpu"), dtype=torch.float32,
                  cache_dir=tmp_path, sampling={"frames": 4})
    first = extract_features(encoder, data.val, **kwargs)
    assert first.tokens.shape == (12, 1, 1, 2 * 2 * 2, 32)  # 4 frames / tubelet 2 x (32 / 16)^2
    assert first.index.tolist() == list(range(12))
    assert len(list(tmp_path.glob("*.pt"))) == 1

    # The digit task reads the same videos: its features come from the file, not the encoder.
    digit = eval_config_from_dict(probe_config(toy_root, data={"toy_task": "digit", "num_classes": 10}))
    digit_val = build_eval_data(digit.data).val

    def no_encoding(*args, **kw):
        raise AssertionError("the encoder ran although the features were cached")

    monkeypatch.setattr("vjm.eval.features.encode_clips", no_encoding)
    again = extract_features(encoder, digit_val, **kwargs)
    torch.testing.assert_close(again.tokens, first.tokens)
    digit_labels = [int(label) for label in digit_val.labels]
    assert again.labels(digit_val).tolist() == digit_labels != [int(label) for label in data.val.labels]
    # Other weights, other file.
    with pytest.raises(AssertionError, match="the encoder ran"):
        extract_features(tiny_encoder(seed=5), data.val, **kwargs)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign", "pickled code"])
def test_an_unusable_feature_cache_is_discarded_with_a_warning_and_recomputed(toy_root, tmp_path, caplog, damage):
    cfg = eval_config_from_dict(probe_config(toy_root))
    val = build_eval_data(cfg.data).val
    encoder = tiny_encoder()
    kwargs = dict(num_segments=1, batch_size=8, num_workers=0, device=torch.device("cpu"), dtype=torch.float32,
                  cache_dir=tmp_path / "cache", sampling={"frames": 4})
    first = extract_features(encoder, val, **kwargs)
    cache, = (tmp_path / "cache").glob("*.pt")
    marker = tmp_path / "pwned"
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    elif damage == "garbage":
        cache.write_bytes(b"\x80\x02not a tensor file" * 10)
    elif damage == "foreign":  # a readable file of other samples
        torch.save({"tokens": first.tokens[:3], "index": first.index[:3]}, cache)
    else:
        write_malicious_pickle(cache, marker)
    with caplog.at_level("WARNING", logger="vjm.eval.features"):
        again = extract_features(encoder, val, **kwargs)
    torch.testing.assert_close(again.tokens, first.tokens)
    warning, = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"features: discarding the unusable feature cache {cache} (") and "\n" not in warning
    assert not marker.exists()
    assert extract_features(encoder, val, **kwargs).tokens.shape == first.tokens.shape  # rewritten, readable


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_a_malicious_pickle_runs_no_code_at_the_probes_entry_points(toy_root, tmp_path, capsys, fmt):
    marker = tmp_path / "pwned"
    # --checkpoint: refused before anything else is read.
    checkpoint = write_malicious_pickle(tmp_path / "latest.pt", marker, fmt)
    config = tmp_path / "probe.yaml"
    config.write_text(yaml.safe_dump(probe_config(toy_root, train={"epochs": 1})))
    with pytest.raises(SystemExit) as e:
        ap.main(["--fname", str(config), "--checkpoint", str(checkpoint), "--device", "cpu"])
    assert e.value.code == 2 and f"checkpoint {checkpoint} could not be read safely" in capsys.readouterr().err
    assert not marker.exists()
    # The probe's own resumable state, beside a good checkpoint.
    good = save_pretrain_checkpoint(tmp_path / "run" / "latest.pt")
    (tmp_path / "run" / "probe_test_probe").mkdir()
    state = write_malicious_pickle(tmp_path / "run" / "probe_test_probe" / "latest.pt", marker, fmt)
    with pytest.raises(ValueError, match=f"probe state {state} could not be read"):
        ap.main(["--fname", str(config), "--checkpoint", str(good), "--device", "cpu"])
    assert not marker.exists()


def test_cached_and_streamed_features_agree(toy_root, tmp_path):
    """Caching is an optimisation: validation through the loader gives the same accuracy."""
    encoder = tiny_encoder()
    cached = run_probe(eval_config_from_dict(probe_config(toy_root, train={"epochs": 1})), encoder,
                       info_of(encoder), tmp_path / "cached", "cpu")
    streamed = run_probe(eval_config_from_dict(probe_config(toy_root, train={"epochs": 1, "cache_features": False})),
                         encoder, info_of(encoder), tmp_path / "streamed", "cpu")
    assert [h["top1"] for h in cached.results["heads"]] == [h["top1"] for h in streamed.results["heads"]]


# ------------------------------------------------------------------------------------------ configs and the CLI


def test_feature_standardisation_uses_only_valid_tokens():
    torch.manual_seed(0)
    classifier = AttentiveClassifier(32, num_classes=5, num_heads=4, feature_norm="batchnorm")
    tokens = 5.0 + 3.0 * torch.randn(4, 6, 32)
    padding = torch.zeros(4, 6, dtype=torch.bool)
    padding[0, 3:] = True
    standardised = classifier.standardize(tokens, padding)
    valid = standardised[~padding]
    torch.testing.assert_close(valid.mean(0), torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(valid.std(0, unbiased=False), torch.ones(32), atol=1e-3, rtol=0)
    assert standardised[padding].abs().sum() == 0
    # Padding must not change the result: the same valid tokens with garbage in the padded slots.
    garbage = tokens.clone()
    garbage[padding] = 1e6
    torch.testing.assert_close(classifier.standardize(garbage, padding), standardised)
    with pytest.raises(ValueError, match="feature_norm must be one of"):
        AttentiveClassifier(32, num_classes=5, num_heads=4, feature_norm="layernorm")


@pytest.mark.parametrize("name, classes, frames, segments, views", [
    ("ssv2_16x2x3", 174, 16, 2, 3), ("k400_16x8x3", 400, 16, 8, 3), ("in1k_224", 1000, 1, 1, 1)])
def test_benchmark_configs(name, classes, frames, segments, views):
    cfg = load_eval_config(REPO / "configs" / "eval" / f"{name}.yaml", check_data=False)  # lists on the cluster
    d = cfg.data
    assert (d.num_classes, d.frames_per_clip, d.num_segments, d.num_views) == (classes, frames, segments, views)
    assert cfg.run.name == name


@pytest.mark.parametrize("task, classes", [("digit", 10), ("direction", 8)])
def test_toy_configs_match_the_main_job(task, classes):
    cfg = load_eval_config(REPO / "configs" / "eval" / f"toy_{task}.yaml")
    main = load_config(REPO / "configs" / "vjepa_tiny.yaml")
    assert (cfg.data.toy_task, cfg.data.num_classes) == (task, classes)
    for key in ("toy_root", "toy_frames", "toy_size", "frames_per_clip", "frame_step", "crop_size"):
        assert getattr(cfg.data, key) == getattr(main.data, key), key
    # A larger labelled set whose first videos are pre-training's (a toy video depends on its index only).
    assert cfg.data.toy_num_train >= main.data.toy_num_train and cfg.data.toy_num_val >= main.data.toy_num_val
    assert cfg.data.toy_seed == main.run.seed
    assert not cfg.data.augment and cfg.train.cache_features


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'probe.dpeth'; did you mean 'probe.depth'"):
        eval_config_from_dict({"probe": {"dpeth": 2}})
    with pytest.raises(ConfigError, match="'probe.segments' = 'both' is not one of"):
        eval_config_from_dict({"data": {"dataset": "toy"}, "probe": {"segments": "both"}})
    with pytest.raises(ConfigError, match="needs 'data.train'"):
        eval_config_from_dict({"data": {"dataset": "video"}})
    with pytest.raises(ConfigError, match="hflip' mirrors the motion"):
        eval_config_from_dict({"data": {"dataset": "toy", "toy_task": "direction", "augment": True}})
    with pytest.raises(ConfigError, match="frames_per_clip' and 'data.num_segments' must be 1"):
        eval_config_from_dict({"data": {"dataset": "image", "train": ["a"], "val": ["b"]}})
    path = tmp_path / "e.yaml"
    path.write_text("data: {dataset: toy, augment: false}\n")
    with pytest.raises(ConfigError, match="--set .*unknown key 'optim.learning_rate'"):
        load_eval_config(path, ["optim.learning_rate=1"])
    cfg = load_eval_config(path, ["optim.lr=[1e-3, 1e-4]", "optim.weight_decay=[0.0, 0.1]"])
    assert cfg.run.name == "e" and len(cfg.optim.grid) == 4


def test_default_output_dir_is_beside_the_checkpoint(tmp_path):
    cfg = eval_config_from_dict({"run": {"name": "toy_digit"}, "data": {"dataset": "toy", "toy_task": "digit"}})
    ckpt = str(tmp_path / "run" / "latest.pt")
    # The objective's default encoder gets the plain name; others and the control a suffix.
    for which, folder in (("target_encoder", "probe_toy_digit"), ("encoder", "probe_toy_digit_encoder"),
                          ("random_init", "probe_toy_digit_random_init")):
        info = EncoderInfo("m", 32, ckpt, "vjepa", which, 1, "f")
        assert default_output_dir(cfg, info) == tmp_path / "run" / folder


def test_cli_probes_a_checkpoint_and_prints_the_results_path_last(toy_root, tmp_path, capsys):
    checkpoint = save_pretrain_checkpoint(tmp_path / "run" / "latest.pt")
    config = tmp_path / "toy_direction.yaml"
    config.write_text(yaml.safe_dump(probe_config(toy_root, train={"epochs": 1})))
    ap.main(["--fname", str(config), "--checkpoint", str(checkpoint), "--device", "cpu"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(last) == tmp_path / "run" / "probe_test_probe" / "results.json"
    results = json.loads(Path(last).read_text())
    assert {"top1", "top5", "heads"} <= results.keys() and len(results["heads"]) == 2
    assert results["encoder"]["which"] == "target_encoder" and results["encoder"]["step"] == 7

    with pytest.raises(ValueError, match="state of an attentive probe"):
        load_frozen_encoder(Path(last).parent / "latest.pt")

    ap.main(["--fname", str(config), "--checkpoint", str(checkpoint), "--device", "cpu", "--random-init"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert Path(last) == tmp_path / "run" / "probe_test_probe_random_init" / "results.json"

    with pytest.raises(SystemExit) as exit_info:
        ap.main(["--fname", str(config), "--checkpoint", str(tmp_path / "nope.pt")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command, cwd", [(["evals/attentive_probe.py"], REPO), (["-m", "evals.attentive_probe"], REPO),
                                          ([str(REPO / "evals" / "attentive_probe.py")], Path("/"))])
def test_runs_as_a_script_and_as_a_module(command, cwd):
    done = subprocess.run([sys.executable, *command, "--help"], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--random-init" in done.stdout and "--checkpoint" in done.stdout


def test_bf16_encoder_features_train_an_fp32_probe(toy_root, tmp_path):
    cfg = eval_config_from_dict(probe_config(toy_root, train={"epochs": 1, "dtype": "bf16"}))
    encoder = tiny_encoder()
    result = run_probe(cfg, encoder, info_of(encoder), tmp_path, "cpu")
    assert all(math.isfinite(h["train_loss"]) for h in result.results["heads"])
    state = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["heads"].values())


@pytest.mark.gpu
@pytest.mark.parametrize("cache", [True, False])
def test_probe_runs_with_a_bf16_encoder_on_gpu(toy_root, tmp_path, cache):
    cfg = eval_config_from_dict(probe_config(toy_root, train={"epochs": 2, "dtype": "bf16", "cache_features": cache}))
    encoder = tiny_encoder()
    result = run_probe(cfg, encoder, info_of(encoder), tmp_path, "cuda")
    assert all(math.isfinite(h["train_loss"]) for h in result.results["heads"])
    assert 0 <= result.top1 <= result.top5 <= 100
