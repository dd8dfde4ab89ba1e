"""Commands textgen prints for a user to paste: every argument quoted for a POSIX shell.

A model directory may be named ``evil;touch${IFS}PWNED;#``; printed unquoted in
a resume hint, pasting the hint would run ``touch``.
"""

import shlex


def shell_command(*arguments):
    """``arguments`` as one command line a POSIX shell reads back as exactly these arguments."""
    return " ".join(shlex.quote(str(argument)) for argument in arguments)
