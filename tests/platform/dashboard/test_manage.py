"""Provider management pages: refused from another site, bad fields named on the form, and
the same rules as the providers API (a new server needs the password again)."""

from __future__ import annotations

import httpx
from sendpost_platform.store import Store, accounts, providers, suppressions

from tests.platform.conftest import Seed
from tests.platform.dashboard.helpers import sign_in

FORM = {
    "name": "mta-2",
    "host": "127.0.0.1",
    "port": "2525",
    "security": "none",
    "testFrom": "probe@sender.example",
    "testTo": "check@receiver.example",
    "action": "create",
}


async def test_posts_from_another_site_change_nothing(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """Create, edit and rotate posted with Sec-Fetch-Site: cross-site are refused (403) and
    nothing changes."""
    await sign_in(client, seed.account.account_key)
    cross = {"Sec-Fetch-Site": "cross-site"}
    pid = seed.provider.id
    answers = [
        await client.post("/dashboard/providers/new", data=FORM, headers=cross),
        await client.post(f"/dashboard/providers/{pid}/edit", data=FORM, headers=cross),
        await client.post(f"/dashboard/providers/{pid}/rotate-key", data={}, headers=cross),
    ]
    assert [403, 403, 403] == [a.status_code for a in answers]
    with seed.store.read() as conn:
        listed = providers.list_providers(conn, account_id=seed.account.account_id)
    assert [seed.provider.name] == [p.name for p in listed]


async def test_bad_fields_are_named_on_the_form(client: httpx.AsyncClient, seed: Seed) -> None:
    """A port out of range and a test sender that is no address: 400, each named next to its
    field, the other values kept."""
    await sign_in(client, seed.account.account_key)
    page = await client.post(
        "/dashboard/providers/new", data={**FORM, "port": "70000", "testFrom": "nobody"}
    )
    assert page.status_code == 400
    assert page.text.count('class="error"') == 2
    assert 'value="mta-2"' in page.text


async def test_moving_a_provider_in_the_form_needs_its_password(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """The edit form follows the API's rules: with AUTH on and no password given, the save is
    refused with the error next to the password field, and nothing is tested or stored."""
    with seed.store.write() as conn:
        providers.update_provider(
            conn,
            account_id=seed.account.account_id,
            provider_id=seed.provider.id,
            changes={"username": "relay", "password_encrypted": None},
            now=seed.clock.now(),
        )
    await sign_in(client, seed.account.account_key)
    form = {**FORM, "name": seed.provider.name, "host": "192.0.2.10", "username": "relay"}
    page = await client.post(f"/dashboard/providers/{seed.provider.id}/edit", data=form)
    assert page.status_code == 400
    assert '<label class="invalid">Password' in page.text


async def test_suppressions_stay_within_the_account(
    client: httpx.AsyncClient, seed: Seed, store: Store
) -> None:
    """A suppression can be added to and lifted from this account's sub-accounts only: another
    account's sub-account ID is refused (400) and its suppression stays; a bad address is named."""
    with store.write() as conn:
        other = accounts.create_account(conn, name="Other", now=seed.clock.now())
        suppressions.add_suppression(
            conn,
            account_id=other.account_id,
            subaccount_id=other.subaccount_id,
            recipient="kept@example.org",
            reason="manual",
            now=seed.clock.now(),
        )
    await sign_in(client, seed.account.account_key)
    foreign = {"recipient": "kept@example.org", "subaccount": str(other.subaccount_id)}
    assert (await client.post("/dashboard/suppressions/remove", data=foreign)).status_code == 400
    assert (await client.post("/dashboard/suppressions", data=foreign)).status_code == 400
    bad = {"recipient": "not an address", "subaccount": str(seed.account.subaccount_id)}
    page = await client.post("/dashboard/suppressions", data=bad)
    assert (page.status_code, "recipient: not an email address" in page.text) == (400, True)
    with store.read() as conn:
        kept = suppressions.list_suppressions(conn, subaccount_id=other.subaccount_id)
    assert ["kept@example.org"] == [r["recipient_key"] for r in kept]
