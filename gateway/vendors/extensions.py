"""This project's extension to every vendor API it emulates: idempotent ingest.

A client sends `Idempotency-Key` (1-255 printable characters) with a create. The receiver
stores the first request; a replay with the same key and body answers 200 with the first
result and `Idempotent-Replayed: true`; the same key with another body answers 422.
"""

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
