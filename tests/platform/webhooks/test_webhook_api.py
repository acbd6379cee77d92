"""SendPost's official SDK (``WebhookApi``) against the platform served over loopback HTTP: create
(the secret shown once), list with successRate, get, update, re-enable, delete, replay; 422
naming the field for loopback/private/metadata URLs without the development setting, for unknown
and read-only fields."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator

import pytest
from sendpost_platform.config import Settings
from sendpost_platform.domain import webhooks as rules
from sendpost_platform.store import webhooks as store_webhooks
from sendpost_python_sdk.api.webhook_api import WebhookApi
from sendpost_python_sdk.api_client import ApiClient
from sendpost_python_sdk.configuration import Configuration
from sendpost_python_sdk.exceptions import ApiException
from sendpost_python_sdk.models.new_webhook import NewWebhook
from sendpost_python_sdk.models.update_webhook import UpdateWebhook

from tests.platform.conftest import Seed
from tests.support.live_platform import LivePlatform


def sdk(base: str, key: str) -> WebhookApi:
    config = Configuration(host=f"{base}/api/v1")
    config.api_key["accountAuth"] = key
    return WebhookApi(ApiClient(config))


@pytest.fixture
def api(settings: Settings, seed: Seed) -> Iterator[WebhookApi]:
    with LivePlatform(settings, seed) as live:
        yield sdk(live.base, seed.account.account_key)


def test_create_list_get_update_delete_through_the_sdk(api: WebhookApi, seed: Seed) -> None:
    """create_webhook answers 201 with the SDK's defaults, status active and the secret (only in
    that response); get and list read it back (list with successRate 100 and no secret);
    update_webhook replaces URL and switches; delete_webhook answers id and message, after
    which get is 404."""
    response = api.create_webhook_with_http_info(
        NewWebhook(url="http://127.0.0.1:9/hook", opened=False, unique_open=True)
    )
    raw = json.loads(response.raw_data)
    created = response.data
    assert created is not None
    assert created.id is not None
    assert (201, True, "active", 0, "", False, True, True, False) == (
        response.status_code,
        raw["secret"].startswith("whsec_"),
        created.status,
        created.disabled_at,
        created.disabled_reason,
        created.opened,
        created.unique_open,
        created.delivered,
        created.processed,
    )
    got = api.get_webhook(created.id)
    [listed] = api.get_all_webhooks()
    assert (created.url, created.url, 100, False) == (
        got.url,
        listed.url,
        listed.success_rate,
        "secret" in json.loads(api.get_webhook_with_http_info(created.id).raw_data),
    )
    updated = api.update_webhook(
        created.id, UpdateWebhook(url="http://127.0.0.1:9/other", processed=True, enabled=False)
    )
    assert ("http://127.0.0.1:9/other", True, False) == (
        updated.url,
        updated.processed,
        updated.enabled,
    )
    assert [] == api.get_all_webhooks(search="nothing-like-this")
    deleted = api.delete_webhook(created.id)
    assert (created.id, "Webhook deleted") == (deleted.id, deleted.message)
    with pytest.raises(ApiException) as missing:
        api.get_webhook(created.id)
    assert 404 == missing.value.status


def test_re_enabling_a_disabled_webhook_through_the_sdk_replays_it(
    api: WebhookApi, seed: Seed
) -> None:
    """A webhook the dispatcher disabled (status disabled, disabledAt, disabledReason) is shown
    so through get_webhook; update_webhook with enabled=true makes it active again with no
    disabledAt, and its failed deliveries are pending again; POST .../replay sends failed
    deliveries again and says how many."""
    created = api.create_webhook(NewWebhook(url="http://127.0.0.1:9/hook"))
    assert created.id is not None
    now = seed.clock.now()
    with seed.store.write() as conn:
        conn.execute(
            store_webhooks.webhooks.update()
            .where(store_webhooks.webhooks.c.id == created.id)
            .values(
                status="disabled",
                failure_streak=50,
                disabled_at=now,
                disabled_reason="50 consecutive failed deliveries; the last: HTTP 500",
            )
        )
        conn.execute(
            store_webhooks.webhook_deliveries.insert().values(
                webhook_id=created.id,
                account_id=seed.account.account_id,
                target=f"w{created.id}",
                message_uuid="00000000-0000-0000-0000-000000000001",
                event_id=1,
                event_key="cs-1-60",
                body="{}",
                status="failed",
                attempts=6,
                next_attempt_at=now,
                created_at=now,
            )
        )
    shown = api.get_webhook(created.id)
    assert ("disabled", int(now.timestamp()) * 10**9) == (shown.status, shown.disabled_at)
    again = api.update_webhook(created.id, UpdateWebhook(url="http://127.0.0.1:9/hook"))
    with seed.store.read() as conn:
        [delivery] = store_webhooks.deliveries_of(conn, created.id)
    assert ("active", 0, "", "pending", 0) == (
        again.status,
        again.disabled_at,
        again.disabled_reason,
        delivery["status"],
        delivery["attempts"],
    )
    with seed.store.write() as conn:
        conn.execute(store_webhooks.webhook_deliveries.update().values(status="failed"))
    client = api.api_client
    replayed = client.rest_client.request(
        "POST",
        f"{client.configuration.host}/account/webhook/{created.id}/replay",
        headers={"X-Account-ApiKey": seed.account.account_key},
    )
    replayed.read()
    assert (200, {"id": created.id, "replayed": 1}) == (
        replayed.status,
        json.loads(replayed.data),
    )


@pytest.mark.parametrize(
    ("url", "address_class"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest", "metadata"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://localhost/hook", "loopback"),
    ],
)
def test_private_destinations_are_refused_without_the_development_setting(
    settings: Settings, seed: Seed, url: str, address_class: str
) -> None:
    """Without SENDPOST_ALLOW_PRIVATE_NETWORKS a webhook URL whose host is or resolves to a
    loopback, private, link-local or metadata address is refused: 422 naming ``url`` and the
    address class; nothing is stored."""
    strict = dataclasses.replace(settings, allow_private_networks=False)
    with LivePlatform(strict, seed) as live:
        api = sdk(live.base, seed.account.account_key)
        with pytest.raises(ApiException) as refused:
            api.create_webhook(NewWebhook(url=url))
        listed = api.get_all_webhooks()
    body = json.loads(refused.value.body)
    assert (422, "url", address_class, []) == (
        refused.value.status,
        body["errors"][0]["field"],
        body["addressClass"],
        listed,
    )


def test_http_urls_unknown_and_read_only_fields_are_refused_naming_them(
    settings: Settings, seed: Seed
) -> None:
    """Without the development setting an http:// URL is refused (only https); unknown fields
    and read-only ones (status) are refused; a switch that is not a boolean is refused: each a
    422 naming the field."""
    strict = dataclasses.replace(settings, allow_private_networks=False)
    with LivePlatform(strict, seed) as live:
        api = sdk(live.base, seed.account.account_key)
        client = api.api_client
        problems = []
        for body in (
            {"url": "http://hooks.example.com/x"},
            {"url": "https://hooks.example.com/x", "colour": "blue", "status": "active"},
            {"url": "https://hooks.example.com/x", "delivered": "yes"},
        ):
            response = client.rest_client.request(
                "POST",
                f"{live.base}/api/v1/account/webhook",
                headers={
                    "X-Account-ApiKey": seed.account.account_key,
                    "Content-Type": "application/json",
                },
                body=body,
            )
            response.read()
            problems.append(
                (response.status, [e["field"] for e in json.loads(response.data)["errors"]])
            )
    assert [
        (422, ["url"]),
        (422, ["colour", "status"]),
        (422, ["delivered"]),
    ] == problems


def test_switch_names_match_the_sdk_models() -> None:
    """The switches the platform knows are exactly the boolean fields of the SDK's NewWebhook
    other than ``enabled`` and ``url``."""
    sdk_fields = {
        info.alias or name
        for name, info in NewWebhook.model_fields.items()
        if name not in ("enabled", "url")
    }
    assert sdk_fields == set(rules.SWITCHES)
