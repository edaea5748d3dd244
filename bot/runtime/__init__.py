"""Running in the background and as a fleet: jobs, leases, keyed ordering."""
