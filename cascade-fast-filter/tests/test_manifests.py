"""Manifest builder on folder trees laid out like FF++, CelebDF-v2, DFDC, DF40 and a DeepfakeBench JSON."""
import csv
import json

import pytest
from cascade_fast_filter.__main__ import main
from cascade_fast_filter.manifests import (
    Entry,
    celebdf,
    deepfakebench,
    default_label_dict,
    df40,
    dfdc,
    ffpp,
    hash_split,
    sample_frames,
    write_manifests,
)
from cascade_fast_filter.stage1.data import has_videos, read_split
from common_utils.data import DataFormatError
from conftest import tiny_cfg
from PIL import Image


def frames(folder, n=3):
    """n tiny PNG frames 000.png ... in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i:03d}.png")
    return folder


def by_video(entries):
    out = {}
    for e in entries:
        out.setdefault(e.video, set()).add((e.split, e.label, e.method))
    assert all(len(v) == 1 for v in out.values()), "a video must have one split, label and method"
    return {k: next(iter(v)) for k, v in out.items()}


@pytest.fixture
def ffpp_tree(tmp_path):
    root = tmp_path / "FaceForensics++"
    for split, pairs in {"train": [["000", "001"]], "val": [["002", "003"]], "test": [["004", "005"]]}.items():
        (root / f"{split}.json").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{split}.json").write_text(json.dumps(pairs))
    for vid in ("000", "001", "002", "003", "004", "005"):
        frames(root / "original_sequences/youtube/c23/frames" / vid)
    for vid in ("000_001", "001_000", "002_003", "004_005"):
        frames(root / "manipulated_sequences/Deepfakes/c23/frames" / vid, n=5)
    frames(root / "manipulated_sequences/Face2Face/c23/frames/003_002")
    frames(root / "manipulated_sequences/Deepfakes/c40/images/000_001")  # FF++'s own script writes images/
    frames(root / "original_sequences/youtube/c40/images/000")
    return root


def test_ffpp_official_pairs_decide_splits_per_method_and_compression(ffpp_tree):
    entries = ffpp(ffpp_tree, compressions=("c23", "c40"), methods=("Deepfakes", "Face2Face"))
    videos = by_video(entries)
    assert videos["FF++/real/c23/000"] == ("train", 0, "real")
    assert videos["FF++/Deepfakes/c23/001_000"] == ("train", 1, "Deepfakes")
    assert videos["FF++/Deepfakes/c23/002_003"] == ("val", 1, "Deepfakes")
    assert videos["FF++/Face2Face/c23/003_002"] == ("val", 1, "Face2Face")
    assert videos["FF++/Deepfakes/c23/004_005"] == ("test", 1, "Deepfakes")
    # every compression is its own video, in the split of its id
    assert videos["FF++/Deepfakes/c40/000_001"] == ("train", 1, "Deepfakes")
    assert videos["FF++/real/c40/000"] == ("train", 0, "real")
    assert len(videos) == 6 + 4 + 1 + 2
    assert all(e.dataset == "FF++" for e in entries)
    assert sum(e.video == "FF++/Deepfakes/c23/000_001" for e in entries) == 5


def test_ffpp_frames_per_video_and_unknown_video(ffpp_tree):
    kept = [e.path.name for e in ffpp(ffpp_tree, frames_per_video=2) if e.video == "FF++/Deepfakes/c23/000_001"]
    assert kept == ["000.png", "004.png"]  # evenly spaced: first and last
    frames(ffpp_tree / "manipulated_sequences/Deepfakes/c23/frames/998_999")
    with pytest.raises(DataFormatError, match="998_999.*split lists"):
        ffpp(ffpp_tree)
    with pytest.raises(FileNotFoundError, match="train.json"):
        ffpp(ffpp_tree, splits_dir=ffpp_tree / "nowhere")


@pytest.fixture
def celebdf_tree(tmp_path):
    root = tmp_path / "Celeb-DF-v2"
    for vid in ("id0_0000", "id0_0001", "id1_0000", "id2_0000"):
        frames(root / "Celeb-real/frames" / vid)
    for vid in ("id0_id1_0000", "id1_id0_0000", "id2_id0_0000"):
        frames(root / "Celeb-synthesis/frames" / vid)
    for vid in ("00000", "00001"):
        frames(root / "YouTube-real/frames" / vid)
    (root / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00001.mp4\n0 Celeb-synthesis/id2_id0_0000.mp4\n1 Celeb-real/id2_0000.mp4\n")
    return root


def test_celebdf_official_test_list_and_identity_groups(celebdf_tree):
    for seed in range(6):
        videos = by_video(celebdf(celebdf_tree, val_fraction=0.5, seed=seed))
        assert {v for v, (s, _, _) in videos.items() if s == "test"} == {"CelebDF-v2/YouTube-real/00001",
                                                                          "CelebDF-v2/Celeb-synthesis/id2_id0_0000",
                                                                          "CelebDF-v2/Celeb-real/id2_0000"}
        assert videos["CelebDF-v2/Celeb-synthesis/id2_id0_0000"][1:] == (1, "Celeb-synthesis")
        assert videos["CelebDF-v2/YouTube-real/00001"][1] == 0  # list label 1 = real -> ours 0
        # a fake shares its split with the real videos of its source identity
        split_id0 = videos["CelebDF-v2/Celeb-real/id0_0000"][0]
        assert videos["CelebDF-v2/Celeb-real/id0_0001"][0] == split_id0
        assert videos["CelebDF-v2/Celeb-synthesis/id0_id1_0000"][0] == split_id0
        assert split_id0 in ("train", "val")


def test_celebdf_test_list_label_must_match_folder(celebdf_tree):
    (celebdf_tree / "List_of_testing_videos.txt").write_text("1 YouTube-real/00001.mp4\n1 Celeb-synthesis/x.mp4\n")
    with pytest.raises(DataFormatError, match=r"List_of_testing_videos.txt:2.*disagrees"):
        celebdf(celebdf_tree)


@pytest.fixture
def dfdc_tree(tmp_path):
    root = tmp_path / "DFDC"
    part = root / "dfdc_train_part_0"
    meta = {"a.mp4": {"label": "REAL", "split": "train"},
            "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
            "c.mp4": {"label": "REAL", "split": "train"},
            "d.mp4": {"label": "FAKE", "split": "train", "original": "c.mp4"}}
    part.mkdir(parents=True)
    (part / "metadata.json").write_text(json.dumps(meta))
    for vid in "abcd":
        frames(part / "frames" / vid)
    return root


def test_dfdc_fakes_follow_their_original_and_public_test(dfdc_tree):
    for seed in range(8):
        videos = by_video(dfdc(dfdc_tree, val_fraction=0.3, test_fraction=0.3, seed=seed))
        p = "DFDC/dfdc_train_part_0/"
        assert videos[p + "b"][0] == videos[p + "a"][0] and videos[p + "d"][0] == videos[p + "c"][0]
        assert videos[p + "a"][1] == 0 and videos[p + "b"][1:] == (1, "DFDC-fake")
    (dfdc_tree / "test").mkdir()
    (dfdc_tree / "test" / "labels.csv").write_text("filename,label\nt1.mp4,1\nt2.mp4,0\n")
    frames(dfdc_tree / "test/frames/t1")
    frames(dfdc_tree / "test/frames/t2")
    for seed in range(8):
        videos = by_video(dfdc(dfdc_tree, val_fraction=0.3, test_fraction=0.9, seed=seed))
        assert {v for v, (s, _, _) in videos.items() if s == "test"} == {"DFDC/test/t1", "DFDC/test/t2"}
        assert videos["DFDC/test/t1"][1] == 1 and videos["DFDC/test/t2"][1] == 0


def test_dfdc_video_without_label_is_named(dfdc_tree):
    frames(dfdc_tree / "dfdc_train_part_0/frames/zz")
    with pytest.raises(DataFormatError, match="metadata.json.*zz.mp4"):
        dfdc(dfdc_tree)


def test_df40_fake_only_videos_and_synthesis_images(tmp_path):
    root = tmp_path / "DF40_test"
    frames(root / "simswap/ff/frames/000_003")
    frames(root / "simswap/cdf/frames/id0_id1_0000", n=4)
    frames(root / "StyleGAN2/ff", n=3)  # entire-face synthesis: images, no videos
    videos = by_video(df40(root, "test"))
    assert videos["DF40/simswap/ff/000_003"] == ("test", 1, "simswap")
    assert videos["DF40/simswap/cdf/id0_id1_0000"] == ("test", 1, "simswap")
    assert {v for v in videos if v.startswith("DF40/StyleGAN2/ff/")} == {f"DF40/StyleGAN2/ff/{i:03d}" for i in range(3)}
    assert {v for v in by_video(df40(root, "test", domains=("ff",)))} == set(videos) - {"DF40/simswap/cdf/id0_id1_0000"}
    train = by_video(df40(root, "train", val_fraction=0.5, seed=1))
    assert {s for s, _, _ in train.values()} <= {"train", "val"}


def test_deepfakebench_json_keeps_videos_and_makes_splits_disjoint(tmp_path):
    for vid in ("r1", "r2", "f1", "f2", "f3"):
        frames(tmp_path / "rgb" / vid, n=4)

    def video(name, label):
        return {name: {"label": label, "frames": [f"rgb/{name}/{i:03d}.png" for i in range(4)]}}

    # CelebDF-like: the test videos are listed under train and val too (DeepfakeBench's rearrange.py does this)
    data = {"CelebDF": {
        "CelebDFv2_real": {"train": {**video("r1", "CelebDFv2_real"), **video("r2", "CelebDFv2_real")},
                           "val": video("r2", "CelebDFv2_real"), "test": video("r2", "CelebDFv2_real")},
        "CelebDFv2_fake": {"train": {**video("f1", "CelebDFv2_fake"), **video("f2", "CelebDFv2_fake")},
                           "val": video("f3", "CelebDFv2_fake"), "test": video("f2", "CelebDFv2_fake")}}}
    path = tmp_path / "CelebDF.json"
    path.write_text(json.dumps(data))
    videos = by_video(deepfakebench(path, frames_per_video=2))
    assert videos == {"CelebDF/CelebDFv2_real/r1": ("train", 0, "real"),
                      "CelebDF/CelebDFv2_real/r2": ("test", 0, "real"),
                      "CelebDF/CelebDFv2_fake/f1": ("train", 1, "CelebDFv2_fake"),
                      "CelebDF/CelebDFv2_fake/f2": ("test", 1, "CelebDFv2_fake"),
                      "CelebDF/CelebDFv2_fake/f3": ("val", 1, "CelebDFv2_fake")}
    assert sorted(e.path.name for e in deepfakebench(path, frames_per_video=2) if e.video.endswith("/r1")) == \
        ["000.png", "003.png"]


def test_default_label_dict_reads_deepfakebench_names():
    assert default_label_dict(["FF-real", "FF-DF", "CelebDFv2_real", "DFDC_Real", "DFDC_Fake", "simswap_Fake"]) == {
        "FF-real": 0, "FF-DF": 1, "CelebDFv2_real": 0, "DFDC_Real": 0, "DFDC_Fake": 1, "simswap_Fake": 1}


def test_hash_split_is_stable_and_follows_fractions():
    keys = [f"id{i}" for i in range(2000)]
    splits = [hash_split(k, 0.2, 0.1, seed=3) for k in keys]
    assert splits == [hash_split(k, 0.2, 0.1, seed=3) for k in keys]
    assert abs(splits.count("val") / 2000 - 0.2) < 0.04 and abs(splits.count("test") / 2000 - 0.1) < 0.03
    assert sample_frames([], 4) == [] and len(sample_frames(list(range(10)), 4)) == 4


def test_cli_writes_manifests_the_trainer_reads(ffpp_tree, celebdf_tree, tmp_path):
    out = tmp_path / "manifests"
    assert main(["manifest", "--out", str(out), "--data-root", str(tmp_path), "--ffpp", str(ffpp_tree),
                 "--ffpp-methods", "Deepfakes", "--celebdf", str(celebdf_tree), "--frames-per-video", "2"]) == 0
    with open(out / "test_manifest.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"image_path", "label", "dataset", "split", "video", "method"}
    assert not rows[0]["image_path"].startswith("/")  # relative to --data-root
    cfg = tiny_cfg(tmp_path, tmp_path / "run", "data.train_manifest=manifests/train_manifest.csv",
                   "data.val_manifest=manifests/val_manifest.csv", "data.test_manifest=manifests/test_manifest.csv")
    test = read_split(cfg, "test")
    assert {r.dataset for r in test} == {"FF++", "CelebDF-v2"} and has_videos(test)
    assert {r.video for r in test} >= {"FF++/Deepfakes/c23/004_005", "CelebDF-v2/YouTube-real/00001"}
    assert all(sum(r.video == v for r in test) == 2 for v in {r.video for r in test})


def test_a_video_in_two_splits_is_refused(tmp_path):
    entries = [Entry(tmp_path / "a.png", 0, "X", "train", "X/v", "real"),
               Entry(tmp_path / "b.png", 0, "X", "test", "X/v", "real")]
    with pytest.raises(ValueError, match="X/v"):
        write_manifests(entries, tmp_path / "m")
