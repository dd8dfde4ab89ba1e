"""The tf.distribute strategy a run trains under, made from the cluster's description (textgen/cluster.py).

``Distribution`` is what the rest of training asks of it: replicas, the chief,
a scope, the datasets per worker, and one collective (``gather``) for the
callbacks that keep workers in step. Keras's own fit needs two patches under
multi-worker: hardware/keras_patches.py.
"""

import dataclasses
import hashlib

from textgen.cluster import ROLES, Cluster, cluster_timeout, parse_devices
from textgen.errors import TextgenError
from textgen.hardware.keras_patches import fit_under_multi_worker
from textgen.hardware.rendezvous import wait_for_cluster
from textgen.interruptible import native_wait


@dataclasses.dataclass
class Distribution:
    """The strategy a run trains under, and what the rest of training needs to know of it."""

    kind: str  # one, mirrored or multi-worker
    strategy: object  # a tf.distribute.Strategy (TensorFlow's default one for "one")
    cluster: Cluster = None  # multi-worker only
    _gather: object = dataclasses.field(default=None, repr=False)  # gather's compiled function, made once

    @property
    def replicas(self):
        return self.strategy.num_replicas_in_sync

    @property
    def local_replicas(self):
        """Replicas in this process (a worker's devices)."""
        return len(self.strategy.extended.worker_devices) if self.kind != "one" else 1

    @property
    def is_chief(self):
        return self.cluster is None or self.cluster.is_chief

    def scope(self):
        return self.strategy.scope()

    def describe(self):
        """ "mirrored over 2 devices", "multi-worker: 2 workers, 2 replicas, this is the chief"; "" for one."""
        if self.kind == "mirrored":
            return f"mirrored over {self.replicas} devices"
        if self.kind == "multi-worker":
            this = "the chief" if self.is_chief else f"{self.cluster.role} {self.cluster.index}"
            return f"multi-worker: {len(self.cluster.tasks)} workers, {self.replicas} replicas, this is {this}"
        return ""

    def gather(self, number):
        """Every replica's ``number`` (float64), as a NumPy array: a collective, so every worker must call it."""
        import tensorflow as tf

        if self._gather is None:

            @tf.function
            def gather(value):  # () -> (replicas,)
                # all_gather, not all_reduce: under multi-worker an all_reduce of this value
                # failed in TF 2.21 with "destinations can not be empty".
                mine = lambda value: tf.distribute.get_replica_context().all_gather(value[tf.newaxis], axis=0)  # noqa: E731
                return self.strategy.experimental_local_results(self.strategy.run(mine, args=(value,)))[0]

            self._gather = gather
        return self._gather(tf.constant(number, tf.float64)).numpy()

    def check_same_run(self, description):
        """Multi-worker: train only if every worker has the same ``description`` (settings, text, step).

        A worker started with other settings would build other variables, and
        its first all-reduce would fail obscurely or wait forever.
        """
        if self.kind != "multi-worker":
            return
        digest = float(int(hashlib.sha256(description.encode()).hexdigest()[:13], 16))  # 52 bits: exact in float64
        if len(set(self.gather(digest).tolist())) != 1:
            raise TextgenError(
                "the workers were not started alike: their settings, corpus or resumed step differ; "
                "run the same textgen command, on the same files, on every worker"
            )

    def adapt_model(self, model):
        """``model`` made to train under this strategy: Keras's fit needs a patch under multi-worker only."""
        return fit_under_multi_worker(model, self.strategy) if self.kind == "multi-worker" else model

    def datasets(self, make_dataset):
        """The training data: ``make_dataset(replicas)`` (see data/dataset.py's ``replicas``) per worker."""
        if self.kind == "one":
            return make_dataset(None)
        local, total = self.local_replicas, self.replicas

        def worker_dataset(context):
            return make_dataset((context.input_pipeline_id * local, local, total))

        return self.strategy.distribute_datasets_from_function(worker_dataset)


