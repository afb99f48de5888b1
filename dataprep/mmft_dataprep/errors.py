"""Errors that end a preparation run, each mapped to a workload exit code (see mmft_operator.contracts.exit_codes)."""

from __future__ import annotations

from mmft_operator.contracts.exit_codes import CONFIG_INVALID, DATA_INVALID


class PrepError(Exception):
    exit_code = 1


class ConfigError(PrepError):
    """The arguments or the input's shape are wrong (a missing column, fractions not summing to 1)."""

    exit_code = CONFIG_INVALID


class DataError(PrepError):
    """The input is well formed but unusable (no rows left, a split came out empty)."""

    exit_code = DATA_INVALID


class SourceError(PrepError):
    """A remote source could not be fetched or verified (network, checksum, size)."""

    exit_code = 1
