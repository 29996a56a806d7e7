"""Data validation adapters (Great Expectations)."""
