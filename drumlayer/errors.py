"""The failures a person can act on. The command-line entry points print these as one line
(what is wrong, which file or field, what to do) and exit 1; anything else is a bug and keeps
its traceback."""


class DrumlayerError(Exception):
    """An expected failure with a message that says what to do."""


class ConfigError(DrumlayerError, ValueError):
    """A config field has a value this run cannot use (names the field and what is allowed)."""
