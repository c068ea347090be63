"""Engine adapters behind one protocol, and what they tell us about themselves."""
