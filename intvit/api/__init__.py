"""Typed functions behind each CLI subcommand (the CLI only parses arguments)."""


def say_now(text: str) -> None:
    """Print one line of a subcommand's progress at once (a pipe does not hold it back)."""
    print(text, flush=True)
