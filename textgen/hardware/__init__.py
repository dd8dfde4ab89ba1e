"""The hardware a run trains on: precision, CPU threads, oneDNN's fused kernel, tf.distribute."""
