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
from collections.abc import Sequence

from dermai import DISCLAIMER, __version__
from dermai.errors import DermaiError

# command -> (module, one-line help). Order is pipeline order.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": ("dermai.stages.sample", "generate the deterministic synthetic sample dataset"),
    "index": ("dermai.stages.index", "index raw images: labels, hashes, sizes; report rejects"),
    "dedup": ("dermai.stages.dedup", "find exact/perceptual duplicates and build leakage groups"),
    "split": ("dermai.stages.split", "leakage-safe stratified train/val/test split"),
    "validate": ("dermai.stages.validate", "run the Great Expectations data gates"),
    "pretrained": ("dermai.stages.pretrained", "convert packaged ImageNet Lite0 weights to Keras"),
    "tfrecords": ("dermai.stages.tfrecords", "write sharded TFRecords per split"),
    "train": ("dermai.stages.train", "two-phase fine-tuning with class-imbalance handling"),
    "evaluate": ("dermai.stages.evaluate", "metrics with CIs, subgroups, calibration"),
    "export": ("dermai.stages.export", "TFLite float32 and int8 export with parity checks"),
    "predict": ("dermai.commands.predict", "predict conditions for images (not a diagnosis)"),
    "evaluate-external": ("dermai.commands.evaluate_external",
                          "the evaluate metrics on any labelled image folder"),
    "serve": ("dermai.stages.serve", "local demo web app (not a diagnosis)"),
    "export-web": ("dermai.commands.export_web",
                   "static offline web app that runs the model on the device"),
}

log = logging.getLogger("dermai")


def _available() -> dict[str, tuple[str, str]]:
    """Commands whose module exists in this checkout."""
    out = {}
    for name, (module, help_) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = (module, help_)
    return out


def build_parser(commands: dict[str, tuple[str, str]] | None = None) -> argparse.ArgumentParser:
    commands = commands if commands is not None else _available()
    parser = argparse.ArgumentParser(
        prog="dermai",
        description=f"DermAI pipeline commands. {DISCLAIMER}",
    )
    parser.add_argument("--version", action="version", version=f"dermai {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks on unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_) in commands.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_, description=(module.__doc__ or help_).strip())
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    debug = args.debug or os.environ.get("DERMAI_DEBUG") == "1"
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
