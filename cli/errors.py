"""The CLI's one kind of failure: a message for the operator, printed as one line.

Part of cli/. Anything raised as CliError ends the command with that line and exit status 1.
"""


class CliError(Exception):
    """A failure the operator can act on; printed as `error: <message>`, never a traceback."""
