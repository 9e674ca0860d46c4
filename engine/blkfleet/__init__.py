"""blkfleet: block-IO capture, conversion and faithful replay, driven by Ansible."""

__version__ = "0.1.0"
