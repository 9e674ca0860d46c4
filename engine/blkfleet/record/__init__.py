"""The converter: blktrace traces into replay files (btrecord-compatible or native)."""
