"""Realistic finished messages for transport tests and the SMTP benchmark.

A digest-like multipart/alternative message (text + HTML, Arabic and English, quoted-printable), as
CRLF bytes the way the render stage hands them over: ASCII-clean, lines <= 76 octets, plus a body
line starting with "." so dot-stuffing is exercised on every send.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

from publisher.models import OutgoingMessage

SENDER = "digest@news.example.test"

_PARAGRAPH_AR = "أعلنت الحكومة اليوم عن خطة جديدة لدعم المدارس في المناطق الريفية، وقال الوزير إن التنفيذ يبدأ الشهر المقبل. "
_PARAGRAPH_EN = "The council approved the budget on Tuesday; critics said the figures = optimistic (see page 3). "


def sample_message(number: int, recipient: str, *, size: int = 25_000, sender: str = SENDER) -> OutgoingMessage:
    """One finished message of roughly `size` bytes for `recipient`; Message-ID <number.digest@...>."""
    message_id = f"<{number}.digest@news.example.test>"
    message = EmailMessage(policy=SMTP)
    message["From"] = f"News Digest <{sender}>"
    message["To"] = recipient
    message["Subject"] = "النشرة اليومية — Daily digest"
    message["Message-ID"] = message_id
    message["List-Unsubscribe"] = f"<https://news.example.test/u/{number}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    repeats = max(1, round(size / 1450))  # one repeat is ~1.45 KB once both parts are QP-encoded
    text = "\n.leading dot line\n" + "\n\n".join([_PARAGRAPH_AR + _PARAGRAPH_EN] * repeats)
    html = (
        '<!doctype html><html lang="ar" dir="rtl"><body>'
        + "".join(f'<p style="text-align:right">{_PARAGRAPH_AR}</p><p dir="ltr">{_PARAGRAPH_EN}</p>' for _ in range(repeats))
        + "</body></html>"
    )
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    data = message.as_bytes(policy=SMTP)
    return OutgoingMessage(delivery_id=number, sender=sender, recipient=recipient, message_id=message_id, data=data)
