"""The CLI's one kind of failure: a message for the operator, printed as one line.

Part of cli/. Anything raised as CliError ends the command with that line and its exit status:
1, or another the command documents (submit: 3 when the transaction is still pending).
"""


class CliError(Exception):
    """A failure the operator can act on; printed as `error: <message>`, never a traceback."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
