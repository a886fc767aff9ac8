"""RRD plugin: round-robin archives of every probe, power graphs and a web page."""
