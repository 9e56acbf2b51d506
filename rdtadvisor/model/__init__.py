"""The usage model: pure pandas functions from the store's tidy tables to per-VM, per-socket
and per-host figures, data quality, classes, noisy neighbours and headroom (no I/O here)."""
