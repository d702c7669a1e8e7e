"""Trace-driven DRAM-traffic counter of the dataflows (docs/traffic.md)."""
