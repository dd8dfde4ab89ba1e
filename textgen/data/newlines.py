"""Line ends as textgen reads every text: CRLF and bare CR become ``\\n``, and a leading BOM goes.

Files (data/corpus.py) arrive in pieces, TFDS records (data/tfds_source.py) whole;
both pass through ``NewlineStream``, so the rule is written once.
"""


class NewlineStream:
    """Normalizes a text that arrives in pieces; the pieces' concatenation is the whole text normalized.

    A CR at the end of a piece waits for the next one: CR LF split between two
    reads is still one line end.
    """

    def __init__(self):
        self.held_cr = ""
        self.at_start = True

    def piece(self, text, *, final=False):
        """``text`` normalized, less a trailing CR that waits for the next piece (unless ``final``)."""
        if self.at_start and text:
            text, self.at_start = text.removeprefix("\ufeff"), False
        text = self.held_cr + text
        self.held_cr = "\r" if not final and text.endswith("\r") else ""
        if self.held_cr:
            text = text[:-1]
        return text.replace("\r\n", "\n").replace("\r", "\n")


def normalize_newlines(text):
    """CRLF and bare CR become ``\\n``; a leading BOM is dropped."""
    return NewlineStream().piece(text, final=True)
