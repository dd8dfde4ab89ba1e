"""Stop strings: ending a sample where the text first contains one, without ever printing it.

Text streams out piece by piece (one token's text per step), and a stop string
may arrive split over several pieces; ``StopScanner`` holds back the end of
the text that might still become one.
"""


class StopScanner:
    """One sample's text as it streams: releases it, holding back what might start a stop string."""

    def __init__(self, stop):
        self.stop = tuple(stop)
        self.pending = ""  # held back: it may be the start of a stop string
        self.released = []  # pieces shown so far
        self.stopped = False
        self.steps = 0  # tokens fed before the sample stopped

    @property
    def text(self):
        return "".join(self.released)

    def feed(self, piece):
        """Text that is safe to show now ("" if everything is held back)."""
        if self.stopped:
            return ""
        self.steps += 1
        if not self.stop:
            self.released.append(piece)
            return piece
        self.pending += piece
        found = [self.pending.find(text) for text in self.stop if text in self.pending]
        if found:
            self.stopped = True
            released, self.pending = self.pending[: min(found)], ""
        else:
            hold = max(
                (
                    size
                    for text in self.stop
                    for size in range(len(text) - 1, 0, -1)
                    if self.pending.endswith(text[:size])
                ),
                default=0,
            )
            cut = len(self.pending) - hold
            released, self.pending = self.pending[:cut], self.pending[cut:]
        self.released.append(released)
        return released

    def flush(self):
        """The held-back text, once no stop string can complete it."""
        released, self.pending = self.pending, ""
        self.released.append(released)
        return released


def cut_at_stop(text, stop):
    """``text`` up to (not including) its first stop string, and whether one was found."""
    positions = [text.find(marker) for marker in stop if marker in text]
    return (text[: min(positions)], True) if positions else (text, False)
