import json

import pytest
import yaml
from common_utils.train import ConfigError, MetricLogger, load_config, prepare_run_dir
from omegaconf.errors import ConfigAttributeError

DEFAULTS = {"model": {"name": "mnv4", "pretrained": None}, "train": {"lr": 1e-4, "epochs": 30}, "extra": {}}


def _write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_file_and_overrides_merge_over_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, {"train": {"epochs": 2}}), DEFAULTS, ["train.lr=0.01", "model.pretrained=/w.pt"])
    assert cfg.train.epochs == 2 and cfg.train.lr == 0.01 and cfg.model.pretrained == "/w.pt"
    assert cfg.model.name == "mnv4"


def test_misspelled_key_in_file_names_key_and_file(tmp_path):
    path = _write(tmp_path, {"train": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"cfg\.yaml.*'train\.lrr'"):
        load_config(path, DEFAULTS)


def test_misspelled_override_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="'train.epoch'"):
        load_config(None, DEFAULTS, ["train.epoch=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, DEFAULTS, ["train.epochs"])


def test_defaults_from_yaml_file_and_free_form_mapping(tmp_path):
    schema = _write(tmp_path, DEFAULTS, "default.yaml")
    cfg = load_config(_write(tmp_path, {"extra": {"anything": 1}}), schema)
    assert cfg.extra.anything == 1


def test_struct_mode_rejects_new_attributes():
    cfg = load_config(None, DEFAULTS)
    with pytest.raises(ConfigAttributeError, match="new_key"):
        cfg.train.new_key = 1


def test_invalid_yaml_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad, DEFAULTS)


def test_run_dir_holds_resolved_config_and_metrics(tmp_path):
    cfg = load_config(None, DEFAULTS, ["train.epochs=5"])
    run = prepare_run_dir(tmp_path / "run", cfg)
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 5
    log = MetricLogger(run)
    log.log(0, {"loss": 0.5, "auc": None})
    log.log(1, {"loss": 0.25}, prefix="train/")
    log.close()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 0, "loss": 0.5, "auc": None}, {"step": 1, "train/loss": 0.25}]
    assert any((run / "tensorboard").iterdir())


def test_non_main_process_writes_nothing(tmp_path):
    prepare_run_dir(tmp_path / "r", load_config(None, DEFAULTS), is_main=False)
    MetricLogger(tmp_path / "r", is_main=False).log(0, {"x": 1})
    assert not (tmp_path / "r").exists()


def test_scientific_notation_is_a_float_in_files_and_overrides(tmp_path):
    cfg = load_config(None, DEFAULTS, ["train.lr=3e-4"])
    assert cfg.train.lr == 3e-4
    path = tmp_path / "sci.yaml"
    path.write_text("train:\n  lr: 1e-5\n")
    assert load_config(path, DEFAULTS).train.lr == 1e-5


def test_value_of_the_wrong_kind_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'train.epochs' must be an integer"):
        load_config(None, DEFAULTS, ["train.epochs=many"])
    path = tmp_path / "typed.yaml"
    path.write_text("model:\n  name: 3\n")
    with pytest.raises(ConfigError, match=r"typed\.yaml.*'model\.name' must be a string"):
        load_config(path, DEFAULTS)


def test_overrides_may_follow_options():
    import argparse

    from common_utils.train import parse_args_with_overrides

    parser = argparse.ArgumentParser()
    parser.add_argument("--resume")
    parser.add_argument("overrides", nargs="*")
    args = parse_args_with_overrides(parser, ["a=1", "--resume", "auto", "train.epochs=3", "b=x"])
    assert args.resume == "auto" and args.overrides == ["a=1", "train.epochs=3", "b=x"]
    with pytest.raises(SystemExit):
        parse_args_with_overrides(parser, ["--resume", "auto", "--bogus"])


def test_wrong_kinds_nulls_duplicates_and_required_keys_are_errors_naming_the_key(tmp_path):
    schema = {"seed": 0, "run_dir": "???", "model": {"pretrained": "weights.pth", "dim": 8},
              "train": {"lr": 0.1, "epochs": 3}}
    cfg_file = tmp_path / "c.yaml"
    cases = {
        "run_dir: r\ntrain:\n  epochs: 2.5\n": "'train.epochs' must be an integer like its default 3, got 2.5",
        "run_dir: r\ntrain: 3\n": "'train' is a section and must be a mapping, got 3",
        "run_dir: r\ntrain:\n": "'train' is a section and must be a mapping, got None",
        "run_dir: r\nseed: null\n": r"'seed' cannot be null \(its default is 0\)",
        "run_dir: null\n": "'run_dir' is required",
        "seed: 1\n": r"required config key\(s\) \['run_dir'\] not set in",
        "run_dir: r\ntrain:\n  lr: 0.1\n  lr: 0.2\n": r"c.yaml:4: invalid YAML: duplicate key 'lr' \(first at line 3",
        "run_dir: r\ntrain:\n  lr: fast\n": "'train.lr' must be a number like its default 0.1, got 'fast'",
    }
    for text, message in cases.items():
        cfg_file.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config(cfg_file, schema)
    cfg_file.write_text("run_dir: r\nmodel:\n  pretrained: null\ntrain:\n  lr: 1\n")
    cfg = load_config(cfg_file, schema, nullable=["model.pretrained"])
    assert cfg.model.pretrained is None and cfg.train.lr == 1
    with pytest.raises(ConfigError, match="override 'train=3': config key 'train' is a section"):
        load_config(cfg_file, schema, ["train=3"], nullable=["model.pretrained"])
