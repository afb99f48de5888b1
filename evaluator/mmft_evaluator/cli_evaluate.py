"""`mmft evaluate`: score base, tuned and reference models on the test split and compare them in one report."""

from __future__ import annotations

import argparse
import os
import sys

from mmft_operator.seed_prompts import SEED_PROMPTS

HELP = "Evaluate models (HF id, path, BASE+ADAPTER) on a test JSONL: predictions, metrics, charts, HTML report."

# Kept in step with evaluation.METHODS / thresholds.POLICIES; restated so `mmft --help` imports no numpy.
METHODS = ("logprob", "forced-choice", "generate")
POLICIES = ("fixed", "max-balanced-accuracy", "target-recall")
# Restated from execution.COMPILE_TARGETS / COMPILE_MODES / VISION_ATTENTION for the same reason.
COMPILE_TARGETS = ("auto", "none", "vision", "vision+language")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
VISION_ATTENTION = ("auto", "flash", "efficient", "cudnn", "math")
CONFIG_INVALID = 78  # mmft_operator.contracts.exit_codes.CONFIG_INVALID, restated for argparse errors


def _default_workers() -> int:
    return max(0, min(12, len(os.sched_getaffinity(0)) - 1))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--test-jsonl", required=True, help="test split in the dataprep chat format (path or gs://)")
    parser.add_argument("--validation-jsonl", help="validation split, for thresholds chosen by a policy")
    parser.add_argument("--model", action="append", required=True, metavar="NAME=SPEC",
                        help="repeatable. SPEC: HF id or path (gs:// too) of a full or merged model, BASE+ADAPTER, or "
                             "an adapter directory whose adapter_config.json names its base")
    parser.add_argument("--output-dir", required=True, help="local directory for predictions, metrics, plots, report")
    parser.add_argument("--output-uri", help="gs://bucket/prefix to upload the output directory to")
    parser.add_argument("--method", default="logprob", choices=METHODS,
                        help="logprob (default): P(positive) from the first answer token, batched; forced-choice: "
                             "the whole positive answer's likelihood against the whole negative answer's (right "
                             "for models that explain before they answer), batched; generate: the seed's free-text "
                             "answers, batched, parsed")
    parser.add_argument("--threshold-policy", default="fixed", choices=POLICIES,
                        help="how the logprob decision threshold is chosen (non-fixed policies use "
                             "the validation split)")
    parser.add_argument("--threshold", type=float, default=0.5, help="threshold of the fixed policy (default 0.5)")
    parser.add_argument("--target-recall", type=float, default=0.9, help="recall the target-recall policy reaches")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per forward pass (64: the fastest measured on an H200, 128 was no faster); "
                             "halved automatically while a batch does not fit in GPU memory")
    parser.add_argument("--max-new-tokens", type=int, default=500, help="generate method: answer length limit")
    parser.add_argument("--positive-answer", default=SEED_PROMPTS.positive_answer,
                        help="the answer that means positive (logprob scores its first token, forced-choice all "
                             "of it)")
    parser.add_argument("--negative-answer", default=SEED_PROMPTS.negative_answer,
                        help="the answer that means negative")
    parser.add_argument("--baseline", help="model NAME that relative changes in the report compare against "
                                           "(default: the first model that ran)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    parser.add_argument("--workers", type=int, default=_default_workers(),
                        help="image preprocessing processes (default: CPU count - 1, at most 12)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N examples of each split (smoke runs)")
    parser.add_argument("--compile", default="auto", choices=COMPILE_TARGETS,
                        help="logprob, forced-choice: torch.compile these modules (auto: vision+language on CUDA "
                             "when a model scores at least 12000 images, where the ~1 minute compile pays off; else "
                             "none); compiled runs pad the last batch to --batch-size. A failed compile runs eagerly")
    parser.add_argument("--compile-mode", default="default", choices=COMPILE_MODES,
                        help="torch.compile mode (max-autotune-no-cudagraphs: ~7%% faster on the H200, ~5 minutes "
                             "longer to compile; TORCHINDUCTOR_CACHE_DIR on a kept volume makes later runs reuse it)")
    parser.add_argument("--vision-attention", default="auto", choices=VISION_ATTENTION,
                        help="logprob: SDPA kernel of the vision tower's attention (auto: PyTorch's choice; on CUDA "
                             "a named kernel that cannot run is an error)")
    parser.add_argument("--share-image-features", default=True, action=argparse.BooleanOptionalAction,
                        help="logprob/forced-choice: models with the same vision tower and projector weights (a base "
                             "model and adapters of its language model) compute each image's features once")
    parser.add_argument("--cache-dir", default="/tmp/mmft-evaluate-cache", help="where gs:// inputs are downloaded")
    _exit_78_on_usage_errors(parser)


