"""The pipeline's own paths, read from dvc.yaml: the one place paths live.

Commands outside the pipeline (predict, serve, evaluate-external) default to the files the
pipeline wrote, e.g. the train stage's `--model`, without repeating the path in code.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from dermai.errors import DermaiError

DVC_YAML = "dvc.yaml"


def stage_option(stage: str, option: str, dvc_yaml: str | Path = DVC_YAML) -> str:
    """The value that `option` (e.g. "--model") has in `stage`'s cmd in dvc.yaml."""
    import yaml

    path = Path(dvc_yaml)
    if not path.is_file():
        raise DermaiError(
            f"no {option} given and no {path} here to take the pipeline's "
            f"{stage} {option} from; pass {option} or run from the project root"
        )
    cmd = (
        (yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        .get("stages", {})
        .get(stage, {})
        .get("cmd", "")
    )
    argv = shlex.split(" ".join(cmd) if isinstance(cmd, list) else str(cmd))
    for i, word in enumerate(argv):
        if word == option and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    raise DermaiError(f"{path}: stage {stage!r} has no {option} in its cmd; pass {option}")


def pipeline_file(stage: str, option: str, given: str | None) -> str:
    """`given` if set, else the pipeline's path for `stage`'s `option`, which must exist."""
    if given:
        return given
    path = stage_option(stage, option)
    if not Path(path).exists():
        raise DermaiError(
            f"{path} not found (the {stage} stage's {option} in {DVC_YAML}); "
            f"run `dvc repro {stage}` or pass {option}"
        )
    return path
