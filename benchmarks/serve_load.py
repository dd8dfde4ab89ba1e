"""`textgen serve` under load, against `textgen sample` writing the same streams, each in a process of its own.

For a 2-layer 256-unit char LSTM (random weights: speed does not depend on them) it measures, round
by round, alternating:

    sample 64     `textgen sample --num-samples 64`: (time for --length 501) - (time for --length 1)
    sample 1      `textgen sample`: (time for --length 5001) - (time for --length 1)
    serve N       a `textgen serve` process, and a load process (this file, --clients N) whose N
                  clients each stream a 500-token completion at once; characters/s from the first
                  request to the last [DONE], and each client's time to its first character
    bare step     the step's matrix products alone in NumPy (the first layer's lookup table, h U,
                  the second layer's x W, the output layer), at batch 1 and 64: the bound

and prints each rate as a ratio: serve 64 / sample 64, serve 1 / sample 1, sample / bare step.

    python benchmarks/serve_load.py [--rounds 2] [--clients 1,16,64]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_cpu

TOKENS = 500


def timed(command):
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def sample_rate(model, streams, length):
    """Characters/s of `textgen sample` writing ``streams`` x ``length`` characters, start-up excluded."""
    base = [sys.executable, "-m", "textgen", "sample", str(model), "--num-samples", str(streams), "--seed", "1"]
    return streams * (length - 1) / (timed([*base, "--length", str(length)]) - timed([*base, "--length", "1"]))


async def _client(base, model_id, results):
    """One streaming client on a raw connection: the load process shares the server's cores, so it
    does as little as a client can (no HTTP library), and counts the characters it is sent."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"model": model_id, "prompt": "The ", "max_tokens": TOKENS, "stream": True, "temperature": 0.8})
    request = (
        f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
    ).encode()
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    first, characters = None, 0
    async for line in reader:  # chunked transfer: size lines, event lines, blank lines
        if not line.startswith(b"data: {"):
            continue
        text = json.loads(line[6:])["choices"][0]["text"]
        if text and first is None:
            first = time.perf_counter() - started
        characters += len(text)
    writer.close()
    results.append((first, characters, time.perf_counter()))


async def _load(base, model_id, clients):
    await _client(base, model_id, [])  # the server's first request pays for code paths run once
    results = []
    started = time.perf_counter()
    await asyncio.gather(*(_client(base, model_id, results) for _ in range(clients)))
    characters = sum(result[1] for result in results)
    ended = max(result[2] for result in results)
    firsts = sorted(result[0] for result in results)
    return {
        "rate": characters / (ended - started),
        "p50": firsts[len(firsts) // 2],
        "p99": firsts[min(len(firsts) - 1, round(0.99 * (len(firsts) - 1)))],
    }


def serve_figures(model, clients):
    """One server process, one load process of ``clients`` streams: rate and first-character latencies."""
    server = subprocess.Popen(
        [sys.executable, "-m", "textgen", "serve", str(model), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        base = server.stdout.readline().split("the API at ")[1].split("/v1")[0]
        time.sleep(0.5)
        load = [sys.executable, __file__, "--measure", base, model.name, str(clients)]
        return json.loads(subprocess.run(load, check=True, capture_output=True, text=True).stdout)
    finally:
        server.terminate()
        server.wait()


def bare_step_rate(model, batch, repeats=2000):
    """Characters/s of the step's matrix products alone, in NumPy, at ``batch`` streams."""
    import numpy as np

    from textgen.cells import matmul
    from textgen.generation.generator import load

    engine = load(model, engine="numpy").engine
    first, second = engine.cells
    hidden = np.random.default_rng(0).standard_normal((batch, first.units)).astype(np.float32)
    joined = np.concatenate([hidden, hidden], axis=1)  # [x, h] of the second layer (batch, 2 units)
    tokens = np.zeros(batch, np.int64)
    started = time.perf_counter()
    for _ in range(repeats):
        engine.first_projections[tokens] + first.recurrent_part(hidden)  # noqa: B018  (the first layer)
        if batch == 1:  # the second layer in the form the engine uses for each batch size
            joined @ second.stacked_kernel  # noqa: B018
        else:
            second.project_inputs(hidden) + second.recurrent_part(hidden)  # noqa: B018
        matmul(hidden, engine.output_kernel, engine.output_kernel_transposed)  # noqa: B018  (the output layer)
    return batch * repeats / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--measure", nargs=3, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.measure:
        base, model_id, clients = arguments.measure
        print(json.dumps(asyncio.run(_load(base, model_id, int(clients)))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sampling_speed import make_model

    print(describe_cpu())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    counts = [int(count) for count in arguments.clients.split(",")]
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        model = make_model(Path(scratch) / "lstm")
        for _ in range(arguments.rounds):  # alternate, so drift hits every row
            figures.setdefault("sample 64", []).append(sample_rate(model, 64, TOKENS + 1))
            figures.setdefault("sample 1", []).append(sample_rate(model, 1, 5001))
            for count in counts:
                figures.setdefault(f"serve {count}", []).append(serve_figures(model, count))
            figures.setdefault("bare 64", []).append(bare_step_rate(model, 64))
            figures.setdefault("bare 1", []).append(bare_step_rate(model, 1))
    report(figures, counts)


def report(figures, counts):
    rate = {
        name: statistics.median(v if isinstance(v[0], float) else [r["rate"] for r in v]) for name, v in figures.items()
    }
    print(f"2x256 char LSTM, {TOKENS} tokens per stream, median of {len(figures['sample 1'])} rounds; chars/s")
    for name in ("sample 64", "sample 1", "bare 64", "bare 1"):
        print(f"{name:<12} {rate[name]:>10,.0f}")
    step = 1 / rate["sample 1"]
    for count in counts:
        runs = figures[f"serve {count}"]
        p50 = statistics.median(run["p50"] for run in runs) * 1000
        p99 = statistics.median(run["p99"] for run in runs) * 1000
        print(f"serve {count:<6} {rate[f'serve {count}']:>10,.0f}   first character p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"single-stream step: {step * 1000:.3f} ms")
    print(f"serve 64 / sample 64: {rate.get('serve 64', 0) / rate['sample 64']:.2f}x (goal >= 0.8)")
    print(f"serve 1 / sample 1:   {rate.get('serve 1', 0) / rate['sample 1']:.2f}x (goal >= 0.9)")
    print(f"sample 64 / bare 64:  {rate['sample 64'] / rate['bare 64']:.2f}x (goal >= 0.8)")
    print(f"sample 1 / bare 1:    {rate['sample 1'] / rate['bare 1']:.2f}x (goal >= 0.5)")


if __name__ == "__main__":
    main()
