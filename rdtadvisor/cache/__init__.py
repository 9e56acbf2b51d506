"""Cache physics and mask algebra, below both the advisors and the simulator that judges them:
capacity bitmasks as Xen checks them (`cbm`), mask layouts (`layouts`), the miss-curve shape
(`curve`), the per-way sharing equilibrium (`equilibrium`) and UCP lookahead (`lookahead`).
Plain numbers and numpy in, plain numbers out; no I/O, no history."""
