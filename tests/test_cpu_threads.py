"""TensorFlow's CPU thread pools for training: the rule, and that it takes effect only where it may."""

import subprocess
import sys

import pytest

from textgen.hardware import cpu_threads


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (3, 1), (4, 2), (16, 8)])
def test_each_operation_gets_half_the_cores(cores, expected):
    assert cpu_threads.threads_per_operation(cores) == expected


def in_a_fresh_process(lines, *, users_threads=None):
    """Print lines of a fresh interpreter that configures the pools (this session's runtime already runs).

    ``users_threads``: TF_NUM_INTRAOP_THREADS as the user set it, else neither variable is set.
    """
    environment = "os.environ.pop('TF_NUM_INTRAOP_THREADS', None); os.environ.pop('TF_NUM_INTEROP_THREADS', None)"
    if users_threads is not None:
        environment = (
            f"os.environ.pop('TF_NUM_INTEROP_THREADS', None); os.environ['TF_NUM_INTRAOP_THREADS'] = '{users_threads}'"
        )
    script = (
        f"import os; {environment}\n"
        "import tensorflow as tf\n"
        "from textgen.hardware import cpu_threads\n"
        "pools = lambda: (tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n" + lines
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.split("\n")


def test_sets_the_pools_in_a_fresh_process_and_leaves_a_running_runtime_alone():
    printed = in_a_fresh_process(
        "print(cpu_threads.configure_for_training(cores=4)); print(pools())\n"
        "tf.constant(1.0) + 1.0  # the runtime starts; its pools are fixed now\n"
        "print(cpu_threads.configure_for_training(cores=8)); print(pools())\n"
    )
    assert printed[:4] == ["(2, 2)", "(2, 2)", "None", "(2, 2)"]


def test_with_the_fused_kernel_one_operation_at_a_time_on_every_core():
    printed = in_a_fresh_process(
        "print(cpu_threads.configure_for_training(cores=4, fused_kernel=True)); print(pools())\n"
    )
    assert printed[:2] == ["(4, 1)", "(4, 1)"]


def test_the_users_environment_wins():
    # In a fresh process, where setting the pools would work: they stay as TensorFlow has them (0 = its own
    # choice, which then reads the user's variable), and nothing is set.
    printed = in_a_fresh_process(
        "print(cpu_threads.configure_for_training(cores=4)); print(pools())\n", users_threads=3
    )
    assert printed[:2] == ["None", "(0, 0)"]
