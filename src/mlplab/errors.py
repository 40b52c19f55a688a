"""The errors a user can cause and fix: each message is one line naming the key or file and the fix.
The apps print such a message as it is and exit 2; anything else is a defect and says how to see more."""


class MlplabError(Exception):
    """A problem the user can fix."""


class ConfigError(MlplabError, ValueError):
    """A config value is wrong."""


class DataError(MlplabError, RuntimeError):
    """The data cannot be had."""


class TrackingError(MlplabError, RuntimeError):
    """The tracking store cannot be used."""
