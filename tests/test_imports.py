"""The TensorFlow line: everything but training (and the Keras engine) runs without importing it."""

import json
import subprocess
import sys

import pytest

# Runs one `textgen` command in a fresh interpreter, then reports which heavy modules it loaded.
PROBE = """
import json, sys
from textgen.cli import main
try:
    main.main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
loaded = sorted(name for name in ("tensorflow", "keras", "tensorflow_datasets") if name in sys.modules)
print("LOADED " + json.dumps(loaded))
"""


def loaded_modules(*arguments, cwd=None):
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, arguments)], capture_output=True, text=True, cwd=cwd, timeout=120
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("LOADED ")]
    assert lines, result.stdout + result.stderr
    return json.loads(lines[-1][len("LOADED ") :]), result.stdout


def test_help_imports_no_tensorflow():
    loaded, output = loaded_modules("--help")
    assert loaded == [] and "train" in output


@pytest.mark.parametrize("command", [["sample", "--length", "5", "--seed", "1"], ["info"], ["evaluate"]])
def test_sample_info_and_evaluate_import_no_tensorflow(tiny_model, command):
    directory, corpus = tiny_model
    arguments = [command[0], directory, *command[1:]] + ([corpus] if command[0] == "evaluate" else [])
    loaded, output = loaded_modules(*arguments)
    assert loaded == [], output
    assert {"sample": "\n", "info": "global_step:", "evaluate": "bits/char"}[command[0]] in output


def test_the_keras_engine_does_import_tensorflow(tiny_model):
    # The probe can tell: asking for the Keras engine loads TensorFlow.
    loaded, _ = loaded_modules("sample", tiny_model[0], "--length", "3", "--engine", "keras")
    assert loaded == ["keras", "tensorflow"]


def test_a_bad_corpus_fails_before_tensorflow_loads(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    loaded, _ = loaded_modules("train", tmp_path / "empty.txt", cwd=tmp_path)
    assert loaded == []


def test_importing_textgen_does_not_touch_the_umask():
    # Reading the umask means setting it; a library must not do that behind its caller's back.
    probe = (
        "import os\n"
        "calls = []\n"
        "real = os.umask\n"
        "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
        "import textgen.cli, textgen.saved.atomic, textgen.saved.saved_model, textgen.generation.generator\n"
        "print('UMASK CALLS', calls)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "UMASK CALLS []" in result.stdout, result.stdout + result.stderr
