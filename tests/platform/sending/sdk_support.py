"""SendPost's official SDK pointed at the platform served by uvicorn on loopback.

:class:`SdkRig` starts the platform (``tests/support/live_platform.py``) on a sending setup
(``conftest.sending``), gives the SDK's ``EmailApi`` configured with only the host and the
sub-account key, a plain ``httpx`` client for what the SDK cannot send (our template endpoints,
fields outside its models), and :meth:`SdkRig.relay` to run the relay worker until the queue is
empty, then hand back what the loopback SMTP sink received, parsed.
"""

from __future__ import annotations

import dataclasses
import email
import email.message
import email.policy
from typing import Any

import httpx
import sendpost_python_sdk as sdk
from sendpost_platform.store import messages

from tests.platform.sending.conftest import SendingSetup
from tests.support.live_platform import LivePlatform


@dataclasses.dataclass
class Received:
    """One message the sink got: its envelope, raw bytes and parsed form."""

    mail_from: str
    rcpt: str
    data: bytes
    parsed: email.message.EmailMessage

    def part(self, content_type: str) -> email.message.EmailMessage:
        for part in self.parsed.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                assert isinstance(part, email.message.EmailMessage)
                return part
        raise AssertionError(f"no {content_type} part")

    def text(self, content_type: str) -> str:
        content = self.part(content_type).get_content()
        assert isinstance(content, str)
        return content

    def attachments(self) -> list[email.message.EmailMessage]:
        return [
            p for p in self.parsed.iter_attachments() if isinstance(p, email.message.EmailMessage)
        ]


class SdkRig:
    def __init__(self, setup: SendingSetup) -> None:
        self.setup = setup
        self.live = LivePlatform(setup.settings, setup.seed)
        self.key = setup.seed.account.subaccount_key

    def __enter__(self) -> SdkRig:
        self.live.__enter__()
        config = sdk.Configuration(
            host=f"{self.live.base}/api/v1", api_key={"subAccountAuth": self.key}
        )
        self.client = sdk.ApiClient(config)
        self.email = sdk.EmailApi(self.client)
        self.http = httpx.Client(
            base_url=self.live.base, headers={"X-SubAccount-ApiKey": self.key}, timeout=30
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.client.rest_client.pool_manager.clear()
        self.live.__exit__(*exc)

    def send(self, body: dict[str, Any]) -> list[sdk.EmailResponse]:
        """``EmailApi.send_email`` with the body read into the SDK's own model."""
        return self.email.send_email(sdk.EmailMessageObject.from_dict(body))

    def send_with_template(self, body: dict[str, Any]) -> list[sdk.EmailResponse]:
        return self.email.send_email_with_template(sdk.EmailMessageWithTemplate.from_dict(body))

    def create_template(self, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/api/v1/subaccount/template/", json=fields)
        assert response.status_code == 200, response.text
        created = response.json()
        assert isinstance(created, dict)
        return created

    async def relay(self) -> dict[str, Received]:
        """Relay everything queued; what the sink received, by envelope recipient."""
        job = self.setup.relay_job()
        while await job.run_once():
            pass
        await job.close()
        found = {}
        for got in self.setup.sink.received():
            [rcpt] = got.rcpt_tos
            parsed = email.message_from_bytes(got.data, policy=email.policy.default)
            assert isinstance(parsed, email.message.EmailMessage)
            found[rcpt] = Received(got.mail_from, rcpt, got.data, parsed)
        return found

    def details(self, message_uuid: str) -> messages.SendDetails:
        with self.setup.store.read() as conn:
            found = messages.send_details(conn, message_uuid)
        assert found is not None
        return found
