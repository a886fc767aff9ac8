"""Tests of the RRD plugin (kwapi-rrd)."""
