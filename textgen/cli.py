"""The ``textgen`` command: a thin click shell over the library.

Each command's options are built from the settings' fields in config.py (name,
type, default, help), and each command calls one library function. Heavy
imports (NumPy, TensorFlow) happen inside the command bodies, so ``textgen
--help`` answers at once. A ``TextgenError`` becomes one line on stderr and
exit code 1; click's usage errors exit with 2.
"""

import errno
import json
import os
import signal
import sys

import click

from textgen.cli_options import given_options, settings_options
from textgen.config import TRAINING_SETTINGS, SamplingConfig
from textgen.errors import TextgenError
from textgen.limits import DEFAULT_MAX_STREAMS
from textgen.metrics import epoch_line, judged_loss
from textgen.native_logs import VERBOSE_VARIABLE
from textgen.shell import printable, shell_command

# The shell's convention: 128 + the signal's number.
SIGNAL_EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds as for Ctrl-C: files closed, nothing half-written."""


def _raise_terminated(number, frame):
    raise Terminated


def _silence_stdout():
    """Point stdout at /dev/null: what is still buffered for a full or closed output is dropped at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _one_line(error):
    return (str(error).splitlines() or [""])[0][:300]


def _fail(message):
    """``Error: message`` on stderr, exit 1. A file name that is not UTF-8 (its bytes kept as
    surrogates by Python) is shown with U+FFFD, where printing it as it is would raise."""
    click.echo(f"Error: {printable(message)}", err=True)
    sys.exit(1)


class TextgenGroup(click.Group):
    """Turns every failure into one line and an exit code instead of a traceback.

    Ours (``TextgenError``) name the bad input. An operating system's error (a
    full disk, a closed pipe, a file that cannot be written) is one line with
    the file. Anything else is a bug: one line that says so, and the traceback
    with ``TEXTGEN_DEBUG=1``.
    """

    def invoke(self, context):
        try:
            result = super().invoke(context)
            sys.stdout.flush()  # here, where a full or closed output is still one line, not at exit
            return result
        except TextgenError as error:
            _fail(str(error))
        except KeyboardInterrupt as interrupt:
            terminated = isinstance(interrupt, Terminated)
            click.echo(f"\n{'Terminated' if terminated else 'Interrupted'}; what was saved before is intact.", err=True)
            sys.exit(SIGNAL_EXIT_CODES["SIGTERM" if terminated else "SIGINT"])
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own: usage errors and exits
        except OSError as error:
            _silence_stdout()  # the output may be what failed (`textgen sample > /dev/full`)
            if error.errno == errno.EPIPE:
                sys.exit(1)  # the reader went away (`textgen sample | head`): nothing to say
            path = os.fsdecode(error.filename) if error.filename else None
            if error.errno == errno.ENOSPC:
                where = f" while writing {path}" if path else ""
                message = f"no space left on the device{where}; what was saved before is intact"
            else:
                message = (error.strerror or _one_line(error)) + (f": {path}" if path else "")
            _fail(message)
        except Exception as error:
            if os.environ.get("TEXTGEN_DEBUG"):
                raise
            _fail(
                f"internal error, {type(error).__name__}: {_one_line(error)} "
                f"(TEXTGEN_DEBUG=1 shows the traceback; please report it)"
            )


@click.group(cls=TextgenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="textgen")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own log lines too (or set TEXTGEN_VERBOSE=1).")
def main(verbose):
    """Train a character- or word-level RNN on any text, and write like it."""
    if verbose:
        os.environ[VERBOSE_VARIABLE] = "1"  # read where TensorFlow loads (native_logs.py)
    # SIGTERM ends a command as Ctrl-C does, in one line (training stops more gently: SignalStop).
    signal.signal(signal.SIGTERM, _raise_terminated)


@main.command()
@click.argument("corpus", nargs=-1, required=True)
@click.option("--name", help="Model name under ./saved_models (default: the corpus file's stem).")
@settings_options(*TRAINING_SETTINGS)
@click.option("--overwrite", is_flag=True, help="Replace an existing model of the same name.")
@click.option("--resume", is_flag=True, help="Continue the run saved as --name from its backup.")
@click.option("--from", "base", metavar="MODEL", help="Start from this model's weights and vocabulary (fine-tuning).")
@click.option("--drop-unknown", is_flag=True, help="With --from: leave out characters the model does not know.")
@click.pass_context
def train(context, corpus, name, overwrite, resume, base, drop_unknown, **settings):
    """Train a model on CORPUS: files, directories, globs, or a built-in corpus (python-stdlib)."""
    from textgen.training.run import train as train_model

    # Keras's live progress bar on a terminal only: written to a file or a pipe it
    # prints a new line with ANSI colour codes every step; textgen's line per epoch suffices.
    result = train_model(
        corpus,
        name=name,
        overwrite=overwrite,
        resume=resume,
        base=base,
        drop_unknown=drop_unknown,
        progress_bar=sys.stdout.isatty(),
        **given_options(context, settings),
    )
    if not resume and result.directory is not None:  # None: a cluster worker, not the chief
        click.echo(f"sample from it: {shell_command('textgen', 'sample', result.directory)}")
    if result.stopped_by_signal:
        sys.exit(SIGNAL_EXIT_CODES[result.stopped_by_signal])


