"""A real `textgen serve` process for the serving tests: started on a free port, stopped at the end."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import httpx

ADDRESS = re.compile(r"the API at (http://\S+)/v1")


@contextlib.contextmanager
def running_server(*arguments, env=None):
    """`textgen serve ARGUMENTS --port 0` in a process of its own; yields (process, base URL)."""
    command = [sys.executable, "-m", "textgen", "serve", *arguments, "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        line = process.stdout.readline()
        found = ADDRESS.search(line)
        if not found:
            process.kill()
            raise AssertionError(f"serve did not start: {line!r} {process.stderr.read()!r}")
        base = found.group(1)
        _wait_until_up(base)
        yield process, base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(base):
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def live_streams(base, model_id):
    return httpx.get(f"{base}/health", timeout=5).json()["models"][model_id]["streams"]
