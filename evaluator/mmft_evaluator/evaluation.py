"""One `mmft evaluate` run: score every model of the spec, choose thresholds, write predictions, metrics, charts
and the HTML report, and upload them. A model that fails (cannot load, runs out of memory) is recorded with its
error while the other models still run. Models that share their vision tower and projector weights (a base model
and adapters of its language model) compute each image's features once (mmft_evaluator.image_features)."""

from __future__ import annotations

import gc
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmft_operator.seed_prompts import SEED_PROMPTS
from mmft_storage.gcs import fetch_file, process_client, upload_directory

from .examples import Example, read_examples
from .html_report import render_report
from .metrics import classification_metrics
from .model_spec import ModelSpec
from .plots import confusion_matrix_png, curves_png
from .predictions import write_predictions
from .thresholds import choose_threshold

log = logging.getLogger(__name__)

METHODS = ("logprob", "forced-choice", "generate")
# Methods that give a score per image (ROC/PR curves, thresholds chosen by a policy).
SCORING_METHODS = ("logprob", "forced-choice")


@dataclass(frozen=True)
class EvaluateOptions:
    test_jsonl: str
    models: tuple[ModelSpec, ...]
    output_dir: Path
    validation_jsonl: str | None = None
    output_uri: str | None = None
    method: str = "logprob"
    threshold_policy: str = "fixed"
    threshold: float = 0.5
    target_recall: float = 0.9
    batch_size: int = 64
    max_new_tokens: int = 500
    positive_answer: str = SEED_PROMPTS.positive_answer
    negative_answer: str = SEED_PROMPTS.negative_answer
    device: str = "auto"
    workers: int = 4
    baseline: str | None = None
    limit: int | None = None
    cache_dir: Path = Path("/tmp/mmft-evaluate-cache")
    # logprob execution (mmft_evaluator.execution): "auto" compiles on CUDA for runs where the compile pays off.
    compile: str = "auto"
    compile_mode: str = "default"
    vision_attention: str = "auto"
    # Reuse image features between models with the same vision tower and projector weights.
    share_image_features: bool = True

    @property
    def scores(self) -> bool:
        """The method gives a score per image (not only a call)."""
        return self.method in SCORING_METHODS


@dataclass
class Progress:
    """What the run reports while it scores: the model at hand and images done over all models."""

    model: str = ""
    done: int = 0
    total: int = 0
    rate: float | None = None
    eta: float | None = None


ProgressSink = Callable[[Progress], None]


def load_splits(options: EvaluateOptions) -> tuple[list[Example], list[Example]]:
    def read(uri: str) -> list[Example]:
        path = fetch_file(uri, options.cache_dir)
        return read_examples(path, options.positive_answer, options.negative_answer, options.limit)

    validation = read(options.validation_jsonl) if options.validation_jsonl else []
    return read(options.test_jsonl), validation


def _score(loaded, examples, options, progress_line, pad_to_batch: bool = False, features=None):
    from .scoring import generate_answers, pil_loader, score_forced_choice, score_logprob

    common = dict(
        positive_answer=options.positive_answer, negative_answer=options.negative_answer,
        batch_size=options.batch_size, workers=options.workers, image_loader=pil_loader(options.cache_dir),
        on_progress=progress_line,
    )
    if options.method == "generate":
        return generate_answers(loaded, examples, max_new_tokens=options.max_new_tokens,
                                static_cache=loaded.device.type == "cuda", **common)
    score = score_forced_choice if options.method == "forced-choice" else score_logprob
    return score(loaded, examples, pad_to_batch=pad_to_batch, features=features, **common)


