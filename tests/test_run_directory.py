"""One writer per model directory; an --overwrite replaces the old model only once the new one is whole."""

import os

import pytest

from textgen.errors import TextgenError
from textgen.saved import run_directory
from textgen.saved.run_directory import RunDirectory, writer_lock


def old_model(root):
    directory = root / "poem"
    directory.mkdir(parents=True)
    (directory / "model.keras").write_text("old")
    return directory


def listing(root):
    return sorted(path.name for path in root.iterdir())


@pytest.mark.parametrize("atomic_exchange", [True, False])
def test_an_overwrite_swaps_in_the_new_model_at_its_first_save(tmp_path, monkeypatch, atomic_exchange):
    if not atomic_exchange:  # a system without renameat2: two renames
        monkeypatch.setattr(run_directory, "_exchange", lambda first, second: False)
    directory = old_model(tmp_path)
    with writer_lock(directory), RunDirectory(directory) as output:
        assert output.path == tmp_path / ".poem.staging"
        (output.path / "config.json").write_text("new settings")
        assert (directory / "model.keras").read_text() == "old"  # readers still see the old model
        (output.path / "model.keras").write_text("new")
        output.model_saved()
        assert (directory / "model.keras").read_text() == "new"
        (output.path / "metrics.json").write_text("[]")  # the staging name leads to the new model now
    assert listing(directory) == ["config.json", "metrics.json", "model.keras"]
    assert listing(tmp_path) == [".poem.lock", "poem"]


def test_a_failure_before_the_first_save_leaves_the_old_model_untouched(tmp_path):
    directory = old_model(tmp_path)
    with pytest.raises(RuntimeError), writer_lock(directory), RunDirectory(directory) as output:
        (output.path / "config.json").write_text("new settings")
        raise RuntimeError("NaN, a full disk, a bug")
    assert listing(directory) == ["model.keras"] and (directory / "model.keras").read_text() == "old"
    assert listing(tmp_path) == [".poem.lock", "poem"]


def test_a_new_run_that_fails_keeps_only_what_can_be_resumed(tmp_path):
    for backup, kept in ((False, False), (True, True)):
        directory = tmp_path / f"run_{backup}"
        with pytest.raises(RuntimeError), writer_lock(directory), RunDirectory(directory) as output:
            (output.path / "config.json").write_text("{}")
            if backup:
                (output.path / "backup.json").write_text("{}")
            raise RuntimeError("killed by a bug")
        assert directory.exists() == kept


def test_a_second_writer_is_refused_with_the_pid(tmp_path):
    directory = tmp_path / "poem"
    with writer_lock(directory):
        with pytest.raises(TextgenError, match=f"being trained by process {os.getpid()}; wait"):
            with writer_lock(directory):
                pass
    with writer_lock(directory):  # released at the end of the first run
        pass


def test_what_a_killed_writer_left_is_cleaned_up_by_the_next(tmp_path):
    directory = old_model(tmp_path)
    os.replace(directory, tmp_path / ".poem.replaced")  # killed between the two renames of a swap
    (tmp_path / ".poem.staging").mkdir()  # and its staging directory
    with writer_lock(directory):
        assert listing(tmp_path) == [".poem.lock", "poem"]
        assert (directory / "model.keras").read_text() == "old"
