"""What a training run is given (``RunPlan``), its size (``RunShape``) and what it gives back (``TrainingResult``).

training/run.py makes the plan, checked, without TensorFlow; training/loop.py
carries it out, with the shape computed once from the plan.
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
class RunShape:
    """The run's size, derived once from the settings and the text, and handed to whatever needs it."""

    steps_per_epoch: int  # batches in one pass over the training windows
    epochs: int  # as set, or enough for config.AUTO_EPOCH_STEPS steps
    characters_per_token: float  # 1 at the char level; the text's mean word length + space at the word level
    characters_per_batch: float  # batch * window * characters per token: turns steps/s into chars/s

    @property
    def total_steps(self):
        """Optimizer steps in the whole run, if neither the time budget nor patience ends it first."""
        return self.steps_per_epoch * self.epochs

    @classmethod
    def of(cls, plan):
        text, train = plan.text, plan.train
        steps_per_epoch = text.steps_per_epoch(train)
        characters_per_batch = train.batch_size * train.seq_length * text.characters_per_token
        return cls(steps_per_epoch, train.epochs_for(steps_per_epoch), text.characters_per_token, characters_per_batch)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What a run trains on, settled before its model is built (training/loop.py)."""

    distribution: object  # hardware.strategy.Distribution
    precision: str  # the dtype policy: float32, mixed_float16 or mixed_bfloat16
    kernel: str  # the recurrent layers' training kernel: "onednn" or "keras"


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