def _exit_78_on_usage_errors(parser: argparse.ArgumentParser) -> None:
    # argparse exits 2 on usage errors; the operator maps 78 to "configuration invalid, do not retry".
    def error(message: str):
        parser.print_usage(sys.stderr)
        parser.exit(CONFIG_INVALID, f"{parser.prog}: error: {message}\n")

    parser.error = error


def _check(args) -> list[str]:
    problems = []
    if not 0.0 <= args.threshold <= 1.0:
        problems.append(f"--threshold {args.threshold} must be between 0 and 1")
    if not 0.0 < args.target_recall <= 1.0:
        problems.append(f"--target-recall {args.target_recall} must be in (0, 1]")
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--max-new-tokens", args.max_new_tokens, 1),
                             ("--workers", args.workers, 0), ("--limit", args.limit, 1)):
        if value is not None and value < low:
            problems.append(f"{flag} {value} must be at least {low}")
    if args.method != "generate" and args.threshold_policy != "fixed" and not args.validation_jsonl:
        problems.append(f"--threshold-policy {args.threshold_policy} chooses the threshold on --validation-jsonl; "
                        "give one or use --threshold-policy fixed")
    if args.output_uri and not args.output_uri.startswith("gs://"):
        problems.append(f"--output-uri {args.output_uri!r} must start with gs://")
    for flag in ("test_jsonl", "validation_jsonl"):
        value = getattr(args, flag)
        if value and not value.startswith("gs://") and not os.path.isfile(value):
            problems.append(f"--{flag.replace('_', '-')} {value}: no such file")
    if args.positive_answer.strip().lower() == args.negative_answer.strip().lower():
        problems.append("--positive-answer and --negative-answer must differ")
    return problems


def contract_results(summary: dict):
    """The report contract's EvaluationResults of a metrics.json summary (evaluation.run_evaluation)."""
    from mmft_operator.contracts.progress import EvaluationResults, ModelResult

    models = {}
    for name, result in summary["models"].items():
        if result.get("error"):
            models[name] = ModelResult(error=result["error"])
            continue
        metrics = result["metrics"]
        models[name] = ModelResult(
            accuracy=metrics.get("accuracy"), balancedAccuracy=metrics.get("balanced_accuracy"),
            recall=metrics.get("recall"), specificity=metrics.get("specificity"),
            precision=metrics.get("precision"), rocAuc=metrics.get("roc_auc"), prAuc=metrics.get("pr_auc"),
            threshold=result.get("threshold"),
        )
    return EvaluationResults(models=models, best=summary.get("best"))


def scoring_progress(progress):
    """The report contract's ScoringProgress of the run's progress (evaluation.Progress)."""
    from mmft_operator.contracts.progress import ScoringProgress

    return ScoringProgress(
        model=progress.model or None, scored=progress.done, total=progress.total, imagesPerSecond=progress.rate,
        etaSeconds=int(progress.eta) if progress.eta is not None else None,
    )


