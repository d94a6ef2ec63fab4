"""The operator console, served at /console."""
