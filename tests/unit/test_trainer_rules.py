"""Pure-Python parts of the trainer: config rules, checkpoint selection, run-config changes, TensorBoard sync."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mmft_trainer.checkpoints import (
    COMPLETE_MARKER,
    mark_complete,
    newest_complete,
    remove_incomplete,
)
from mmft_trainer.config_rules import (
    bound_violations,
    dataset_file_problems,
    enum_violations,
    target_module_problems,
    unknown_keys,
)
from mmft_trainer.reporting import Throughput
from mmft_trainer.run_config import DEFAULT_SAVE_STEPS, training_config
from mmft_trainer.tensorboard_sync import TensorBoardSync

GEMMA3_MODULES = [
    "model.language_model.layers.0.self_attn.q_proj",
    "model.language_model.layers.0.mlp.up_proj",
    "model.vision_tower.encoder.layers.0.self_attn.q_proj",
]
SEED_REGEX = r"language_model.model.layers.[\d]+.(mlp|cross_attn|self_attn).(up|down|gate|q|k|v|o)_proj"


def fields(findings):
    return [finding.field for finding in findings]


def test_typo_is_an_unknown_key_with_a_suggestion():
    findings = unknown_keys({"lora_rr": 8, "lora_r": 8}, {"lora_r", "lora_alpha"})
    assert fields(findings) == ["lora_rr"]
    assert "did you mean 'lora_r'?" in findings[0].message


@pytest.mark.parametrize("key,value", [("lora_r", -1), ("lora_r", 0), ("lora_r", 2.5), ("lora_dropout", 2),
                                       ("learning_rate", 0), ("micro_batch_size", "four"), ("warmup_steps", -3)])
def test_out_of_bounds_values_are_named(key, value):
    findings = bound_violations({key: value})
    assert fields(findings) == [key]
    assert repr(value) in findings[0].message


def test_numbers_spelled_as_strings_are_read_as_axolotl_reads_them():
    # PyYAML reads the seed's `learning_rate: 2e-5` as a string; Axolotl's schema makes it a number.
    assert bound_violations({"learning_rate": "2e-5", "micro_batch_size": "4"}) == []
    findings = bound_violations({"lora_r": "-1"})
    assert fields(findings) == ["lora_r"] and ">= 1" in findings[0].message


def test_in_bounds_values_pass():
    assert bound_violations({"lora_r": 32, "lora_dropout": 0.05, "learning_rate": 2e-5, "micro_batch_size": 1}) == []


def test_unknown_adapter_and_optimizer_get_suggestions():
    findings = enum_violations({"adapter": "qlora2", "load_in_4bit": True, "optimizer": "adamw_torch_fusd",
                                "max_steps": 10}, {"adamw_torch_fused", "adamw_torch"})
    assert fields(findings) == ["adapter", "optimizer"]
    assert "did you mean 'qlora'?" in findings[0].message
    assert "did you mean 'adamw_torch_fused'?" in findings[1].message


def test_qlora_without_4bit_and_a_run_without_length_are_rejected():
    findings = enum_violations({"adapter": "qlora"}, set())
    assert fields(findings) == ["load_in_4bit", "max_steps"]


def test_missing_local_dataset_file_is_reported(tmp_path):
    present = tmp_path / "train.jsonl"
    present.write_text("{}\n")
    config = {"datasets": [{"path": str(present)}, {"path": str(tmp_path / "gone.jsonl")},
                           {"path": "org/hub-dataset"}]}
    findings = dataset_file_problems(config, tmp_path)
    assert fields(findings) == ["datasets[1].path"]
    assert "gone.jsonl" in findings[0].message


def test_seed_regex_matches_no_current_gemma3_module_and_the_message_shows_real_names():
    findings = target_module_problems(SEED_REGEX, GEMMA3_MODULES)
    assert fields(findings) == ["lora_target_modules"]
    assert "model.language_model.layers.0.self_attn.q_proj" in findings[0].message


def test_target_modules_follow_peft_matching():
    fixed = r"model.language_model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"
    assert target_module_problems(fixed, GEMMA3_MODULES) == []
    assert target_module_problems(["q_proj", "up_proj"], GEMMA3_MODULES) == []
    assert fields(target_module_problems(["query"], GEMMA3_MODULES)) == ["lora_target_modules"]
    assert "invalid regular expression" in target_module_problems("(", GEMMA3_MODULES)[0].message


def _checkpoint(output_dir: Path, step: int, complete: bool) -> Path:
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        mark_complete(path, step)
    return path


def test_resume_picks_the_newest_complete_checkpoint_and_drops_half_written_ones(tmp_path):
    _checkpoint(tmp_path, 2, complete=True)
    newest = _checkpoint(tmp_path, 10, complete=True)
    half_written = _checkpoint(tmp_path, 12, complete=False)
    assert newest_complete(tmp_path) == newest
    assert remove_incomplete(tmp_path) == [half_written]
    assert not half_written.exists()
    assert json.loads((newest / COMPLETE_MARKER).read_text()) == {"step": 10}


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert newest_complete(tmp_path / "missing") is None
    _checkpoint(tmp_path, 4, complete=False)
    assert newest_complete(tmp_path) is None


def test_training_config_forces_step_checkpoints_and_explicit_resume(tmp_path):
    raw = {"save_strategy": "epoch", "save_total_limit": 2, "auto_resume_from_checkpoints": True}
    cfg, notes = training_config(raw, "pkg.Plugin", tmp_path / "checkpoint-6")
    assert cfg["save_strategy"] == "steps" and cfg["save_steps"] == DEFAULT_SAVE_STEPS
    assert cfg["plugins"] == ["pkg.Plugin"]
    assert cfg["auto_resume_from_checkpoints"] is False
    assert cfg["resume_from_checkpoint"] == str(tmp_path / "checkpoint-6")
    assert len(notes) == 2
    assert raw["save_strategy"] == "epoch", "the caller's config must not change"


def test_training_config_keeps_user_step_checkpoints():
    cfg, notes = training_config({"save_strategy": "steps", "save_steps": 7, "resume_from_checkpoint": "x"},
                                 "pkg.Plugin", None)
    assert cfg["save_steps"] == 7 and "resume_from_checkpoint" not in cfg and notes == []


def test_throughput_and_eta_count_only_steps_run_by_this_process():
    now = [100.0]
    throughput = Throughput(samples_per_step=4, clock=lambda: now[0])
    throughput.start(step=10)
    assert throughput.measure(10, 20) == {}
    now[0] = 110.0
    assert throughput.measure(15, 20) == {"samplesPerSecond": 2.0, "etaSeconds": 10}


def test_gs_uri_parsing():
    from mmft_storage.gcs import parse_gcs_uri

    def parse_gs_uri(uri: str) -> tuple[str, str]:  # the export URI as the trainer reads it: bucket, prefix
        path = parse_gcs_uri(uri)
        return path.bucket, path.prefix

    assert parse_gs_uri("gs://bucket/a/b/") == ("bucket", "a/b")
    assert parse_gs_uri("gs://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        parse_gs_uri("s3://bucket/x")


def test_tensorboard_sync_copies_new_and_grown_event_files_only(tmp_path):
    source, target = tmp_path / "out", tmp_path / "fuse"
    events = source / "runs" / "Nov29" / "events.out.tfevents.1.host"
    events.parent.mkdir(parents=True)
    events.write_bytes(b"a")
    (source / "adapter_model.safetensors").write_bytes(b"weights")
    sync = TensorBoardSync(source, target)
    assert sync.sync_once() == 1
    assert sync.sync_once() == 0
    with open(events, "ab") as handle:
        handle.write(b"b")
    os.utime(events, ns=(events.stat().st_atime_ns, events.stat().st_mtime_ns + 1_000_000))
    assert sync.sync_once() == 1
    assert (target / "runs" / "Nov29" / "events.out.tfevents.1.host").read_bytes() == b"ab"
    assert not (target / "adapter_model.safetensors").exists()


def test_tensorboard_sync_reads_the_logging_dir_transformers_writes_to(tmp_path, monkeypatch):
    """Several nodes: output_dir is on the bucket and the event files on the pod's scratch (TENSORBOARD_LOGGING_DIR)."""
    from types import SimpleNamespace

    from mmft_trainer.reporting import RunReporter
    from mmft_trainer.runner import _start_tensorboard_sync

    scratch, bucket_run, target = tmp_path / "scratch" / "tensorboard", tmp_path / "bucket" / "run", tmp_path / "tb"
    scratch.mkdir(parents=True)
    (scratch / "events.out.tfevents.1.rank0").write_bytes(b"scalars")
    (bucket_run / "runs").mkdir(parents=True)
    (bucket_run / "runs" / "events.out.tfevents.0.old").write_bytes(b"not these")
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(scratch))
    monkeypatch.setenv("RANK", "0")
    args = SimpleNamespace(tensorboard_sync_dir=str(target), tensorboard_sync_interval=3600.0)
    sync = _start_tensorboard_sync(args, bucket_run, RunReporter(None))
    sync.stop()
    assert (target / "events.out.tfevents.1.rank0").read_bytes() == b"scalars"
    assert not (target / "runs").exists()
