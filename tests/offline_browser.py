"""Headless Debian Chromium for the browser tests, with every request that is not local refused
(the pages must work offline; a test fails on any URL the page asked the network for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
LOCAL = ("file:", "data:", "blob:", "about:")


def block_network(context: Any, blocked: list[str]) -> None:
    """Let local URLs through a Playwright browser context; abort the rest into `blocked`."""

    def route(r: Any) -> None:
        if r.request.url.startswith(LOCAL):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
