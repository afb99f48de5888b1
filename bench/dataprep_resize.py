"""Benchmark: mmft's image path vs the seed notebook's naive open-then-resize, on synthetic 6000x4000 JPEGs.

All paths produce the same output size from the same files in the same run. Per-core throughput is measured in
CPU time of one process (interleaved, best of --repeats), so other load on the machine does not skew it; then
mmft's pipeline runs on 1 and on all workers (wall clock).
Quality: PSNR of each path's resized pixels against a full-resolution Lanczos reference.

    python bench/dataprep_resize.py [--images 4] [--size 512] [--repeats 3] [--workdir /tmp/mmft-bench-dataprep]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from mmft_dataprep.imaging import fit_size, prepare_image, resize_image, save_atomically
from mmft_dataprep.options import ImageSettings, default_workers
from mmft_dataprep.processing import ImageTask, run_tasks
from mmft_dataprep.quality import psnr, reference_resize
from PIL import Image

WIDTH, HEIGHT = 6000, 4000


def synthetic_dermoscopy(path: Path, seed: int, skin_texture: float, pixel_noise: int) -> None:
    """Skin tone (blotches of standard deviation skin_texture) with a dark irregular lesion and hair-like
    strokes, plus +-pixel_noise of per-pixel sensor noise, saved at JPEG quality 92. Texture and noise set the
    compressed size, and so the entropy-decoding cost that no DCT scaling can avoid."""
    rng = np.random.default_rng(seed)
    small_h, small_w = HEIGHT // 8, WIDTH // 8
    yy, xx = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    cx, cy = small_w * rng.uniform(0.4, 0.6), small_h * rng.uniform(0.4, 0.6)
    angle = np.arctan2(yy - cy, xx - cx)
    radius = small_h * rng.uniform(0.18, 0.3) * (1 + 0.15 * np.sin(5 * angle + rng.uniform(0, 6)))
    lesion = 1 / (1 + np.exp(np.clip((np.hypot(xx - cx, yy - cy) - radius) / 4, -50, 50)))
    skin = np.array([214, 160, 140], np.float32) + rng.normal(0, skin_texture, (small_h, small_w, 3)).astype(np.float32)
    dark = np.array([80, 45, 35], np.float32)
    small = skin * (1 - lesion[..., None]) + dark * lesion[..., None]
    image = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((WIDTH, HEIGHT), Image.BICUBIC)
    pixels = np.asarray(image, dtype=np.int16)
    if pixel_noise:
        pixels += rng.integers(-pixel_noise, pixel_noise + 1, (HEIGHT, WIDTH, 1), dtype=np.int16)
    for _ in range(40):  # hairs
        x0, y0 = rng.integers(0, WIDTH), rng.integers(0, HEIGHT)
        length, theta = rng.integers(400, 1500), rng.uniform(0, np.pi)
        t = np.arange(length)
        xs = np.clip((x0 + t * np.cos(theta)).astype(int), 0, WIDTH - 1)
        ys = np.clip((y0 + t * np.sin(theta)).astype(int), 0, HEIGHT - 1)
        for dy in range(-3, 4):
            pixels[np.clip(ys + dy, 0, HEIGHT - 1), xs] = 30
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)


# name -> (skin texture, per-pixel noise). ISIC's 33,126 JPEGs average 745 KB (24.7 GB zip), so even its
# 6000x4000 images are mostly far below the "noisy" profile's size.
PROFILES = {"smooth": (3.0, 0), "textured": (10.0, 0), "noisy": (10.0, 2)}
# The seed trains on the original JPEGs and lets Axolotl resize them (image_resize_algorithm: bilinear);
# Pillow's own default filter is bicubic. Both are measured as the naive baseline.
NAIVE_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def naive_resize(path: Path, size: tuple[int, int], resample):
    """The naive way: decode every pixel, then resize."""
    with Image.open(path) as image:
        return image.convert("RGB").resize(size, resample)


def naive_prepare(resample):
    def prepare(path: Path, destination: Path, settings: ImageSettings) -> None:
        with Image.open(path) as probe:
            size = fit_size(*probe.size, settings)
        save_atomically(naive_resize(path, size, resample), destination, settings)

    return prepare


def cpu_seconds_per_image(function, sources: list[Path], out_dir: Path, settings: ImageSettings) -> float:
    """CPU time of this process per image: per-core cost, unaffected by other processes on a shared machine
    (Pillow decodes and resizes on the calling thread only)."""
    started = time.process_time()
    for index, source in enumerate(sources):
        function(source, out_dir / f"{index}.jpg", settings)
    return (time.process_time() - started) / len(sources)


def bench_profile(name: str, sources: list[Path], settings: ImageSettings, repeats: int, out_dir: Path) -> dict:
    paths = {"mmft": prepare_image, **{f"naive-{f}": naive_prepare(r) for f, r in NAIVE_FILTERS.items()}}
    times: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(repeats):  # interleaved, so load from other processes hits every path alike; best of N
        for path, function in paths.items():
            times[path].append(cpu_seconds_per_image(function, sources, out_dir, settings))
    per_core = {path: 1 / min(values) for path, values in times.items()}

    quality: dict[str, list[float]] = {path: [] for path in paths}
    for source in sources:
        fast, _ = resize_image(source, settings)
        reference = reference_resize(source, fast.size)
        quality["mmft"].append(psnr(fast, reference))
        for f, resample in NAIVE_FILTERS.items():
            quality[f"naive-{f}"].append(psnr(naive_resize(source, fast.size, resample), reference))
    return {
        "profile": name,
        "meanSourceMB": round(statistics.mean(p.stat().st_size for p in sources) / 1e6, 2),
        "imagesPerSecondPerCore": {path: round(rate, 2) for path, rate in per_core.items()},
        "speedupPerCore": {
            path: round(per_core["mmft"] / rate, 2) for path, rate in per_core.items() if path != "mmft"
        },
        "worstPsnrDb": {path: round(min(values), 2) for path, values in quality.items()},
    }


def bench_pool(sources: list[Path], settings: ImageSettings, workers: int, out_dir: Path) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of parent and workers) of the real pipeline
    stage, process start-up included, over ``sources`` repeated."""
    count = max(40 * workers, len(sources))
    tasks = [
        ImageTask(f"{i}", ("file", str(sources[i % len(sources)])), str(out_dir / f"{i}.jpg")) for i in range(count)
    ]
    for stale in out_dir.glob("*.jpg"):
        stale.unlink()
    started, cpu_started = time.perf_counter(), _cpu_seconds_with_children()
    run_tasks(tasks, settings, workers, on_result=lambda result: None)
    wall, cpu = time.perf_counter() - started, _cpu_seconds_with_children() - cpu_started
    return count / wall, count / cpu


