"""Rates and utilisations derived from two snapshots. No I/O, no screen."""

from hostdiag.derive.rates import counter_rate, derive_rates

__all__ = ["counter_rate", "derive_rates"]
