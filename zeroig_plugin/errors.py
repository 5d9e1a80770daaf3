"""User-facing errors: each message names the file or setting at fault and is shown as is."""


class ZeroIGError(Exception):
    """Base class for errors that front ends report as one line, without a traceback."""


class InputError(ZeroIGError):
    """An input image or video cannot be read or used."""


class OutputError(ZeroIGError):
    """An output cannot be written (exists already, unwritable, would overwrite an input)."""


class CheckpointError(ZeroIGError):
    """A weights file is missing, not a checkpoint, or does not fit the networks."""


class DeviceError(ZeroIGError):
    """The requested device does not exist on this machine."""
