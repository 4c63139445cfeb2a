"""The one exception the data pipeline raises for bad input data."""


class DataValidationError(ValueError):
    """A dataset folder or file does not match the MMRec layout.

    The message names the file, the row (1-based line number in the file) or column, and what was
    expected, so a user can fix the data without reading this package's code.
    """