def start_distribution(kind, cluster, train_config, *, gpus):
    """The strategy of ``plan_distribution``'s kind, made (before any TensorFlow operation runs)."""
    import tensorflow as tf

    if kind == "one":
        return Distribution("one", tf.distribute.get_strategy())
    if kind == "mirrored":
        return Distribution("mirrored", tf.distribute.MirroredStrategy(_mirrored_devices(train_config.devices, gpus)))
    return Distribution("multi-worker", _multi_worker_strategy(cluster), cluster)


def _mirrored_devices(devices, gpus):
    import tensorflow as tf

    if devices is None:
        if gpus < 2:
            raise TextgenError(
                f"--strategy mirrored needs two or more devices; this machine has {gpus} GPU(s): use "
                f"--strategy one, or --devices CPU:0,CPU:1 to try it on the CPU"
            )
        return [f"/device:GPU:{number}" for number in range(gpus)]
    wanted = parse_devices(devices)
    if len(wanted) < 2:
        raise TextgenError(f"--strategy mirrored needs two or more devices; --devices names {len(wanted)}")
    for kind, number in wanted:
        if kind == "GPU" and number >= gpus:
            raise TextgenError(f"--devices names GPU:{number}, but this machine has {gpus} GPU(s)")
    cpus = max((number + 1 for kind, number in wanted if kind == "CPU"), default=0)
    if cpus > 1:  # the CPU split into logical devices, one per replica: to try mirrored without GPUs
        physical = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(physical, [tf.config.LogicalDeviceConfiguration()] * cpus)
        except RuntimeError:  # the runtime started already (a second run in one process)
            if len(tf.config.list_logical_devices("CPU")) < cpus:
                raise TextgenError(
                    f"--devices names {cpus} CPUs, but TensorFlow already started with fewer in this process"
                ) from None
    return [f"/device:{kind}:{number}" for kind, number in wanted]


def _multi_worker_strategy(cluster):
    import tensorflow as tf
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.distribute import collective_all_reduce_strategy
    from tensorflow.python.eager import context

    timeout = cluster_timeout()
    # First in Python, where SIGTERM is heard (hardware/rendezvous.py): a missing worker ends here.
    # TensorFlow's own waits below keep the whole timeout: they wait only for workers that are up.
    wait_for_cluster(cluster, timeout)
    # Left alone, MultiWorkerMirroredStrategy waits forever, without a word, for a
    # worker that never starts: twice. (1) Its coordination service waits for every
    # task to register, with no timeout unless it is configured before the strategy
    # does it (it only configures one when none is): so it is configured here, as
    # the strategy would, plus the timeout. (2) Its first collective waits with the
    # timeout in this class attribute, 0 (forever) unless set, as TensorFlow's tests do.
    collective_all_reduce_strategy.CollectiveAllReduceExtended._check_health_initial_timeout = timeout
    roles = {role for role, _, _ in cluster.tasks}
    if context.context().coordination_service is None:
        context.context().configure_coordination_service(
            service_type="standalone",
            service_leader=f"/job:{'chief' if 'chief' in roles else 'worker'}/replica:0/task:0",
            coordinated_jobs=[
                coordination_config_pb2.CoordinatedJob(name=role, num_tasks=sum(r == role for r, _, _ in cluster.tasks))
                for role in ROLES
                if role in roles
            ],
            cluster_register_timeout_in_ms=timeout * 1000,
        )
        # The timeout holds only where registering is a barrier (the leader waits there for the rest).
        context.context().coordination_service.cluster_register_with_barrier = True
    others = ", ".join(
        address for role, index, address in cluster.tasks if (role, index) != (cluster.role, cluster.index)
    )
    try:
        # Its start-up still waits in C++ until every worker has registered, a moment now that all
        # are known to be up: Ctrl-C ends that wait at once too (SIGTERM is TensorFlow's there).
        with native_wait("joining the cluster", echo=None):
            return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as error:
        raise TextgenError(
            f"the cluster did not come up within {timeout} s: no answer from {others} (is every worker started, "
            f"with the same TF_CONFIG cluster?) [{type(error).__name__}]"
        ) from None
    except tf.errors.OpError as error:  # e.g. this task's port is taken: its gRPC server cannot listen
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise TextgenError(f"this worker could not join the cluster at {cluster.address}: {first_line}") from None
