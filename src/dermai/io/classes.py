"""The resolved class list that `dermai index` writes and every later stage follows."""

from __future__ import annotations

import json
from pathlib import Path

from dermai.errors import DermaiError


def read_classes(path: str | Path | None, configured: list[str]) -> list[str]:
    """The one resolved class list: `dermai index` writes it (data/index/classes.json) from
    base.classes, or, when that is empty, from the classes found after index.class_map."""
    if path is None:
        if not configured:
            raise DermaiError(
                "base.classes is empty: pass --classes data/index/classes.json "
                "(written by `dermai index`)"
            )
        return list(configured)
    path = Path(path)
    if not path.is_file():
        raise DermaiError(f"class list not found: {path} (run `dermai index` first)")
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))["classes"]
    except (ValueError, KeyError, TypeError) as exc:
        raise DermaiError(f'{path} is not a class list ({{"classes": [...]}})') from exc
    if not classes or not all(isinstance(c, str) and c for c in classes):
        raise DermaiError(f"{path}: the class list is empty or has a blank name")
    return list(classes)
