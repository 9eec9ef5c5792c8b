"""Webhooks: a project's endpoints for execution status changes, and their deliveries."""
from __future__ import annotations

import peewee
from playhouse.migrate import SchemaMigrator

from trainfaas.services.store.records import Webhook, WebhookDelivery


def apply(db: peewee.Database, migrator: SchemaMigrator) -> None:
    db.create_tables([Webhook, WebhookDelivery])
