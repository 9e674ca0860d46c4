"""``blkfleet device info``: what a host's block devices are and hold, and what the host offers blkfleet (CPUs,
kernel tracing, Linux AIO, io_uring): the facts the Ansible collection reports, from the engine's own code."""
