"""A TensorFlow Datasets split as a corpus source: ``tfds:NAME[/CONFIG][:SPLIT][#FEATURE]``.

    tfds:tiny_shakespeare                 the train split's only text feature
    tfds:imdb_reviews#text                the feature named text
    tfds:wiki40b/en:validation#text       config en, split validation
    tfds:imdb_reviews:train[:10%]#text    TFDS's split syntax: slices, train+test

The records are read in order from a prepared TFDS data directory
(``--tfds-data-dir``, default TFDS's own: $TFDS_DATA_DIR or ~/tensorflow_datasets),
as UTF-8, with line ends normalized as in files, and joined as if each were a
file of its own: each ends with a line end, then one blank line separates it
from the next. Records that are empty or only whitespace are left
out. They stream into the token store like file pieces, never all in memory.

A dataset that is not prepared is downloaded only with ``--tfds-download``
(TFDS retries an unreachable server for minutes); otherwise one line says what
to run. tensorflow_datasets is imported here only, when a tfds: source is read.
"""

import os
import re
from pathlib import Path

from textgen.data.newlines import normalize_newlines
from textgen.errors import TextgenError
from textgen.interruptible import native_wait
from textgen.native_logs import quiet_native_logs, verbose
from textgen.shell import shell_command

PREFIX = "tfds:"
PIECE_CHARACTERS = 1 << 20  # records are handed on in pieces of about this many characters

_SPELLING = re.compile(
    r"^tfds:(?P<name>[A-Za-z0-9_]+)(?:/(?P<config>[^:#/]+))?(?::(?P<split>[^#]+))?(?:#(?P<feature>.+))?$"
)


def is_tfds_source(source):
    return isinstance(source, str) and source.startswith(PREFIX)


class TfdsSource:
    """One split of one TFDS dataset, read as text. ``str()`` gives its spelling back."""

    def __init__(self, spelling, *, data_dir=None, download=False):
        match = _SPELLING.match(spelling)
        if not match:
            raise TextgenError(
                f"{spelling!r} is not a TFDS source; spell it tfds:NAME[/CONFIG][:SPLIT][#FEATURE], "
                f"e.g. tfds:imdb_reviews:train#text"
            )
        self.name, self.config = match["name"], match["config"]
        self.split, self.feature = match["split"] or "train", match["feature"]
        self.data_dir, self.download = data_dir, download
        self._builder = None

    def __str__(self):
        config = f"/{self.config}" if self.config else ""
        return f"{PREFIX}{self.name}{config}:{self.split}#{self.feature or self.text_feature()}"

    def builder(self):
        """The TFDS builder, prepared (or a one-line ``TextgenError`` saying what to do)."""
        if self._builder is not None:
            return self._builder
        with quiet_native_logs():  # TFDS loads TensorFlow, whose start-up log is not the user's to act on
            import tensorflow  # noqa: F401
            import tensorflow_datasets as tfds

        _quiet_tfds(tfds)
        where = self.data_dir or "TFDS's default data directory"
        try:
            with quiet_native_logs():
                builder = tfds.builder(self.name, config=self.config, data_dir=self.data_dir)
        except tfds.core.registered.DatasetNotFoundError:
            config = f" with config {self.config!r}" if self.config else ""
            raise TextgenError(
                f"no TFDS dataset {self.name!r}{config}: it is neither one TFDS knows nor prepared in {where}"
            ) from None
        except (ValueError, AssertionError) as error:  # an unknown config, a damaged dataset_info.json
            raise TextgenError(f"TFDS cannot open {self.name}: {_first_line(error)}") from None
        if not builder.is_prepared():
            self._prepare(builder, where)
        self._builder = builder
        return builder

    def _prepare(self, builder, where):
        directory = self.data_dir or "~/tensorflow_datasets"
        dataset = f"{self.name}{f'/{self.config}' if self.config else ''}"
        # The default stays ~/... unquoted, so that the shell expands it.
        where_to = shell_command(self.data_dir) if self.data_dir else directory
        command = f"{shell_command('tfds', 'build', dataset, '--data_dir')} {where_to}"
        if not self.download:
            raise TextgenError(
                f"{PREFIX}{self.name} is not prepared in {where}; add --tfds-download to download it, "
                f"or run `{command}` where there is network and copy {directory}/{self.name} here"
            )
        try:
            # TFDS retries an unreachable server for minutes: Ctrl-C and SIGTERM end that at once.
            with native_wait(f"downloading and preparing {PREFIX}{self.name}"):
                builder.download_and_prepare()
        except Exception as error:  # network, disk, a dataset needing manual files: TFDS's reasons vary
            raise TextgenError(
                f"could not download {PREFIX}{self.name} ({_first_line(error)}); run `{command}` where there "
                f"is network and copy {directory}/{self.name} here"
            ) from None

    def text_feature(self):
        """The feature read: the one named, or the dataset's only text feature."""
        texts = sorted(name for name, feature in self.builder().info.features.items() if _is_text(feature))
        if self.feature:
            if self.feature not in texts:
                shown = ", ".join(texts) or "none"
                raise TextgenError(f"{PREFIX}{self.name} has no text feature {self.feature!r} (text features: {shown})")
            return self.feature
        if len(texts) != 1:
            shown = ", ".join(texts) or "none"
            raise TextgenError(f"{PREFIX}{self.name} has {len(texts)} text features ({shown}); name one with #FEATURE")
        return texts[0]

    def fingerprint(self):
        """What identifies the records for the store's key: the spelling, the prepared files' sizes and times."""
        directory = Path(self.builder().data_dir)
        files = sorted(path for path in directory.iterdir() if path.is_file())
        return [str(self), str(directory.resolve())] + [[path.name, *_size_and_time(path)] for path in files]

    def pieces(self, errors="strict"):
        """The split's text in pieces: each record normalized and ended as the module docstring says."""
        import tensorflow_datasets as tfds

        feature = self.text_feature()
        try:
            records = tfds.load(
                self.name if not self.config else f"{self.name}/{self.config}",
                split=self.split,
                data_dir=self.data_dir,
                download=False,
                shuffle_files=False,
            )
        except (ValueError, AssertionError, KeyError) as error:  # a split it does not have, a bad slice
            raise TextgenError(f"TFDS cannot read {self}: {_first_line(error)}") from None
        held, size = [], 0
        for number, record in enumerate(records.as_numpy_iterator()):
            try:
                text = record[feature].decode("utf-8", errors=errors)
            except UnicodeDecodeError as error:
                raise TextgenError(
                    f"{self}: record {number} is not valid UTF-8 at byte {error.start}; pass --errors replace"
                ) from None
            text = normalize_newlines(text)
            if not text.strip():
                continue
            held.append((text if text.endswith("\n") else text + "\n") + "\n")  # the record, then a blank line
            size += len(held[-1])
            if size >= PIECE_CHARACTERS:
                yield "".join(held)
                held, size = [], 0
        if held:
            yield "".join(held)


def _quiet_tfds(tfds):
    """TFDS's progress bars and absl warnings, off unless textgen is verbose (they are not the user's to act on)."""
    if verbose():
        return
    import absl.logging

    tfds.disable_progress_bar()
    absl.logging.set_verbosity(absl.logging.ERROR)


def _is_text(feature):
    import tensorflow_datasets as tfds

    if isinstance(feature, tfds.features.Text):
        return True
    return isinstance(feature, tfds.features.Tensor) and feature.shape == () and feature.np_dtype.kind in "SUO"


def _size_and_time(path):
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
