"""More than one device or machine: which tf.distribute strategy trains, chosen by ``--strategy``.

    one           one device: TensorFlow's default strategy (what textgen always did)
    mirrored      tf.distribute.MirroredStrategy: one process, two or more local devices
                  (the GPUs, or those named by --devices; CPU:0,CPU:1 splits the CPU into
                  logical devices, to try it without GPUs)
    multi-worker  tf.distribute.MultiWorkerMirroredStrategy: one process per machine, each
                  run with the same command and its own TF_CONFIG (cluster + task)
    auto          multi-worker when TF_CONFIG names more than one task, mirrored when more
                  than one GPU is visible or --devices names some, else one

What a user can count on under every strategy:
  * --batch-size is the global batch: each step trains the same windows one device
    would, cut into one block of rows per replica (data/dataset.py), so no window is
    trained twice in an epoch, and the learning rate needs no scaling (it is not scaled).
  * Only the chief (task chief, else worker 0) writes the model directory; other workers
    write to a temporary directory, removed at the end (training/run.py).
  * The time budget and Ctrl-C stop all workers at the same step (AgreeToStop).
"""

import dataclasses
import hashlib
import json
import os

from textgen.errors import TextgenError

TF_CONFIG = "TF_CONFIG"
_ROLES = ("chief", "worker")  # parameter servers and evaluators are not for synchronous training


@dataclasses.dataclass(frozen=True)
class Cluster:
    """What TF_CONFIG says: the tasks' addresses, and which task this process is."""

    tasks: tuple  # ((role, index, "host:port"), ...), chief first
    role: str
    index: int

    @property
    def is_chief(self):
        return self.role == "chief" or (self.role == "worker" and self.index == 0 and self.tasks[0][0] != "chief")

    @property
    def tasks_on_this_host(self):
        """Tasks whose address names the same host as this one's (two processes of one machine share its cores)."""
        host = self.address.rpartition(":")[0]
        return sum(address.rpartition(":")[0] == host for _, _, address in self.tasks)

    @property
    def address(self):
        return next(address for role, index, address in self.tasks if (role, index) == (self.role, self.index))


def read_cluster(text=None):
    """TF_CONFIG (the environment's, or ``text``) as a ``Cluster``; None when unset; one line when malformed."""
    text = os.environ.get(TF_CONFIG) if text is None else text
    if not text:
        return None
    try:
        config = json.loads(text)
    except (ValueError, RecursionError):
        raise TextgenError("TF_CONFIG is not valid JSON") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise TextgenError(
            'TF_CONFIG needs "cluster" and "task" objects, e.g. {"cluster": {"worker": '
            '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
        )
    unknown = sorted(set(cluster) - set(_ROLES))
    if unknown:
        raise TextgenError(f"TF_CONFIG's cluster has {', '.join(unknown)}; textgen trains with chief and worker only")
    tasks = []
    for role in _ROLES:
        addresses = cluster.get(role, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and _is_address(a) for a in addresses):
            raise TextgenError(f'TF_CONFIG\'s cluster "{role}" must be a list of "host:port" addresses')
        tasks.extend((role, index, address) for index, address in enumerate(addresses))
    if len(cluster.get("chief", [])) > 1:
        raise TextgenError("TF_CONFIG's cluster has more than one chief")
    role, index = task.get("type"), task.get("index")
    if role not in _ROLES or isinstance(index, bool) or not isinstance(index, int):
        raise TextgenError('TF_CONFIG\'s task must be {"type": "chief" or "worker", "index": N}')
    if not 0 <= index < len(cluster.get(role, [])):
        raise TextgenError(
            f"TF_CONFIG's task is {role} {index}, but the cluster lists {len(cluster.get(role, []))} {role}(s)"
        )
    addresses = [address for _, _, address in tasks]
    if len(set(addresses)) != len(addresses):
        raise TextgenError("TF_CONFIG's cluster names one address twice")
    return Cluster(tuple(tasks), role, index)


