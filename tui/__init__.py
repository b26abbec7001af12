"""calcml's front ends: the `calcml-debug` command, headless and in a Textual interface."""
