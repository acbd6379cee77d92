"""The wire validator's limits are the store's: one source of truth, checked both ways."""

from __future__ import annotations

import sqlalchemy as sa
from sendpost_platform.store.schema import events
from sendpost_wire import MAX_LENGTHS

# Each wire string field → the columns of ``events`` that keep it (None: a TEXT column or JSON
# details, where the contract's own bound applies).
_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "smtp_description": ("description",),
    "recipient": ("recipient", "recipient_key"),
    "event_id": ("agent_event_id",),
    "enhanced_status": ("enhanced_status",),
    "smtp_command": ("smtp_command",),
    "queue_id": None,
    "final_recipient": None,
}


def test_every_string_field_is_as_long_as_its_column() -> None:
    """Each bounded column is exactly the validator's limit for the field stored in it, and
    every string field of the wire has a limit (a new field or a resized column fails here)."""
    assert sorted(_COLUMNS) == sorted(MAX_LENGTHS)
    for field, names in _COLUMNS.items():
        for name in names or ():
            column_type = events.c[name].type
            assert isinstance(column_type, sa.String)
            if column_type.length is None:  # TEXT: any length the validator allows
                assert isinstance(column_type, sa.Text), name
                continue
            assert (field, column_type.length) == (field, MAX_LENGTHS[field])
