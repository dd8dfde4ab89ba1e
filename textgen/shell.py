"""Commands textgen prints for a user to paste: every argument quoted for a POSIX shell.

A model directory may be named ``evil;touch${IFS}PWNED;#``; printed unquoted in
a resume hint, pasting the hint would run ``touch``.
"""

import shlex


def shell_command(*arguments):
    """``arguments`` as one command line a POSIX shell reads back as exactly these arguments."""
    return " ".join(shlex.quote(str(argument)) for argument in arguments)


def printable(text):
    """``text`` with what UTF-8 cannot hold replaced by U+FFFD.

    A file name's bytes that are not UTF-8 reach Python as lone surrogates
    (os.fsdecode), which neither a UTF-8 terminal nor config.json can take:
    printed or saved, they made "internal error" lines.
    """
    text = str(text)
    if text.isascii():
        return text
    return "".join("\ufffd" if "\ud800" <= character <= "\udfff" else character for character in text)
