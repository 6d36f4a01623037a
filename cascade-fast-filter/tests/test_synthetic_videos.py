"""The demo's clips: frames pan inside the image, share its split and label, and follow DeepfakeBench's layout."""
import json

import numpy as np
import pytest
from cascade_fast_filter.synthetic_videos import compress, pan_offsets
from PIL import Image


@pytest.mark.parametrize("shape", [(96, 96), (96, 320), (200, 130)])
def test_pan_stays_inside_and_moves_at_most_step(shape):
    for seed in range(20):
        offsets = pan_offsets(*shape, size=64, frames=4, step=4, rng=np.random.default_rng(seed))
        ys, xs = zip(*offsets)
        assert min(ys) >= 0 and max(ys) <= shape[0] - 64 and min(xs) >= 0 and max(xs) <= shape[1] - 64
        assert len(set(np.diff(ys))) == 1 and len(set(np.diff(xs))) == 1  # a straight pan
        assert max(abs(np.diff(ys)).max(), abs(np.diff(xs)).max()) <= 4
    with pytest.raises(ValueError, match="smaller"):
        pan_offsets(50, 100, size=64, frames=2, step=1, rng=np.random.default_rng(0))


def test_compression_is_lossy_but_keeps_the_frame():
    frame = np.asarray(Image.effect_noise((48, 48), 50).convert("RGB"))
    out = compress(frame, 60)
    assert out.shape == frame.shape and out.dtype == np.uint8 and not np.array_equal(out, frame)
    assert np.abs(out.astype(int) - frame.astype(int)).mean() < np.abs(compress(frame, 10).astype(int) -
                                                                       frame.astype(int)).mean()


def test_clips_follow_the_images_split_and_label(clips, ai_images):
    tree = json.loads((clips / "ai_images.json").read_text())["ai_images"]
    assert set(tree) == {"ai_images_real", "ai_images_tconv", "ai_images_nearest_blur"}
    test_reals = tree["ai_images_real"]["test"]
    with open(ai_images / "manifests" / "test_manifest.csv") as f:
        n_real_test = sum(1 for line in f if ",0," in line)
    assert len(test_reals) == n_real_test
    video, info = next(iter(test_reals.items()))
    assert info["label"] == "ai_images_real" and len(info["frames"]) == 3
    assert info["frames"][0] == f"rgb/real/frames/{video}/000.png"
    first, second = (np.asarray(Image.open(clips / p)) for p in info["frames"][:2])
    assert first.shape == (64, 64, 3) and second.shape == (64, 64, 3)
