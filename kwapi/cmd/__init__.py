"""Entry points of the kwapi commands."""
