"""Channels: places other than a mailbox where an edition's digest is posted (a Telegram channel).

A registry like the sources': each kind says how its posts are planned from a digest's frozen
articles (`plan`) and how its channel for the send engine is built (`build`). The pipeline
(publisher.pipeline.channels) runs them through the one send engine with a ledger of posts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from publisher.channels import telegram
from publisher.channels.telegram import Post
from publisher.channels.telegram_api import TelegramChannel
from publisher.config.channels import ChannelSettings
from publisher.models import Article, OutgoingMessage, SendReport


class PostingChannel(Protocol):
    max_batch: int

    def send(self, batch: Sequence[OutgoingMessage]) -> SendReport: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ChannelKind:
    name: str
    summary: str
    plan: Callable[[ChannelSettings, str, Sequence[Article]], list[Post]]
    build: Callable[[ChannelSettings, str], PostingChannel]  # (settings, "channels[i]")


def _telegram_plan(settings: ChannelSettings, title: str, articles: Sequence[Article]) -> list[Post]:
    return telegram.plan(settings.mode, title, articles, images=settings.images)


def _telegram_build(settings: ChannelSettings, where: str) -> PostingChannel:
    return TelegramChannel(settings.bot_token, where=where, api_base=settings.api_base, timeout=settings.timeout,
                           max_retry_after=settings.max_retry_after)


KINDS: dict[str, ChannelKind] = {
    "telegram": ChannelKind("telegram", "a Telegram channel, posted by a bot", _telegram_plan, _telegram_build),
}


def kind_of(settings: ChannelSettings) -> ChannelKind:
    return KINDS[settings.kind]


__all__ = ["KINDS", "ChannelKind", "Post", "PostingChannel", "kind_of"]
