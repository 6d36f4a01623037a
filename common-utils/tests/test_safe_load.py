"""common_utils.safe_load: every supported format reads back exactly; everything that could run code is refused."""
import io
import pickle
import re
import zipfile

import pytest
import torch
from common_utils.safe_load import (
    MappingStandIn,
    WeightsFileError,
    detect_format,
    load_weights,
    read_state_dict,
    read_torchscript_state_dict,
    restricted_pickle_module,
)
from payloads import RunsCode, make_payloads
from safetensors.torch import save_file

STATE = {"model": {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}, "epoch": 2, "name": "x"}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _same(a[k], b[k])
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype, k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_files_roundtrip(tmp_path, legacy):
    path = tmp_path / "ckpt.pth"
    torch.save(STATE, path, _use_new_zipfile_serialization=not legacy)
    assert detect_format(path) == ("torch-legacy" if legacy else "torch-zip")
    _same(load_weights(path), STATE)


def test_safetensors_by_content_not_by_name(tmp_path):
    save_file(STATE["model"], tmp_path / "weights.bin")
    assert detect_format(tmp_path / "weights.bin") == "safetensors"
    _same(load_weights(tmp_path / "weights.bin"), STATE["model"])
    torch.save(STATE, tmp_path / "zip.safetensors")  # a torch file named .safetensors is still read as torch
    _same(load_weights(tmp_path / "zip.safetensors"), STATE)


class _Traceable(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.seq = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        self.register_buffer("scale", torch.full((2,), 0.5))

    def forward(self, x):
        return self.seq(self.lin(x)) * self.scale


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated; it only makes the fixture
def test_torchscript_state_dict_matches_jit_without_running_it(tmp_path, monkeypatch):
    torch.manual_seed(0)
    path = tmp_path / "scripted.pt"
    torch.jit.trace(_Traceable().eval(), torch.randn(4, 3)).save(path)
    reference = torch.jit.load(path).state_dict()  # our own benign archive: the reference reader
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load must not be called"))
    assert detect_format(path) == "torchscript"
    state = load_weights(path)
    assert list(state) == list(reference)  # same names, same order (parameters, buffers, then submodules)
    for k, v in reference.items():
        assert torch.equal(state[k], v) and state[k].dtype == v.dtype, k
    assert read_torchscript_state_dict(path).keys() == state.keys()


def test_every_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "RAN"
    for kind, path in make_payloads(tmp_path, marker).items():
        for stand_ins in (None, {"yacs.config.CfgNode": MappingStandIn}):
            with pytest.raises(WeightsFileError, match=rf"^{re.escape(str(path))}: .*refused") as e:
                load_weights(path, stand_ins=stand_ins)
            assert "\n" not in str(e.value), kind
    assert not marker.exists()


def test_the_restricted_module_is_safe_as_torch_pickle_module_in_both_formats(tmp_path):
    """torch's legacy loader reads the header records with pickle_module.load: that must be restricted too."""
    marker = tmp_path / "RAN"
    files = make_payloads(tmp_path, marker)
    for kind in ("zip", "legacy", "legacy-header"):
        with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
            torch.load(files[kind], weights_only=False, pickle_module=restricted_pickle_module())
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        restricted_pickle_module().load(io.BytesIO(pickle.dumps(RunsCode(marker))))
    assert not marker.exists()


class CfgNode(dict):
    """Pickles as a foreign dict subclass with instance state, like yacs.config.CfgNode."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.__dict__["frozen"] = {"a", "b"}


@pytest.mark.parametrize("legacy", [False, True])
def test_stand_ins_read_a_foreign_config_class(tmp_path, legacy):
    path = tmp_path / "released.pth"
    torch.save({"model": STATE["model"], "config": CfgNode(MODEL=CfgNode(DEPTH=2))}, path,
               _use_new_zipfile_serialization=not legacy)
    name = f"{__name__}.CfgNode"
    with pytest.raises(WeightsFileError, match=rf"pickled global '{name}'"):
        load_weights(path)
    out = load_weights(path, stand_ins={name: MappingStandIn})
    assert type(out["config"]) is MappingStandIn and out["config"]["MODEL"] == {"DEPTH": 2}
    _same(out["model"], STATE["model"])


def test_forcing_weights_only_gives_a_clear_error_for_stand_ins(tmp_path, monkeypatch):
    torch.save({"model": STATE["model"], "config": CfgNode(A=1)}, tmp_path / "released.pth")
    monkeypatch.setenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(WeightsFileError, match="TORCH_FORCE_WEIGHTS_ONLY_LOAD=1 forbids it"):
        load_weights(tmp_path / "released.pth", stand_ins={f"{__name__}.CfgNode": MappingStandIn})


def test_forcing_torch_to_unsafe_loads_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "RAN"
    for path in make_payloads(tmp_path, marker).values():
        with pytest.raises(WeightsFileError):
            load_weights(path)
    assert not marker.exists()


@pytest.mark.parametrize("content,expected", [
    (b"", "is empty"), (b"hello, not weights\n", "unknown format"), (b"\x93NUMPY\x01\x00", "numpy array file"),
])
def test_other_files_get_a_one_line_error(tmp_path, content, expected):
    path = tmp_path / "w.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsFileError, match=rf"^{re.escape(str(path))}: .*{expected}") as e:
        load_weights(path, what="checkpoint")
    assert "\n" not in str(e.value)


def test_truncated_files_get_a_one_line_error(tmp_path):
    for legacy in (False, True):
        full = tmp_path / "full.pth"
        torch.save(STATE, full, _use_new_zipfile_serialization=not legacy)
        cut = tmp_path / f"cut{legacy}.pth"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        with pytest.raises(WeightsFileError, match=rf"^{re.escape(str(cut))}: .*(truncated|unknown format)") as e:
            load_weights(cut)
        assert "\n" not in str(e.value)
    with zipfile.ZipFile(tmp_path / "ts.pt", "w") as z:  # TorchScript archive whose tensor record is missing
        z.writestr("a/data.pkl", b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n.")
        z.writestr("a/constants.pkl", pickle.dumps(()))
    with pytest.raises(WeightsFileError, match="ts.pt"):
        load_weights(tmp_path / "ts.pt")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pth: --resume not found"):
        load_weights(tmp_path / "nope.pth", what="--resume")


def test_read_state_dict_unwraps_and_strips(tmp_path):
    torch.save({"state_dict": {"module.a": torch.ones(1), "module.b": torch.zeros(2)}, "epoch": 1}, tmp_path / "x.pth")
    assert list(read_state_dict(tmp_path / "x.pth")) == ["a", "b"]
    torch.save({"epoch": 1, "lr": 0.1}, tmp_path / "y.pth")
    with pytest.raises(WeightsFileError, match=r"y\.pth: .*not a state dict"):
        read_state_dict(tmp_path / "y.pth")
