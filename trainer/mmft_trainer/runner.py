"""``mmft train``: preflight, Axolotl training with reports and preemption safety, export, final report."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

from mmft_operator.contracts.exit_codes import CONFIG_INVALID, OUT_OF_MEMORY, is_gpu_out_of_memory

from .checkpoints import newest_complete, remove_incomplete
from .preemption import PREEMPTED_EXIT_CODE, Preempted, PreemptionGuard
from .preflight import run_preflight
from .reporting import RunReporter, is_main_process

log = logging.getLogger("mmft_trainer")

TRAINING_FAILED = 1
EXPORT_FAILED = 1
OUT_OF_MEMORY_ADVICE = ("lower micro_batch_size (spec.training.microBatchSize) or sequence_len (sequenceLen), or "
                        "enable gradient_checkpointing (gradientCheckpointing)")
OUTPUT_MANIFEST = "mmft-outputs.json"
# Written once training returned and the adapter is on the volume: a pod restarted after that (an export that failed,
# a node lost during the upload) goes straight to export instead of resuming from the final checkpoint, which made
# the Trainer run steps past max_steps (progress "5/4").
TRAINING_COMPLETE_MARKER = "mmft-training-complete.json"
TENSORBOARD_LOGGING_DIR = "TENSORBOARD_LOGGING_DIR"
# Once training ran, libraries may leave non-daemon threads behind (telemetry once hung a finished run 9+ minutes).
EXIT_GRACE_SECONDS = 120.0


def run(args) -> int:
    started = time.monotonic()
    reporter = RunReporter.from_environment()
    guard = PreemptionGuard()
    guard.install()
    try:
        exit_code = _run(args, reporter, guard, started)
    except Preempted as preempted:
        log.warning("%s", preempted)
        reporter.phase("Running", f"{preempted}; the next start resumes from the newest complete checkpoint")
        exit_code = PREEMPTED_EXIT_CODE
    finally:
        guard.uninstall()
    if not args.preflight:
        _arm_exit_watchdog(exit_code)
    return exit_code


def _run(args, reporter: RunReporter, guard: PreemptionGuard, started: float) -> int:
    reporter.phase("Preflight")
    result = run_preflight(Path(args.config))
    if not result.ok:
        for finding in result.findings:
            print(f"mmft train: config invalid: {finding}", file=sys.stderr)
        reporter.phase("Failed", "config invalid: " + "; ".join(str(f) for f in result.findings))
        return CONFIG_INVALID
    print(f"mmft train: preflight passed for {args.config}", file=sys.stderr)
    if args.preflight:
        return 0

    output_dir = Path(result.raw.get("output_dir") or "./model-out")
    reporter.output("outputDir", str(output_dir))
    sync = _start_tensorboard_sync(args, output_dir, reporter)
    try:
        _train(result.raw, output_dir, reporter, guard, started)
    except Preempted:
        raise
    except Exception as error:  # noqa: BLE001 - whatever broke training, the operator must see why
        if is_gpu_out_of_memory(error):
            log.error("the GPU ran out of memory: %s", str(error)[:500])
            reporter.phase("Failed", f"GPU out of memory: {OUT_OF_MEMORY_ADVICE}")
            print(f"mmft train: GPU out of memory: {OUT_OF_MEMORY_ADVICE}", file=sys.stderr)
            return OUT_OF_MEMORY
        log.exception("training failed")
        reporter.phase("Failed", f"training failed: {type(error).__name__}: {str(error)[:500]}")
        return TRAINING_FAILED
    finally:
        if sync is not None:
            sync.stop()

    if is_main_process() and args.export_uri:
        reporter.phase("Exporting")
        try:
            _export(args, result.raw, output_dir, reporter)
        except Exception as error:  # noqa: BLE001 - the trained adapter stays on disk; say what failed
            log.exception("export failed")
            reporter.phase("Failed", f"export to {args.export_uri} failed: {type(error).__name__}: "
                                     f"{str(error)[:500]}")
            return EXPORT_FAILED
    if is_main_process():
        (output_dir / OUTPUT_MANIFEST).write_text(json.dumps(reporter.outputs(), indent=2))
    reporter.phase("Completed")
    return 0


def _arm_exit_watchdog(exit_code: int) -> None:
    """End the process EXIT_GRACE_SECONDS after ``run`` returned if it is by then only waiting for non-daemon
    threads to finish (the interpreter joins them before atexit handlers run, so the timer is armed here, as a
    daemon thread that keeps running while the interpreter waits)."""
    import threading

    timer = threading.Timer(EXIT_GRACE_SECONDS, exit_if_interpreter_is_exiting, args=(exit_code,))
    timer.daemon = True
    timer.start()


def exit_if_interpreter_is_exiting(exit_code: int, exit=None) -> bool:  # noqa: ANN001 - os._exit by default
    """Exits with ``exit_code`` only once the main thread has finished: the interpreter is shutting down and stuck
    joining a thread. A caller that ran ``run`` in its own process and carried on (a test session, a notebook) has
    a live main thread and is left alone. Returns whether it exited (only ever False when ``exit`` returns)."""
    import os
    import threading

    if threading.main_thread().is_alive():
        return False
    (exit or os._exit)(exit_code)
    return True


def _start_tensorboard_sync(args, output_dir: Path, reporter: RunReporter):
    if not (args.tensorboard_sync_dir and is_main_process()):
        return None
    from .tensorboard_sync import TensorBoardSync

    reporter.output("tensorboardDir", str(args.tensorboard_sync_dir))
    # transformers writes event files to TENSORBOARD_LOGGING_DIR when set (a multi-node run sets it to the pod's
    # own disk, its output_dir being on the bucket), else under output_dir.
    events = Path(os.environ.get(TENSORBOARD_LOGGING_DIR) or output_dir)
    sync = TensorBoardSync(events, Path(args.tensorboard_sync_dir), args.tensorboard_sync_interval)
    sync.start()
    return sync


def _train(raw: dict, output_dir: Path, reporter: RunReporter, guard: PreemptionGuard, started: float) -> None:
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.cli.train import do_train
    from axolotl.utils.dict import DictDefault

    from . import axolotl_plugin
    from .callback import MmftCallback
    from .run_config import training_config

    marker = output_dir / TRAINING_COMPLETE_MARKER
    if marker.is_file():
        print(f"mmft train: training finished in an earlier run ({marker}): going straight to export", file=sys.stderr)
        reporter.progress(force=True, **json.loads(marker.read_text()).get("progress", {}))
        return
    if is_main_process():
        remove_incomplete(output_dir)
    resume_from = newest_complete(output_dir)
    cfg, notes = training_config(raw, axolotl_plugin.PLUGIN_NAME, resume_from)
    for note in notes:
        log.warning("mmft changed the config: %s", note)
    if resume_from is not None:
        reporter.progress(force=True, lastCheckpoint=str(resume_from))
    axolotl_plugin.attach(MmftCallback(reporter, guard, started))
    do_train(load_cfg(DictDefault(cfg)), TrainerCliArgs())
    guard.training = False
    if is_main_process():  # the final progress travels with the marker, so a later pod still reports it
        progress = reporter.report.progress.model_dump(mode="json", exclude_none=True)
        marker.write_text(json.dumps({"progress": progress}))


def _export(args, raw: dict, output_dir: Path, reporter: RunReporter) -> None:
    from mmft_storage.gcs import make_client, upload_directory

    client = make_client()
    base = args.export_uri.rstrip("/")
    if args.export in ("adapter", "both"):
        upload_directory(client, output_dir, f"{base}/adapter", skip=lambda path: _not_adapter_file(path, output_dir))
        reporter.output("adapterUri", f"{base}/adapter")
    if args.export in ("merged", "both"):
        from .merge import merge_adapter

        merged_dir = merge_adapter(raw["base_model"], output_dir, output_dir / "merged",
                                   multimodal=bool(raw.get("processor_type")))
        upload_directory(client, merged_dir, f"{base}/merged")
        reporter.output("mergedUri", f"{base}/merged")


def _not_adapter_file(path: Path, output_dir: Path) -> bool:
    """The adapter is the top-level files of the output directory: checkpoints, runs and merged stay behind."""
    return path.parent != output_dir or path.name in (OUTPUT_MANIFEST, TRAINING_COMPLETE_MARKER, "debug.log")
