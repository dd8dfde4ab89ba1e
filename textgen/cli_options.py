"""click options made from the settings' fields (config.py): name, type, default and help, declared once.

``textgen train --help`` and ``textgen sample --help`` list exactly these; the
library (``textgen.train``) takes the same names as keywords.
"""

import dataclasses

import click

from textgen.config import parse_duration
from textgen.errors import TextgenError
from textgen.settings import flag_name, rule_of


class Duration(click.ParamType):
    """A time budget such as 90s, 10m or 1h, in seconds."""

    name = "DURATION"

    def convert(self, value, param, context):
        try:
            return parse_duration(value)
        except TextgenError as error:
            self.fail(str(error), param, context)


def _click_option(field):
    """The click option of one settings field: ``--seq-length``, its type, default and help."""
    rule, flag = rule_of(field), f"--{flag_name(field)}"
    help_text = rule.help + (f" [default: {rule.default_help}]" if rule.default_help else "")
    options = {"help": help_text, "default": field.default, "show_default": field.default not in (None, (), "")}
    if rule.boolean and rule.negative_flag:
        return click.option(f"{flag}/{rule.negative_flag}", field.name, **options)
    if rule.boolean:
        return click.option(flag, field.name, is_flag=True, **{**options, "show_default": False})
    if rule.parse is parse_duration:
        options["type"] = Duration()
    elif rule.choices is not None:
        options["type"] = click.Choice(rule.choices)
    elif rule.integer is not None:
        options["type"] = int
    elif rule.interval is not None:
        options["type"] = float
    elif isinstance(field.default, tuple):
        options["multiple"] = True
    return click.option(flag, field.name, **options)


def settings_options(*config_classes):
    """Decorate a command with an option for every command-line field of these settings classes."""
    fields = [field for cls in config_classes for field in dataclasses.fields(cls) if rule_of(field).option]

    def decorate(command):
        for field in reversed(fields):  # click lists options in the order they are applied, last first
            command = _click_option(field)(command)
        return command

    return decorate


def given_options(context, values):
    """The options the user typed, without click's defaults: the library fills in the rest."""
    return {
        name: value
        for name, value in values.items()
        if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    }
