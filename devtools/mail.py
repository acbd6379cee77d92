"""Build platform-like messages and submit them over SMTP, returning the MTA's queue ID.

Usage::

    from devtools.mail import platform_message, submit

    msg = platform_message(uuid, sender="news@example.com", to=["accept@sink.test"],
                           uuid_header=True, uuid_message_id=True)
    queue_id = submit(port, envelope_from=bounce_address(uuid, 7, "example.com"),
                      recipients=["accept@sink.test"], message=msg)
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

UUID_HEADER = "X-Sendpost-Message-UUID"
_QUEUED_AS = re.compile(r"queued as (\w+)")


class SubmitError(RuntimeError):
    """The MTA refused a message or its reply named no queue ID."""


def bounce_address(uuid: str, sub_account_id: int, domain: str) -> str:
    """The platform's envelope sender (SPEC: bounces+{uuid}+{subAccountId}@sp-bounce.{domain})."""
    return f"bounces+{uuid}+{sub_account_id}@sp-bounce.{domain}"


def platform_message(
    uuid: str,
    sender: str,
    to: Sequence[str],
    *,
    uuid_header: bool = True,
    uuid_message_id: bool = True,
    subject: str = "SendPost test message",
) -> bytes:
    """A message carrying ``uuid`` in the UUID header and/or as the Message-ID's local part."""
    domain = sender.rsplit("@", 1)[-1]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    if uuid_message_id:
        msg["Message-ID"] = f"<{uuid}@{domain}>"
    else:
        msg["Message-ID"] = f"<not-a-uuid.{uuid[:8]}@{domain}>"
    if uuid_header:
        msg[UUID_HEADER] = uuid
    msg.set_content(f"Hello from the SendPost test suite ({uuid}).\n")
    return msg.as_bytes()


def submit(
    port: int,
    envelope_from: str,
    recipients: Sequence[str],
    message: bytes,
    host: str = "127.0.0.1",
    rcpt_options: Sequence[str] = (),
) -> str:
    """Send one message over SMTP and return the queue ID from the server's final reply.

    ``rcpt_options`` go on every RCPT TO (e.g. ``["NOTIFY=SUCCESS,FAILURE"]`` for a DSN request).
    Non-ASCII addresses are sent with SMTPUTF8.
    """
    # Not smtplib's context manager: its QUIT on the way out of an interrupted session raises
    # a confusing SMTPResponseException in place of the real error (or Ctrl-C).
    client = smtplib.SMTP(host, port, timeout=30)
    try:
        client.ehlo("submitter.sendpost.test")
        mail_options = []
        if not all(address.isascii() for address in (envelope_from, *recipients)):
            client.command_encoding = "utf-8"
            mail_options.append("SMTPUTF8")
        code, reply = client.mail(envelope_from, options=mail_options)
        if code != 250:
            raise SubmitError(f"MAIL FROM refused: {code} {reply!r}")
        for rcpt in recipients:
            code, reply = client.rcpt(rcpt, options=list(rcpt_options))
            if code not in (250, 251):
                raise SubmitError(f"RCPT TO:<{rcpt}> refused: {code} {reply!r}")
        code, reply = client.data(message)
        if code != 250:
            raise SubmitError(f"DATA refused: {code} {reply!r}")
        client.quit()
    finally:
        client.close()
    found = _QUEUED_AS.search(reply.decode(errors="replace"))
    if found is None:
        raise SubmitError(f"no queue ID in the reply {reply!r}")
    return found.group(1)