def main(args: argparse.Namespace) -> int:
    """The evaluation, with a GPU out-of-memory failure ending in its own exit code (the Job then fails at once)."""
    from mmft_operator.contracts.exit_codes import OUT_OF_MEMORY, is_gpu_out_of_memory

    try:
        return _evaluate(args)
    except Exception as error:
        if not is_gpu_out_of_memory(error):
            raise
        print(f"mmft evaluate: GPU out of memory: {OUT_OF_MEMORY_ADVICE}: {str(error)[:500]}", file=sys.stderr)
        return OUT_OF_MEMORY


OUT_OF_MEMORY_ADVICE = "lower --batch-size (spec.batchSize)"


def _evaluate(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from mmft_operator.contracts.exit_codes import DATA_INVALID
    from mmft_operator.contracts.progress import EvaluationOutputs, EvaluationReport
    from mmft_operator.contracts.report_writer import ReportWriter

    from .evaluation import EvaluateOptions, run_evaluation
    from .examples import ExamplesError
    from .model_spec import ModelSpecError, parse_model_arguments

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problems = _check(args)
    try:
        specs = parse_model_arguments(args.model)
    except ModelSpecError as error:
        problems.append(str(error))
        specs = []
    if args.baseline and args.baseline not in {spec.name for spec in specs}:
        problems.append(f"--baseline {args.baseline!r} is not one of the --model names")
    if problems:
        for problem in problems:
            print(f"mmft evaluate: {problem}", file=sys.stderr)
        return CONFIG_INVALID

    options = EvaluateOptions(
        test_jsonl=args.test_jsonl, validation_jsonl=args.validation_jsonl, models=tuple(specs),
        output_dir=Path(args.output_dir), output_uri=args.output_uri, method=args.method,
        threshold_policy=args.threshold_policy, threshold=args.threshold, target_recall=args.target_recall,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, positive_answer=args.positive_answer,
        negative_answer=args.negative_answer, device=args.device, workers=args.workers, baseline=args.baseline,
        limit=args.limit, cache_dir=Path(args.cache_dir), compile=args.compile, compile_mode=args.compile_mode,
        vision_attention=args.vision_attention, share_image_features=args.share_image_features,
    )
    writer = ReportWriter.from_environment()
    report = EvaluationReport(phase="Starting", message=f"evaluating {len(specs)} model(s)")
    writer.publish(report, force=True)

    def on_progress(progress) -> None:
        report.phase = "Running"
        report.message = f"scoring {progress.model}"
        report.progress = scoring_progress(progress)
        writer.publish(report)

    try:
        summary = run_evaluation(options, on_progress)
    except ExamplesError as error:
        return _fail(writer, report, str(error), DATA_INVALID)
    except FileNotFoundError as error:
        return _fail(writer, report, str(error), CONFIG_INVALID)
    report.results = contract_results(summary)
    report.outputs = EvaluationOutputs.model_validate(summary["outputs"])
    failed = [name for name, result in summary["models"].items() if result.get("error")]
    if len(failed) == len(specs):
        from mmft_operator.contracts.exit_codes import OUT_OF_MEMORY, describes_gpu_out_of_memory

        # Each model's failure is recorded as text; every one of them out of GPU memory is that failure, by name.
        out_of_memory = all(describes_gpu_out_of_memory(summary["models"][name]["error"]) for name in failed)
        return _fail(writer, report, f"every model failed: {', '.join(failed)}", OUT_OF_MEMORY if out_of_memory else 1)
    report.phase = "Completed"
    report.message = f"best: {summary['best']}" + (f"; failed: {', '.join(failed)}" if failed else "")
    writer.publish(report, force=True)
    print(f"mmft evaluate: {report.message}; report {summary['outputs']['report']}", file=sys.stderr)
    return 0


def _fail(writer, report, message: str, code: int) -> int:
    report.phase = "Failed"
    report.message = message
    writer.publish(report, force=True)
    print(f"mmft evaluate: {message}", file=sys.stderr)
    return code
