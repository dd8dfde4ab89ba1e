"""What a setting is: a dataclass field holding its default, its help and its rule.

``setting(default, help, **rule)`` makes the field; ``Settings`` (the base of
every config in config.py) checks each field against its rule on creation,
raising ``TextgenError`` in the setting's own spelling ("seq-length must be an
integer >= 1, got 0"), and round-trips through JSON. cli.py builds the
``textgen`` options from the same fields.
"""

import dataclasses
import re
from typing import ClassVar

from textgen.errors import TextgenError


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one setting is: its help, which values it takes, and how the command line spells it."""

    help: str
    boolean: bool = False  # True or False (a flag on the command line)
    choices: tuple = None  # one of these strings
    integer: tuple = None  # (minimum, maximum or None): a whole number in that range
    interval: str = None  # "[0, 1)": a number in that interval, brackets as in mathematics
    optional: bool = False  # None is allowed (and means "off" or "automatic")
    parse: object = None  # turns a string (from the command line or Python) into the value
    option: bool = True  # a `textgen` option; False: set from Python only
    negative_flag: str = None  # a boolean's "off" flag, e.g. "--stateless"
    default_help: str = None  # the default in words, where the value alone says little

    def check(self, name, value):
        """The value, checked; a ``TextgenError`` in the setting's own spelling if it is not allowed."""
        if value is None and self.optional:
            return value
        if isinstance(value, str) and self.parse is not None:
            value = self.parse(value)
        if self.boolean and not isinstance(value, bool):
            raise TextgenError(f"{name} must be true or false, got {value!r}")
        if self.choices is not None and value not in self.choices:
            raise TextgenError(f"{name} must be one of {', '.join(self.choices)}; got {value!r}")
        if self.integer is not None:
            check_integer(name, value, *self.integer)
        if self.interval is not None:
            _check_interval(name, value, self.interval)
        return value


def check_integer(name, value, minimum, maximum):
    bad = isinstance(value, bool) or not isinstance(value, int) or value < minimum
    bad = bad or (maximum is not None and value > maximum)
    if bad:
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise TextgenError(f"{name} must be an integer >= {minimum}{upper}, got {value!r}")


_INTERVAL = re.compile(r"^([\[(])(\S+), (\S+)([\])])$")


def _check_interval(name, value, interval):
    opening, low, high, closing = _INTERVAL.match(interval).groups()
    low, high = float(low), float(high)
    inside = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN
    inside = inside and (value >= low if opening == "[" else value > low)
    inside = inside and (value <= high if closing == "]" else value < high)
    if not inside:
        raise TextgenError(f"{name} must be in {interval}, got {value!r}")


def setting(default, help, **rule):
    """A settings field: its default and its ``Rule`` (help, allowed values, flag)."""
    return dataclasses.field(default=default, metadata={"rule": Rule(help, **rule)})


def option_name(name):
    """How users spell a setting: ``seq_length`` -> ``seq-length`` (``--seq-length``)."""
    return name.replace("_", "-")


def flag_name(field):
    """How users spell a field (a dataclasses.Field): its ``option_name``."""
    return option_name(field.name)


def rule_of(field):
    return field.metadata["rule"]


class Settings:
    """What every settings dataclass shares: validation from the rules, and the JSON round trip."""

    # Older names of fields in saved config.json files: read, never written.
    RENAMED: ClassVar[dict] = {}

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = rule_of(field).check(flag_name(field), getattr(self, field.name))
            if isinstance(value, list):  # JSON and Python callers give lists; settings are immutable
                value = tuple(value)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self):
        """Rules that involve more than one field or more than a range (a subclass's override point)."""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data, *, source=None):
        """The settings saved as ``data``; ``source`` (a file and its section) is named by every refusal,
        with the field as the file spells it, not as a command-line option."""
        where = source or cls.__name__
        if not isinstance(data, dict):
            raise TextgenError(f"{where} must be a JSON object, got {type(data).__name__}")
        values = {cls.RENAMED.get(key, key): value for key, value in data.items()}
        fields = {field.name: field for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise TextgenError(f"unknown {where} keys: {', '.join(unknown)}")
        if source is None:
            return cls(**values)
        for key, value in values.items():
            try:
                rule_of(fields[key]).check(key, value)
            except TextgenError as error:
                raise TextgenError(f"{source}: {error}") from None
        try:
            return cls(**values)
        except TextgenError as error:  # a rule across fields (check)
            raise TextgenError(f"{source}: {error}") from None
