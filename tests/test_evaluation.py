import math

import keras
import numpy as np

from textgen.evaluation import evaluate_files, evaluate_text, score_tokens
from textgen.generation.generator import load


def test_evaluate_matches_a_hand_computation_with_keras(tiny_model):
    directory, _ = tiny_model
    generator = load(directory)
    text = "The river keeps a quiet count of stones.\nOwls discuss the price of wheat!\n"
    ids = generator.tokenizer.encode(text)
    model = keras.models.load_model(directory / "model.keras")
    logits = np.asarray(model(ids[np.newaxis, :-1]), dtype=np.float64)[0]  # one pass, state carried
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    nats = -log_p[np.arange(len(ids) - 1), ids[1:]].sum()
    metrics = evaluate_text(generator, text)
    assert metrics["tokens"] == len(ids) - 1 and metrics["characters"] == len(text) - 1
    assert math.isclose(metrics["loss"], nats / (len(ids) - 1), rel_tol=1e-5)
    assert math.isclose(metrics["perplexity"], math.exp(metrics["loss"]), rel_tol=1e-9)
    assert math.isclose(metrics["bits_per_character"], nats / math.log(2) / (len(text) - 1), rel_tol=1e-5)


def test_chunked_scoring_carries_the_state(tiny_model, monkeypatch):
    directory, corpus = tiny_model
    generator = load(directory)
    ids = generator.tokenizer.encode(corpus.read_text()[:700])
    whole = score_tokens(generator.engine, ids)
    monkeypatch.setattr("textgen.evaluation._LOGITS_PER_CHUNK", 100 * generator.engine.vocabulary_size)
    assert math.isclose(score_tokens(generator.engine, ids), whole, rel_tol=1e-6)


def test_files_are_one_stream(tiny_model, tmp_path):
    directory, _ = tiny_model
    generator = load(directory)
    (tmp_path / "a.txt").write_text("The river keeps\n")
    (tmp_path / "b.txt").write_text("a quiet count\n")
    joined = evaluate_text(generator, "The river keeps\na quiet count\n")
    assert evaluate_files(generator, [tmp_path / "a.txt", tmp_path / "b.txt"]) == joined


def test_bits_per_character_at_the_word_level_counts_characters_not_tokens(tiny_word_model):
    generator = load(tiny_word_model[0])
    text = "the river keeps a quiet count of stones\n"
    metrics = evaluate_text(generator, text)
    tokens = len(generator.tokenizer.encode(text)) - 1  # the first token is context, not scored
    assert metrics["tokens"] == tokens == 15 and metrics["characters"] == len(text) - len("the")
    total_bits = metrics["loss"] * tokens / math.log(2)
    assert math.isclose(metrics["bits_per_character"], total_bits / metrics["characters"], rel_tol=1e-12)
    assert metrics["bits_per_character"] < metrics["loss"] / math.log(2)  # a word is several characters


def test_a_diverged_loss_still_has_a_perplexity_tensorboard_can_store():
    import numpy as np

    from textgen.metrics import loss_metrics

    for loss in (88.0, 150.0, 1e6, math.inf):
        perplexity = loss_metrics(loss, 1.0)["perplexity"]
        assert math.isfinite(float(np.float32(perplexity))) and perplexity > 1e38


def test_evaluating_files_from_the_token_store_equals_scoring_the_text_whole(tiny_model, tmp_path):
    import pytest

    from textgen.errors import TextgenError

    generator = load(tiny_model[0])
    text = tiny_model[1].read_text()[:3000].rsplit("\n", 1)[0] + "\n"  # whole lines, as a corpus file ends
    (tmp_path / "held_out.txt").write_text(text.replace("\n", "\r\n"))
    streamed = evaluate_files(generator, [tmp_path / "held_out.txt"])
    whole = evaluate_text(generator, text)
    assert streamed["tokens"] == whole["tokens"] and streamed["characters"] == whole["characters"]
    assert math.isclose(streamed["loss"], whole["loss"], rel_tol=1e-6)
    (tmp_path / "foreign.txt").write_text("Ω" * 50)
    with pytest.raises(TextgenError, match="not in the model's vocabulary: 'Ω'$"):  # no --drop-unknown hint here
        evaluate_files(generator, [tmp_path / "foreign.txt"])
