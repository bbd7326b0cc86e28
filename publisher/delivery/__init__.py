"""Delivery: hands finished bytes to the world.

mail/ holds the mail transports (outbox Maildir, SMTP, in-memory); feeds.py publishes feed files.
Nothing here knows about articles, templates or the store: the pipeline passes plain models in.
"""
