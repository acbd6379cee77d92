"""Tracking endpoints, driven by the links found in a relayed message."""

from __future__ import annotations

import email
import email.policy
import re

from sendpost_platform.api.tracking import MAX_TRACKED
from sendpost_platform.store import counters, events
from sendpost_wire import EventType

from tests.platform.sending.conftest import SendingSetup


async def relayed_links(setup: SendingSetup) -> tuple[str, dict[str, str]]:
    """Send one tracked message, relay it, and return its UUID and tracking paths."""
    [result] = await setup.send(to=["accept-1@example.org"], trackOpens=True, trackClicks=True)
    job = setup.relay_job()
    assert await job.run_once() == 1
    await job.close()
    [received] = setup.sink.received()
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    base = "https://sp.example.net"
    click = re.search(rf'href="{base}(/track/tpsp/click/[^"]+)"', html)
    pixel = re.search(rf'src="{base}(/track/tpsp/open/[^"]+)"', html)
    unsubscribe = re.search(
        rf"<{base}(/track/tpsp/unsubscribe/[^>]+)>", message["List-Unsubscribe"]
    )
    assert click is not None
    assert pixel is not None
    assert unsubscribe is not None
    paths = {"click": click[1], "open": pixel[1], "unsubscribe": unsubscribe[1]}
    return result["messageId"], paths


def types(setup: SendingSetup, uuid: str) -> list[int]:
    with setup.store.read() as conn:
        return [int(e["event_type"]) for e in events.events_for_message(conn, uuid)]


async def test_open_click_and_unsubscribe(sending: SendingSetup) -> None:
    """Pixel → GIF + CSOpen; click → 302 to the original + CSClick; one-click POST →
    CSUnsubscribe once, and the recipient is suppressed for later sends."""
    uuid, paths = await relayed_links(sending)
    async with sending.client() as client:
        pixel = await client.get(paths["open"])
        click = await client.get(paths["click"])
        page = await client.get(paths["unsubscribe"])
        for _ in range(2):
            done = await client.post(
                paths["unsubscribe"],
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert done.status_code == 200
    assert (pixel.status_code, pixel.headers["content-type"]) == (200, "image/gif")
    assert pixel.content.startswith(b"GIF89a")
    assert (click.status_code, click.headers["location"]) == (302, "https://shop.example/x")
    assert page.status_code == 200
    assert types(sending, uuid) == [
        EventType.CSProcessed,
        EventType.CSSent,
        EventType.CSOpen,
        EventType.CSClick,
        EventType.CSUnsubscribe,
    ]
    [again] = await sending.send(to=["accept-1@example.org"])
    assert again["errorCode"] == 2


async def test_tampered_click_is_not_redirected(sending: SendingSetup) -> None:
    """A click token whose payload was changed is answered 404 without a Location header."""
    _, paths = await relayed_links(sending)
    prefix, token = paths["click"].rsplit("/", 1)
    payload, signature = token.split(".")
    forged = f"{prefix}/{payload[:-2]}xx.{signature}"
    async with sending.client() as client:
        response = await client.get(forged)
        bad_pixel = await client.get("/track/tpsp/open/garbage")
    assert response.status_code == 404
    assert "location" not in response.headers
    assert bad_pixel.status_code == 200


async def test_repeated_opens_and_clicks_are_bounded_per_message(sending: SendingSetup) -> None:
    """Reloads within a minute are one open (or one click on that URL); a later reload is a
    new one; after MAX_TRACKED opens a message stores no more, whatever an attacker replays,
    and every answer is still the pixel or the redirect. The ignored ones are counted."""
    uuid, paths = await relayed_links(sending)
    async with sending.client() as client:
        for _ in range(5):
            assert (await client.get(paths["open"])).status_code == 200
            assert (await client.get(paths["click"])).status_code == 302
        assert types(sending, uuid).count(EventType.CSOpen) == 1
        assert types(sending, uuid).count(EventType.CSClick) == 1
        sending.clock.advance(seconds=61)
        await client.get(paths["open"])
        await client.get(paths["click"])
        assert types(sending, uuid).count(EventType.CSOpen) == 2
        assert types(sending, uuid).count(EventType.CSClick) == 2
        for _ in range(MAX_TRACKED + 5):
            sending.clock.advance(seconds=61)
            assert (await client.get(paths["open"])).status_code == 200
    assert types(sending, uuid).count(EventType.CSOpen) == MAX_TRACKED
    with sending.store.read() as conn:
        provider = sending.seed.provider.id
        ignored = counters.get(conn, provider, "tracking_repeats_ignored")
        over = counters.get(conn, provider, "tracking_over_cap")
    assert (8, 7) == (ignored, over)
