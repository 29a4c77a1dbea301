"""Typed errors. The CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations


class AnalyzerError(Exception):
    """Base class of every error the analyzer raises on purpose."""


class InputPathError(AnalyzerError, FileNotFoundError):
    """The path given does not exist or is not the kind of path expected."""


class ModelFormatError(AnalyzerError, ValueError):
    """The file is not a readable model of the format it claims to be."""


class UnsupportedModelError(AnalyzerError):
    """The file is a model, but of a format or kind this tool cannot read."""


class TableError(AnalyzerError, ValueError):
    """A data table (target support, runtime versions) is malformed."""


class UsageError(AnalyzerError, ValueError):
    """Options that do not fit together or do not name known things."""


class OutputError(AnalyzerError, OSError):
    """An output could not be written, or would overwrite the input."""


class ConversionError(AnalyzerError):
    """The TFLite converter could not be run at all (not: it ran and refused the model)."""


class UnsafeModelError(AnalyzerError):
    """The model holds ops that touch files, the network or Python, and was not trusted."""


class CalibrationDataError(AnalyzerError, ValueError):
    """Calibration or evaluation data that cannot be read or does not fit the model."""


class MetricError(AnalyzerError, ValueError):
    """A user metric function that cannot be imported, raises, or returns a non-number."""


class InterpreterError(AnalyzerError, RuntimeError):
    """The LiteRT interpreter refused to prepare or run the model (the model's fault, not ours)."""
