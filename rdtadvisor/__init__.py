"""rdtadvisor: turn Xen's Intel RDT counters (`xl psr-*`) into cache and memory-bandwidth decisions.

Data flows one way: sources -> parsers (`rdtadvisor.xl`) -> tidy frames (`rdtadvisor.frames`)
-> history store (`rdtadvisor.store`) -> model -> advisors -> plans -> renderers/CLI.
"""

__version__ = "0.1.0"
