"""The security suite: one file per kind of attack (see each file's docstring)."""
