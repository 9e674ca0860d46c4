"""``blkfleet job``: status, lease renewal and stop of a replay started with ``--run-id`` (logic: replay.job)."""