class FeatureStores:
    """One ImageFeatureStore per sharing key, kept while a model still to come may use it: one whose model reference
    (the base of BASE+ADAPTER) is the one of the model that filled it."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.stores: dict[str, tuple[str, object]] = {}  # key -> (model reference that filled it, store)

    def for_model(self, loaded, spec: ModelSpec, remaining: list[ModelSpec]):
        """The store ``loaded`` reads and fills (None: no sharing); drops stores no model still to come can use."""
        from .image_features import ImageFeatureStore

        if not self.enabled:
            return None
        references = {spec.model} | {other.model for other in remaining}
        self.stores = {key: entry for key, entry in self.stores.items() if entry[0] in references}
        key = loaded.sharing_key
        if key is None:
            return None
        if key not in self.stores:
            if not any(other.model == spec.model for other in remaining):
                return None  # nobody after this model could reuse the features
            self.stores[key] = (spec.model, ImageFeatureStore(key))
        return self.stores[key][1]


def _evaluate_model(spec, options, test, validation, progress: Progress, sink: ProgressSink, stores=None,
                    remaining=()):
    from .loading import load_model, pick_device
    from .scoring import ProgressLine

    device = pick_device(options.device)
    loaded = load_model(spec, device, options.cache_dir)
    features = stores.for_model(loaded, spec, list(remaining)) if stores is not None and options.scores else None
    reused = features is not None and len(features) > 0
    if features is not None:
        log.info("%s: image features shared (%d images already computed by an earlier model)", spec.name,
                 len(features))
    done_before = progress.done
    pad_to_batch = False
    if options.scores:
        from .execution import apply_execution, resolve_execution

        images = len(test) + (len(validation) if options.threshold_policy != "fixed" else 0)
        execution = resolve_execution(options.compile, options.compile_mode, options.vision_attention,
                                      images=images, device_type=device.type)
        log.info("%s: %s execution %s", spec.name, options.method, execution.label())
        if execution.compile != "none":
            import torch

            # The previous model's graphs can never run again; dropping them keeps each model under dynamo's
            # per-function recompile limit (after which it would silently run eagerly).
            torch._dynamo.reset()
        apply_execution(loaded.model, execution, device)
        pad_to_batch = execution.pads_batches

    def publish(done, _total, rate, eta):
        progress.done, progress.rate, progress.eta = done_before + done, rate, eta
        sink(progress)

    threshold = None
    if options.scores:
        if options.threshold_policy != "fixed":
            scored_validation = _score(loaded, validation, options, ProgressLine(f"{spec.name} validation", publish),
                                       pad_to_batch, features)
            done_before = progress.done
            threshold = choose_threshold(
                options.threshold_policy,
                [s.example.label for s in scored_validation], [s.score for s in scored_validation],
                fixed=options.threshold, target_recall=options.target_recall,
            )
            log.info("%s: %s threshold on validation = %.4f", spec.name, options.threshold_policy, threshold)
        else:
            threshold = options.threshold
    scored = _score(loaded, test, options, ProgressLine(f"{spec.name} test", publish), pad_to_batch, features)
    return scored, threshold, reused


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _prediction_rows(name: str, scored, threshold: float | None) -> list[dict]:
    rows = []
    for item in scored:
        if item.score is not None:
            prediction = int(item.score >= threshold)
        else:
            # Unparseable answers stay in the denominator as "not called melanoma", and are counted apart.
            prediction = item.parsed if item.parsed is not None else 0
        row = {"model": name, "id": item.example.id, "label": item.example.label, "prediction": prediction}
        if item.score is not None:
            row["score"] = item.score
            row["threshold"] = threshold
        if item.answer is not None:
            row["answer"] = item.answer
            row["parsed"] = item.parsed is not None
        rows.append(row)
    return rows


def best_model(models: dict) -> str | None:
    """Highest balanced accuracy; ROC AUC breaks ties. Models that failed or have no balanced accuracy can't win."""
    candidates = [
        (result["metrics"]["balanced_accuracy"], result["metrics"].get("roc_auc") or 0.0, name)
        for name, result in models.items()
        if not result.get("error") and result["metrics"].get("balanced_accuracy") is not None
    ]
    return max(candidates)[2] if candidates else None


