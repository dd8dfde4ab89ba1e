"""How a language model's loss reads: nats per token -> perplexity and bits per character.

    perplexity          exp(loss): the model is as unsure as a fair choice among this many tokens
    bits_per_character  loss / ln 2 / characters per token: comparable across char and word level

Training (each epoch's logs) and ``textgen evaluate`` both report these, from here.
"""

import math

# exp() of more than this overflows a float32 (3.4e38 = exp(88.7)), and TensorBoard stores scalars
# as float32: a run whose loss passed 88.7 died in its TensorBoard callback. A loss that high means
# "no idea" anyway.
_LARGEST_EXPONENT = 88.0


def loss_metrics(loss, characters_per_token):
    """Perplexity and bits per character for a mean loss in nats per token."""
    return {
        "perplexity": math.exp(min(loss, _LARGEST_EXPONENT)),
        "bits_per_character": loss / math.log(2) / characters_per_token,
    }
