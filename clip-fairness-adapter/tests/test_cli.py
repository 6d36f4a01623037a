import pytest
from clip_fairness_adapter.__main__ import main
from conftest import CONFIG


@pytest.mark.parametrize("argv", [["--help"], ["train_stage1", "--help"], ["train_stage2", "--help"],
                                  ["eval", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_unknown_override_names_the_key(tmp_path):
    from common_utils.train import ConfigError

    with pytest.raises(ConfigError, match="train.epoch"):
        main(["train_stage1", "--config", str(CONFIG / "tiny_stage1.yaml"), "train.epoch=3"])
