"""Live delivery: the event bus and the WebSocket protocol."""
