"""Reshaping traces for a target (``blkfleet transform``, and ``bundle create`` with the same options): time window,
operation filter, device renames and merges, LBA shift, scale, wrap-around and alignment, time scaling, and
mixing several traces with their own start offsets and rates."""
