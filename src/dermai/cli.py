"""`dermai <command>`: one CLI whose stage commands match the `dvc.yaml` stage names.

Stage modules are imported lazily (TensorFlow and Great Expectations cost seconds to import), so
`dermai --help` and the data stages stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from dermai import DISCLAIMER, __version__
from dermai.errors import DermaiError
from dermai.lifecycle import die_with_parent

# command -> (module, one-line help). Order is pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": ("dermai.stages.sample", "generate the deterministic synthetic sample dataset"),
    "index": ("dermai.stages.index", "index raw images: labels, hashes, sizes; report rejects"),
    "dedup": ("dermai.stages.dedup", "find exact/perceptual duplicates and build leakage groups"),
    "split": ("dermai.stages.split", "leakage-safe stratified train/val/test split"),
    "validate": ("dermai.stages.validate", "run the Great Expectations data gates"),
    "pretrained": ("dermai.stages.pretrained", "convert packaged ImageNet Lite weights to Keras"),
    "tfrecords": ("dermai.stages.tfrecords", "write sharded TFRecords per split"),
    "features": (
        "dermai.stages.features",
        "cache the frozen backbone's activations for train (CPU path)",
    ),
    "train": ("dermai.stages.train", "two-phase fine-tuning with class-imbalance handling"),
    "cv-train": ("dermai.stages.cv_train", "train the K cross-validation folds, predict each"),
    "cv": ("dermai.stages.cv", "pool the folds' out-of-fold predictions (CIs over groups)"),
    "evaluate": ("dermai.stages.evaluate", "metrics with CIs, subgroups, calibration"),
    "export": ("dermai.stages.export", "TFLite float32 and int8 export with parity checks"),
    "headline": ("dermai.stages.headline", "gather the headline metrics into one small file"),
    "predict": ("dermai.commands.predict", "predict conditions for images (not a diagnosis)"),
    "evaluate-external": (
        "dermai.commands.evaluate_external",
        "the evaluate metrics on any labelled image folder",
    ),
    "audit": (
        "dermai.commands.audit",
        "exact/perceptual duplicates between two datasets or splits (leakage audit)",
    ),
    "serve": ("dermai.commands.serve", "local demo web app (not a diagnosis)"),
    "export-web": (
        "dermai.commands.export_web",
        "static offline web app that runs the model on the device",
    ),
    "plots": (
        "dermai.commands.plots",
        "check every dvc.yaml plot has data, then write the offline plots page",
    ),
    "compare": (
        "dermai.commands.compare",
        "is B better than A? paired bootstrap CIs and McNemar on the same test images",
    ),
    "operating-point": (
        "dermai.commands.operating_point",
        "thresholds on one class chosen on val, their cost on test (from predictions CSVs)",
    ),
}

log = logging.getLogger("dermai")


def _available() -> dict[str, tuple[str, str]]:
    """Commands whose module exists in this checkout."""
    out = {}
    for name, (module, help_) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = (module, help_)
    return out


def requested_command(argv: Sequence[str], commands: Mapping[str, object]) -> str | None:
    """The command named in `argv` without parsing it: the top-level options take no values,
    so the first word that is not an option is the command."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in commands else None


def build_parser(
    commands: dict[str, tuple[str, str]] | None = None, argv: Sequence[str] | None = None
) -> argparse.ArgumentParser:
    """The parser. With `argv`, only the command it names is imported (for its arguments); the
    others are listed from COMMANDS alone, so `dermai --help` imports no command module."""
    commands = commands if commands is not None else _available()
    wanted = None if argv is None else requested_command(argv, commands)
    parser = argparse.ArgumentParser(
        prog="dermai",
        description=f"DermAI pipeline commands. {DISCLAIMER}",
    )
    parser.add_argument("--version", action="version", version=f"dermai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="full tracebacks on unexpected errors, and TensorFlow's own (C++) logs",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_) in commands.items():
        if argv is not None and name != wanted:
            sub.add_parser(name, help=help_, description=help_)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_, description=(module.__doc__ or help_).strip())
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def quiet_tensorflow(debug: bool) -> None:
    """TensorFlow's C++ startup chatter (oneDNN, CPU features, cuda probes) goes to stderr
    before any Python logging; it is only read when debugging. Must run before TF is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")
    if debug:  # io.native_stderr.quiet_native then lets the converter's and LiteRT's lines by
        os.environ["DERMAI_DEBUG"] = "1"
    for name in ("tensorflow", "absl"):  # NOTSET: a debug call after a quiet one (one process)
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.ERROR)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("DERMAI_DEBUG") == "1"
    quiet_tensorflow(debug)  # before build_parser imports the command (and maybe TensorFlow)
    # TensorFlow turns its oneDNN kernels on by itself on CPUs with AVX-512 VNNI/BF16/AMX, so the
    # same model trained elsewhere gets other float sums; off, every x86 CPU runs the Eigen
    # kernels the committed dvc.lock was made with (README: Byte-identical reruns).
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # The intra-op thread count orders float sums: 2 (this project's machine) gives every
    # machine, whatever its cores, the committed bytes; more threads are faster on a bigger
    # machine but then train other bytes (set TF_NUM_INTRAOP_THREADS yourself; docs/model.md).
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")
    parser = build_parser(argv=argv)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    die_with_parent()  # under `dvc repro`: end with DVC, never outlive it (dermai.lifecycle)
    try:
        args._run(args)
    except DermaiError as exc:
        print(f"dermai {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dermai {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"dermai {args.command}: error: {type(exc).__name__}: {first} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
