"""Drivers: one thread per wattmeter or source, publishing on the bus."""
