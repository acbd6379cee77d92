"""Bounce readers: one module per format, all behind :class:`~.base.Reader` (issue 14).

Each reader says whether a bounce is in its format (``detect``) and then reads one record per
recipient (``extract``: address, action, status, reply code, command, diagnostic text).
``dsn.parse_report`` tries them in :data:`READERS` order; the first whose ``detect`` is true and
whose ``extract`` finds a recipient wins, and ``DsnReport.format`` names it. RFC 3464 stays
first; the formats with their own markers come next; the generic reader comes last. The order
and what each reader detects are listed in docs/bounces.md ("Readers").
"""

from __future__ import annotations

from sendpost_platform.smtp.readers.amazonses_json import AmazonSesJson
from sendpost_platform.smtp.readers.apachejames import ApacheJames
from sendpost_platform.smtp.readers.base import Bounce, DsnRecipient, DsnReport, Reader
from sendpost_platform.smtp.readers.biglobe import Biglobe
from sendpost_platform.smtp.readers.domino import Domino
from sendpost_platform.smtp.readers.dragonfly import DragonFly
from sendpost_platform.smtp.readers.einsundeins import EinsUndEins
from sendpost_platform.smtp.readers.embedded import EmbeddedFields
from sendpost_platform.smtp.readers.exchange2003 import Exchange2003
from sendpost_platform.smtp.readers.exim import Exim
from sendpost_platform.smtp.readers.ezweb import EzWeb
from sendpost_platform.smtp.readers.fml import Fml
from sendpost_platform.smtp.readers.gmail import GmailText
from sendpost_platform.smtp.readers.gmx import Gmx
from sendpost_platform.smtp.readers.google import Google
from sendpost_platform.smtp.readers.googlegroups import GoogleGroups
from sendpost_platform.smtp.readers.imailserver import IMailServer
from sendpost_platform.smtp.readers.kddi import Kddi
from sendpost_platform.smtp.readers.mailfoundry import MailFoundry
from sendpost_platform.smtp.readers.mailmarshal import MailMarshal
from sendpost_platform.smtp.readers.mfilter import MFilter
from sendpost_platform.smtp.readers.notes import Notes
from sendpost_platform.smtp.readers.notification import Notification
from sendpost_platform.smtp.readers.office365 import Office365
from sendpost_platform.smtp.readers.opensmtpd import OpenSmtpd
from sendpost_platform.smtp.readers.postfix_text import PostfixText
from sendpost_platform.smtp.readers.qmail import Qmail
from sendpost_platform.smtp.readers.rfc3464 import Rfc3464
from sendpost_platform.smtp.readers.sendmail_v5 import SendmailV5
from sendpost_platform.smtp.readers.trendmicro import TrendMicro
from sendpost_platform.smtp.readers.verizon import Verizon
from sendpost_platform.smtp.readers.x1 import X1
from sendpost_platform.smtp.readers.x2 import X2
from sendpost_platform.smtp.readers.x3 import X3
from sendpost_platform.smtp.readers.x4 import X4
from sendpost_platform.smtp.readers.x6 import X6
from sendpost_platform.smtp.readers.yahoo import Yahoo
from sendpost_platform.smtp.readers.zoho import Zoho

READERS: tuple[Reader, ...] = (
    Rfc3464(),
    Exim(),
    Qmail(),
    EmbeddedFields(),
    DragonFly(),
    GmailText(),
    Exchange2003(),
    Domino(),
    Notes(),
    Yahoo(),
    SendmailV5(),
    PostfixText(),
    Office365(),
    OpenSmtpd(),
    Gmx(),
    GoogleGroups(),
    Google(),
    IMailServer(),
    Zoho(),
    MFilter(),
    Kddi(),
    EzWeb(),
    MailMarshal(),
    TrendMicro(),
    Biglobe(),
    EinsUndEins(),
    MailFoundry(),
    Verizon(),
    X1(),
    X2(),
    X3(),
    X4(),
    X6(),
    ApacheJames(),
    Fml(),
    AmazonSesJson(),
    Notification(),
)
"""The readers in the order they are tried (docs/bounces.md lists what each detects)."""


def read(bounce: Bounce) -> DsnReport:
    """The report of the first reader that detects ``bounce`` and finds a recipient in it."""
    for reader in READERS:
        if reader.detect(bounce):
            report = reader.report(bounce)
            if report.recipients:
                return report
    return DsnReport("unknown", ())


__all__ = ["READERS", "Bounce", "DsnRecipient", "DsnReport", "Reader", "read"]
