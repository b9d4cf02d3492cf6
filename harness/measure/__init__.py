"""Measurement: latency timers, memory peaks, environment fingerprint."""
