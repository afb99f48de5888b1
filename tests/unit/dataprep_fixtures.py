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


class RangeServer:
    """An HTTP server on 127.0.0.1 serving in-memory files with Range/If-Range/ETag support.

    ``cut_next_response_after`` makes the next response stop after that many body bytes and drop the
    connection, as a flaky network would. ``requests`` records (path, Range header, body bytes sent).
    """

    def __init__(self) -> None:
        import http.server
        import threading

        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None, int]] = []
        self.cut_next_response_after: int | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                etag = f'"{hash(body) & 0xFFFFFFFF:08x}"'
                start = 0
                requested = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if requested and (if_range is None or if_range == etag):
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                if start >= len(body) and requested:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                payload = body[start:]
                if server.cut_next_response_after is not None:
                    payload = payload[:server.cut_next_response_after]
                    server.cut_next_response_after = None
                    self.close_connection = True
                self.wfile.write(payload)
                self.wfile.flush()
                server.requests.append((self.path, requested, len(payload)))

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A zip (stored, uncompressed, so tests can damage a member's bytes in place)."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class SmallDataset:
    """An ISIC-shaped labels CSV and small JPEGs with one of each kind of bad item.

    Bad items: ``corrupt`` (truncated JPEG), ``unreadable`` (not an image), ``missing`` (no file),
    ``repeated`` (a second CSV row for an image), ``listed_duplicate`` (named in duplicates.csv).
    """

    def __init__(self, root: Path, patients: int = 30, images: int = 180, positives: int = 24, seed: int = 5):
        self.root = root
        self.images_dir = root / "images"
        self.records = isic_shaped_records(patients, images, positives, seed)
        bad = [r.image for r in self.records[:4]]
        self.corrupt, self.unreadable, self.missing, self.listed_duplicate = bad
        self.repeated = self.records[4].image
        self.labels_csv = root / "ISIC_2020_Training_GroundTruth.csv"
        rows = self.records + [self.records[4]]
        self.labels_csv.write_text(isic_csv_text(rows))
        self.duplicates_csv = root / "ISIC_2020_Training_Duplicates.csv"
        self.duplicates_csv.write_text(f"image_name_1,image_name_2\n{self.records[5].image},{self.listed_duplicate}\n")
        for index, record in enumerate(self.records):
            if record.image != self.missing:
                write_jpeg(self.images_dir / f"{record.image}.jpg", 96, 64, seed=index, quality=80)
        corrupt = self.images_dir / f"{self.corrupt}.jpg"
        corrupt.write_bytes(corrupt.read_bytes()[:400])
        (self.images_dir / f"{self.unreadable}.jpg").write_text("this is not a JPEG")

    @property
    def usable(self) -> list[LabelRecord]:
        excluded = {self.corrupt, self.unreadable, self.missing, self.listed_duplicate}
        return [r for r in self.records if r.image not in excluded]

    def jpeg_bytes(self) -> dict[str, bytes]:
        return {path.name: path.read_bytes() for path in sorted(self.images_dir.iterdir())}
