"""Traces out, for fio: an iolog (version 3) that replays the same IOs, and a job file that approximates the
workload (``blkfleet export``)."""
