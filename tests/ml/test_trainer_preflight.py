"""Preflight on the real tiny Gemma 3 and Axolotl's real validator: bad configs fail with named fields, exit 78."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from mmft_operator.contracts.exit_codes import CONFIG_INVALID
from mmft_trainer import cli
from mmft_trainer.preflight import run_preflight
from trainer_configs import FIXED_TARGET_MODULES, SEED_TARGET_MODULES, cpu_config, write_config

pytestmark = pytest.mark.ml

SEED_CONFIG = Path(__file__).resolve().parents[1] / "unit" / "golden" / "seed-gemma3-melanoma.yaml"


def preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, **overrides):
    config = cpu_config(tiny_gemma3_dir, tiny_chat_dataset, tmp_path / "out", **overrides)
    for key in [key for key, value in overrides.items() if value is None]:
        config.pop(key)
    return run_preflight(write_config(tmp_path / "axolotl.yaml", config)).findings


def test_the_cpu_config_passes(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    assert preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset) == []


def test_the_seed_regex_is_rejected_with_the_real_module_names(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    findings = preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset,
                                  lora_target_modules=SEED_TARGET_MODULES)
    assert [finding.field for finding in findings] == ["lora_target_modules"]
    assert "matches no module" in findings[0].message
    assert "model.language_model.layers.0." in findings[0].message


@pytest.mark.parametrize("overrides,field,words", [
    ({"adapter": "lorax"}, "adapter", "unknown adapter 'lorax'"),
    ({"lora_r": -1}, "lora_r", ">= 1"),
    ({"lora_dropout": 2}, "lora_dropout", "< 1"),
    ({"optimizer": "foo"}, "optimizer", "unknown optimizer 'foo'"),
    ({"lora_rr": 16}, "lora_rr", "did you mean 'lora_r'?"),
])
def test_what_axolotl_lets_through_is_rejected(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, overrides, field, words):
    findings = preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, **overrides)
    assert [finding.field for finding in findings] == [field]
    assert words in findings[0].message


def test_a_missing_dataset_file_is_named(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    missing = tmp_path / "nowhere" / "train.jsonl"
    findings = preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset,
                                  datasets=[{"path": str(missing), "type": "chat_template", "ds_type": "json"}])
    assert [finding.field for finding in findings] == ["datasets[0].path"]
    assert str(missing) in findings[0].message


def test_gpu_only_options_are_rejected_on_a_cpu(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    findings = preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, lora_mlp_kernel=True)
    assert [finding.field for finding in findings] == ["lora_mlp_kernel"]


def test_a_missing_model_is_named(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    findings = preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, base_model=str(tmp_path / "no-model"))
    assert [finding.field for finding in findings] == ["base_model"]


def test_the_command_exits_78_and_prints_the_field(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, capsys):
    config = write_config(tmp_path / "axolotl.yaml",
                          cpu_config(tiny_gemma3_dir, tiny_chat_dataset, tmp_path / "out", lora_r=-1))
    args = argparse.Namespace(config=str(config), preflight=True, export_uri=None, export="adapter",
                              tensorboard_sync_dir=None, tensorboard_sync_interval=60.0)
    assert cli.main(args) == CONFIG_INVALID
    assert "mmft train: config invalid: lora_r: must be >= 1, got -1" in capsys.readouterr().err


def test_the_seeds_own_config_reports_its_cpu_options_and_its_regex_together(tmp_path, tiny_gemma3_dir,
                                                                             tiny_chat_dataset):
    findings = preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, lora_target_modules=SEED_TARGET_MODULES,
                                  lora_mlp_kernel=None, lora_qkv_kernel=None, lora_o_kernel=None)
    fields = [finding.field for finding in findings]
    assert fields == ["lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel", "lora_target_modules"]


def _seed_config_on_this_machine(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, **changes) -> dict:
    """The seed's own gemma3-melanoma.yaml as PyYAML reads it (learning_rate: 2e-5 is the string '2e-5'), with its
    paths pointed at the tiny model and data and its GPU-only options off (this machine has no GPU)."""
    seed = yaml.safe_load((SEED_CONFIG).read_text())
    assert seed["learning_rate"] == "2e-5", "YAML 1.1 reads the seed's 2e-5 as a string"
    seed.update(base_model=str(tiny_gemma3_dir), output_dir=str(tmp_path / "out"),
                lora_mlp_kernel=False, lora_qkv_kernel=False, lora_o_kernel=False, flash_attention=False, bf16=False,
                **changes)
    seed["datasets"][0]["path"] = str(tiny_chat_dataset)
    return seed


def test_the_seeds_own_config_passes_as_axolotl_normalises_it(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    config = _seed_config_on_this_machine(tmp_path, tiny_gemma3_dir, tiny_chat_dataset,
                                          lora_target_modules=FIXED_TARGET_MODULES)
    path = write_config(tmp_path / "gemma3-melanoma.yaml", config)
    assert yaml.safe_load(path.read_text())["learning_rate"] == "2e-5"
    result = run_preflight(path)
    assert result.findings == []
    assert result.normalized["learning_rate"] == pytest.approx(2e-5)


def test_the_seeds_regex_is_still_refused_with_the_reason(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    config = _seed_config_on_this_machine(tmp_path, tiny_gemma3_dir, tiny_chat_dataset)
    assert config["lora_target_modules"] == SEED_TARGET_MODULES
    findings = run_preflight(write_config(tmp_path / "gemma3-melanoma.yaml", config)).findings
    assert [finding.field for finding in findings] == ["lora_target_modules"]
    assert "matches no module" in findings[0].message and "model.language_model.layers.0." in findings[0].message


def test_a_learning_rate_that_is_not_a_number_is_still_refused(tmp_path, tiny_gemma3_dir, tiny_chat_dataset):
    findings = preflight_findings(tmp_path, tiny_gemma3_dir, tiny_chat_dataset, learning_rate="fast")
    assert [finding.field for finding in findings] == ["learning_rate"]
