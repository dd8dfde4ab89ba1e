"""The ``textgen`` command: a thin click shell over the library.

Each command parses options into config values and calls one library
function. Heavy imports (NumPy, TensorFlow) happen inside the command bodies,
so ``textgen --help`` answers at once. A ``TextgenError`` becomes one line on
stderr and exit code 1; click's usage errors exit with 2.
"""

import json
import sys
from pathlib import Path

import click

from textgen.config import (
    AUTO_EPOCH_STEPS, CELLS, ENGINES, ERROR_HANDLERS, LEARNING_RATE_SCHEDULES, LEVELS, PRECISIONS, CorpusConfig,
    ModelConfig, SamplingConfig, TokenizerConfig, TrainConfig, parse_duration,
)
from textgen.errors import TextgenError


# The shell's convention: 128 + the signal's number.
SIGNAL_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class Duration(click.ParamType):
    """A time budget such as 90s, 10m or 1h, in seconds."""

    name = "DURATION"

    def convert(self, value, param, context):
        try:
            return parse_duration(value)
        except TextgenError as error:
            self.fail(str(error), param, context)


class TextgenGroup(click.Group):
    """Turns our errors into one line and an exit code instead of a traceback."""

    def invoke(self, context):
        try:
            return super().invoke(context)
        except TextgenError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("\nInterrupted.", err=True)
            sys.exit(130)


@click.group(cls=TextgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="textgen")
def main():
    """Train a character- or word-level RNN on any text, and write like it."""


@main.command()
@click.argument("corpus", nargs=-1, required=True)
@click.option("--name", help="Model name under ./saved_models (default: the corpus file's stem).")
@click.option("--level", type=click.Choice(LEVELS), default=TokenizerConfig.level, show_default=True)
@click.option("--cell", type=click.Choice(CELLS), default=ModelConfig.cell, show_default=True)
@click.option("--layers", type=int, default=ModelConfig.num_layers, show_default=True)
@click.option("--units", type=int, default=ModelConfig.units, show_default=True)
@click.option("--embedding-dim", type=int, default=ModelConfig.embedding_dim, show_default=True)
@click.option("--dropout", type=float, default=ModelConfig.dropout_rate, show_default=True)
@click.option("--seq-length", type=int, default=TrainConfig.seq_length, show_default=True)
@click.option("--batch-size", type=int, default=TrainConfig.batch_size, show_default=True)
@click.option("--epochs", type=int, help=f"Passes over the text [default: enough for about {AUTO_EPOCH_STEPS:,} steps]")
@click.option("--learning-rate", type=float, default=TrainConfig.learning_rate, show_default=True)
@click.option("--lr-schedule", type=click.Choice(LEARNING_RATE_SCHEDULES),
              default=TrainConfig.learning_rate_schedule, show_default=True,
              help="How the learning rate falls to zero by the end of the run (the epochs or the time budget).")
