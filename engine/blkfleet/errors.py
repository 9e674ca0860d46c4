"""Errors that the command line reports as one line and a non-zero exit."""

from . import codes


class BlkfleetError(Exception):
    """A user-facing failure: the message is printed as is. ``code`` is its protocol error code (blkfleet.codes;
    ``invalid_input`` unless the raiser or a subclass names another), ``details`` extra members of the protocol's
    error object; the exit code follows from the code."""

    code = "invalid_input"

    def __init__(self, message="", code=None, **details):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.details = details

    @property
    def exit_code(self):
        return codes.exit_code(self.code)


class TraceFormatError(BlkfleetError):
    """Malformed input: names the file and the byte offset of the problem."""

    def __init__(self, path, offset, problem):
        self.path = str(path)
        self.offset = offset
        self.problem = problem
        super().__init__(f"{self.path}: offset {offset}: {problem}", path=self.path, offset=offset)
