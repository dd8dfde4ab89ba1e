"""The one exception class textgen raises for user errors."""


class TextgenError(ValueError):
    """A problem with what the user asked for: a bad option, file or model.

    The message is one line that names the bad value and, where it helps, the
    allowed ones. The CLI prints it as ``Error: <message>`` and exits with 1.
    """
