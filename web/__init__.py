"""The gateway: Tornado handlers for WebSocket and REST, JWT checks, tenant routing."""
