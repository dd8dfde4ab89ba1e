"""Writing text: engines behind one contract, strategies in one registry, the Generator and textgen.load()."""
