"""Checks of committed records: re-execution (verify) and the regression gate."""
