"""What a run says at its start and at its end, and the ``TrainingResult`` it returns."""

import math

from textgen.errors import TextgenError
from textgen.saved.layout import LOGS_DIRECTORY, MODEL_FILE
from textgen.shell import shell_command
from textgen.training.plan import TrainingResult

# Vocabularies above this size get a hint about --max-vocab at the start of training.
LARGE_VOCABULARY = 10_000


def announce(plan, shape, model, hardware, state, *, echo):
    """The run's first lines: the network, the path it trains on, its length; where to watch it."""
    text, config = plan.text, plan.model
    echo(
        f"training a {config.layers}x{config.units} {config.cell} ({model.count_params():,} parameters, "
        f"{text.tokenizer.vocabulary_size} tokens, {hardware.precision}, {hardware.kernel} kernel) on "
        f"{len(text.train_ids):,} tokens; {shape.epochs} epochs of {shape.steps_per_epoch} steps"
    )
    if plan.resume:
        epoch, within = divmod(state.global_step, shape.steps_per_epoch)
        echo(f"resuming at global step {state.global_step:,}: epoch {epoch + 1}, step {within}")
    if text.tokenizer.vocabulary_size > LARGE_VOCABULARY and plan.tokenizer.max_vocab is None:
        # The output layer costs vocabulary x units per token; past ~10k tokens it dominates each step.
        echo(
            f"note: {text.tokenizer.vocabulary_size:,} tokens make the output layer the slowest part; "
            f"--max-vocab {LARGE_VOCABULARY} or --min-count 2 trains faster"
        )
    if plan.chief:  # other workers log to a temporary directory
        echo(f"watch it learn: {shell_command('tensorboard', '--logdir', plan.directory / LOGS_DIRECTORY)}")


def report(plan, output, state, hardware, callbacks, *, echo):
    """The run's last lines and its ``TrainingResult``; one line (an error) when it saved no model at all."""
    if callbacks.stopped_by_another:
        echo("stopped with the other workers: one of them reached its time budget or was interrupted")
    if plan.chief and (not output.published or not (plan.directory / MODEL_FILE).exists()):
        intact = f"; the previous model in {plan.directory} is intact" if output.staged else ""
        raise TextgenError(
            f"training diverged (the loss became NaN or infinite) before any model was saved{intact}; "
            f"try a lower --learning-rate"
        )
    if state.history and not math.isfinite(state.history[-1]["loss"]):
        echo(f"stopped: the loss became NaN in epoch {state.history[-1]['epoch']}; kept the last good model")
    budget, interruption = callbacks.budget, callbacks.interruption
    if interruption.received:
        echo(f"stopped by {interruption.received}")
    elif budget.expired:
        echo(f"time budget of {plan.train.time_budget:g}s reached")
    if plan.chief:
        echo(f"saved the best model (loss {state.best_loss:.4f}) to {plan.directory}")
    else:  # a cluster's other worker: its files were temporary
        echo("this worker's part is done; the chief saved the model")
    return TrainingResult(
        directory=plan.directory if plan.chief else None,
        precision=hardware.precision,
        best_loss=state.best_loss,
        epochs=state.history,
        stopped_by_time_budget=budget.expired,
        stopped_by_signal=interruption.received,
        kernel=hardware.kernel,
    )
