"""The one exception type the CLI turns into a one-line reason and a non-zero exit."""


class DermaiError(Exception):
    """A user-facing failure: bad input, a failed gate, a missing file. Message is one line."""
