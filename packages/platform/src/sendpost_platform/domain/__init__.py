"""Pure domain logic: classification, dedup, routing, suppression, tracking tokens."""
