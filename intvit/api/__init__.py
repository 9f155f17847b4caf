"""Typed functions behind each CLI subcommand (the CLI only parses arguments)."""
