"""What a conversion produced, per device and CPU file."""

from ..replayfile.ops import OP_NAMES


class FileSummary:
    """One trace file's conversion (a plain class: see run.py on start-up)."""

    def __init__(self, device, cpu, source, output, format):
        self.device, self.cpu, self.source, self.output, self.format = device, cpu, source, output, format
        self.ios = 0
        self.bunches = 0
        self.first_time = 0
        self.last_time = 0
        self.records = -1  # every record read; counted only when verbose
        self.by_op = [[0, 0] for _ in OP_NAMES]  # per op: [IOs, bytes]
        self.timing = None  # native version 2: what record.deps found for the file's device, and its IOs

    def ops(self):
        """{op name: {"ios": n, "bytes": b}} of the ops that occur."""
        return {OP_NAMES[op]: {"ios": n, "bytes": b} for op, (n, b) in enumerate(self.by_op) if n}

    @property
    def nbytes(self):
        """Bytes of every IO."""
        return sum(b for _n, b in self.by_op)

    @property
    def span_ns(self):
        return self.last_time - self.first_time if self.ios else 0

    def line(self):
        """One human line: device:cpu, IOs and bytes by op, bunches, time span."""
        ops = ", ".join(f"{n} {v['ios']} IOs/{_size(v['bytes'])}" for n, v in sorted(self.ops().items()))
        return (
            f"{self.device}:{self.cpu}: {self.ios} IOs ({ops or 'none'}), {self.bunches} bunches, "
            f"span {self.span_ns / 1e9:.6f} s -> {self.output}"
        )

    def as_dict(self):
        return {
            "device": self.device, "cpu": self.cpu, "source": self.source, "output": self.output,
            "format": self.format, "ios": self.ios, "bunches": self.bunches, "ops": self.ops(),
            "first_time_ns": self.first_time, "last_time_ns": self.last_time, "span_ns": self.span_ns,
            "timing": self.timing,
        }


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