def _format_option():
    return click.option(
        "--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True
    )


@main.command()
@click.argument("model", required=False)
@settings_options(SamplingConfig)
@_format_option()
def sample(model, output_format, **options):
    """Write text from MODEL (default: the newest model under ./saved_models)."""
    from textgen.generation.generator import load
    from textgen.generation.strategies import strategy_for

    settings = SamplingConfig(**options)
    generator = load(model, engine=settings.engine)
    for message in generator.prompt_warnings(settings.prompt):
        click.echo(f"Warning: {message}", err=True)
    if output_format == "text" and settings.num_samples == 1 and strategy_for(settings).stepwise:
        _stream(settings.prompt, (pieces[0] for pieces in generator.iterate(settings)))
        return
    samples = generator.sample(settings)
    for index, result in enumerate(samples, start=1):
        if output_format == "json":
            click.echo(
                json.dumps(
                    {
                        "text": settings.prompt + result.text,
                        "prompt": settings.prompt,
                        "strategy": settings.strategy,
                        "settings": _reported(settings),
                        "log_probability": result.log_probability,
                        "tokens": result.tokens,
                        "stopped": result.stopped,
                    },
                    ensure_ascii=False,
                )
            )
        else:
            click.echo(f"--- sample {index} of {len(samples)} (log-probability {result.log_probability:.2f}) ---")
            click.echo(settings.prompt + result.text)


def _stream(prompt, pieces):
    """Write text as it is made: at each line end and at least every 50 ms, one write each time.

    Gathered here, not left to the stream's buffer: with PYTHONUNBUFFERED (set in many container
    images) every character written was a system call of its own."""
    import time

    out, pending = sys.stdout, [prompt]
    flushed = time.monotonic()
    for piece in pieces:
        pending.append(piece)
        if "\n" in piece or time.monotonic() - flushed > 0.05:
            out.write("".join(pending))
            out.flush()
            pending.clear()
            flushed = time.monotonic()
    pending.append("\n")
    out.write("".join(pending))
    out.flush()


def _reported(settings):
    """The settings that shaped a sample, for --format json (the prompt has its own key)."""
    return {key: value for key, value in settings.to_dict().items() if key != "prompt"}


@main.command()
@click.argument("model")
@click.argument("files", nargs=-1, required=True)
@_format_option()
def evaluate(model, files, output_format):
    """Score MODEL on held-out FILES, read as one stream with the state carried through."""
    from textgen.evaluation import evaluate_files
    from textgen.generation.generator import load

    generator = load(model)
    saved = generator.saved_model
    metrics = evaluate_files(
        generator, files, encoding=saved.corpus_setting("encoding"), errors=saved.corpus_setting("errors")
    )
    if output_format == "json":
        click.echo(json.dumps(metrics))
        return
    click.echo(
        f"loss {metrics['loss']:.4f} nats/token, perplexity {metrics['perplexity']:.5g}, "
        f"{metrics['bits_per_character']:.4f} bits/char over {metrics['tokens']:,} tokens "
        f"({metrics['characters']:,} characters)"
    )


@main.command()
@click.argument("model")
@_format_option()
def info(model, output_format):
    """Show MODEL's settings, size, training steps and metrics per epoch."""
    from textgen.saved.saved_model import describe, load_saved_model

    report = describe(load_saved_model(model, require_weights=False))
    if output_format == "json":
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    for section in ("model", "tokenizer", "train", "corpus"):
        settings = ", ".join(f"{key}={value}" for key, value in report[section].items())
        click.echo(f"{section}: {settings}")
    click.echo(f"parameters: {report['parameters']:,}\nglobal_step: {report['global_step']:,}")
    if report["from"]:
        click.echo(f"fine-tuned from: {report['from']}")
    if not report["saved"]:
        click.echo(f"unfinished: no model saved yet, a backup at step {report['global_step']:,}; continue it with")
        click.echo(f"  {report['resume']}")
    for run in sorted({epoch.get("run", 1) for epoch in report["metrics"]}):
        epochs = [epoch for epoch in report["metrics"] if epoch.get("run", 1) == run]
        best = min(judged_loss(epoch) for epoch in epochs)
        click.echo(
            f"run {run}: {len(epochs)} epoch(s) to global step {epochs[-1]['global_step']:,}, best loss {best:.4f}"
        )
    for epoch in report["metrics"]:
        click.echo(epoch_line(epoch, while_training=False))


@main.command()
@click.argument("models", nargs=-1)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (a key is needed beyond loopback)."
)
@click.option("--port", type=int, default=8000, show_default=True, help="Port to listen on (0: any free one).")
@click.option(
    "--api-key",
    envvar="TEXTGEN_API_KEY",
    help="Require 'Authorization: Bearer KEY' on the API (or set TEXTGEN_API_KEY).",
)
@click.option(
    "--max-streams",
    type=int,
    default=DEFAULT_MAX_STREAMS,
    show_default=True,
    help="Streams one model writes at once (more get 429).",
)
def serve(models, host, port, api_key, max_streams):
    """Serve MODELS (default: every model under ./saved_models): an OpenAI-style API and a playground."""
    from textgen.serving.server import serve as serve_models

    serve_models(models, host=host, port=port, api_key=api_key, max_streams=max_streams, echo=click.echo)
