"""The one exception type the CLI turns into a one-line reason and a non-zero exit, and the data
gate that stages past `dermai validate` refuse to pass without."""

from __future__ import annotations

from typing import Any


class DermaiError(Exception):
    """A user-facing failure: bad input, a failed gate, a missing file. Message is one line."""


def require_gate(gate: str | None) -> None:
    """Refuse to go on past a failed (or never run) data-validation gate."""
    from pathlib import Path

    if gate is not None and not Path(gate).is_file():
        raise DermaiError(
            f"data gate not passed: {gate} is missing (run `dermai validate`; it is written "
            "only when every expectation holds)"
        )


def add_gate_argument(p: Any) -> None:
    """`--gate`, for a stage that must not run on data that failed the gate (`require_gate`)."""
    p.add_argument(
        "--gate",
        default=None,
        help="file that `dermai validate` writes only when the data gates pass",
    )
