"""What the callbacks read from the optimizer: the run's global step and the learning rate.

Both are variables of the optimizer; under tf.distribute they are
MirroredVariables, which convert only through NumPy (``int(variable)`` works
on one device alone), so every read goes through here.
"""

import keras


def optimizer_step(model):
    """The optimizer's step count: the run's global step, however many replicas hold it."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def learning_rate(model):
    """The rate the optimizer steps with now (as the last step used it, after a step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
