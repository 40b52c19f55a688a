"""The errors a user can cause and fix: each message is one line naming the key or file and the fix.
The apps print such a message as it is and exit 2; anything else is a defect and says how to see more."""

import os


def debugging() -> bool:
    """MLPLAB_DEBUG set to anything but empty or 0: show tracebacks and the libraries' own logs."""
    return os.environ.get("MLPLAB_DEBUG", "") not in ("", "0")


class MlplabError(Exception):
    """A problem the user can fix."""


class ConfigError(MlplabError, ValueError):
    """A config value is wrong."""


class DataError(MlplabError, RuntimeError):
    """The data cannot be had."""


class TrackingError(MlplabError, RuntimeError):
    """The tracking store cannot be used."""


WRITE_ERRNOS = {"ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EEXIST", "EFBIG"}


def is_write_failure(error: BaseException) -> bool:
    """A full disk, a read-only or unwritable folder, a file where a folder should be."""
    import errno

    return isinstance(error, OSError) and errno.errorcode.get(error.errno or 0, "") in WRITE_ERRNOS
