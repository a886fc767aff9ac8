"""Plugins: daemons that subscribe to the bus and make measurements useful."""
