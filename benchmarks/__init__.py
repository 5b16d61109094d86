"""drumlayer's benchmarks: `python -m benchmarks [NAME ...]` from the repository root."""
