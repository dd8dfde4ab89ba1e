"""A patch of Keras 3.15's trainer, so ``model.fit`` runs under MultiWorkerMirroredStrategy (keras#20585).

It sits here alone, as the house asks of a library patch; tests/test_distribution.py
trains two loopback workers through it, and fails when Keras changes either of the
two methods it replaces.
"""


def fit_under_multi_worker(model, strategy):
    """Make ``model.fit`` and ``evaluate`` of ``model`` work under a MultiWorkerMirroredStrategy.

    Keras 3.15's fit fails under MultiWorkerMirroredStrategy in two places
    (its MirroredStrategy path is fine), found by reading the traceback:

    1. Before training, ``_maybe_symbolic_build`` takes one batch of *data*
       and averages it across workers with ``strategy.reduce`` only to learn
       its shapes; the collective reduce cannot convert the PerReplica it is
       given ("Attempt to convert a value (PerReplica ...) to a Tensor"). A
       local replica's batch has the same shapes and needs no reduce.
    2. After each step, ``reduce_per_replica`` averages every metric across
       workers with ``strategy.reduce("MEAN", value, axis=0)``, and a scalar
       has no axis 0. The step functions here return scalars with one axis,
       shape (1,), which that reduce averages into the scalar Keras expects.

    Both are replaced on this model object only, not in Keras.
    """
    import tensorflow as tf
    from keras import tree

    def local(value):  # one replica's part of a distributed value: same shapes and dtypes
        distributed = isinstance(value, tf.distribute.DistributedValues)
        return strategy.experimental_local_results(value)[0] if distributed else value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(local, next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def with_one_axis(step):
        def stepped(data):
            outputs = step(data)
            return tree.map_structure(
                lambda v: tf.reshape(v, [1]) if tf.is_tensor(v) and v.shape.rank == 0 else v, outputs
            )

        return stepped

    model._maybe_symbolic_build = maybe_symbolic_build
    model.train_step = with_one_axis(model.train_step)
    model.test_step = with_one_axis(model.test_step)
    return model
