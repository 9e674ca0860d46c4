"""Errors that the command line reports as one line and a non-zero exit."""


class BlkfleetError(Exception):
    """A user-facing failure: the message is printed as is, the exit code is ``exit_code``."""

    exit_code = 2


class TraceFormatError(BlkfleetError):
    """Malformed input: names the file and the byte offset of the problem."""

    def __init__(self, path, offset, problem):
        self.path = str(path)
        self.offset = offset
        self.problem = problem
        super().__init__(f"{self.path}: offset {offset}: {problem}")