def _cpu_seconds_with_children() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # workers count once the pool has reaped them
    return time.process_time() + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4, help="images per profile")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "mmft-bench-dataprep"))
    args = parser.parse_args()

    workdir = Path(args.workdir)
    settings = ImageSettings(size=args.size)
    out_dir = workdir / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = default_workers()
    results = {
        "sourceSize": f"{WIDTH}x{HEIGHT}",
        "outputLongestSide": args.size,
        "imagesPerProfile": args.images,
        "repeats": args.repeats,
        "cpuCount": os.cpu_count(),
        "workers": workers,
        "profiles": [],
    }
    results["loadAverageAtStart"] = os.getloadavg()[0]
    print(
        f"synthetic {WIDTH}x{HEIGHT} JPEGs -> longest side {args.size}; {os.cpu_count()} CPUs "
        f"(load average {os.getloadavg()[0]:.1f}); per core = CPU seconds per image, best of {args.repeats} "
        f"interleaved runs; PSNR vs full-resolution Lanczos"
    )
    all_sources = []
    for name, (texture, noise) in PROFILES.items():
        source_dir = workdir / f"sources-{name}"
        source_dir.mkdir(parents=True, exist_ok=True)
        sources = []
        for index in range(args.images):
            path = source_dir / f"{index}.jpg"
            if not path.exists():
                synthetic_dermoscopy(path, seed=index, skin_texture=texture, pixel_noise=noise)
            sources.append(path)
        all_sources += sources
        profile = bench_profile(name, sources, settings, args.repeats, out_dir)
        results["profiles"].append(profile)
        print(f"\n[{name}] {profile['meanSourceMB']} MB mean source")
        for path, rate in profile["imagesPerSecondPerCore"].items():
            speedup = profile["speedupPerCore"].get(path)
            versus = f"   mmft is {speedup:.1f}x faster" if speedup else ""
            print(
                f"  {path:15s} {rate:6.2f} images/s per core, worst PSNR {profile['worstPsnrDb'][path]:5.1f} dB{versus}"
            )
    pool_dir = workdir / "pool"
    pool_dir.mkdir(exist_ok=True)
    single_wall, single_cpu = bench_pool(all_sources, settings, 1, pool_dir)
    pooled_wall, pooled_cpu = bench_pool(all_sources, settings, workers, pool_dir)
    results["pipeline"] = {
        "oneWorker": {"imagesPerSecond": round(single_wall, 2), "imagesPerCpuSecond": round(single_cpu, 2)},
        "allWorkers": {"imagesPerSecond": round(pooled_wall, 2), "imagesPerCpuSecond": round(pooled_cpu, 2)},
    }
    results["loadAverageAtEnd"] = os.getloadavg()[0]
    print("\nmmft pipeline stage, all profiles mixed (wall clock; per CPU second incl. workers and start-up):")
    print(f"  1 worker : {single_wall:6.2f} images/s, {single_cpu:6.2f} images per CPU second")
    print(
        f"  {workers} workers: {pooled_wall:6.2f} images/s, {pooled_cpu:6.2f} images per CPU second "
        f"(load average now {os.getloadavg()[0]:.1f})"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