@click.option("--stateful/--stateless", default=TrainConfig.stateful, show_default=True,
              help="Carry the RNN state from each window to the next one in the text, or start every window from zeros.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=TrainConfig.precision, show_default=True)
@click.option("--time-budget", type=Duration(), help="Stop after this long, e.g. 90s, 10m, 1h.")
@click.option("--patience", type=int, help="Stop after N epochs without a better validation loss.")
@click.option("--validation-fraction", type=float, default=CorpusConfig.validation_fraction, show_default=True)
@click.option("--seed", type=int, default=TrainConfig.seed, show_default=True)
@click.option("--max-vocab", type=int, help="Keep only the N most frequent tokens.")
@click.option("--min-count", type=int, default=TokenizerConfig.min_count, show_default=True)
@click.option("--lowercase", is_flag=True, help="Lowercase the text before tokenizing.")
@click.option("--encoding", default=CorpusConfig.encoding, show_default=True)
@click.option("--errors", type=click.Choice(ERROR_HANDLERS), default=CorpusConfig.errors, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing model of the same name.")
@click.option("--checkpoint-every", type=int, help="Write a resumable backup every N steps (and always at the end).")
@click.option("--resume", is_flag=True, help="Continue the run saved as --name from its backup.")
@click.option("--from", "base", metavar="MODEL", help="Start from this model's weights and vocabulary (fine-tuning).")
@click.option("--drop-unknown", is_flag=True, help="With --from: leave out characters the model does not know.")
def train(corpus, name, level, cell, layers, units, embedding_dim, dropout, seq_length, batch_size, epochs,
          learning_rate, lr_schedule, stateful, precision, time_budget, patience, validation_fraction, seed, max_vocab, min_count,
          lowercase, encoding, errors, overwrite, checkpoint_every, resume, base, drop_unknown):
    """Train a model on CORPUS: files, directories, globs, or a built-in corpus (python-stdlib)."""
    from textgen.saved import artifacts
    from textgen.data.training_text import prepare_training_text

    if resume:
        return _resume(corpus, name, epochs=epochs, time_budget=time_budget, checkpoint_every=checkpoint_every)

    model_config = ModelConfig(cell=cell, num_layers=layers, units=units, embedding_dim=embedding_dim,
                               dropout_rate=dropout)
    tokenizer_config = TokenizerConfig(level=level, max_vocab=max_vocab, min_count=min_count, lowercase=lowercase)
    train_config = TrainConfig(seq_length=seq_length, batch_size=batch_size, epochs=epochs,
                               learning_rate=learning_rate, learning_rate_schedule=lr_schedule,
                               stateful=stateful, precision=precision, time_budget=time_budget,
                               patience=patience, checkpoint_every=checkpoint_every, seed=seed)
    corpus_config = CorpusConfig(sources=corpus, encoding=encoding, errors=errors,
                                 validation_fraction=validation_fraction)
    base_model = None
    if base is not None:  # fine-tuning: the network and vocabulary are the base model's
        base_model = artifacts.load_saved_model(base)
        model_config, tokenizer_config = base_model.model, base_model.tokenizer_config
    if name is not None:
        artifacts.check_new_model_directory(artifacts.SAVED_MODELS_DIRECTORY, name, overwrite=overwrite)
    text, train_config = prepare_training_text(corpus_config, tokenizer_config, train_config,
                                               tokenizer=base_model.tokenizer if base_model else None,
                                               drop_unknown=drop_unknown)
    name = name or artifacts.default_model_name(text.corpus.name)
    directory = artifacts.check_new_model_directory(artifacts.SAVED_MODELS_DIRECTORY, name, overwrite=overwrite)

    from textgen.training.loop import train as train_model  # TensorFlow loads here, after the input is checked

    with artifacts.new_model_directory(directory):
        result = train_model(text, directory=directory, model_config=model_config,
                             tokenizer_config=tokenizer_config, train_config=train_config, corpus_config=corpus_config,
                             base=base_model, verbose=_progress_bar())
    click.echo(f"sample from it: textgen sample {directory}")
    if result.stopped_by_signal:
        sys.exit(SIGNAL_EXIT_CODES[result.stopped_by_signal])


def _progress_bar():
    """Keras's live progress bar on a terminal only (1), else none (0).

    Written to a file or a pipe, it would print a new line with ANSI colour codes
    every step; the one line textgen prints per epoch says what a log needs.
    """
    return 1 if sys.stdout.isatty() else 0


def _resume(corpus, name, *, epochs, time_budget, checkpoint_every):
    """Continue a run from its backup; every setting but these three comes from the saved run."""
    import dataclasses

    from textgen.saved import artifacts
    from textgen.data.training_text import prepare_training_text

    if name is None:
        raise TextgenError("--resume needs --name: the run to continue, under ./saved_models")
    directory = Path(artifacts.SAVED_MODELS_DIRECTORY) / artifacts.check_model_name(name)
    saved = artifacts.load_saved_model(directory, require_weights=False)
    artifacts.read_backup(directory)  # fail now, before the corpus is read, if there is nothing to resume
    corpus_config = CorpusConfig(sources=corpus, encoding=saved.corpus.get("encoding", CorpusConfig.encoding),
                                 errors=saved.corpus.get("errors", CorpusConfig.errors),
                                 validation_fraction=saved.corpus.get("validation_fraction",
                                                                      CorpusConfig.validation_fraction))
    train_config = dataclasses.replace(saved.train, time_budget=time_budget,
                                       epochs=epochs if epochs is not None else saved.train.epochs,
                                       checkpoint_every=checkpoint_every or saved.train.checkpoint_every)
    text, train_config = prepare_training_text(corpus_config, saved.tokenizer_config, train_config,
                                               tokenizer=saved.tokenizer)
    if text.corpus.sha256 != saved.corpus.get("sha256"):
        raise TextgenError(f"the corpus is not the text {directory} was trained on (its sha256 differs); "
                           f"resume with the same files")
    from textgen.training.loop import train as train_model

    result = train_model(text, directory=directory, model_config=saved.model, tokenizer_config=saved.tokenizer_config,
                         train_config=train_config, corpus_config=corpus_config, resume=True,
                         verbose=_progress_bar())
    if result.stopped_by_signal:
        sys.exit(SIGNAL_EXIT_CODES[result.stopped_by_signal])


@main.command()
@click.argument("model", required=False)
@click.option("--temperature", type=float, default=SamplingConfig.temperature, show_default=True,
              help="0 = greedy; lower is safer, higher is wilder.")
@click.option("--top-k", type=int, help="Sample only from the K likeliest tokens.")
@click.option("--top-p", type=float, help="Sample only from the likeliest tokens whose probability reaches P.")
@click.option("--beam-width", type=int, default=SamplingConfig.beam_width, show_default=True,
              help="Above 1: beam search instead of sampling.")
@click.option("--length-penalty", type=float, default=SamplingConfig.length_penalty, show_default=True,
              help="Beams rank by log-probability / length ** this.")
@click.option("--num-return", type=int, default=SamplingConfig.num_return, show_default=True,
              help="How many of the best beams to print.")
@click.option("--length", type=int, default=SamplingConfig.length, show_default=True, help="Tokens to write at most.")
@click.option("--prompt", default=SamplingConfig.prompt, help="Text to start from (printed first).")
@click.option("--stop", multiple=True, help="End a sample at this text (not printed); repeatable.")
@click.option("--num-samples", type=int, default=SamplingConfig.num_samples, show_default=True,
              help="Samples written together in one batch.")
@click.option("--seed", type=int, help="Same seed, same text.")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--engine", type=click.Choice(ENGINES), default=SamplingConfig.engine, show_default=True,
              help="numpy: instant start; keras: compiled TensorFlow step, for GPUs and big batches.")
def sample(model, output_format, **options):
    """Write text from MODEL (default: the newest model under ./saved_models)."""
    from textgen.generation.generator import load

    settings = SamplingConfig(**options)
    generator = load(model, engine=settings.engine)
    for message in generator.prompt_warnings(settings.prompt):
        click.echo(f"Warning: {message}", err=True)
    if output_format == "text" and settings.num_samples == 1 and settings.beam_width == 1:
        _stream(settings.prompt, (pieces[0] for pieces in generator.iterate(settings)))
        return
    samples = generator.sample(settings)
    for index, result in enumerate(samples, start=1):
        if output_format == "json":
            click.echo(json.dumps({"text": settings.prompt + result.text, "prompt": settings.prompt,
                                   "strategy": settings.strategy, "settings": _reported(settings),
                                   "log_probability": result.log_probability, "tokens": result.tokens,
                                   "stopped": result.stopped}, ensure_ascii=False))
        else:
            click.echo(f"--- sample {index} of {len(samples)} (log-probability {result.log_probability:.2f}) ---")
            click.echo(settings.prompt + result.text)


def _stream(prompt, pieces):
    """Write text as it is made: flushed at each line end and at least every 50 ms."""
    import time

    out = sys.stdout
    out.write(prompt)
    flushed = time.monotonic()
    for piece in pieces:
        out.write(piece)
        if "\n" in piece or time.monotonic() - flushed > 0.05:
            out.flush()
            flushed = time.monotonic()
    out.write("\n")
    out.flush()


def _reported(settings):
    """The settings that shaped a sample, for --format json."""
    kept = ("temperature", "top_k", "top_p", "beam_width", "length_penalty", "num_return", "length", "stop",
            "num_samples", "seed", "engine")
    return {key: value for key, value in settings.to_dict().items() if key in kept}


@main.command()
@click.argument("model")
@click.argument("files", nargs=-1, required=True)
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def evaluate(model, files, output_format):
    """Score MODEL on held-out FILES, read as one stream with the state carried through."""
    from textgen.evaluation import evaluate_files
    from textgen.generation.generator import load

    generator = load(model)
    corpus = generator.saved_model.corpus
    metrics = evaluate_files(generator, files, encoding=corpus.get("encoding", "utf-8"),
                             errors=corpus.get("errors", "strict"))
    if output_format == "json":
        click.echo(json.dumps(metrics))
        return
    click.echo(
        f"loss {metrics['loss']:.4f} nats/token, perplexity {metrics['perplexity']:.3f}, "
        f"{metrics['bits_per_character']:.4f} bits/char over {metrics['tokens']:,} tokens "
        f"({metrics['characters']:,} characters)"
    )


@main.command()
@click.argument("model")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def info(model, output_format):
    """Show MODEL's settings, size, training steps and metrics per epoch."""
    from textgen.saved import artifacts

    report = artifacts.describe(artifacts.load_saved_model(model))
    if output_format == "json":
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    for section in ("model", "tokenizer", "train", "corpus"):
        settings = ", ".join(f"{key}={value}" for key, value in report[section].items())
        click.echo(f"{section}: {settings}")
    click.echo(f"parameters: {report['parameters']:,}\nglobal_step: {report['global_step']:,}")
    if report["from"]:
        click.echo(f"fine-tuned from: {report['from']}")
    for run in sorted({epoch.get("run", 1) for epoch in report["metrics"]}):
        epochs = [epoch for epoch in report["metrics"] if epoch.get("run", 1) == run]
        best = min(epoch.get("val_loss", epoch["loss"]) for epoch in epochs)
        click.echo(f"run {run}: {len(epochs)} epoch(s) to global step {epochs[-1]['global_step']:,}, "
                   f"best loss {best:.4f}")
    for epoch in report["metrics"]:
        prefix = "val_" if "val_loss" in epoch else ""
        held_out = f", val_loss {epoch['val_loss']:.4f}" if prefix else ""
        click.echo(f"epoch {epoch['epoch']}: loss {epoch['loss']:.4f}{held_out}, "
                   f"{epoch[prefix + 'bits_per_character']:.3f} bits/char, "
                   f"{epoch['characters_per_second']:,.0f} chars/s, global_step {epoch['global_step']:,}")
