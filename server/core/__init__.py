"""What every layer shares: configuration, errors and their status table, engine-level types, cancellation."""
