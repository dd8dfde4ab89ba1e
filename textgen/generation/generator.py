"""The Python API for writing text: a saved model + an engine + a strategy.

    generator = textgen.load("saved_models/tiny_shakespeare")
    print(generator.generate("ROMEO:", length=200, temperature=0.8, top_p=0.95, seed=1))
    for piece in generator.stream("JULIET:", length=200, stop=["\\n\\n"]):
        print(piece, end="")
    best = generator.sample(prompt="KING", beam_width=8, num_return=3, length=80)

The RNN state is carried from step to step: each new token costs one step of
the network, never a re-run over a window of previous text.
"""

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from textgen.config import SamplingConfig
from textgen.errors import TextgenError
from textgen.generation.engines import build_engine
from textgen.generation.probabilities import logsumexp_of, shifted_exponentials
from textgen.generation.stop_strings import StopScanner, cut_at_stop
from textgen.generation.strategies import GreedySampler, strategy_for
from textgen.saved.directory import newest_model_directory
from textgen.saved.saved_model import load_saved_model

# Limits stated in the refusals: a prompt is read in pieces of PROMPT_CHUNK tokens; each step of
# sampling holds (samples, vocabulary) float32 logits, at most MAX_LOGITS of them (1 GB).
PROMPT_CHUNK = 4096
MAX_PROMPT_CHARACTERS = 1_000_000
MAX_LOGITS = 1 << 28
# Steps of uniforms a random sampler draws at once: (DRAW_BLOCK, samples) float64.
DRAW_BLOCK = 256

