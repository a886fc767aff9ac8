"""kwapi: energy monitoring over a signed ZeroMQ bus."""

__version__ = "1.0.0.dev0"
