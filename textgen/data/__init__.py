"""Text in, token ids out: corpus sources, tokenizers, the window arithmetic and the tf.data pipeline."""
