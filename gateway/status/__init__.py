"""The daemon's HTTP face: a live status page, /api/status, /api/trace and /metrics."""
