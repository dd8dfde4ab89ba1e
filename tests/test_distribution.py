"""tf.distribute: the strategy chosen, mirrored over two logical CPUs, two workers on loopback, bad setups.

Multi-worker tests start real processes on 127.0.0.1 (free ports, one TF_CONFIG
each); nothing leaves the machine.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import make_text, run_textgen

from textgen.cluster import choose_strategy, parse_devices, read_cluster
from textgen.errors import TextgenError

SMALL = [
    "--units",
    "16",
    "--embedding-dim",
    "8",
    "--layers",
    "1",
    "--seq-length",
    "20",
    "--batch-size",
    "8",
    "--precision",
    "float32",
    "--seed",
    "3",
]


def cluster_config(ports, index):
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]}, "task": {"type": "worker", "index": index}}
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', 'needs "cluster" and "task" objects'),
        ('{"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "has ps; textgen trains with chief"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "task is worker 1, but"),
        ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "one address twice"),
        ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "boss", "index": 0}}', '"type": "chief" or "worker"'),
    ],
)
def test_a_malformed_tf_config_is_one_line(text, message):
    with pytest.raises(TextgenError) as raised:
        read_cluster(text)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_the_chief_is_the_chief_task_else_worker_0():
    workers = '{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": %d}}'
    assert read_cluster(workers % 0).is_chief and not read_cluster(workers % 1).is_chief
    with_chief = '{"cluster": {"chief": ["c:3"], "worker": ["a:1"]}, "task": {"type": "%s", "index": 0}}'
    assert read_cluster(with_chief % "chief").is_chief and not read_cluster(with_chief % "worker").is_chief
    assert read_cluster("") is None


def test_auto_picks_multi_worker_for_a_cluster_mirrored_for_gpus_else_one():
    cluster = read_cluster('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}')
    alone = read_cluster('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}')
    assert choose_strategy("auto", gpus=0, cluster=cluster) == "multi-worker"
    assert choose_strategy("auto", gpus=2, cluster=alone) == "mirrored"
    assert choose_strategy("auto", gpus=1, cluster=None) == "one"
    assert choose_strategy("one", gpus=4, cluster=cluster) == "one"


def test_devices_are_parsed_or_refused():
    assert parse_devices("GPU:0, gpu:1") == [("GPU", 0), ("GPU", 1)]
    for bad in ("GPU0", "TPU:0,TPU:1", "CPU:0,CPU:0"):
        with pytest.raises(TextgenError):
            parse_devices(bad)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text(make_text(lines=200), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "options, message",
    [
        (["--strategy", "mirrored"], "--strategy mirrored needs two or more devices; this machine has 0 GPU(s)"),
        (["--strategy", "mirrored", "--devices", "GPU:0,GPU:1"], "names GPU:0, but this machine has 0 GPU(s)"),
        (["--strategy", "multi-worker"], "--strategy multi-worker needs TF_CONFIG"),
        (["--strategy", "mirrored", "--devices", "CPU:0,CPU:1", "--stateful"], "--stateful trains on one device"),
        (["--strategy", "mirrored", "--devices", "CPU:0,CPU:1", "--batch-size", "7"], "does not split evenly over 2"),
        (["--devices", "CPU0"], "--devices takes a comma-separated list"),
        (["--strategy", "one", "--devices", "CPU:0,CPU:1"], "--devices lists the devices of --strategy mirrored"),
    ],
)
def test_bad_strategy_setups_fail_in_one_line(corpus, tmp_path, options, message):
    result = run_textgen("train", corpus, *SMALL, "--epochs", "1", *options, cwd=tmp_path, env={"TF_CONFIG": ""})
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def held_out_loss(directory):
    return json.loads((directory / "metrics.json").read_text())[-1]["val_loss"]


@pytest.mark.slow
def test_mirrored_over_two_logical_cpus_trains_saves_and_samples_like_one_device(corpus, tmp_path):
    one = run_textgen("train", corpus, *SMALL, "--epochs", "2", "--name", "one", "--strategy", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = run_textgen(
        "train",
        corpus,
        *SMALL,
        "--epochs",
        "2",
        "--name",
        "two",
        "--strategy",
        "mirrored",
        "--devices",
        "CPU:0,CPU:1",
        cwd=tmp_path,
    )
    assert two.returncode == 0, two.stderr
    assert "training with mirrored over 2 devices" in two.stdout
    assert "these 2 use Keras's layers" in two.stdout  # the fused kernel runs one replica per process
    sampled = run_textgen("sample", tmp_path / "saved_models" / "two", "--length", "30", "--seed", "1", cwd=tmp_path)
    assert sampled.returncode == 0 and len(sampled.stdout) >= 30
    # The same global batches from the same seed: the held-out losses agree within noise.
    losses = held_out_loss(tmp_path / "saved_models" / "one"), held_out_loss(tmp_path / "saved_models" / "two")
    assert abs(losses[0] - losses[1]) < 0.05 * losses[0], losses


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for each in sockets:
        each.bind(("127.0.0.1", 0))
    ports = [each.getsockname()[1] for each in sockets]
    for each in sockets:
        each.close()
    return ports


# Each worker saves a digest of its final weights, so the test can compare them (workers keep no files).
WORKER = """
import hashlib, sys
import keras
import textgen

