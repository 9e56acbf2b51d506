"""The usage model. Enter: the store's tidy tables; leave: per-VM, per-socket and per-host
figures, data quality, classes, noisy neighbours, headroom, today's masks and each VM's miss
curve (`curves`). Pure pandas and numpy functions, no I/O."""
