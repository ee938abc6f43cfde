"""The outbox (docs/RULES.md#outbox): webhooks and the deliveries written in the transaction
of each change they report. Below the domains that write to it (`app.permits.events`) and
the push layer that sends from it (`app.push.sender`)."""
