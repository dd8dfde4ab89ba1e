"""textgen's version: written into every saved model's config.json, and shown by ``textgen --version``."""

__version__ = "0.1.0"
