"""Float32 vs full-integer int8 LiteRT: file size and single-image latency on 1 and 2 threads.

With a .keras model it also exports int8 models whose first N backbone stages stay float
(`--float-stages`, the `export.float_stages` param) and prints each one's size and latency as a
ratio against the all-int8 model (`float_stages: 0`, the int8 export before that param) measured
in the same run, rounds interleaved (`--rounds`) so machine load hits every model alike.

Give a trained .keras model (both .tflite files are exported into a temp dir with the export
stage's converter; the int8 representative set comes from TRAIN in --tfrecords, or synthetic
lesions if that folder is missing), or the two .tflite files. Latency is the median of --runs
single-image inferences after --warmup, including int8 (de)quantization, on a real test image
when --tfrecords has one. Usage:

    python bench/bench_tflite.py models/model.keras
    python bench/bench_tflite.py models/model.keras --float-stages 2 3 --rounds 5
    python bench/bench_tflite.py models/model_float32.tflite models/model_int8.tflite --runs 200

Numbers move with machine load (2 cores here, often shared): compare within one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def export_pair(
    keras_path: Path,
    tfrecords: Path,
    n_rep: int,
    out: Path,
    float_stages: tuple[int, ...] = (),
) -> dict[str, Path]:

    import keras

    from dermai.models.data import representative_images
    from dermai.runtime.bundle import read_train_params
    from dermai.runtime.convert import export_bytes

    classes = read_train_params(keras_path)["classes"]
    model = keras.saving.load_model(keras_path, compile=False)
    h, w = (int(d) for d in model.inputs[0].shape[1:3])
    if (tfrecords / "meta.json").is_file():
        rep = representative_images(tfrecords, n_rep, seed=42)
    else:
        from dermai.core.synth import lesion_image

        rng = np.random.default_rng(0)
        rep = np.stack(
            [lesion_image(classes[i % len(classes)], rng, h, w) for i in range(n_rep)]
        ).astype(np.float32)
    paths = {}
    for kind, blob in export_bytes(model, classes, 1.0, rep, float_stages=0).items():
        paths[kind] = out / f"model_{kind}.tflite"
        paths[kind].write_bytes(blob)
    for n in float_stages:
        blob = export_bytes(model, classes, 1.0, rep, ("int8",), float_stages=n)["int8"]
        paths[f"int8-fs{n}"] = out / f"model_int8_fs{n}.tflite"
        paths[f"int8-fs{n}"].write_bytes(blob)
    return paths


def sample_image(tfrecords: Path, h: int, w: int) -> np.ndarray:
    if (tfrecords / "meta.json").is_file():
        from dermai.models import data as tfdata

        for x, _ in tfdata.dataset(tfrecords, "test", 1).take(1):
            if tuple(x.shape[1:3]) == (h, w):
                return x.numpy()[0]
    return np.random.default_rng(0).uniform(0, 255, (h, w, 3)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help=".keras model, or the float32 .tflite")
    ap.add_argument("int8", type=Path, nargs="?", help="the int8 .tflite (with a .tflite model)")
    ap.add_argument("--tfrecords", type=Path, default=ROOT / "data" / "tfrecords")
    ap.add_argument("--representative", type=int, default=200)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument(
        "--float-stages",
        type=int,
        nargs="*",
        default=[2],
        help="also int8 models with these export.float_stages (a .keras model only)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median)")
    args = ap.parse_args()

    from dermai.runtime.tflite import TfliteModel, latency_ms

    with tempfile.TemporaryDirectory() as tmp:
        if args.model.suffix == ".keras":
            paths = export_pair(
                args.model,
                args.tfrecords,
                args.representative,
                Path(tmp),
                tuple(args.float_stages),
            )
        elif args.int8 is not None:
            paths = {"float32": args.model, "int8": args.int8}
        else:
            ap.error("give a .keras model, or both the float32 and the int8 .tflite")
        probe = TfliteModel(paths["float32"])
        x = sample_image(args.tfrecords, probe.height, probe.width)
        times: dict[str, dict[int, list[float]]] = {k: {t: [] for t in args.threads} for k in paths}
        for _ in range(max(args.rounds, 1)):
            for kind, path in paths.items():
                for t in args.threads:
                    ms = latency_ms(path, x, threads=t, runs=args.runs, warmup=args.warmup)
                    times[kind][t].append(ms)
        rows: dict[str, dict] = {
            kind: {
                "bytes": path.stat().st_size,
                **{t: float(np.median(times[kind][t])) for t in args.threads},
            }
            for kind, path in paths.items()
        }

        def ratio(kind: str, base: str, t: int) -> float:
            """Median over rounds of the per-round latency ratio (same load within a round)."""
            return float(np.median(np.array(times[kind][t]) / np.array(times[base][t])))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"input {probe.height}x{probe.width}, {args.rounds} rounds of {args.runs} runs after "
        f"{args.warmup} warmup, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}"
    )
    head = f"{'model':<14} {'size MB':>9}" + "".join(f" {f'{t} thr ms':>10}" for t in args.threads)
    print(head)
    for kind, r in rows.items():
        print(
            f"{kind:<14} {r['bytes'] / 1e6:>9.2f}"
            + "".join(f" {r[t]:>10.2f}" for t in args.threads)
        )
    f = rows["float32"]
    for kind, q in rows.items():
        if kind == "float32":
            continue
        print(
            f"{kind + '/f32':<14} {q['bytes'] / f['bytes']:>9.3f}"
            + "".join(f" {ratio(kind, 'float32', t):>10.3f}" for t in args.threads)
        )
    for kind, q in rows.items():
        if kind.startswith("int8-"):
            print(
                f"{kind + '/int8':<14} {q['bytes'] / rows['int8']['bytes']:>9.3f}"
                + "".join(f" {ratio(kind, 'int8', t):>10.3f}" for t in args.threads)
            )


if __name__ == "__main__":
    main()
