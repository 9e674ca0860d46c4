"""Foreign block traces in: fio iologs, blkparse text, SNIA MSR Cambridge, Alibaba and Tencent CBS CSV, and CSV
with a column mapping, read in blocks of whole lines and turned into columns of IOs (``blkfleet import``)."""
