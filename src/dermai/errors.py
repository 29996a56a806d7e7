"""The one exception type the CLI turns into a one-line reason and a non-zero exit."""


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
