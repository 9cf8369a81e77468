"""Encoders: pure functions of a snapshot (or of a report document) to bytes."""
