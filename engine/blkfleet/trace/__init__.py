"""blktrace binary records: read, write, select queued IOs, find per-CPU files."""

from .reader import TraceReader, detect, read_records
from .record import TraceRecord
from .writer import TraceWriter

__all__ = ["TraceReader", "TraceRecord", "TraceWriter", "detect", "read_records"]
