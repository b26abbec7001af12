"""Sample model files for calcml-debug (each docstring says what to look for)."""
