"""Typed, frozen settings for every stage, each declared once.

Each field is made by ``settings.setting(...)``: its default, its help text
and its rule (choices, an integer range or an interval) live on the field.
From there come the validation (a bad value raises ``TextgenError`` naming it
and the allowed ones, before any file is read or written), the ``textgen``
command's options (cli.py builds them from the fields) and the keywords of
``textgen.train``. One spelling throughout: the field ``seq_length`` is the
flag ``--seq-length`` and the error "seq-length must be ...".

``to_dict`` / ``from_dict`` round-trip through JSON (a saved model's
config.json); unknown keys fail rather than being silently ignored.
"""

import dataclasses
import os
import re
from typing import ClassVar

from textgen.cells import CELLS
from textgen.cluster import parse_devices
from textgen.engine_registry import ENGINES
from textgen.errors import TextgenError
from textgen.settings import Settings, check_integer, setting

# Without --epochs, train for about this many optimizer steps: 10 passes over a
# 60 kB poem collection are 80 steps and learn nothing, while 10 passes over
# 12 MB of code take hours. Steps, not passes, are what a model learns from.
# 4,000 steps of 64 windows of 50 tokens are 12.8M tokens: about 9 minutes of
# the default model on a 2-core CPU.
AUTO_EPOCH_STEPS = 4000


@dataclasses.dataclass(frozen=True)
class ModelConfig(Settings):
    """The network: Embedding -> layers x cell(units) -> Dense(vocabulary)."""

    RENAMED: ClassVar[dict] = {"num_layers": "layers", "dropout_rate": "dropout"}

    cell: str = setting("lstm", "The recurrent layer.", choices=tuple(CELLS))
    layers: int = setting(2, "Stacked recurrent layers.", integer=(1, 16))
    units: int = setting(256, "Units per recurrent layer.", integer=(1, 8192))
    embedding_dim: int = setting(64, "Token embedding size.", integer=(1, 8192))
    dropout: float = setting(0.0, "Dropout between layers.", interval="[0, 1)")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig(Settings):
    """How text becomes tokens: characters or words, and how the vocabulary is capped."""

    level: str = setting("char", "Characters, or words + punctuation + whitespace runs.", choices=("char", "word"))
    max_vocab: int | None = setting(None, "Keep only the N most frequent tokens.", integer=(2, None), optional=True)
    min_count: int = setting(1, "Drop tokens seen fewer than N times.", integer=(1, None))
    lowercase: bool = setting(False, "Lowercase the text before tokenizing.", boolean=True)


def _check_encoding(name):
    import codecs  # cheap; checks the name before any file is opened

    try:
        codec = codecs.lookup(name)
    except (LookupError, TypeError, ValueError):  # ValueError: a name with a NUL in it
        raise TextgenError(f"unknown encoding {name!r} (try utf-8, latin-1, cp1252, utf-16)") from None
    # rot13, base64, zlib, hex...: codecs that turn bytes into bytes or text into text, not bytes into text.
    if not getattr(codec, "_is_text_encoding", True):
        raise TextgenError(f"{name!r} is not a text encoding (try utf-8, latin-1, cp1252, utf-16)")
    return name


@dataclasses.dataclass(frozen=True)
class CorpusConfig(Settings):
    """Where the text comes from and how its bytes are decoded."""

    sources: tuple = setting((), "Files, directories, globs or built-in corpora.", option=False)
    encoding: str = setting("utf-8", "How to decode the files.", parse=_check_encoding)
    errors: str = setting("strict", "On undecodable bytes: fail, or replace them.", choices=("strict", "replace"))
    validation_fraction: float = setting(0.1, "Held-out tail of the corpus.", interval="[0, 0.5]")
    tfds_data_dir: str | None = setting(
        None, "Where tfds: sources are prepared.", optional=True, default_help="TFDS's own, ~/tensorflow_datasets"
    )
    tfds_download: bool = setting(False, "Download a tfds: source that is not prepared yet.", boolean=True)
    follow_links: bool = setting(
        False, "Read files that symbolic links lead out of a corpus directory (skipped otherwise).", boolean=True
    )

    def check(self):
        sources = (self.sources,) if isinstance(self.sources, (str, os.PathLike)) else tuple(self.sources)
        sources = tuple(os.fspath(source) if isinstance(source, os.PathLike) else source for source in sources)
        if not sources:
            raise TextgenError("no corpus given: name a file, directory, glob or built-in corpus")
        if not all(isinstance(source, str) and source for source in sources):
            raise TextgenError(
                f"a corpus source must be a file name, directory, glob or built-in corpus; got {sources!r}"
            )
        object.__setattr__(self, "sources", sources)
        _check_encoding(self.encoding)


