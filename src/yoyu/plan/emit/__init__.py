"""Engine settings from a plan's ``RunSettings``: one module per engine."""
