"""``blkfleet workdir``: make or check a directory for outputs, refusing one that others could change."""
