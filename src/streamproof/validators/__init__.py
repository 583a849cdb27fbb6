"""Protocol validators: one state machine per API over decoded SSE events."""
