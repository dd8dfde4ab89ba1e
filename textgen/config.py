"""Typed, frozen settings for every stage, with their defaults in one place.

Each dataclass validates itself in ``__post_init__`` and raises ``TextgenError``
naming the bad value and the allowed ones, so a bad setting fails before any
file is read or written. ``to_dict`` / ``from_dict`` round-trip through JSON;
unknown keys fail rather than being silently ignored.
"""

import dataclasses
import re
from typing import Optional

from textgen.errors import TextgenError

CELLS = ("simple_rnn", "lstm", "gru")
LEVELS = ("char", "word")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
ERROR_HANDLERS = ("strict", "replace")
# How the learning rate falls over a run (see callbacks.LearningRateDecay and
# benchmarks/RESULTS.md, which chose the default).
LEARNING_RATE_SCHEDULES = ("constant", "cooldown", "linear", "cosine")
# Without --epochs, train for about this many optimizer steps: 10 passes over a
# 60 kB poem collection are 80 steps and learn nothing, while 10 passes over
# 12 MB of code take hours. Steps, not passes, are what a model learns from.
# 4,000 steps of 64 windows of 50 tokens are 12.8M tokens: about 9 minutes of
# the default model on a 2-core CPU.
AUTO_EPOCH_STEPS = 4000


def _require(condition, message):
    if not condition:
        raise TextgenError(message)


def _check_int(name, value, minimum, maximum=None):
    bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
    bad = bad or (maximum is not None and value > maximum)
    upper = f" and <= {maximum}" if maximum is not None else ""
    _require(not bad, f"{name} must be an integer >= {minimum}{upper}, got {value!r}")


