"""mail.broker: hand a digest's deliveries to `publisher worker` processes through a message broker.

Absent (the default): one process sends, in-process concurrency (mail.connections), no broker.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from publisher.config.base import Settings


class BrokerSettings(Settings):
    url: Annotated[str, Field(pattern=r"^(amqps?|pyamqp)://")] = Field(
        description="the RabbitMQ broker (Celery): amqp://USER:PASSWORD@HOST:5672/VHOST; write the password as ${...}",
        repr=False,
    )
    queue: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")] = Field(
        default="publisher.send", description="the queue the coordinator fills and `publisher worker` consumes",
    )
    batch: int = Field(default=500, ge=1, le=10000, description="deliveries named by one task")
    wait_minutes: float = Field(
        default=10.0, gt=0, le=24 * 60,
        description="how long the coordinator waits with no task finishing and no delivery settled before it "
                    "gives up (no worker running?)",
    )
