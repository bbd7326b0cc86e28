"""channels: where an edition's digest is also posted (Telegram), validated like the rest of config.yaml."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from publisher.config.base import Settings

_CHAT = re.compile(r"^(@[A-Za-z][A-Za-z0-9_]{3,31}|-?\d{1,20})$")
_BOT_TOKEN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{10,200}$")


class TelegramChannelSettings(Settings):
    """One Telegram channel: the edition's digest posted by a bot (see publisher.channels)."""

    kind: Literal["telegram"]
    edition: str = Field(description="the edition whose digest is posted")
    chat: str = Field(description="@channelname, or the chat's numeric id (-100...)")
    bot_token: str = Field(repr=False, description="from @BotFather; write it as ${TELEGRAM_BOT_TOKEN}")
    mode: Literal["digest", "articles"] = Field(
        default="digest", description="digest: the digest as one post (split at stories when long); articles: a post per story"
    )
    name: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="names the channel in the ledger and the summary (default: kind-edition-chat); keep it once posts went out",
    )
    images: bool = Field(default=True, description="the lead image as a photo post (sendPhoto) when the article has one")
    api_base: Annotated[str, Field(pattern=r"^https?://")] = Field(
        default="https://api.telegram.org", description="Bot API address; set only for a local Bot API server or a test"
    )
    timeout: float = Field(default=30.0, gt=0, le=600)
    max_retry_after: float = Field(default=10.0, ge=0, description="longest 429 retry_after waited in place")

    @field_validator("chat")
    @classmethod
    def _chat(cls, value: str) -> str:
        if not _CHAT.match(value):
            raise ValueError(f"chat {value!r} is neither @name nor a numeric id; write @channelname "
                             "(5-32 letters, digits, _) or the chat id such as -1001234567890")
        return value

    @field_validator("bot_token")
    @classmethod
    def _token(cls, value: str) -> str:  # the value is a secret: never in the message
        if not _BOT_TOKEN.match(value):
            raise ValueError("not a bot token (123456789:AA...); write bot_token: ${TELEGRAM_BOT_TOKEN} "
                             "and export the token @BotFather gave")
        return value

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}-{self.edition}-{self.chat.lstrip('@')}"


ChannelSettings = TelegramChannelSettings
