"""Workload characterization (``blkfleet stats``): what a trace does per device and operation, in memory that
does not grow with its length."""
