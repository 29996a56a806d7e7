"""Keep TensorFlow's and LiteRT's C++ log lines off the terminal unless `--debug`.

Why: below Python, TensorFlow (absl, oneDNN, the MLIR converter) and LiteRT (XNNPACK) write
straight to file descriptor 2, some of it whatever TF_CPP_MIN_LOG_LEVEL says. `quiet_native`
points fd 2 at a temp file around such a call, then passes on every line that is not C++ log
noise (a Python warning or log line written meanwhile still reaches the user) and sends the
noise to the debug log. With `DERMAI_DEBUG=1` (what `dermai --debug` sets) it does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

log = logging.getLogger(__name__)

# An absl line ("I0000 00:00:1700000000.123456   42 file.cc:12] ...", the epoch time in the
# seconds field), absl's notice before its logging is set up, the converter's quantizer
# summary, LiteRT's delegate notice, and TensorFlow's CPU-feature and oneDNN notices.
NOISE = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|fully_quantize: \d|INFO: Created TensorFlow Lite \w+ delegate"
    r"|INFO: Initialized TensorFlow Lite runtime"
    r"|\S+ \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\]"
    r"|.*oneDNN custom operations are on"
    r"|.*This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .*rebuild TensorFlow)"
)


def is_noise(line: str) -> bool:
    """True for a C++ log line of TensorFlow, absl or LiteRT (see NOISE)."""
    return bool(NOISE.match(line))


def debug_enabled() -> bool:
    return os.environ.get("DERMAI_DEBUG") == "1"


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Run the block with fd 2 captured; afterwards write its non-noise lines to stderr."""
    if debug_enabled():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines(keepends=True) if not is_noise(line)]
            dropped = len(text.splitlines()) - len(kept)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
            if dropped:
                log.debug("%d line(s) of C++ log output hidden (--debug shows them)", dropped)