def run_evaluation(options: EvaluateOptions, sink: ProgressSink = lambda progress: None) -> dict:
    """Runs everything and returns the metrics.json document (with ``outputs``: report, metrics, predictions)."""
    test, validation = load_splits(options)
    output_dir = options.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = output_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    needs_validation = options.scores and options.threshold_policy != "fixed"
    images_per_model = len(test) + (len(validation) if needs_validation else 0)
    progress = Progress(total=len(options.models) * images_per_model)
    models: dict[str, dict] = {}
    rows: list[dict] = []
    curves: dict[str, tuple[list[int], list[float]]] = {}
    stores = FeatureStores(options.share_image_features)
    for index, spec in enumerate(options.models):
        progress.model = spec.name
        progress.done = index * images_per_model  # a failed model's images count as done: the run moved on
        sink(progress)
        try:
            scored, threshold, reused = _evaluate_model(spec, options, test, validation, progress, sink, stores,
                                                        options.models[index + 1:])
        except Exception as error:  # noqa: BLE001 - one model's failure must not stop the comparison
            log.error("model %s (%s) failed:\n%s", spec.name, spec.describe(), traceback.format_exc())
            models[spec.name] = {"spec": spec.describe(), "error": f"{type(error).__name__}: {error}"}
            continue
        finally:
            _release_memory()
        model_rows = _prediction_rows(spec.name, scored, threshold)
        rows.extend(model_rows)
        labels = [row["label"] for row in model_rows]
        scores = [row["score"] for row in model_rows] if options.scores else None
        metrics = classification_metrics(labels, [row["prediction"] for row in model_rows], scores).as_dict()
        result = {"spec": spec.describe(), "method": options.method, "threshold": threshold, "metrics": metrics,
                  "reusedImageFeatures": reused}
        if options.method == "generate":
            result["unparsed"] = sum(1 for row in model_rows if not row["parsed"])
        models[spec.name] = result
        if scores is not None:
            curves[spec.name] = (labels, scores)
    return _write_outputs(options, test, models, rows, curves)


def _write_outputs(options, test, models, rows, curves) -> dict:
    output_dir = options.output_dir
    plots_dir = output_dir / "plots"
    baseline = options.baseline or next((name for name in models if not models[name].get("error")), None)
    summary = {
        "examples": len(test),
        "positives": sum(example.label for example in test),
        "baseline": baseline,
        "best": best_model(models),
        "models": models,
        "settings": {
            "test": options.test_jsonl,
            "validation": options.validation_jsonl,
            "method": options.method,
            "thresholdPolicy": options.threshold_policy if options.scores else None,
            "targetRecall": options.target_recall if options.threshold_policy == "target-recall" else None,
            "positiveAnswer": options.positive_answer,
            "negativeAnswer": options.negative_answer,
        },
    }
    images: dict[str, Path | None] = {}
    for name, result in models.items():
        if not result.get("error"):
            images[f"{name}: confusion matrix"] = confusion_matrix_png(
                plots_dir / f"confusion-{name}.png", name, result["metrics"])
    if curves:
        images["ROC curves"] = curves_png(plots_dir / "roc.png", "roc", curves)
        images["Precision-recall curves"] = curves_png(plots_dir / "pr.png", "pr", curves)
    paths = {
        "predictions": output_dir / "predictions.jsonl",
        "metrics": output_dir / "metrics.json",
        "report": output_dir / "report.html",
    }
    write_predictions(paths["predictions"], rows)
    paths["metrics"].write_text(json.dumps(summary, indent=2) + "\n")
    paths["report"].write_text(render_report(summary, images), encoding="utf-8")
    outputs = {key: str(path) for key, path in paths.items()}
    if options.output_uri:
        uploaded = upload_directory(process_client(), output_dir, options.output_uri)
        outputs = {key: uploaded[path] for key, path in paths.items()}
    summary["outputs"] = outputs
    return summary
