"""REST resources under ``/api/notifications/chat/``, one module per resource."""