class Digest(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        digest = hashlib.sha256(b"".join(w.tobytes() for w in self.model.get_weights())).hexdigest()
        open(sys.argv[2], "w").write(digest)

def typed(value):
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(value, value)

settings = {key: typed(value) for key, value in (a.split("=", 1) for a in sys.argv[3:])}
textgen.train(sys.argv[1], callbacks=[Digest()], **settings)
"""


def start_workers(corpus, cwd, ports, settings, digests=None, extra=None):
    processes = []
    for index in range(len(ports)):
        env = {**os.environ, "TF_CONFIG": cluster_config(ports, index), "TEXTGEN_CLUSTER_TIMEOUT": "60"}
        arguments = [f"{key}={value}" for key, value in {**settings, **((extra or {}).get(index, {}))}.items()]
        digest = digests[index] if digests else os.devnull
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(corpus), str(digest), *arguments],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return processes


def finish(processes, timeout=300):
    return [(process.wait(timeout=timeout), *process.communicate()) for process in processes]


WORKER_SETTINGS = dict(
    units=16,
    embedding_dim=8,
    layers=1,
    seq_length=20,
    batch_size=8,
    precision="float32",
    strategy="multi-worker",
    name="cluster",
)


@pytest.mark.slow
def test_two_workers_train_one_model_written_by_the_chief(corpus, tmp_path):
    digests = [tmp_path / "worker0.sha", tmp_path / "worker1.sha"]
    results = finish(start_workers(corpus, tmp_path, free_ports(2), {**WORKER_SETTINGS, "epochs": 2}, digests))
    for returncode, _out, error in results:
        assert returncode == 0, error[-2000:]
    assert digests[0].read_text() == digests[1].read_text()  # the replicas ended with equal weights
    models = [path.name for path in (tmp_path / "saved_models").iterdir() if not path.name.startswith(".")]
    assert models == ["cluster"]  # the chief's only (beside its lock file)
    sampled = run_textgen(
        "sample", tmp_path / "saved_models" / "cluster", "--length", "20", "--seed", "1", cwd=tmp_path
    )
    assert sampled.returncode == 0 and len(sampled.stdout) >= 20


@pytest.mark.slow
def test_a_killed_cluster_resumes_at_its_global_step(corpus, tmp_path):
    ports = free_ports(2)
    processes = start_workers(corpus, tmp_path, ports, {**WORKER_SETTINGS, "epochs": 50, "checkpoint_every": 20})
    backup = tmp_path / "saved_models" / "cluster" / "backup.json"
    deadline = time.monotonic() + 240
    while not backup.exists() and time.monotonic() < deadline and processes[0].poll() is None:
        time.sleep(0.2)
    for process in processes:
        process.send_signal(signal.SIGKILL)
    finish(processes)
    step = json.loads(backup.read_text())["global_step"]
    assert step >= 20
    resumed = start_workers(
        corpus, tmp_path, free_ports(2), {"name": "cluster", "resume": "True", "epochs": 1, "strategy": "multi-worker"}
    )
    results = finish(resumed)
    for returncode, out, error in results:
        assert returncode == 0, error[-2000:]
        assert f"resuming at global step {step:,}" in out  # every worker, from the chief's backup
    records = json.loads((tmp_path / "saved_models" / "cluster" / "metrics.json").read_text())
    assert records[-1]["run"] == 2 and records[-1]["global_step"] > step


@pytest.mark.slow
def test_a_worker_that_never_starts_is_a_timeout_naming_its_address(corpus, tmp_path):
    ports = free_ports(2)
    env = {"TF_CONFIG": cluster_config(ports, 0), "TEXTGEN_CLUSTER_TIMEOUT": "5"}
    started = time.monotonic()
    result = run_textgen("train", corpus, *SMALL, "--epochs", "1", "--strategy", "multi-worker", cwd=tmp_path, env=env)
    assert result.returncode == 1 and f"no answer from 127.0.0.1:{ports[1]}" in result.stderr, result.stderr
    assert time.monotonic() - started < 120


@pytest.mark.slow
def test_workers_started_with_different_settings_are_refused(corpus, tmp_path):
    processes = start_workers(
        corpus, tmp_path, free_ports(2), {**WORKER_SETTINGS, "epochs": 1}, extra={1: {"learning_rate": "0.5"}}
    )
    results = finish(processes)
    for returncode, _out, error in results:
        assert returncode != 0 and "the workers were not started alike" in error, error[-2000:]


@pytest.mark.slow
def test_when_one_worker_stops_all_stop_at_the_same_step(corpus, tmp_path):
    # Worker 1 has the shorter time budget (its length is not part of what workers must agree on): at
    # its end, both stop after the same step, instead of worker 0 waiting forever in its next all-reduce.
    digests = [tmp_path / "worker0.sha", tmp_path / "worker1.sha"]
    processes = start_workers(
        corpus,
        tmp_path,
        free_ports(2),
        {**WORKER_SETTINGS, "epochs": 500},
        digests,
        extra={0: {"time_budget": "120s"}, 1: {"time_budget": "8s"}},
    )
    results = finish(processes, timeout=240)
    for returncode, _out, error in results:
        assert returncode == 0, error[-2000:]
    assert "time budget of 8s reached" in results[1][1]
    assert "stopped with the other workers" in results[0][1]
    assert digests[0].read_text() == digests[1].read_text()  # the same weights: the same last step
    records = json.loads((tmp_path / "saved_models" / "cluster" / "metrics.json").read_text())
    assert records[-1]["global_step"] < 500 * 40  # stopped long before its 500 epochs


def test_the_multi_worker_patch_fits_the_keras_it_was_written_for():
    # hardware/keras_patches.py replaces _maybe_symbolic_build (with this signature) and wraps the step
    # functions of Keras 3.15's TensorFlow trainer. Another Keras may have fixed keras#20585 or moved
    # them: this fails then, so that the patch is looked at again rather than silently wrong.
    import inspect

    import keras
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    assert keras.__version__.startswith("3.15."), (
        f"keras_patches.py was written for Keras 3.15, not {keras.__version__}"
    )
    parameters = list(inspect.signature(TensorFlowTrainer._maybe_symbolic_build).parameters)
    assert parameters == ["self", "iterator", "data_batch"]
    assert all(hasattr(TensorFlowTrainer, name) for name in ("_symbolic_build", "train_step", "test_step"))
