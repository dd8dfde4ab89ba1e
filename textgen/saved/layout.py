"""The saved-model directory's layout: its file names and its one format version.

    saved_models/NAME/
      config.json          {"format_version", "from", "model", "tokenizer", "train", "corpus", "versions"}
      tokenizer.json       {"format_version", "kind", "lowercase", "unknown_token", "vocabulary"}
      model.keras          Keras 3 archive: config.json + model.weights.h5 (+ optimizer state)
      metrics.json         one entry per epoch
      backup.json          where `--resume` starts: global step, best loss, history, weights file
      backup-N.weights.h5  weights and optimizer state at global step N
      logs/                TensorBoard event files (train/, validation/, samples/)

Every name lives here and nowhere else; the other modules of ``saved/`` read and
write these files.
"""

import re

# One version for the whole directory: config.json and tokenizer.json both carry it.
FORMAT_VERSION = 1

SAVED_MODELS_DIRECTORY = "saved_models"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
BACKUP_FILE = "backup.json"
LOGS_DIRECTORY = "logs"
SAMPLES_LOGS = "samples"  # under logs/: the TensorBoard text samples written each epoch

BACKUP_WEIGHTS = re.compile(r"^backup-(\d+)\.weights\.h5$")


def backup_weights_name(global_step):
    """The weights file of the backup taken at ``global_step``."""
    return f"backup-{global_step}.weights.h5"
