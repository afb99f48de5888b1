"""Subcommands of `mmft` owned by the operator package."""
