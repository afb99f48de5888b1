"""Generated test inputs for the dataprep tests: ISIC-shaped label records/CSVs and small JPEGs."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from mmft_dataprep.labels import LabelRecord

ISIC_HEADER = ["image_name", "patient_id", "sex", "age_approx", "anatom_site_general_challenge", "diagnosis",
               "benign_malignant", "target"]


def isic_shaped_records(patients: int = 2056, images: int = 33126, positives: int = 584,
                        seed: int = 0) -> list[LabelRecord]:
    """Records shaped like ISIC 2020: skewed lesions per patient, positives clustered on a few patients."""
    rng = random.Random(seed)
    weights = [rng.gammavariate(1.5, 1.0) for _ in range(patients)]
    per_patient = [1] * patients
    for index in rng.choices(range(patients), weights=weights, k=images - patients):
        per_patient[index] += 1
    names = [(f"IP_{p:07d}", f"ISIC_{p:05d}{i:03d}") for p in range(patients) for i in range(per_patient[p])]
    # About a fifth of patients carry the positives, several per patient for some of them.
    carriers = rng.sample(range(patients), patients // 5)
    positive_slots = [(p, i) for p in carriers for i in range(per_patient[p])]
    chosen = set(rng.sample(positive_slots, positives))
    records = []
    line = 2
    for p in range(patients):
        for i in range(per_patient[p]):
            records.append(LabelRecord(f"ISIC_{p:05d}{i:03d}", int((p, i) in chosen), f"IP_{p:07d}", line))
            line += 1
    return records


def isic_csv_text(records: list[LabelRecord], header: list[str] = ISIC_HEADER) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        values = {"image_name": record.image, "patient_id": record.group, "sex": "male", "age_approx": "45.0",
                  "anatom_site_general_challenge": "torso", "diagnosis": "unknown",
                  "benign_malignant": "malignant" if record.label else "benign", "target": str(record.label)}
        writer.writerow([values.get(column, "") for column in header])
    return out.getvalue()


def write_jpeg(path: Path, width: int, height: int, seed: int, quality: int = 92) -> Path:
    """A smooth, lesion-like JPEG: a dark blob on skin tone with gentle noise (realistic entropy)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.65)
    radius = min(width, height) * rng.uniform(0.15, 0.3)
    blob = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2)))
    skin = np.array([220, 170, 150], np.float32)
    lesion = np.array([90, 50, 40], np.float32)
    pixels = skin * (1 - blob[..., None]) + lesion * blob[..., None]
    pixels += rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=quality)
    return path
