import random

import numpy as np
import pytest
import torch
from common_utils.safe_load import WeightsFileError
from common_utils.train import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint


def test_roundtrip_is_weights_only(tmp_path):
    state = {"model": {"w": torch.arange(4.0)}, "epoch": 3, "rng": capture_rng_state()}
    path = save_checkpoint(state, tmp_path / "ckpt" / "last.pth")
    out = load_checkpoint(path)
    assert torch.equal(out["model"]["w"], state["model"]["w"]) and out["epoch"] == 3


class _Custom:
    """A class a weights-only load must refuse unless allow-listed."""


def test_pickled_objects_are_refused_unless_allowlisted(tmp_path):
    torch.save({"obj": _Custom()}, tmp_path / "x.pth")
    with pytest.raises(WeightsFileError, match=r"x\.pth: checkpoint holds the pickled global .*_Custom"):
        load_checkpoint(tmp_path / "x.pth")
    assert isinstance(load_checkpoint(tmp_path / "x.pth", safe_globals=[_Custom])["obj"], _Custom)


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"epoch": 1, "w": torch.ones(1000)}, path)

    real_save = torch.save

    def crash_midway(obj, f, *a, **k):
        real_save({"partial": torch.zeros(10)}, f)
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temp file left behind


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(tmp_path / "nope.pth")


def test_rng_state_roundtrip_through_a_file(tmp_path):
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "r.pth")
    first = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng_state(load_checkpoint(tmp_path / "r.pth")["rng"])
    second = (random.random(), np.random.rand(), torch.rand(3))
    assert first[0] == second[0] and first[1] == second[1] and torch.equal(first[2], second[2])


def test_resolve_resume(tmp_path):
    from common_utils.train import resolve_resume

    last = tmp_path / "last.pth"
    assert resolve_resume(None, last) is None and resolve_resume("", last) is None
    assert resolve_resume("auto", last) is None  # first submission of a requeue-safe job: fresh start
    save_checkpoint({"epoch": 0}, last)
    assert resolve_resume("auto", last) == last
    assert resolve_resume(str(last), tmp_path / "other.pth") == last
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        resolve_resume(tmp_path / "missing.pth", last)


def test_strict_state_dict_load_lists_every_problem():
    from common_utils.train import StateDictMismatchError, load_state_dict_strict

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    good = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    load_state_dict_strict(model, good, source="good.pth")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in good.items())
    bad = dict(good)
    del bad["1.bias"]
    bad["0.weight"] = torch.zeros(5, 3)
    bad["extra.weight"] = torch.zeros(1)
    with pytest.raises(StateDictMismatchError, match="bad.pth") as err:
        load_state_dict_strict(model, bad, source="bad.pth")
    message = str(err.value)
    assert "'1.bias'" in message and "'extra.weight'" in message and "0.weight: file (5, 3) vs model (4, 3)" in message
    # an allowed-missing prefix keeps the module's own (e.g. zero-initialised) values
    partial = {k: v for k, v in good.items() if not k.startswith("1.")}
    before = model[1].weight.detach().clone()
    load_state_dict_strict(model, partial, allowed_missing=("1.",))
    assert torch.equal(model[1].weight, before)
