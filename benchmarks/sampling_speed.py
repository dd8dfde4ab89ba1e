"""How fast ``textgen sample`` writes, as a user runs it, against two classic baselines.

For a 2-layer 256-unit char LSTM (random weights unless MODEL is given; speed
does not depend on what the weights say), it measures whole ``textgen sample``
processes (start-up included, output to /dev/null):

    start-up      time of `textgen sample MODEL --length 1` vs `python -c "import tensorflow"`
    one stream    (time for --length 20001) - (time for --length 1)
    64 streams    the same with --num-samples 64 (--length 5001, less --length 2)
    beam 8        the same with --beam-width 8 (--length 2001)

and, in this process, the two baselines: the tutorial loop (``model.predict``
over the last 100 characters for every new character) and a stateful
``tf.function`` step (textgen's Keras engine), at batch 1 and 64. Runs
alternate and the table shows medians.

    python benchmarks/sampling_speed.py [MODEL] [--rounds 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora" / "tiny_shakespeare.txt"
GOALS = {"start-up ratio": 0.25, "one stream": 10_000, "64 streams": 100_000, "beam 8": 2_000}


def make_model(directory):
    """A randomly initialised 2x256 char LSTM saved as a textgen model directory."""
    from textgen.saved.untrained import write_untrained_model

    text = CORPUS.read_text(encoding="utf-8") if CORPUS.exists() else "".join(map(chr, range(32, 127))) + "\n"
    return write_untrained_model(directory, text, units=256)


def process_seconds(*arguments):
    started = time.perf_counter()
    subprocess.run(arguments, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def textgen_seconds(model, *options):
    return process_seconds(sys.executable, "-m", "textgen", "sample", str(model), "--seed", "1", *options)


def tutorial_loop_rate(model, characters=20):
    """The tutorial's loop: predict over the last 100 characters for every new character."""
    import keras
    import numpy as np

    keras_model = keras.models.load_model(Path(model) / "model.keras")  # our own file
    window = list(np.zeros(100, dtype=np.int32))
    keras_model.predict(np.array([window]), verbose=0)
    started = time.perf_counter()
    for _ in range(characters):
        logits = keras_model.predict(np.array([window[-100:]]), verbose=0)[0, -1]
        window.append(int(np.argmax(logits)))
    return characters / (time.perf_counter() - started)


def stateful_step_rate(model, batch_size, steps):
    """A stateful compiled step per character (textgen's Keras engine)."""
    import numpy as np

    from textgen.generation.generator import load

    engine = load(model, engine="keras").engine
    state, tokens = engine.initial_state(batch_size), np.zeros(batch_size, dtype=np.int32)
    engine.step(tokens, state)
    started = time.perf_counter()
    for _ in range(steps):
        logits, state = engine.step(tokens, state)
        tokens = logits.argmax(axis=-1).astype(np.int32)
    return batch_size * steps / (time.perf_counter() - started)


def measure_round(model):
    import_tensorflow = process_seconds(sys.executable, "-c", "import tensorflow")
    one = textgen_seconds(model, "--length", "1")
    long = textgen_seconds(model, "--length", "20001")
    # (2 characters: their one step is the batch's first, which times the products' libraries)
    batch_two = textgen_seconds(model, "--length", "2", "--num-samples", "64")
    batch_long = textgen_seconds(model, "--length", "5001", "--num-samples", "64")
    beam_one = textgen_seconds(model, "--length", "1", "--beam-width", "8")
    beam_long = textgen_seconds(model, "--length", "2001", "--beam-width", "8")
    return {
        "import tensorflow (s)": import_tensorflow,
        "textgen sample --length 1 (s)": one,
        "start-up ratio": one / import_tensorflow,
        "one stream": 20_000 / (long - one),
        "64 streams": 64 * 4_999 / (batch_long - batch_two),
        "beam 8": 2_000 / (beam_long - beam_one),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(arguments.model) if arguments.model else make_model(Path(scratch) / "lstm_2x256")
        rounds = [measure_round(model) for _ in range(arguments.rounds)]
        baselines = {
            "tutorial loop, 1 stream": tutorial_loop_rate(model),
            "stateful tf.function step, 1 stream": stateful_step_rate(model, 1, 300),
            "stateful tf.function step, 64 streams": stateful_step_rate(model, 64, 100),
        }
    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"textgen sample, 2x256 char LSTM, whole processes, median of {arguments.rounds} rounds")
    print(f"{'measure':<38} {'value':>12} {'goal':>10}")
    for key, value in medians.items():
        goal = GOALS.get(key)
        unit = "" if "(s)" in key or "ratio" in key else " chars/s"
        shown = f"{value:,.3f}" if value < 10 else f"{value:,.0f}"
        met = None if goal is None else (value <= goal if "ratio" in key else value >= goal)
        verdict = "" if met is None else ("  met" if met else "  MISSED")
        print(f"{key + unit:<38} {shown:>12} {'' if goal is None else format(goal, ','):>10}{verdict}")
    print("\nbaselines, in this process (chars/s):")
    for key, value in baselines.items():
        print(f"{key:<38} {value:>12,.0f}")
    print("\nratios, textgen / baseline:")
    print(
        f"one stream vs tutorial loop            "
        f"{medians['one stream'] / baselines['tutorial loop, 1 stream']:>11,.0f}x"
    )
    print(
        f"one stream vs stateful step            "
        f"{medians['one stream'] / baselines['stateful tf.function step, 1 stream']:>11,.1f}x"
    )
    print(
        f"64 streams vs stateful step, 64        "
        f"{medians['64 streams'] / baselines['stateful tf.function step, 64 streams']:>11,.1f}x"
    )


if __name__ == "__main__":
    main()
