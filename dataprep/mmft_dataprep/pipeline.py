"""One preparation run: labels -> located images -> resized images -> split -> JSONL files and stats.json."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from . import fetch, labels, splitting
from .errors import ConfigError, DataError
from .labels import DroppedItem, LabelRecord
from .options import SPLIT_NAMES, PrepOptions
from .outputs import chat_example, write_json_atomically, write_jsonl_atomically
from .processing import ImageTask, TaskResult, prepare_output_dir, run_tasks
from .progress import ProgressMeter
from .sources import build_index, describe

log = logging.getLogger("mmft_dataprep")

STATS_VERSION = 1


@dataclass
class PrepResult:
    stats: dict
    outputs: dict[str, str] = field(default_factory=dict)


class Phases:
    """Receives phase changes and progress messages (the CLI publishes them as the workload report)."""

    def enter(self, phase: str, message: str) -> None:
        log.info("%s: %s", phase, message)

    def progress(self, message: str) -> None:
        """Periodic progress, already logged by the meter."""


def run(options: PrepOptions, phases: Phases | None = None) -> PrepResult:
    phases = phases or Phases()
    started = time.monotonic()
    _remove_leftover_temporaries(options.output_dir)

    phases.enter("Preflight", f"reading labels from {options.labels_csv}")
    records, dropped, row_count = _read_labels(options)
    phases.enter("Preflight", "locating images")
    tasks, located = _locate_images(records, options, dropped)

    reusable = prepare_output_dir(options.images_output_dir, options.image)
    phases.enter("Running", f"processing {len(tasks)} images on {options.workers} workers"
                 + (" (reusing finished images of an earlier run)" if reusable else ""))
    image_started = time.monotonic()
    failed, status_counts = _process_images(tasks, options, phases)
    image_seconds = time.monotonic() - image_started
    dropped += [DroppedItem(result.image, result.status, result.detail) for result in failed.values()]
    usable = [record for record in located if record.image not in failed]
    if not usable:
        reasons = ", ".join(f"{reason} {count}" for reason, count in Counter(d.reason for d in dropped).items())
        raise DataError(f"none of the {len(records)} labelled images could be used (dropped: {reasons})")

    phases.enter("Saving", "splitting and writing JSONL")
    split_records = _split(usable, options)
    outputs = _write_jsonl(split_records, options)
    stats = _stats(options, split_records, dropped, row_count, status_counts, image_seconds,
                   time.monotonic() - started)
    stats_path = options.output_dir / "stats.json"
    write_json_atomically(stats_path, stats)
    outputs["statsJson"] = str(stats_path)
    outputs["imagesDir"] = options.training_image_prefix
    return PrepResult(stats, outputs)


def _remove_leftover_temporaries(output_dir: Path) -> None:
    """Temporary files of a run that was killed mid-write (the outputs themselves are always whole)."""
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "stats.json"):
        for leftover in output_dir.glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def _read_labels(options: PrepOptions) -> tuple[list[LabelRecord], list[DroppedItem], int]:
    records, dropped = labels.parse_labels(fetch.read_text(options.labels_csv), options.columns,
                                           options.labels_csv)
    row_count = len(records) + len(dropped)
    if options.duplicates_csv:
        records, listed = _drop_listed_duplicates(records, options.duplicates_csv)
        dropped += listed
    if not records:
        raise DataError(f"{options.labels_csv}: no usable rows ({row_count} rows, {len(dropped)} dropped)")
    return records, dropped, row_count


def _locate_images(records: list[LabelRecord], options: PrepOptions, dropped: list[DroppedItem]):
    """(tasks, their records); records without a file, or sharing an output name, go to ``dropped``."""
    index = build_index(options.images_dir, options.archive_urls, options.archive_download_dir,
                        on_download_progress=_download_logger())
    if not index.locations:
        raise ConfigError(f"no files found in the image sources ({_sources(options)})")
    for name, others in index.shadowed.items():
        log.warning("image %s exists in several sources; using %s, ignoring %s", name,
                    describe(index.locations[name]), ", ".join(others))
    tasks, located, owner_of_output = [], [], {}
    for record in records:
        locator = index.locate(record.image, options.image_extension)
        output_name = options.output_image_name(record.image)
        if locator is None:
            dropped.append(DroppedItem(record.image, "missing_file",
                                       f"no {record.image}{options.image_extension} in the image sources"))
        elif output_name in owner_of_output:
            dropped.append(DroppedItem(record.image, "duplicate_row",
                                       f"same file name as {owner_of_output[output_name]}"))
        else:
            owner_of_output[output_name] = record.image
            tasks.append(ImageTask(record.image, locator, str(options.images_output_dir / output_name)))
            located.append(record)
    return tasks, located


def _process_images(tasks: list[ImageTask], options: PrepOptions, phases: Phases):
    """(failed results by image, count per status)."""
    status_counts: Counter[str] = Counter()
    failed: dict[str, TaskResult] = {}
    meter = ProgressMeter("images", len(tasks), on_update=phases.progress)

    def on_result(result: TaskResult) -> None:
        status_counts[result.status] += 1
        if result.status not in ("written", "reused"):
            failed[result.image] = result
            log.warning("dropping %s: %s %s", result.image, result.status, result.detail)
        meter.advance()

    run_tasks(tasks, options.image, options.workers, on_result)
    meter.close()
    return failed, status_counts


def _drop_listed_duplicates(records: list[LabelRecord], duplicates_csv: str):
    duplicate_of = labels.parse_duplicates(fetch.read_text(duplicates_csv), duplicates_csv)
    present = {record.image for record in records}
    kept, dropped = [], []
    for record in records:
        original = duplicate_of.get(record.image)
        if original is not None and original in present:
            dropped.append(DroppedItem(record.image, "listed_duplicate",
                                       f"duplicate of {original} per {duplicates_csv}"))
        else:
            kept.append(record)
    return kept, dropped


def _split(records: list[LabelRecord], options: PrepOptions) -> dict[str, dict]:
    assignment = splitting.assign_groups(records, options.fractions, options.seed)
    by_split: dict[str, list[LabelRecord]] = {name: [] for name in SPLIT_NAMES}
    for record in records:
        by_split[SPLIT_NAMES[assignment[record.group]]].append(record)
    for name, fraction in zip(SPLIT_NAMES, options.fractions, strict=True):
        if fraction > 0 and not by_split[name]:
            raise DataError(f"the {name} split came out empty: {len(records)} usable images of "
                            f"{len({r.group for r in records})} groups are too few for fractions {options.fractions}")
        by_split[name].sort(key=lambda record: record.image)
        classes = Counter(record.label for record in by_split[name])
        if fraction > 0 and len(classes) < 2:
            log.warning("the %s split holds only %s examples", name, "positive" if 1 in classes else "negative")
    lines = dict(by_split)
    lines["train"] = splitting.balance_train(by_split["train"], options.balance, options.seed)
    return {name: {"records": by_split[name], "lines": lines[name]} for name in SPLIT_NAMES}


def _write_jsonl(split_records: dict[str, dict], options: PrepOptions) -> dict[str, str]:
    prefix = options.training_image_prefix
    outputs = {}
    for name in SPLIT_NAMES:
        path = options.output_dir / f"{name}.jsonl"
        rows = (chat_example(f"{prefix}/{options.output_image_name(record.image)}", record.label == 1,
                             options.prompts)
                for record in split_records[name]["lines"])
        write_jsonl_atomically(path, rows)
        outputs[f"{name}Jsonl"] = str(path)
    return outputs


def _stats(options, split_records, dropped, row_count, status_counts, image_seconds, total_seconds) -> dict:
    processed = status_counts["written"]
    splits = {}
    for name in SPLIT_NAMES:
        records = split_records[name]["records"]
        lines = split_records[name]["lines"]
        positives = sum(record.label for record in records)
        splits[name] = {
            "images": len(records),
            "positive": positives,
            "negative": len(records) - positives,
            "patients": len({record.group for record in records}),
            "lines": len(lines),
            "linesPositive": sum(record.label for record in lines),
        }
    return {
        "version": STATS_VERSION,
        "inputs": {"labelsCsv": options.labels_csv, "imagesDir": options.images_dir,
                   "archiveUrls": list(options.archive_urls), "duplicatesCsv": options.duplicates_csv,
                   "rows": row_count},
        "settings": {"seed": options.seed, "fractions": dict(zip(SPLIT_NAMES, options.fractions, strict=True)),
                     "balance": options.balance, "image": options.image.fingerprint(),
                     "imagePathPrefix": options.training_image_prefix},
        "splits": splits,
        "dropped": {"count": len(dropped), "byReason": dict(Counter(item.reason for item in dropped)),
                    "items": [item.to_json() for item in dropped]},
        "images": {"written": processed, "reused": status_counts["reused"], "workers": options.workers,
                   "seconds": round(image_seconds, 3),
                   "imagesPerSecond": round(processed / image_seconds, 2) if image_seconds > 0 else None},
        "durationSeconds": round(total_seconds, 3),
    }


def _sources(options: PrepOptions) -> str:
    return ", ".join(([f"--images-dir {options.images_dir}"] if options.images_dir else [])
                     + [f"--images-archive-url {url}" for url in options.archive_urls])


def _download_logger():
    last_logged: dict[str, float] = {}

    def on_progress(url: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last_logged.get(url, 0.0) >= 15.0 or (total and done == total):
            last_logged[url] = now
            size = f"/{total / 1e6:.0f}" if total else ""
            log.info("downloading %s: %.0f%s MB", url, done / 1e6, size)

    return on_progress
