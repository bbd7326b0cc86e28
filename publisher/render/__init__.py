"""Rendering: the email digest (Jinja2 -> MJML -> HTML, plain text), per-subscriber MIME bytes, feeds.

- templates.make_environment: the Jinja2 environment (operator templates first), shared with the web.
- email.DigestRenderer: one edition's digest for a day, with slots for per-recipient values.
- message.MessageTemplate: the digest as an RFC 5322 message, personalized per recipient, fast.
- slots.fill_slots: fill the slots of a rendered digest (the archive page fills neutral values).

Modules are imported where used, so that importing one (say feeds) does not load the others.
"""
