import pytest
from clip_fairness_adapter.__main__ import HELP, build_parser, main
from common_utils.train import parse_args_with_overrides
from conftest import CONFIG


@pytest.mark.parametrize("argv", [["--help"]] + [[name, "--help"] for name in HELP])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_overrides_anywhere_on_the_command_line():
    args = parse_args_with_overrides(build_parser(), ["train_stage2", "--config", "x.yaml", "train.epochs=3",
                                                      "--resume", "auto", "seed=1", "--overwrite", "device=cpu"])
    assert args.command == "train_stage2" and args.resume == "auto" and args.overwrite
    assert args.overrides == ["train.epochs=3", "seed=1", "device=cpu"]
    with pytest.raises(SystemExit):
        parse_args_with_overrides(build_parser(), ["train_stage2", "--config", "x.yaml", "--bogus"])


def test_unknown_override_names_the_key():
    from common_utils.train import ConfigError

    with pytest.raises(ConfigError, match="train.epoch"):
        main(["train_stage1", "--config", str(CONFIG / "tiny_stage1.yaml"), "train.epoch=3"])


@pytest.mark.parametrize("name", ["pretrain_clip.yaml", "train_stage1.yaml", "train_stage2_independent_adapter.yaml",
                                  "tiny_stage1.yaml", "tiny_stage2.yaml"])
def test_shipped_configs_load(name):
    from clip_fairness_adapter.__main__ import SCHEMAS, load

    command = {"pretrain_clip.yaml": "pretrain_clip", "train_stage1.yaml": "train_stage1",
               "tiny_stage1.yaml": "train_stage1"}.get(name, "train_stage2")
    assert SCHEMAS[command].is_file()
    load(command, str(CONFIG / name), [])
