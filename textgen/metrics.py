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


def judged_loss(record):
    """The loss a model is judged by: on held-out text when there is some, else on the training text."""
    return float(record.get("val_loss", record.get("loss", math.nan)))


def epoch_line(record, *, while_training):
    """One epoch's record (metrics.json) as the line training prints, or the one ``textgen info`` lists."""
    prefix = "val_" if "val_loss" in record else ""  # the held-out figures where there are some
    head = f"epoch {record['epoch']}: loss {record['loss']:.4f}"
    head += f", val_loss {record['val_loss']:.4f}" if prefix else ""
    bits, speed = f"{record[prefix + 'bits_per_character']:.3f} bits/char", record["characters_per_second"]
    if while_training:
        perplexity = f"perplexity {record[prefix + 'perplexity']:.5g}"
        return f"{head} ({perplexity}, {bits}), {speed:,.0f} chars/s{', saved' if record['saved'] else ''}"
    return f"{head}, {bits}, {speed:,.0f} chars/s, global_step {record['global_step']:,}"
