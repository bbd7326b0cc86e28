"""Reusable test helpers: a recording SMTP server (in-thread or as a process), test certificates."""
