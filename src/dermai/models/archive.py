"""Save a Keras model as a byte-reproducible `.keras` archive.

`model.save` stamps the archive with the save time twice (the zip entry date of the weights and
`date_saved` in metadata.json), and config.json holds `shared_object_id`s that are Python `id()`s
(memory addresses, different in every process), so two identical trainings gave different bytes
and DVC could not tell them apart. The archive is rewritten with sorted entries, a fixed entry
date and mode, no save date, and shared-object ids renumbered 1, 2, ... in order of first
appearance (Keras only matches equal ids); Keras loads it as before.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermai.io.atomic import atomic_path

if TYPE_CHECKING:
    import keras

FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold
FIXED_MODE = 0o644
VOLATILE_METADATA = ("date_saved",)


def renumber_shared_ids(config: Any) -> Any:
    """Replace each `shared_object_id` (an `id()`) by its rank of first appearance."""
    ranks: dict[Any, int] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "shared_object_id" and not isinstance(value, (dict, list)):
                    out[key] = ranks.setdefault(value, len(ranks) + 1)
                else:
                    out[key] = walk(value)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(config)


def normalise_archive(src: str | Path, dst: str | Path) -> None:
    """Copy zip `src` to `dst` deterministically: sorted entries, fixed dates and permissions."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in sorted(zin.infolist(), key=lambda i: i.filename):
            data = zin.read(info)
            if info.filename == "config.json":
                data = json.dumps(renumber_shared_ids(json.loads(data))).encode()
            elif info.filename == "metadata.json":
                meta = json.loads(data)
                for key in VOLATILE_METADATA:
                    meta.pop(key, None)
                data = json.dumps(meta, sort_keys=True).encode()
            out = zipfile.ZipInfo(info.filename, date_time=FIXED_DATE)
            out.compress_type = info.compress_type
            out.external_attr = FIXED_MODE << 16
            out.create_system = 3  # unix, whatever the host
            zout.writestr(out, data)


def save_keras(model: keras.Model, path: str | Path) -> None:
    """Atomic, deterministic `model.save` (Keras insists on the .keras suffix for the temp)."""
    path = Path(path)
    with (
        tempfile.TemporaryDirectory(prefix="dermai-keras-") as raw_dir,
        atomic_path(path, suffix=".keras") as tmp,
    ):
        raw = Path(raw_dir) / path.name
        model.save(raw)
        normalise_archive(raw, tmp)


def load_keras(path: str | Path) -> keras.Model:
    """Load a trained `.keras` model for inference (`compile=False`).

    Imports the module that registers DermAI's own losses first: Keras resolves the saved
    training loss even when it does not compile, so a model trained with
    `train.imbalance: logit_adjust` failed to load in a fresh process (evaluate did, on HAM10000).
    """
    import keras

    from dermai.models.classifier import LogitAdjustedCrossentropy  # registers it

    # Archives saved before the registration name the class without the "dermai>" package.
    legacy = {"LogitAdjustedCrossentropy": LogitAdjustedCrossentropy}
    return keras.saving.load_model(Path(path), custom_objects=legacy, compile=False)
