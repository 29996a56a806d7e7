"""File I/O shared by stages and commands: atomic writes, image files, table schemas."""