def _check_choice(name, value, choices):
    _require(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")


class _JsonRoundTrip:
    """``to_dict`` / ``from_dict`` shared by the config dataclasses."""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        _require(not unknown, f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        values = dict(data)
        for key, value in values.items():
            if isinstance(value, list):  # JSON has no tuples
                values[key] = tuple(value)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class ModelConfig(_JsonRoundTrip):
    """The network: Embedding -> num_layers x cell(units) -> Dense(vocabulary)."""

    cell: str = "lstm"
    num_layers: int = 2
    units: int = 256
    embedding_dim: int = 64
    dropout_rate: float = 0.0

    def __post_init__(self):
        _check_choice("cell", self.cell, CELLS)
        _check_int("layers", self.num_layers, 1, 16)
        _check_int("units", self.units, 1, 8192)
        _check_int("embedding-dim", self.embedding_dim, 1, 8192)
        _require(
            isinstance(self.dropout_rate, (int, float)) and 0.0 <= self.dropout_rate < 1.0,
            f"dropout must be in [0, 1), got {self.dropout_rate!r}",
        )


@dataclasses.dataclass(frozen=True)
class TokenizerConfig(_JsonRoundTrip):
    """How text becomes tokens: characters or words, and how the vocabulary is capped."""

    level: str = "char"
    max_vocab: Optional[int] = None
    min_count: int = 1
    lowercase: bool = False

    def __post_init__(self):
        _check_choice("level", self.level, LEVELS)
        if self.max_vocab is not None:
            _check_int("max-vocab", self.max_vocab, 2)
        _check_int("min-count", self.min_count, 1)


@dataclasses.dataclass(frozen=True)
class CorpusConfig(_JsonRoundTrip):
    """Where the text comes from and how its bytes are decoded."""

    sources: tuple = ()
    encoding: str = "utf-8"
    errors: str = "strict"
    validation_fraction: float = 0.1

    def __post_init__(self):
        _require(len(self.sources) > 0, "no corpus given: name a file, directory, glob or built-in corpus")
        _check_choice("errors", self.errors, ERROR_HANDLERS)
        _require(
            isinstance(self.validation_fraction, (int, float)) and 0.0 <= self.validation_fraction <= 0.5,
            f"validation-fraction must be in [0, 0.5], got {self.validation_fraction!r}",
        )
        import codecs  # cheap; checks the name before any file is opened

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise TextgenError(f"unknown encoding {self.encoding!r} (try utf-8, latin-1, cp1252, utf-16)") from None


@dataclasses.dataclass(frozen=True)
class TrainConfig(_JsonRoundTrip):
    """How the model is optimized: windows, batches, epochs, precision and budget."""

    # 50, not the classic 100: twice the optimizer steps per minute. benchmarks/RESULTS.md:
    # 1.57 vs 1.71 nats/char at 95 s, 1.469 vs 1.455 at 10 minutes.
    seq_length: int = 50
    batch_size: int = 64
    epochs: Optional[int] = None  # None: enough epochs for AUTO_EPOCH_STEPS optimizer steps
    learning_rate: float = 6e-3  # benchmarks/RESULTS.md: better than 3e-3 at 95 s and at 10 min
    learning_rate_schedule: str = "cooldown"  # the peak, then down to zero over the last 20% (RESULTS.md)
    # Stateful: row i of each batch continues row i of the batch before, and the
    # RNN state is carried over. benchmarks/RESULTS.md: better at 95 s (1.514 vs
    # 1.552 nats/char), worse at 10 minutes (1.480 vs 1.462), so off by default.
    stateful: bool = False
    clip_norm: float = 1.0  # the global norm of all gradients together, as in PyTorch's clip_grad_norm_
    precision: str = "auto"
    time_budget: Optional[float] = None  # seconds of training; None = no limit
    patience: Optional[int] = None  # stop after this many epochs without a better loss; None = never
    checkpoint_every: Optional[int] = None  # write a resumable backup every N steps; None = at the end only
    seed: int = 0

    def epochs_for(self, steps_per_epoch):
        """The epochs to run: as set, or enough for AUTO_EPOCH_STEPS steps (a short text gets more passes)."""
        if self.epochs is not None:
            return self.epochs
        return max(1, -(-AUTO_EPOCH_STEPS // steps_per_epoch))

    def total_steps(self, steps_per_epoch):
        """Optimizer steps in the whole run, if neither the time budget nor patience ends it first."""
        return self.epochs_for(steps_per_epoch) * steps_per_epoch

    def __post_init__(self):
        _check_int("seq-length", self.seq_length, 1, 100_000)
        _check_int("batch-size", self.batch_size, 1, 1_000_000)
        if self.epochs is not None:
            _check_int("epochs", self.epochs, 1)
        _require(
            isinstance(self.learning_rate, (int, float)) and 0.0 < self.learning_rate <= 10.0,
            f"learning-rate must be in (0, 10], got {self.learning_rate!r}",
        )
        _check_choice("lr-schedule", self.learning_rate_schedule, LEARNING_RATE_SCHEDULES)
        _require(isinstance(self.stateful, bool), f"stateful must be true or false, got {self.stateful!r}")
        _require(self.clip_norm > 0, f"clip_norm must be > 0, got {self.clip_norm!r}")
        _check_choice("precision", self.precision, PRECISIONS)
        if self.time_budget is not None:
            _require(self.time_budget > 0, f"time-budget must be > 0 seconds, got {self.time_budget!r}")
        if self.patience is not None:
            _check_int("patience", self.patience, 1)
        if self.checkpoint_every is not None:
            _check_int("checkpoint-every", self.checkpoint_every, 1)
        _check_int("seed", self.seed, 0, 2**31 - 1)


ENGINES = ("auto", "numpy", "keras")


@dataclasses.dataclass(frozen=True)
class SamplingConfig(_JsonRoundTrip):
    """How text is written from a trained model.

    Random sampling applies temperature, then top-k, then top-p (nucleus), as
    the usual generate APIs do; temperature 0 is greedy; beam_width > 1 runs
    beam search instead.
    """

    temperature: float = 1.0
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    beam_width: int = 1
    length_penalty: float = 1.0  # beams are ranked by log-probability / length ** length_penalty
    num_return: int = 1
    length: int = 500
    prompt: str = ""
    stop: tuple = ()
    num_samples: int = 1
    seed: Optional[int] = None
    engine: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))  # a list from Python callers is fine too
        _require(
            isinstance(self.temperature, (int, float)) and 0.0 <= self.temperature <= 100.0,
            f"temperature must be in [0, 100] (0 = greedy), got {self.temperature!r}",
        )
        if self.top_k is not None:
            _check_int("top-k", self.top_k, 1)
        if self.top_p is not None:
            _require(isinstance(self.top_p, (int, float)) and 0.0 < self.top_p <= 1.0,
                     f"top-p must be in (0, 1], got {self.top_p!r}")
        _check_int("beam-width", self.beam_width, 1, 4096)
        _require(isinstance(self.length_penalty, (int, float)) and 0.0 <= self.length_penalty <= 10.0,
                 f"length-penalty must be in [0, 10], got {self.length_penalty!r}")
        _check_int("num-return", self.num_return, 1, self.beam_width)
        _check_int("length", self.length, 0, 10_000_000)
        _require(all(isinstance(text, str) and text for text in self.stop), "stop strings must not be empty")
        _check_int("num-samples", self.num_samples, 1, 100_000)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, 2**32 - 1)
        _check_choice("engine", self.engine, ENGINES)

    @property
    def strategy(self):
        """The name of the strategy these settings select (for reports)."""
        if self.beam_width > 1:
            return "beam"
        return "greedy" if self.temperature == 0 else "random"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}


def parse_duration(text):
    """Seconds in a duration such as ``90s``, ``10m``, ``1.5h`` or ``45``."""
    match = _DURATION.match(str(text))
    _require(match, f"time budget must look like 90s, 10m or 1h; got {text!r}")
    seconds = float(match.group(1)) * _SECONDS_PER_UNIT[match.group(2)]
    _require(seconds > 0, f"time budget must be more than zero; got {text!r}")
    return seconds
