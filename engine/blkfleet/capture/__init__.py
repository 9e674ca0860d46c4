"""Capture backends: the kernel's ftrace ``blk`` tracer (tracefs + split) and blktrace relay."""
