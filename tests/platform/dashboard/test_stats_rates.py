"""The counts page answers "how is my mail doing": rates per provider and in all, for the
period chosen, with what each rate is a share of."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx
from sendpost_wire import EventType

from tests.platform.conftest import Seed
from tests.platform.dashboard.helpers import T0, add_event, sign_in

E = EventType


def _rates_row(page: str, provider: str) -> list[str]:
    row = re.search(rf'<tr data-provider-id="{provider}">(.*?)</tr>', page, re.S)
    assert row is not None, provider
    cells = re.findall(r'<td class="num">(.*?)</td>', row.group(1), re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip() for c in cells]


async def test_rates_per_provider_and_in_all(client: httpx.AsyncClient, seed: Seed) -> None:
    """Provider A: 4 sent, 3 delivered, 1 hard bounce, 1 complaint; provider B: 2 sent, 1 soft
    bounce. The rows give each count with its share (bounces of sent, complaints of delivered)
    and the footer the account's; the provider filter keeps one row."""
    other = seed.other_provider("second")[0]
    now = T0 - dt.timedelta(minutes=30)
    for kind, n, provider in (
        (E.CSSent, 4, seed.provider.id),
        (E.CSDelivered, 3, seed.provider.id),
        (E.CSHardBounced, 1, seed.provider.id),
        (E.CSSpamReport, 1, seed.provider.id),
        (E.CSSent, 2, other.id),
        (E.CSSoftBounced, 1, other.id),
    ):
        for _ in range(n):
            add_event(seed, str(uuid.uuid4()), kind, now, provider_id=provider)
    await sign_in(client, seed.account.account_key)
    page = (await client.get("/dashboard/stats", params={"range": "24h"})).text
    assert ["4", "3 75.0%", "1 25.0%", "0 0.0%", "0 0.0%", "1 33.3%", "0", "0"] == _rates_row(
        page, str(seed.provider.id)
    )
    assert ["2", "0 0.0%", "0 0.0%", "1 50.0%", "0 0.0%", "0 —", "0", "0"] == _rates_row(
        page, str(other.id)
    )
    assert ["6", "3 50.0%", "1 16.7%", "1 16.7%", "0 0.0%", "1 33.3%", "0", "0"] == _rates_row(
        page, "all"
    )
    one = (await client.get("/dashboard/stats", params={"providerId": str(other.id)})).text
    assert 'data-provider-id="all"' not in one
    assert f'data-provider-id="{seed.provider.id}"' not in one
