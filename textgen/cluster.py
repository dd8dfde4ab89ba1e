"""The cluster a run trains on, as the user describes it: TF_CONFIG, --strategy and --devices.

Plain Python, no TensorFlow: it is read and checked before TensorFlow loads
(training/run.py decides from it which process writes the model), and the
strategy itself is made from it in hardware/strategy.py.


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
import json
import math
import os

from textgen.errors import TextgenError

TF_CONFIG = "TF_CONFIG"
ROLES = ("chief", "worker")  # parameter servers and evaluators are not for synchronous training
EXAMPLE_TF_CONFIG = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


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
        raise TextgenError(f'TF_CONFIG needs "cluster" and "task" objects, e.g. {EXAMPLE_TF_CONFIG}')
    unknown = sorted(set(cluster) - set(ROLES))
    if unknown:
        raise TextgenError(f"TF_CONFIG's cluster has {', '.join(unknown)}; textgen trains with chief and worker only")
    tasks = []
    for role in ROLES:
        addresses = cluster.get(role, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and _is_address(a) for a in addresses):
            raise TextgenError(f'TF_CONFIG\'s cluster "{role}" must be a list of "host:port" addresses')
        tasks.extend((role, index, address) for index, address in enumerate(addresses))
    if len(cluster.get("chief", [])) > 1:
        raise TextgenError("TF_CONFIG's cluster has more than one chief")
    role, index = task.get("type"), task.get("index")
    if role not in ROLES or isinstance(index, bool) or not isinstance(index, int):
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
MAX_CLUSTER_TIMEOUT_SECONDS = 86_400  # a day: longer is a wait nobody is watching


def cluster_timeout():
    text = os.environ.get(CLUSTER_TIMEOUT_VARIABLE, "")
    if not text:
        return CLUSTER_TIMEOUT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= MAX_CLUSTER_TIMEOUT_SECONDS:  # NaN and inf too: a wait must end
        raise TextgenError(
            f"{CLUSTER_TIMEOUT_VARIABLE} must be a number of seconds up to {MAX_CLUSTER_TIMEOUT_SECONDS:,}, "
            f"got {text!r}"
        )
    return max(1, int(seconds))


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
    if kind == "multi-worker" and cluster is not None and len(cluster.tasks) < 2:
        raise TextgenError("--strategy multi-worker needs TF_CONFIG to name two or more tasks; it names one")
    if kind == "multi-worker" and cluster is None:
        raise TextgenError(
            f"--strategy multi-worker needs TF_CONFIG naming the cluster and this task, e.g. {EXAMPLE_TF_CONFIG}"
        )
    if kind == "mirrored":
        local = len(parse_devices(train_config.devices)) if train_config.devices else gpus
    else:
        local = max(1, gpus) if kind == "multi-worker" else 1
    return kind, cluster, local
