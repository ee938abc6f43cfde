"""Push: webhooks through a transactional outbox, the live event stream, and what they
share (docs/RULES.md#push)."""
