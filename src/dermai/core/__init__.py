"""Pure core: hashing, grouping, splitting and metrics. No file or network I/O here."""
