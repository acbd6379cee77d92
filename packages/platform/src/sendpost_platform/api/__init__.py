"""The HTTP API: one router per module, registered by ``app.ROUTER_MODULES``."""