def _check_devices(text):
    parse_devices(text)
    return text


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")
_SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}


def parse_duration(text):
    """Seconds in a duration such as ``90s``, ``10m``, ``1.5h`` or ``45``."""
    match = _DURATION.match(str(text))
    if not match:
        raise TextgenError(f"time budget must look like 90s, 10m or 1h; got {text!r}")
    seconds = float(match.group(1)) * _SECONDS_PER_UNIT[match.group(2)]
    if seconds <= 0:
        raise TextgenError(f"time budget must be more than zero; got {text!r}")
    return seconds


@dataclasses.dataclass(frozen=True)
class TrainConfig(Settings):
    """How the model is optimized: windows, batches, epochs, precision and budget."""

    RENAMED: ClassVar[dict] = {"learning_rate_schedule": "lr_schedule"}

    # 50, not the classic 100: twice the optimizer steps per minute. benchmarks/RESULTS.md:
    # 1.57 vs 1.71 nats/char at 95 s, 1.469 vs 1.455 at 10 minutes.
    seq_length: int = setting(50, "Tokens per training window (backpropagation through time).", integer=(1, 100_000))
    batch_size: int = setting(64, "Windows per step.", integer=(1, 1_000_000))
    epochs: int | None = setting(
        None,
        "Passes over the training text.",
        integer=(1, None),
        optional=True,
        default_help=f"enough for about {AUTO_EPOCH_STEPS:,} steps",
    )
    # benchmarks/RESULTS.md: better than 3e-3 at 95 s and at 10 min.
    learning_rate: float = setting(6e-3, "Adam's peak learning rate.", interval="(0, 10]")
    # The peak, then down to zero over the last 20% (RESULTS.md).
    lr_schedule: str = setting(
        "cooldown",
        "How the learning rate falls to zero by the end of the run (the epochs or the time budget).",
        choices=("constant", "cooldown", "linear", "cosine"),
    )
    # Stateful: row i of each batch continues row i of the batch before, and the
    # RNN state is carried over. benchmarks/RESULTS.md: better at 95 s (1.514 vs
    # 1.552 nats/char), worse at 10 minutes (1.480 vs 1.462), so off by default.
    stateful: bool = setting(
        False,
        "Carry the RNN state from each window to the next one in the text, or start every window from zeros.",
        boolean=True,
        negative_flag="--stateless",
    )
    kernel: str = setting(
        "auto",
        "The recurrent layers' training kernel: onednn (one fused oneDNN call per layer and sequence on a CPU, "
        "float32 or native bfloat16), keras (Keras's loop of ops per step), or auto (onednn where it can run).",
        choices=("auto", "onednn", "keras"),
    )
    # The global norm of all gradients together, as in PyTorch's clip_grad_norm_.
    clip_norm: float = setting(1.0, "Clip the gradients' global norm to this.", interval="(0, inf)", option=False)
    precision: str = setting(
        "auto",
        "auto: mixed_float16 on a GPU; on a CPU what measured fastest on its class: mixed_bfloat16 through the "
        "oneDNN kernel with AVX-512 BF16 or AMX, else float32.",
        choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    )
    time_budget: float | None = setting(
        None, "Stop after this long, e.g. 90s, 10m, 1h.", interval="(0, inf)", optional=True, parse=parse_duration
    )
    patience: int | None = setting(
        None, "Stop after N epochs without a better validation loss.", integer=(1, None), optional=True
    )
    checkpoint_every: int | None = setting(
        None, "Write a resumable backup every N steps (and always at the end).", integer=(1, None), optional=True
    )
    seed: int = setting(0, "Same seed, same run.", integer=(0, 2**31 - 1))
    # tf.distribute (textgen/cluster.py, hardware/strategy.py); --batch-size stays the global batch.
    strategy: str = setting(
        "auto",
        "one device, mirrored (several local devices), multi-worker (machines named by TF_CONFIG), or auto.",
        choices=("auto", "one", "mirrored", "multi-worker"),
    )
    devices: str | None = setting(
        None,
        "With --strategy mirrored: the devices, e.g. GPU:0,GPU:1 (CPU:0,CPU:1 splits the CPU, to try it).",
        optional=True,
        parse=_check_devices,
        default_help="every GPU",
    )

    def epochs_for(self, steps_per_epoch):
        """The epochs to run: as set, or enough for AUTO_EPOCH_STEPS steps (a short text gets more passes)."""
        if self.epochs is not None:
            return self.epochs
        return max(1, -(-AUTO_EPOCH_STEPS // steps_per_epoch))


@dataclasses.dataclass(frozen=True)
class SamplingConfig(Settings):
    """How text is written from a trained model.

    Random sampling applies temperature, then top-k, then top-p (nucleus), as
    the usual generate APIs do; temperature 0 is greedy; beam_width > 1 runs
    beam search instead.
    """

    temperature: float = setting(1.0, "0 = greedy; lower is safer, higher is wilder.", interval="[0, 100]")
    top_k: int | None = setting(None, "Sample only from the K likeliest tokens.", integer=(1, None), optional=True)
    top_p: float | None = setting(
        None, "Sample only from the likeliest tokens whose probability reaches P.", interval="(0, 1]", optional=True
    )
    beam_width: int = setting(1, "Above 1: beam search instead of sampling.", integer=(1, 4096))
    length_penalty: float = setting(1.0, "Beams rank by log-probability / length ** this.", interval="[0, 10]")
    num_return: int = setting(1, "How many of the best beams to print.", integer=(1, None))
    length: int = setting(500, "Tokens to write at most.", integer=(0, 10_000_000))
    prompt: str = setting("", "Text to start from (printed first).")
    stop: tuple = setting((), "End a sample at this text (not printed); repeatable.")
    num_samples: int = setting(1, "Samples written together in one batch.", integer=(1, 100_000))
    seed: int | None = setting(None, "Same seed, same text.", integer=(0, 2**32 - 1), optional=True)
    engine: str = setting(
        "auto",
        "numpy: instant start; keras: compiled TensorFlow step, for GPUs and big batches; auto: numpy.",
        choices=("auto", *ENGINES),
    )

    def check(self):
        if isinstance(self.stop, str):  # one stop string on its own
            object.__setattr__(self, "stop", (self.stop,))
        check_integer("num-return", self.num_return, 1, self.beam_width)
        if not isinstance(self.prompt, str):
            raise TextgenError(f"prompt must be text, got {self.prompt!r}")
        if not all(isinstance(text, str) and text for text in self.stop):
            raise TextgenError("stop strings must not be empty")

    @property
    def strategy(self):
        """The name of the strategy these settings select: "beam", "greedy" or "random"."""
        if self.beam_width > 1:
            return "beam"
        return "greedy" if self.temperature == 0 else "random"


# The settings of a training run, in the order `textgen train --help` lists them.
TRAINING_SETTINGS = (ModelConfig, TokenizerConfig, TrainConfig, CorpusConfig)


def training_configs(settings):
    """Split ``textgen.train``'s keyword settings into the four configs (defaults for the rest).

    Returns:
        A dict from config class to an instance: {ModelConfig: ModelConfig(...), ...}.
    """
    owners = {field.name: cls for cls in TRAINING_SETTINGS for field in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - set(owners))
    if unknown:
        raise TextgenError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(sorted(owners))}")
    return {
        cls: cls(**{key: value for key, value in settings.items() if owners[key] is cls}) for cls in TRAINING_SETTINGS
    }
