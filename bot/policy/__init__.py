"""Who may do what, how much: access, per-place controls, limits, fact rules."""
