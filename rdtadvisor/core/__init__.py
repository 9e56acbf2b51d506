"""What every stage shares: errors, units, points in time and the one clock, the configuration,
and how untrusted text (domain and host names) is shown. It imports no other stage."""