def _is_address(text):
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def choose_strategy(requested, *, gpus, cluster):
    """The strategy ``auto`` (or the one asked for) means here: one, mirrored or multi-worker."""
    if requested != "auto":
        return requested
    if cluster is not None and len(cluster.tasks) > 1:
        return "multi-worker"
    return "mirrored" if gpus > 1 else "one"


# How long a worker waits for the whole cluster to answer before it gives up in one line.
CLUSTER_TIMEOUT_VARIABLE = "TEXTGEN_CLUSTER_TIMEOUT"
CLUSTER_TIMEOUT_SECONDS = 120


def cluster_timeout():
    text = os.environ.get(CLUSTER_TIMEOUT_VARIABLE, "")
    try:
        return max(1, int(float(text))) if text else CLUSTER_TIMEOUT_SECONDS
    except ValueError:
        raise TextgenError(f"{CLUSTER_TIMEOUT_VARIABLE} must be a number of seconds, got {text!r}") from None


def parse_devices(text):
    """``--devices`` ("GPU:0,GPU:1", "CPU:0,CPU:1") as [("GPU", 0), ...]; one line when malformed."""
    devices = []
    for part in text.split(","):
        kind, _, number = part.strip().upper().partition(":")
        if kind not in ("CPU", "GPU") or not number.isdigit():
            raise TextgenError(f"--devices takes a comma-separated list like GPU:0,GPU:1 or CPU:0,CPU:1; got {text!r}")
        devices.append((kind, int(number)))
    if len(set(devices)) != len(devices):
        raise TextgenError(f"--devices names a device twice: {text!r}")
    return devices


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
        """Make ``model.fit`` and ``evaluate`` work under multi-worker (keras#20585); nothing otherwise.

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
        if self.kind != "multi-worker":
            return model
        import tensorflow as tf
        from keras import tree

        strategy = self.strategy

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

    def datasets(self, make_dataset):
        """The training data: ``make_dataset(replicas)`` (see data/dataset.py's ``replicas``) per worker."""
        if self.kind == "one":
            return make_dataset(None)
        local, total = self.local_replicas, self.replicas

        def worker_dataset(context):
            return make_dataset((context.input_pipeline_id * local, local, total))

        return self.strategy.distribute_datasets_from_function(worker_dataset)


def plan_distribution(train_config, *, gpus):
    """(kind, cluster, replicas in this process), known before TensorFlow's runtime starts.

    The fused CPU kernel and the thread pools depend on the replicas per
    process, and must be settled before the strategy starts the runtime.
    """
    if TF_CONFIG in os.environ and not os.environ[TF_CONFIG].strip():
        del os.environ[TF_CONFIG]  # set but empty: unset (TensorFlow's own strategies would fail parsing it)
    # Checked for every strategy but one: TensorFlow's MirroredStrategy reads it too.
    cluster = read_cluster() if train_config.strategy != "one" else None
    if train_config.strategy not in ("auto", "multi-worker"):
        cluster = None
    kind = choose_strategy(train_config.strategy, gpus=gpus, cluster=cluster)
    if train_config.devices and kind != "mirrored":
        if train_config.strategy != "auto":
            raise TextgenError(f"--devices lists the devices of --strategy mirrored, not of {kind}")
        kind = "mirrored"  # devices named: that is what auto means
    if kind == "multi-worker" and cluster is None:
        raise TextgenError(
            "--strategy multi-worker needs TF_CONFIG naming the cluster and this task, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'
        )
    if kind == "mirrored":
        local = len(parse_devices(train_config.devices)) if train_config.devices else gpus
    else:
        local = max(1, gpus) if kind == "multi-worker" else 1
    return kind, cluster, local


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
                for role in _ROLES
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
        return tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as error:
        raise TextgenError(
            f"the cluster did not come up within {timeout} s: no answer from {others} (is every worker started, "
            f"with the same TF_CONFIG cluster?) [{type(error).__name__}]"
        ) from None
