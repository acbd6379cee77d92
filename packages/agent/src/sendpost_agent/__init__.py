"""SendPost Custom SMTP agent: reads the Postfix log and reports delivery outcomes."""

__version__ = "0.1.0"
