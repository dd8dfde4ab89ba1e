"""Where a run starts: a backup's state with its weights loaded, or a new run's, its settings written first.

Also what every worker of a cluster must agree on before the first step.
"""

import json
import platform

import keras
import tensorflow as tf

from textgen.saved.saved_model import write_settings
from textgen.training.checkpoints import RunState, restore
from textgen.version import __version__


def start(plan, model, directory):
    """The run's ``RunState``: restored from ``plan.directory``'s backup, or new (settings written to ``directory``).

    A new run from a ``base`` model (fine-tuning) starts from its weights with a
    fresh optimizer: the new text gets full-size steps from the start.
    """
    if plan.resume:
        return restore(plan.directory, model)
    versions = {
        "textgen": __version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
    }
    write_settings(
        directory,
        model=plan.model,
        tokenizer_config=plan.tokenizer,
        train=plan.train,
        corpus_config=plan.corpus,
        corpus_summary=plan.text.corpus.describe(),
        tokenizer=plan.text.tokenizer,
        versions=versions,
        base=None if plan.base is None else plan.base.directory,
    )
    if plan.base_network is not None:  # checked arrays only: no code from the base's files runs
        model.set_weights(plan.base_network.arrays)
    return RunState()


def run_description(plan, state):
    """What every worker of a cluster must agree on: settings (but the budget's length), text, vocabulary, step."""
    # The budget may differ (workers stop together), but all or none must have one: the rate follows it.
    train = {**plan.train.to_dict(), "time_budget": plan.train.time_budget is not None}
    parts = [
        plan.model.to_dict(),
        plan.tokenizer.to_dict(),
        train,
        plan.text.corpus.sha256,
        plan.text.tokenizer.vocabulary,
        state.global_step,
    ]
    return json.dumps(parts, sort_keys=True, default=str)
