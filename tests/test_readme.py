"""The README's option tables and the `textgen` command agree: same options, same defaults."""

import re
from pathlib import Path

import click
import pytest

from textgen.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def option_table(command):
    """{flag: default cell} from the first table under the README's `### `textgen COMMAND ...`` heading.

    Only the table's contiguous rows count, as a Markdown renderer shows them: a
    blank line ends the table, and rows after it are not in it.
    """
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"### `textgen {command}"))
    first_row = next(index for index in range(start, len(lines)) if lines[index].startswith("|"))
    table = {}
    for line in lines[first_row + 2 :]:  # past the header and the --- row
        if not line.startswith("|"):
            break
        name_cell, default_cell = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:3]]
        for flag in re.findall(r"--[a-z][a-z-]*", name_cell.strip("`")):
            table[flag] = default_cell
    return table


def command_options(command):
    """{flag: default} of every option of `textgen COMMAND`, both halves of --x/--no-x pairs."""
    options = {}
    for parameter in main.commands[command].params:
        if isinstance(parameter, click.Option) and "--help" not in parameter.opts:
            for flag in parameter.opts + parameter.secondary_opts:
                options[flag] = parameter.default
    return options


def literal(cell):
    """A default cell's value when it is a literal (`char`, 0.006); None for words (auto, none, off)."""
    match = re.fullmatch(r"`([^`]+)`|(-?\d+(?:\.\d+)?)", cell)
    return None if match is None else (match.group(1) or match.group(2))


@pytest.mark.parametrize("command", ["train", "sample", "serve"])
def test_the_readme_table_lists_exactly_the_commands_options(command):
    assert set(option_table(command)) == set(command_options(command))


@pytest.mark.parametrize("command", ["train", "sample"])
def test_the_readme_defaults_are_the_commands_defaults(command):
    options, checked = command_options(command), 0
    for flag, cell in option_table(command).items():
        value = literal(cell)
        if value is None:
            continue
        default = options[flag]
        if isinstance(default, float):
            assert float(value) == default, flag
        else:
            assert value == str(default), flag
        checked += 1
    assert checked >= 8  # the check reads real rows


@pytest.mark.parametrize("command", ["evaluate", "info"])
def test_the_readme_headings_name_the_format_option(command):
    heading = next(
        line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(f"### `textgen {command}")
    )
    assert set(re.findall(r"--[a-z-]+", heading)) == set(command_options(command))
