"""Helpers to run the real pipeline (`dvc repro`) in a temp copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    "pyproject.toml",
    ".dvcignore",
    "src",
    "expectations",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    "data/.gitignore",
]

# A tiny config: 4 classes, 80 images, weights none, 32 px, 1 epoch per phase.
TINY = {
    "base": {"classes": ["bcc", "bkl", "mel", "nv"]},
    "sample": {
        "n_images": 80,
        "width": 48,
        "height": 36,
        "n_exact_copies": 2,
        "n_near_duplicates": 3,
        "n_corrupt": 3,
    },
    "model": {"weights": "none", "image_height": 24, "image_width": 32},
    "train": {"head_epochs": 1, "finetune_epochs": 1, "cache_variants": 1, "batch_size": 16},
}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.update(
        {
            "DVC_NO_ANALYTICS": "1",
            "GX_ANALYTICS_ENABLED": "False",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
        }
    )
    return e


def sh(*cmd: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def make_project(dest: Path, overrides: dict | None = None) -> Path:
    for name in PROJECT_FILES:
        src = ROOT / name
        if not src.exists():
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, target)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params = merge(merge(params, TINY), overrides or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh("git", "init", "-q", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "project", cwd=dest)
    return dest


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a finished project (git repo, DVC cache, workspace outputs), so tests
    can share one pipeline run without seeing each other's changes."""
    shutil.copytree(run, dest, symlinks=True)
    return dest
