"""The replay engine: per-CPU workers issuing timed direct IO through pluggable IO engines."""
