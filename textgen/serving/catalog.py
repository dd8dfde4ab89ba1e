"""The models a server writes with: a fixed map from model id to a loaded model and its batcher.

Each model directory is validated whole and loaded once, at start, on the NumPy
engine; a request names a model only by its id (the directory's name), so
nothing a client sends ever becomes a path.
"""

import dataclasses
from pathlib import Path

from textgen.errors import TextgenError
from textgen.generation.generator import load
from textgen.saved.layout import MODEL_FILE, SAVED_MODELS_DIRECTORY
from textgen.serving.batcher import Batcher


@dataclasses.dataclass
class ServedModel:
    id: str
    directory: Path
    generator: object  # generation.generator.Generator
    batcher: Batcher
    created: int  # when its weights were saved (seconds since 1970), for /v1/models


def model_directories(paths):
    """The directories to serve: ``paths``, or every saved model under ./saved_models."""
    if paths:
        return [Path(path) for path in paths]
    root = Path(SAVED_MODELS_DIRECTORY)
    # Hidden directories are runs still being written (saved/run_directory.py).
    found = sorted(path.parent for path in root.glob(f"*/{MODEL_FILE}") if not path.parent.name.startswith("."))
    if not found:
        raise TextgenError(f"no saved model under {root.resolve()}; train one with `textgen train CORPUS`")
    return found


class Catalog:
    """The served models by id."""

    def __init__(self, paths=(), *, max_rows=256):
        self.models = {}
        # The cancel events of the beam searches running beside the batchers (app.py), set on a stop.
        self.searches, self.stopping = set(), False
        for directory in model_directories(paths):
            model_id = directory.resolve().name
            if model_id in self.models:
                raise TextgenError(
                    f"two models are named {model_id!r} ({self.models[model_id].directory}, {directory})"
                )
            generator = load(directory, engine="numpy")
            created = int((directory / MODEL_FILE).stat().st_mtime)
            self.models[model_id] = ServedModel(
                model_id, directory, generator, Batcher(generator, max_rows=max_rows), created
            )

    def get(self, model_id):
        """The model served as ``model_id``, or None."""
        return self.models.get(model_id) if isinstance(model_id, str) else None

    def request_stop(self):
        """Have every model end its streams (each gets its final event) and every beam search stop,
        without waiting."""
        self.stopping = True
        for model in self.models.values():
            model.batcher.request_stop()
        for cancel in list(self.searches):
            cancel.set()

    def stop(self):
        """End every stream of every model and the batchers' threads."""
        for model in self.models.values():
            model.batcher.stop()