# What an empty prompt is primed with, if the vocabulary has it: most texts
# are made of lines, so a newline is a natural "start of something".
DEFAULT_PRIMER = "\n"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One piece of generated text."""

    text: str  # the new text, after the prompt, cut before any stop string
    log_probability: float  # natural log of the model's probability of the generated tokens
    tokens: int  # tokens generated (a stop string's tokens included)
    stopped: bool  # True if it ended at a stop string


class Generator:
    """Writes text from one saved model through an engine (see engines.py)."""

    def __init__(self, tokenizer, engine, *, saved_model=None):
        self.tokenizer = tokenizer
        self.engine = engine
        self.saved_model = saved_model  # the saved.saved_model.SavedModel it came from, if any
        if engine.vocabulary_size != tokenizer.vocabulary_size:
            where = f"{saved_model.directory}: " if saved_model is not None else ""
            raise TextgenError(
                f"{where}model has {engine.vocabulary_size} outputs but the tokenizer "
                f"has {tokenizer.vocabulary_size} tokens (mismatched files?)"
            )

    def prompt_warnings(self, prompt):
        """Word level: the prompt's words the model does not know (they become <unk>)."""
        if self.tokenizer.unknown_token is None or not prompt:
            return []
        unknown = self.tokenizer.unknown_tokens(prompt)
        if not unknown:
            return []
        shown = ", ".join(repr(token) for token in unknown[:10])
        return [f"prompt words not in the model's vocabulary, read as {self.tokenizer.unknown_token}: {shown}"]

    def prompt_ids(self, prompt):
        """The token ids a prompt is read as (a refusal names characters the model does not know)."""
        text = prompt if prompt else (DEFAULT_PRIMER if DEFAULT_PRIMER in self.tokenizer.vocabulary else None)
        # Failing that, the most frequent token (the vocabulary is sorted by frequency, after <unk>).
        most_frequent = 0 if self.tokenizer.unknown_id is None else 1
        return self.tokenizer.encode(text) if text else np.array([most_frequent], np.int32)

    def prime(self, ids, batch_size, state=None):
        """Run prompt ids through the network: the logits for what follows (batch, vocabulary) and the
        state, each repeated for ``batch_size`` streams; ``state`` (batch 1) carries on from earlier ids."""
        # Every sample reads the same prompt: run it once, in pieces (only the last step's logits are
        # kept, so a long prompt never holds (time, vocabulary) floats), then copy the result per sample.
        state = state if state is not None else self.engine.initial_state(1)
        for start in range(0, len(ids), PROMPT_CHUNK):
            logits, state = self.engine.run(ids[None, start : start + PROMPT_CHUNK], state)
        state = [tuple(np.repeat(array, batch_size, axis=0) for array in layer) for layer in state]
        return np.repeat(logits[:, -1], batch_size, axis=0), state

    def _prime(self, prompt, batch_size):
        for message in self.prompt_warnings(prompt):
            warnings.warn(message, stacklevel=3)
        return self.prime(self.prompt_ids(prompt), batch_size)

    def _check(self, settings):
        vocabulary_size, prompt_tokens = self.tokenizer.vocabulary_size, len(settings.prompt)
        if prompt_tokens > MAX_PROMPT_CHARACTERS:
            raise TextgenError(
                f"the prompt is {prompt_tokens:,} characters; at most {MAX_PROMPT_CHARACTERS:,} are read"
            )
        streams = max(settings.num_samples, settings.beam_width)
        if streams * vocabulary_size > MAX_LOGITS:  # each step holds (streams, vocabulary) float32 logits
            raise TextgenError(
                f"{settings.num_samples:,} samples (or beams) of {vocabulary_size:,} tokens each need more than "
                f"{MAX_LOGITS * 4 >> 20:,} MB per step; at most {MAX_LOGITS // vocabulary_size:,} samples "
                f"of this model at once"
            )
        if settings.beam_width > self.tokenizer.vocabulary_size:
            raise TextgenError(
                f"beam-width {settings.beam_width} is larger than the vocabulary "
                f"({self.tokenizer.vocabulary_size} tokens)"
            )

    def _token_steps(self, settings):
        """Random or greedy sampling, one step at a time, of ``num_samples`` streams in one batch.

        Yields (tokens, log_probabilities), each (num_samples,): the tokens chosen
        and their log-probability under the model itself (before any strategy).
        """
        self._check(settings)
        sampler, rng = strategy_for(settings), np.random.default_rng(settings.seed)
        if not sampler.stepwise:
            raise TextgenError(
                f"the {sampler.name} strategy writes whole samples, not one token at a time; use sample()"
            )
        logits, state = self._prime(settings.prompt, settings.num_samples)
        rows = np.arange(settings.num_samples)
        unknown = self.tokenizer.unknown_id
        # At temperature 1 (no filters, no <unk> to hide) the draw's weights are the normalizer's:
        # one exponential of the logits a step, not two (0.4 ms of a step at 64 x 3,600 tokens).
        shared = unknown is None and getattr(sampler, "draws_from_the_model", False)
        draws = not isinstance(sampler, GreedySampler)
        for step in range(settings.length):
            if draws and step % DRAW_BLOCK == 0:
                # rng.random((steps, batch)) is the very numbers of that many rng.random(batch) calls,
                # a call for 256 steps, not one a step (1.4 us each, a tenth of a single stream's draw)
                uniforms = rng.random((min(DRAW_BLOCK, settings.length - step), settings.num_samples))
            exponentials = shifted_exponentials(logits)
            log_normalizer = logsumexp_of(*exponentials)  # (batch,): log p(token) = logit - this
            if unknown is not None:
                logits[:, unknown] = -np.inf  # never write "<unk>"
            if draws:
                tokens = sampler.choose_at(logits, uniforms[step % DRAW_BLOCK], exponentials[1] if shared else None)
            else:
                tokens = sampler.choose(logits, rng)  # (batch,)
            yield tokens, logits[rows, tokens] - log_normalizer
            if step + 1 < settings.length:  # after the last token no step: its logits would go unread
                logits, state = self.engine.step(tokens, state)

    def iterate(self, settings):
        """Sampling with text as it is made: yields, after each step, the text each sample
        releases (stop strings held back, "" once a sample has stopped); returns the ``Sample``s.
        """
        scanners = [StopScanner(settings.stop) for _ in range(settings.num_samples)]
        step_log_probabilities = []  # one (num_samples,) array per step
        vocabulary = self.tokenizer.vocabulary
        for tokens, log_probabilities in self._token_steps(settings):
            if settings.stop and all(scanner.stopped for scanner in scanners):
                break
            step_log_probabilities.append(log_probabilities)
            yield [scanner.feed(vocabulary[token]) for scanner, token in zip(scanners, tokens)]
        yield [scanner.flush() for scanner in scanners]  # held-back text that never became a stop
        totals = np.reshape(step_log_probabilities, (-1, settings.num_samples))  # (steps, num_samples)
        return [
            Sample(scanner.text, float(totals[: scanner.steps, index].sum()), scanner.steps, scanner.stopped)
            for index, scanner in enumerate(scanners)
        ]

    def _sample_batch(self, settings, cancel=None):
        """Sampling without stop strings: tokens collected as arrays, decoded once at the end."""
        steps = []
        for step in self._token_steps(settings):
            if cancel is not None and cancel.is_set():
                return []
            steps.append(step)
        if not steps:
            return [Sample("", 0.0, 0, False) for _ in range(settings.num_samples)]
        tokens = np.stack([step[0] for step in steps], axis=1)  # (num_samples, length)
        totals = np.sum([step[1] for step in steps], axis=0)  # (num_samples,)
        return [Sample(self.tokenizer.decode(row), float(total), len(row), False) for row, total in zip(tokens, totals)]

    def _beams(self, strategy, settings, cancel=None):
        self._check(settings)
        logits, state = self._prime(settings.prompt, 1)
        beams = strategy.search(
            self.engine,
            logits,
            state,
            length=settings.length,
            decode=lambda token: self.tokenizer.vocabulary[token],
            stop=settings.stop,
            masked_token=self.tokenizer.unknown_id,
            cancelled=cancel.is_set if cancel is not None else None,
        )
        samples = []
        for beam in beams:
            text, stopped = cut_at_stop(self.tokenizer.decode(beam.tokens), settings.stop)
            samples.append(Sample(text, beam.log_probability, len(beam.tokens), stopped))
        return samples

    def sample(self, settings=None, *, cancel=None, **options):
        """A list of ``Sample``s for a ``SamplingConfig`` (or its fields as keywords).

        ``cancel``: a ``threading.Event``; set from another thread, the sampling ends at its next
        step and returns no samples (a server's beam search whose client has gone).
        """
        settings = settings or SamplingConfig(**options)
        strategy = strategy_for(settings)
        if not strategy.stepwise:
            return self._beams(strategy, settings, cancel)
        if not settings.stop:
            return self._sample_batch(settings, cancel)
        steps = self.iterate(settings)
        while True:
            if cancel is not None and cancel.is_set():
                steps.close()
                return []
            try:
                next(steps)
            except StopIteration as finished:
                return finished.value

    def stream(self, prompt="", **options):
        """Yield the new text of one sample piece by piece (the prompt is not repeated)."""
        settings = SamplingConfig(prompt=prompt, **options)
        if settings.num_samples != 1 or not strategy_for(settings).stepwise:
            raise TextgenError("stream() writes one random or greedy sample; use sample() for several or beams")
        for pieces in self.iterate(settings):
            if pieces[0]:
                yield pieces[0]

    def generate(self, prompt="", **options):
        """The prompt followed by new text; a list of such strings if several samples or beams."""
        samples = self.sample(SamplingConfig(prompt=prompt, **options))
        texts = [prompt + sample.text for sample in samples]
        return texts if len(texts) > 1 else texts[0]


def load(path=None, *, engine="auto"):
    """A ``Generator`` for the model directory at ``path`` (default: the newest saved).

    The directory is validated whole (settings, vocabulary, every weight's
    shape) before anything runs, and no code from it is ever executed.

    Args:
        path: a model directory; None for the newest under ./saved_models.
        engine: "numpy" (instant start, no TensorFlow), "keras" (a compiled
            TensorFlow step, for GPUs and big batches) or "auto" (the faster
            one here: numpy; see engines.AUTO_ENGINE).
    """
    saved_model = load_saved_model(Path(path) if path is not None else newest_model_directory())
    network, _ = saved_model.read_weights()
    return Generator(saved_model.tokenizer, build_engine(engine, network), saved_model=saved_model)
