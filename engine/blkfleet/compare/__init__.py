"""``blkfleet compare``: fidelity of a replay against the original capture (matched IO by IO)."""
