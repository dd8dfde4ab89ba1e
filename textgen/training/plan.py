"""What a training run is given (``RunPlan``) and what it gives back (``TrainingResult``).

training/run.py makes the plan, checked, without TensorFlow; training/loop.py
carries it out.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Everything a run needs, checked: where it writes, what it reads, its settings, how it starts."""

    directory: object  # a pathlib.Path: a new, empty model directory unless resuming
    text: object  # data.training_text.TrainingText
    model: object  # config.ModelConfig
    tokenizer: object  # config.TokenizerConfig
    train: object  # config.TrainConfig
    corpus: object  # config.CorpusConfig
    resume: bool = False  # continue from the directory's backup
    base: object = None  # a saved.saved_model.SavedModel to fine-tune (its weights fit ``model``)
    base_network: object = None  # the base's weights, read and checked (saved.keras_archive.Network)
    chief: bool = True  # False: a multi-worker task that trains but writes only to a temporary directory


@dataclasses.dataclass(frozen=True)
class TrainingResult:
    """What a run did: ``textgen.train`` returns it."""

    directory: object  # the model directory (None on a worker that is not the chief: it saved nothing)
    precision: str  # the dtype policy it trained in
    best_loss: float  # the saved model's loss (validation loss when there was held-out text)
    epochs: list  # metrics.json: one record per epoch, of every run of this model
    stopped_by_time_budget: bool
    stopped_by_signal: str = None  # "SIGINT" or "SIGTERM" when a signal ended the run
    kernel: str = "keras"  # the recurrent layers' training kernel: "onednn" or "keras"
