"""SendPost Custom SMTP platform: providers, sending, relay, event ingestion and processing."""

__version__ = "0.1.0"
