"""attnlab's exceptions for user mistakes: each carries one clear sentence.

The ``attnlab`` command prints the message of any :class:`AttnlabError` without a traceback
and exits with status 2. Shape mistakes in :mod:`attnlab.nn` raise plain ``ValueError``.
"""


class AttnlabError(Exception):
    """Base class: a mistake the user can fix (bad input, missing data, wrong run directory)."""


class InputError(AttnlabError, ValueError):
    """An input to predict / attention / eval cannot be used (empty, out of vocabulary, ...)."""


class RunDirError(AttnlabError):
    """A run directory is missing, incomplete, truncated or belongs to another task."""


class DataError(AttnlabError):
    """A data set is missing, corrupt, or fails its checksum."""


class TrainingError(AttnlabError):
    """Training cannot go on (for example the loss became NaN or infinite)."""


class ConfigError(AttnlabError, ValueError):
    """A config value is of the wrong type, out of its range or not among its choices."""


class OutputError(AttnlabError):
    """A file cannot be written: a directory is in the way, no permission, or a full disk."""
