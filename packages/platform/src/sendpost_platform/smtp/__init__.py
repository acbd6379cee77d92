"""SMTP edges: connectivity test, relay client, DKIM signing, message preparation."""
